"""The snntorch target: batched spiking learning and inference on snntorch neurons (CPU/CUDA)."""

from __future__ import annotations

from typing import Any

from neurolocal.network import Network
from neurolocal.rule import Rule

from ..base import Target
from ..semantics import SpikingConfig, SpikingProgram, lower_rule
from .lower import render


class SnnTorchTarget(Target):
    name = "snntorch"
    mode = "spiking"
    runs_converted = True
    requires = ("torch", "snntorch")
    default_batch_size = 20
    options = {"seed": "seed of the input encoder", "device": "cpu or cuda",
               "dtype": "float32 or float64", "batch_size": "samples per learning epoch"}

    def lower(self, rule: Rule, *, network: Network | None = None,
              config: SpikingConfig | None = None, allow_nonlocal: bool = False
              ) -> SpikingProgram:
        return lower_rule(rule, config, allow_nonlocal=allow_nonlocal)

    def render(self, program: SpikingProgram) -> str:
        return render(program)

    def bind(self, network: Network, program: SpikingProgram, **options: Any):
        from .runtime import SnnTorchRunner

        self.check_options(options)
        if network.convs:
            from .conv import ConvSnnTorchRunner
            return ConvSnnTorchRunner(network, program, **options)
        if network.recurrent or program.timed:
            from .recurrent import SnnTorchSequenceRunner

            return SnnTorchSequenceRunner(network, program, **options)
        return SnnTorchRunner(network, program, **options)

    def run_converted(self, model: Any, x: Any, timesteps: int, **kw: Any) -> Any:
        from .inference import sweep_snntorch

        return sweep_snntorch(model, x, [timesteps], **kw)[timesteps]

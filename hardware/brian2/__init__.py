"""The Brian2 target: the spiking program as real NeuronGroups and Synapses."""

from __future__ import annotations

import os
from typing import Any

from neurolocal.network import Network
from neurolocal.rule import Rule

from ..base import Target
from ..semantics import SpikingConfig, lower_rule
from .lower import Brian2Model, build_model


class Brian2Target(Target):
    name = "brian2"
    mode = "spiking"
    runs_converted = True
    requires = ("brian2",)
    options = {"seed": "seed of Brian2's and the encoder's random draws",
               "codegen": "auto, cython or numpy ($NEUROLOCAL_BRIAN2_CODEGEN)",
               "input_mode": "poisson (drawn in Brian2) or raster (replayed spike trains)"}

    def lower(self, rule: Rule, *, network: Network | None = None,
              config: SpikingConfig | None = None, allow_nonlocal: bool = False
              ) -> Brian2Model:
        program = lower_rule(rule, config, allow_nonlocal=allow_nonlocal)
        if network is not None:
            sizes, recurrent = network.sizes, tuple(sorted(network.recurrent))
        elif program.timed:  # row-by-row MNIST's shape
            sizes, recurrent = [28, 128, 10], (1,)
        else:
            sizes, recurrent = [784, 500, 10], ()
        mode = "poisson" if program.config.encoding == "poisson" else "raster"
        return build_model(program, sizes, input_mode=mode, recurrent=recurrent)

    def render(self, program: Brian2Model) -> str:
        return program.text()

    def bind(self, network: Network, program: Brian2Model, **options: Any):
        from .runtime import Brian2Runner

        self.check_options(options)
        if options.get("codegen") is None:
            options["codegen"] = os.environ.get("NEUROLOCAL_BRIAN2_CODEGEN", "auto")
        return Brian2Runner(network, program, **options)

    def run_converted(self, model: Any, x: Any, timesteps: int, **kw: Any) -> Any:
        from .inference import run_brian2

        return run_brian2(model, x, timesteps, **kw)

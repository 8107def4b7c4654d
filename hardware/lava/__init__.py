"""The Lava target (Intel Loihi 2): learning-engine strings, a generated graph, fixed point.

Two registered targets share this folder: ``lava:fixed_pt`` (bit-accurate Loihi 2) and
``lava:floating_pt`` (the same graph in float). Importing this package does not import Lava.
"""

from __future__ import annotations

from typing import Any

from neurolocal.network import Network, build_mlp
from neurolocal.rule import Rule

from ..base import Target
from ..semantics import SpikingConfig
from .lower import lower_to_loihi
from .program import LavaOptions, LoihiProgram
from .report import render


class _LavaTarget(Target):
    mode = "spiking"
    requires = ("lava", "networkx", "asteval")
    tag = "fixed_pt"
    chunk_samples = 500  # samples per learn call of the training loop (progress, checks)
    options = {"seed": "seed of the input encoder",
               "chunk": "samples per Lava run call (cores: per block of the feed)",
               "graph": "cores (one process per layer, kept running; default) or processes "
                        "(one per part, built per call)"}

    def lower(self, rule: Rule, *, network: Network | None = None,
              config: SpikingConfig | None = None, allow_nonlocal: bool = False,
              options: LavaOptions | None = None) -> LoihiProgram:
        net = network or build_mlp([784, 100, 10], rule, seed=0)
        return lower_to_loihi(rule, config, net=net, options=options,
                              allow_nonlocal=allow_nonlocal)

    def render(self, program: LoihiProgram) -> str:
        return render(program, self.tag)

    def bind(self, network: Network, program: LoihiProgram, **options: Any):
        from .runtime import LavaRunner

        self.check_options(options)
        return LavaRunner(network, program, tag=self.tag, **options)

    def run_converted(self, model: Any, x: Any, timesteps: int, **kw: Any) -> Any:
        from .inference import run_lava

        return run_lava(model, x, timesteps, tag=self.tag, **kw)


class LavaFixedTarget(_LavaTarget):
    name = "lava:fixed_pt"
    tag = "fixed_pt"
    runs_converted = True


class LavaFloatTarget(_LavaTarget):
    name = "lava:floating_pt"
    tag = "floating_pt"
    runs_converted = True  # the same graph with the float model's weights

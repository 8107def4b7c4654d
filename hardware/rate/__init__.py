"""The rate target: the numerical reference, numpy and torch from one generated module."""

from __future__ import annotations

from typing import Any

from neurolocal.errors import NeurolocalError
from neurolocal.network import Network
from neurolocal.rule import Rule

from ..base import Target
from .lower import RateSource, generate_rate_source, lower_rate, update_function_name
from .optim import Optimiser
from .runner import RateRunner


class _RateTarget(Target):
    mode = "rate"
    backend = "numpy"
    default_batch_size = 50
    options = {"seed": "seed of the noise draws", "device": "cpu or cuda (torch)",
               "optimiser": "an Optimiser (sgd, momentum, adam)", "batch_size": "samples per step"}

    def lower(self, rule: Rule, *, network: Network | None = None, config: Any = None,
              allow_nonlocal: bool = False) -> RateSource:
        if config is not None:
            raise NeurolocalError("the rate targets take no spiking configuration")
        if not allow_nonlocal:
            from neurolocal.locality import require_local
            require_local(rule)
        return lower_rate(rule, self.backend)

    def render(self, program: RateSource) -> str:
        return program.text

    def bind(self, network: Network, program: RateSource, **options: Any):
        """The runner; the locality check already ran when ``program`` was lowered."""
        self.check_options(options)
        return RateRunner(network, backend=self.backend, program=program, allow_nonlocal=True,
                          **options)


class NumpyTarget(_RateTarget):
    name = "numpy"
    backend = "numpy"


class TorchTarget(_RateTarget):
    name = "torch"
    backend = "torch"
    requires = ("torch",)


__all__ = ["NumpyTarget", "Optimiser", "RateRunner", "RateSource", "TorchTarget",
           "generate_rate_source", "update_function_name"]

"""The rate target: the numerical reference, numpy and torch from one generated module.

A network with recurrent layers, or a rule with time statements (``on R``, ``end`` phases,
``future``), runs the program generated through time (:mod:`.recurrent_lower`).
"""

from __future__ import annotations

from typing import Any

from neurolocal.errors import LoweringError, NeurolocalError
from neurolocal.network import Network
from neurolocal.rule import Rule

from ..base import Target
from .lower import RateSource, generate_rate_source, lower_rate, update_function_name
from .optim import Optimiser
from .recurrent import RecurrentRunner
from .recurrent_lower import RecurrentSource, lower_recurrent
from .runner import RateRunner


def _through_time(rule: Rule, network: Network | None) -> bool:
    """Does ``rule`` on ``network`` run through time? Refuses a time rule on a network
    without time steps, naming the statements."""
    timed = rule.time_statements()
    if network is not None and not network.recurrent:
        if timed:
            raise LoweringError(f"rule {rule.name}: {'; '.join(timed)}: these need time steps, "
                                "a network with a recurrent layer (--recurrent N) trained on "
                                "sequences (--dataset smnist)")
        return False
    return bool(timed) or network is not None


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
        if _through_time(rule, network):
            return lower_recurrent(rule, self.backend)
        return lower_rate(rule, self.backend)

    def render(self, program: RateSource) -> str:
        return program.text

    def bind(self, network: Network, program: RateSource, **options: Any):
        """The runner; the locality check already ran when ``program`` was lowered."""
        self.check_options(options)
        if _through_time(network.rule, network):
            if not isinstance(program, RecurrentSource):
                program = lower_recurrent(program.rule, self.backend)
            return RecurrentRunner(network, backend=self.backend, program=program,
                                   allow_nonlocal=True, **options)
        if isinstance(program, RecurrentSource):
            raise LoweringError(f"rule {program.rule.name}: the program runs through time; "
                                "the network has no recurrent layer (--recurrent N)")
        return RateRunner(network, backend=self.backend, program=program, allow_nonlocal=True,
                          **options)


class NumpyTarget(_RateTarget):
    name = "numpy"
    backend = "numpy"


class TorchTarget(_RateTarget):
    name = "torch"
    backend = "torch"
    requires = ("torch",)


__all__ = ["NumpyTarget", "Optimiser", "RateRunner", "RateSource", "RecurrentRunner",
           "RecurrentSource", "TorchTarget", "generate_rate_source", "lower_recurrent",
           "update_function_name"]

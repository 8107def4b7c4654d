"""The one target interface and the registry every user of a target reads.

A :class:`Target` turns a rule into its program (:meth:`~Target.lower`, data), prints it
(:meth:`~Target.render`), binds it to a network (:meth:`~Target.bind`, a :class:`Runner`
that learns, predicts and hands the network back) and runs converted spiking networks
(:meth:`~Target.run_converted`). The base class owns the pipeline; a target fills in the
hooks, as Brian2's code generators fill in a language. A new target is one folder under
``hardware/`` plus one line in :data:`REGISTRY`.
"""

from __future__ import annotations

import importlib
import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np

from neurolocal.errors import LocalityError, LoweringError, NeurolocalError
from neurolocal.network import Network
from neurolocal.rule import Rule

#: target name -> "module:Class" (imported on first use: Brian2 and Lava take seconds)
REGISTRY: Mapping[str, str] = {
    "numpy": "neurolocal.hardware.rate:NumpyTarget",
    "torch": "neurolocal.hardware.rate:TorchTarget",
    "snntorch": "neurolocal.hardware.snntorch:SnnTorchTarget",
    "brian2": "neurolocal.hardware.brian2:Brian2Target",
    "lava:fixed_pt": "neurolocal.hardware.lava:LavaFixedTarget",
    "lava:floating_pt": "neurolocal.hardware.lava:LavaFloatTarget",
}
#: short names users type
ALIASES: Mapping[str, str] = {"lava": "lava:fixed_pt"}


@runtime_checkable
class Runner(Protocol):
    """A program bound to a network's state on one target.

    ``learn`` consumes samples in order (the runner's batch size: 1 is strictly online) and
    applies the rule's updates; ``predict`` gives class scores (N, classes) without learning;
    ``sync`` writes the current weights back into the network and returns it.
    """

    target: str
    net: Network

    def learn(self, x: Any, onehot: Any) -> None: ...

    def predict(self, x: Any) -> np.ndarray: ...

    def sync(self) -> Network: ...

    def close(self) -> None: ...


class Target(ABC):
    """A backend: lowering, printing, binding, converted inference.

    Subclasses set :attr:`name`, :attr:`mode` (``"rate"`` or ``"spiking"``), :attr:`requires`
    (modules the target needs, checked before work starts) and :attr:`options` (the option
    names :meth:`bind` accepts, with their meaning), and implement the hooks.
    """

    name: str = ""
    mode: str = "spiking"
    requires: tuple[str, ...] = ()
    options: Mapping[str, str] = {}
    #: the batch size learning uses unless told otherwise (1: strictly online)
    default_batch_size: int = 1
    #: does :meth:`run_converted` run converted networks here?
    runs_converted: bool = False
    #: samples the training loop hands :meth:`Runner.learn` at a time (progress, checks)
    chunk_samples: int = 1000

    # -- hooks -------------------------------------------------------------------------------
    @abstractmethod
    def lower(self, rule: Rule, *, network: Network | None = None, config: Any = None,
              allow_nonlocal: bool = False) -> Any:
        """The rule's program for this target (data); LoweringError names what cannot run."""

    @abstractmethod
    def render(self, program: Any) -> str:
        """The program as the text ``neurolocal compile`` prints."""

    @abstractmethod
    def bind(self, network: Network, program: Any, **options: Any) -> Runner:
        """A runner for ``program`` on ``network``'s state (options: :attr:`options`)."""

    def run_converted(self, model: Any, x: Any, timesteps: int, **kw: Any) -> Any:
        """Run a converted or imported spiking network (``converters.SNNModel``)."""
        raise LoweringError(f"target {self.name!r} runs no converted spiking networks; "
                            f"spiking targets: {', '.join(spiking_targets())}")

    # -- the pipeline ------------------------------------------------------------------------
    def available(self) -> str | None:
        """None when the target's dependencies import, else what is missing and the fix."""
        for module in self.requires:
            if importlib.util.find_spec(module) is None:
                return (f"target {self.name!r} needs the Python package {module!r}, which is "
                        f"not installed; install neurolocal with its extras (make install)")
        return None

    def check_options(self, options: Mapping[str, Any]) -> None:
        """Refuse, before work starts, an option this target cannot honour."""
        bad = sorted(set(options) - set(self.options))
        if bad:
            known = ", ".join(sorted(self.options)) or "none"
            raise NeurolocalError(f"target {self.name!r} has no option "
                                  f"{', '.join(repr(b) for b in bad)}; its options: {known}")

    def runner(self, network: Network, config: Any = None, *, allow_nonlocal: bool = False,
               **options: Any) -> Runner:
        """Lower ``network``'s rule and bind it: ``bind(network, lower(...), **options)``."""
        program = self.lower(network.rule, network=network, config=config,
                             allow_nonlocal=allow_nonlocal)
        return self.bind(network, program, **options)

    def compile(self, rule: Rule, *, network: Network | None = None, config: Any = None,
                allow_nonlocal: bool = False) -> str:
        return self.render(self.lower(rule, network=network, config=config,
                                      allow_nonlocal=allow_nonlocal))

    def verdict(self, rule: Rule) -> str:
        """``"runs"`` when the rule lowers here, else the LoweringError's message."""
        try:
            self.lower(rule, allow_nonlocal=True)
        except LocalityError as exc:  # pragma: no cover - allow_nonlocal is set
            return str(exc)
        except LoweringError as exc:
            return str(exc)
        return "runs"

    def __repr__(self) -> str:
        return f"<target {self.name} ({self.mode})>"


def target_names() -> list[str]:
    return list(REGISTRY)


def canonical(name: str) -> str:
    """The registry key for a user's target name (``lava`` -> ``lava:fixed_pt``)."""
    name = ALIASES.get(name, name)
    if name not in REGISTRY:
        known = ", ".join([*REGISTRY, *ALIASES])
        raise LoweringError(f"unknown target {name!r}; targets: {known}")
    return name


_cache: dict[str, Target] = {}


def get_target(name: str) -> Target:
    """The target registered under ``name`` (or an alias), imported on first use."""
    key = canonical(name)
    if key not in _cache:
        module, _, cls = REGISTRY[key].partition(":")
        _cache[key] = getattr(importlib.import_module(module), cls)()
    return _cache[key]


def spiking_targets() -> list[str]:
    return [n for n in REGISTRY if get_target(n).mode == "spiking"]


def choices(*, mode: str | None = None, converted: bool = False) -> list[str]:
    """The target names a user may type (registered names and aliases), filtered by mode and
    by whether they run converted networks; what the CLI offers."""
    def keep(name: str) -> bool:
        t = get_target(name)
        return (mode is None or t.mode == mode) and (not converted or t.runs_converted)

    names = [n for n in REGISTRY if keep(n)]
    return names + [a for a, n in ALIASES.items() if n in names]


def lowering_matrix(rule: Rule) -> dict[str, str]:
    """``{target: "runs" or the LoweringError message}`` for every registered target."""
    return {name: get_target(name).verdict(rule) for name in REGISTRY}

"""Which targets exist and how to reach each one's lowering, by name.

Backends register lazily (importing Brian2 or Lava costs seconds), so the registry maps
a target name to the module that implements it.
"""

from __future__ import annotations

from importlib import import_module

from neurolocal.errors import LoweringError
from neurolocal.rule import Rule

#: target name -> module (relative to this package) exposing ``compile_text(rule, **opts)``
COMPILERS = {
    "numpy": "rate",
    "torch": "rate",
    "snntorch": "snntorch_target",
    "brian2": "brian2_target",
    "lava": "lava_target",
}
SPIKING_TRAINERS: dict[str, str] = {
    "snntorch": "snntorch_target",
    "brian2": "brian2_target",
    "lava": "lava_target",
}


def available() -> list[str]:
    return sorted(COMPILERS)


def compile_text(rule: Rule, target: str, **options) -> str:
    """The generated program for ``target`` as text (what ``neurolocal compile`` prints)."""
    if target not in COMPILERS:
        raise LoweringError(f"target {target!r} has no lowering in this build; available "
                            f"targets: {', '.join(available())}")
    module = import_module(f".{COMPILERS[target]}", __package__)
    if target in ("numpy", "torch"):
        return module.generate_rate_source(rule, target)
    return module.compile_text(rule, **options)


def train_spiking(args) -> dict:
    """Online training on a spiking target (``neurolocal train --spiking``)."""
    if args.target not in SPIKING_TRAINERS:
        raise LoweringError(f"spiking training on {args.target!r} is not available in this "
                            "build; spiking targets: "
                            f"{', '.join(sorted(SPIKING_TRAINERS)) or 'none'}")
    module = import_module(f".{SPIKING_TRAINERS[args.target]}", __package__)
    return module.train_from_args(args)

"""Building a rule from Python: the pieces become rule text, parsed by the one parser.

Going through the text keeps one source of truth: a rule built here checks, lowers and
saves exactly like the same rule written in a file (``rule.text`` is that file).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .parser import parse_rule
from .rule import Rule


def make_rule(
    name: str,
    *,
    description: str = "",
    globals: Mapping[str, float] | None = None,
    phases: Mapping[str, str] | None = None,
    feedback: Mapping[str, str] | None = None,
    output: Mapping[str, str] | None = None,
    neuron: Mapping[str, str] | None = None,
    updates: Sequence[tuple[str, str]] | Mapping[str, str] | None = None,
    cite: Sequence[str] = (),
) -> Rule:
    """A rule from its parts, e.g. ``updates=[("W", "dw = -lr * post.delta * pre.r")]``.

    ``phases`` maps a name to a kind call (``{"mirror": "noise(sigma=1)"}``), ``feedback`` a
    name to ``"SRC -> COMPARTMENT via WEIGHTS"``; an update key may say ``"B during mirror"``.
    """
    lines = [f'rule {name} "{description}"' if description else f"rule {name}"]
    lines += [f'cite "{c}"' for c in cite]
    lines += [f"global {k} = {float(v)!r}" for k, v in (globals or {}).items()]
    lines += [f"phase {k} = {v}" for k, v in (phases or {}).items()]
    lines += [f"output {k} = {v}" for k, v in (output or {}).items()]
    lines += [f"feedback {k} = {v}" for k, v in (feedback or {}).items()]
    lines += [f"neuron {k} = {v}" for k, v in (neuron or {}).items()]
    items = updates.items() if isinstance(updates, Mapping) else (updates or [])
    lines += [f"on {proj}: {eq}" for proj, eq in items]
    return parse_rule("\n".join(lines) + "\n", source=f"<make_rule {name}>")

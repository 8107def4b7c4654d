"""snntorch: the settling stretch of a relax phase, on tensors (:mod:`..relax`).

The epoch module gets, per relax phase ``P``, ``relax_P_output(c, g)`` and
``relax_P_hidden(c, g)`` (the right-hand sides dx/dt) and, once, ``output_derived`` and
``hidden_derived`` (the static equations re-run after every step); :func:`settle` steps them
on the batch of compartments, with the feedback synapses recomputed at every step.
"""

from __future__ import annotations

from typing import Any

from ..printing import ArrayPrinter
from ..semantics import SpikingProgram


def _fn(name: str) -> str:
    return name.replace("-", "_")


def rates_name(phase: str, where: str) -> str:
    return f"relax_{_fn(phase)}_{where}"


def relax_source(program: SpikingProgram) -> list[str]:
    """The generated functions of the settling stretch (none without relax phases)."""
    if not program.relax:
        return []
    pr = ArrayPrinter({"self": "c"})
    first = program.relax[0]
    lines: list[str] = []
    for where, eqs in (("output_derived", first.output_derived),
                       ("hidden_derived", first.hidden_derived)):
        lines.append(f"def {where}(c, g):")
        lines.append('    """Static equations re-run after every relaxation step."""')
        for eq in eqs:
            lines += [f"    # {eq.target} = {eq.text}",
                      f"    c[{eq.target!r}] = {pr.doprint(eq.expr)}"]
        lines += ["    return c", ""]
    for plan in program.relax:
        for where, eqs in (("output", plan.output_rates), ("hidden", plan.hidden_rates)):
            lines += [f"def {rates_name(plan.name, where)}(c, g):",
                      f'    """d/dt of the {where} compartments during {plan.name}."""',
                      "    d = {}"]
            for eq in eqs:
                lines += [f"    # d{eq.target}/dt = {eq.text}",
                          f"    d[{eq.target!r}] = {pr.doprint(eq.expr)}"]
            lines += ["    return d", ""]
    return lines


def settle(runner: Any, comps: list[dict]) -> None:
    """Every relax phase's Euler steps on ``comps`` (all layers at once), each followed by
    the static equations and the feedback, top-down."""
    prog, mod, g, top = runner.program, runner.mod, runner.g, runner.net.depth
    targets = sorted({fb.target for fb in prog.feedback})
    for plan in prog.relax:
        out_rates = mod[rates_name(plan.name, "output")]
        hid_rates = mod[rates_name(plan.name, "hidden")]
        for _ in range(plan.steps):
            incs = [(comps[top], out_rates(comps[top], g))]
            incs += [(comps[layer], hid_rates(comps[layer], g)) for layer in range(1, top)]
            for c, d in incs:
                for k, v in d.items():
                    c[k] = c[k] + plan.rate * v
            mod["output_derived"](comps[top], g)
            for layer in range(top - 1, 0, -1):
                c = comps[layer]
                for t in targets:
                    c[t] = runner.torch.zeros_like(c["r"])
                fbw = {fb.name: runner.feedback_weights(fb, layer) for fb in prog.feedback}
                mod["feedback"](c, comps[layer + 1], comps[top], fbw)
                mod["hidden_derived"](c, g)

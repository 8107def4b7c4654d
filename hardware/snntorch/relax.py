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
    up = [fb for fb in program.feedback if fb.scope == "prev"]
    if up:
        lines += ["def feedback_up(c, src_prev, fbw):",
                  '    """prev.X via W: the layer below\'s X up the forward synapses."""']
        for fb in up:
            lines += [f"    # {fb.target} += W . prev.{fb.source}   [the forward synapses]",
                      f"    c[{fb.target!r}] = c[{fb.target!r}] + "
                      f"ops.matmul(src_prev[{fb.source!r}], fbw[{fb.name!r}].T)"]
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
    """Bring the values that follow the relaxed ones in line once, then every relax phase's
    Euler steps on ``comps`` (all layers at once), each followed by the same."""
    prog, mod, g, top = runner.program, runner.mod, runner.g, runner.net.depth
    for n, plan in enumerate(prog.relax):
        if n == 0:
            _follow(runner, comps)
        out_rates = mod[rates_name(plan.name, "output")]
        hid_rates = mod[rates_name(plan.name, "hidden")]
        for _ in range(plan.steps):
            incs = [(comps[top], out_rates(comps[top], g))]
            incs += [(comps[layer], hid_rates(comps[layer], g)) for layer in range(1, top)]
            for c, d in incs:
                for k, v in d.items():
                    c[k] = c[k] + plan.rate * v
            _follow(runner, comps)


def _follow(runner: Any, comps: list[dict]) -> None:
    """Top-down the output's static equations, each hidden layer's projections from above,
    the output and itself and its static equations; then bottom-up ``prev.X via W``."""
    prog, mod, g, top = runner.program, runner.mod, runner.g, runner.net.depth
    zeros = runner.torch.zeros_like
    down = sorted({fb.target for fb in prog.feedback if fb.scope != "prev"})
    up = [fb for fb in prog.feedback if fb.scope == "prev"]
    mod["output_derived"](comps[top], g)
    for layer in range(top - 1, 0, -1):
        c = comps[layer]
        for t in down:
            c[t] = zeros(c["r"])
        fbw = {fb.name: runner.feedback_weights(fb, layer) for fb in prog.feedback
               if fb.scope != "prev"}
        mod["feedback"](c, comps[layer + 1], comps[top], fbw)
        mod["hidden_derived"](c, g)
    if not up:
        return
    for layer in range(2, top + 1):
        c = comps[layer]
        for t in {fb.target for fb in up}:
            c[t] = zeros(c["r"])
        w = runner.state["W"][layer]["w"][:, :-1]  # the forward synapses into this layer
        mod["feedback_up"](c, comps[layer - 1], {fb.name: w for fb in up})
        mod["output_derived" if layer == top else "hidden_derived"](c, g)

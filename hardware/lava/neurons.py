"""The neuron program each NeuroLIF population runs, generated from the spiking program."""

from __future__ import annotations

import sympy

from neurolocal.network import Network

from ..printing import ArrayPrinter
from ..semantics import CONSTANTS, SpikingProgram
from .neuron_program import Channel, NeuronProgram
from .program import TRACE_NAMES, FeedbackGroup, LavaOptions, PostFactor, SynapseGroup


class _RawPrinter(ArrayPrinter):
    """Measured symbols: raw state ``st[...]``, constants ``k[...]``."""

    def _print_Symbol(self, expr: sympy.Symbol) -> str:
        if "__" not in expr.name:
            table = "k" if expr.name in CONSTANTS else "st"
            return f"{table}[{expr.name!r}]"
        return super()._print_Symbol(expr)


def neuron_code(program: SpikingProgram, role: str, factors: list[PostFactor]) -> str:
    """The neuron program as Python source (measure, equations, post_factors)."""
    lines = ["def measure(st, k):", "    c = {}"]
    raw = _RawPrinter({})
    for n in program.measured:
        lines.append(f"    c[{n!r}] = {raw.doprint(program.symbols[n])}")
    lines += ["    return c", "", "", "def equations(c, g):"]
    pr = ArrayPrinter({"self": "c", "post": "c"})
    eqs = program.output_eqs if role == "output" else program.hidden_eqs
    for eq in eqs:
        lines.append(f"    c[{eq.target!r}] = {pr.doprint(eq.expr)}  # {eq.text}")
    lines += ["    return c", "", "", "def post_factors(c, g):"]
    lines.append("    return [" + ", ".join(pr.doprint(f.expr) for f in factors) + "]")
    return "\n".join(lines) + "\n"


def _channels(factors: list[PostFactor], group: SynapseGroup) -> tuple[Channel, ...]:
    out = []
    for index, pf in enumerate(factors):
        signs = (1, -1) if pf.signed else (1,)
        for tr, sign in zip(pf.traces, signs):
            out.append(Channel(TRACE_NAMES.index(tr), index, sign,
                               group.channel_gain.get(tr, 0.0)))
    return tuple(out)


def neuron_program(program: SpikingProgram, layer: int, net: Network, *, eq_step: int,
                   source: str | None, feedback: list[FeedbackGroup],
                   factors: list[PostFactor], group: SynapseGroup, quantum: float,
                   options: LavaOptions, epoch_len: int) -> NeuronProgram:
    """The program of layer ``layer``'s neurons (u in float weight units: the group's step)."""
    cfg = program.config
    role = "output" if layer == net.depth else "hidden"
    traces = sorted({int(s.name[2]) - 1 for n in program.measured
                     for s in program.symbols[n].free_symbols if s.name.startswith("tr")} | {0})
    return NeuronProgram(
        name=f"{program.rule.name} L{layer}", layer=layer, n=net.sizes[layer], role=role,
        timesteps=cfg.timesteps, epoch_len=epoch_len, eq_step=eq_step,
        code=neuron_code(program, role, factors), globals=dict(program.globals),
        constants=cfg.constants(layer), computed=tuple(program.computed),
        decays=(cfg.decay(1), cfg.decay(2), cfg.decay(3)), traces=tuple(traces),
        channels=_channels(factors, group), u_unit=group.weight_step,
        fb_target=feedback[0].plan.target if feedback else None,
        fb_unit=feedback[0].weight_step * quantum if feedback else 0.0,
        src=source, src_quantum=quantum, payload_max=options.payload_max, reset=cfg.reset)

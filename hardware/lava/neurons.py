"""The neuron program each NeuroLIF population runs, generated from the spiking program."""

from __future__ import annotations

import sympy

from neurolocal.network import Network
from neurolocal.rule import FORWARD

from ..printing import ArrayPrinter
from ..semantics import CONSTANTS, SpikingProgram
from .neuron_program import Channel, NeuronProgram
from .program import TRACE_NAMES, FeedbackGroup, LavaOptions, PostFactor, SynapseGroup


class _RawPrinter(ArrayPrinter):
    """Measured symbols: raw state ``st[...]``, constants ``k[...]``."""

    def _print_Symbol(self, expr: sympy.Symbol) -> str:
        if "__" not in expr.name:
            if expr.name.startswith("nz_"):  # private noise: 0 where no draw (inference)
                return f"st.get({expr.name!r}, 0.0)"
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
    lines += ["    return c", "", ""]
    # the factors of the sample epochs; those of noise epochs (another kind of epoch) are 0
    lines += ["def post_factors(c, g):", "    return [" + ", ".join(
        pr.doprint(f.expr) if f.epoch is None else "0.0" for f in factors) + "]"]
    if any(f.epoch is not None for f in factors):
        lines += ["", "", "def post_factors_noise(c, g):", "    return [" + ", ".join(
            pr.doprint(f.expr) if f.epoch is not None else "0.0" for f in factors) + "]"]
    return "\n".join(lines) + "\n"


def _channels(factors: list[PostFactor], groups: list[SynapseGroup]) -> tuple[Channel, ...]:
    """The y channels of one neuron: every post factor of every synapse group into it."""
    out = []
    for index, pf in enumerate(factors):
        signs = (1, -1) if pf.signed and not pf.offset else (1,)
        owner = next((g for g in groups if any(tr in g.channel_gain for tr in pf.traces)),
                     None)
        for tr, sign in zip(pf.traces, signs):
            gain = owner.channel_gain.get(tr, 0.0) if owner is not None else 0.0
            out.append(Channel(TRACE_NAMES.index(tr), index, sign, gain, pf.offset, pf.epoch,
                               owner is None or owner.projection == FORWARD))
    return tuple(out)


def neuron_program(program: SpikingProgram, layer: int, net: Network, *, eq_step: int,
                   source: str | None, feedback: list[FeedbackGroup],
                   factors: list[PostFactor], group: SynapseGroup, quantum: float,
                   options: LavaOptions, epoch_len: int, sends: list[FeedbackGroup] = (),
                   cycle: int = 1) -> NeuronProgram:
    """The program of layer ``layer``'s neurons (u in float weight units: the group's step).

    ``feedback``: the feedback groups into this layer; ``sends``: those it is the source of.
    """
    cfg = program.config
    role = "output" if layer == net.depth else "hidden"
    traces = sorted({int(s.name[2]) - 1 for n in program.measured
                     for s in program.symbols[n].free_symbols if s.name.startswith("tr")} | {0})
    groups = [group] + [f.learning for f in feedback if f.learned]
    graded_out = [f for f in sends if f.learned]
    phase = program.noise_phases[0] if program.noise_phases else None
    m = program.epochs
    ticked = [g for g in groups if g.tick]
    tick_epoch = next((pm.term.epoch for g in ticked for pm in g.products if pm.tick > 1),
                      None)
    first_ratio = cfg.gain(1, layer - 1, 0, m) / cfg.gain(1, layer - 1, 1, m) if m > 1 else 1.0
    return NeuronProgram(
        name=f"{program.rule.name} L{layer}", layer=layer, n=net.sizes[layer], role=role,
        timesteps=cfg.timesteps, epoch_len=epoch_len, eq_step=eq_step,
        code=neuron_code(program, role, factors), globals=dict(program.globals),
        constants=cfg.constants(layer),
        computed=tuple(program.computed),
        decays=(cfg.decay(1), cfg.decay(2), cfg.decay(3)), traces=tuple(traces),
        channels=_channels(factors, groups), u_unit=group.weight_step,
        fb_target=feedback[0].plan.target if feedback else None,
        fb_unit=(feedback[0].weight_step * (feedback[0].x_quantum / 2 if feedback[0].learned
                                            else quantum)) if feedback else 0.0,
        src=source, src_quantum=quantum, payload_max=options.payload_max, reset=cfg.reset,
        epochs=m, epoch_steps=program.epoch_steps,
        first_constants=program.constants(layer, 0) if m > 1 else None,
        rest_constants=program.constants(layer, 1) if m > 1 else None,
        first_ratio=first_ratio, cycle=cycle, phase=phase.name if phase else None,
        phase_sigma=phase.sigma if phase else 0.0,
        noise=tuple((n.name, n.sigma, n.into) for n in program.noise_sources),
        seed=options.rng_seed + 1000 * layer,
        slow_measured=program.slow_measured, slow_computed=program.slow_computed,
        slow_decay=program.slow_decay, src_graded=bool(graded_out),
        src_x_quantum=graded_out[0].x_quantum if graded_out else 1.0,
        fb_graded=bool(feedback) and feedback[0].learned,
        tick=max((g.tick for g in ticked), default=0), tick_epoch=tick_epoch)

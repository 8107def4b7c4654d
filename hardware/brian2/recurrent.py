"""Recurrent layers on Brian2 (:mod:`..timed`): ``R`` as a ``Synapses`` from a group to itself.

Its ``on_pre`` delivers into the group's own input (``I_post += w``): a spike found in the
``thresholds`` slot of step t is integrated in step t + 1's ``groups`` slot, the one step of
synaptic delay every projection has. Brian2 learns online (one sequence at a time), so an
eligibility trace is a synaptic variable, set back to 0 when a sequence ends.
"""

from __future__ import annotations

from neurolocal.rule import RECURRENT

from ..semantics import SpikingProgram
from . import epochs as ep
from .lower import ORDER_RESET, ORDER_UPDATE, Operation, SynapseSpec, _update_code, syn_name


def _traces(program: SpikingProgram, projection: str) -> list[str]:
    return [v for v in program.rule.state_vars(projection) if v != "w"] if program.timed \
        else []


def recurrent_synapses(program: SpikingProgram, layers) -> list[SynapseSpec]:
    """The R synapses of each recurrent layer, with their update and trace reset."""
    learned = RECURRENT in program.learned_projections
    momentum = program.config.optimiser == "momentum"
    out = []
    for layer in sorted(layers):
        model = ["w : 1", *[f"{syn_name(v)} : 1" for v in _traces(program, RECURRENT)]]
        if momentum and learned:
            model.append("vel : 1")
        s = SynapseSpec(f"nl_R{layer}", "recurrent", RECURRENT, layer, f"nl_L{layer}",
                        f"nl_L{layer}", model, "I_post += w")
        if learned:
            s.epoch.append(Operation(f"nl_R{layer}_update", ORDER_UPDATE,
                                     _update_code(program, RECURRENT, bias=False,
                                                  gate=ep.sample_gate(program, "_post")),
                                     learning=True))
        out.append(s)
    return out


def add_trace_resets(program: SpikingProgram, synapses: list[SynapseSpec]) -> None:
    """Every eligibility trace restarts with the sequence (after the last epoch's updates)."""
    for s in synapses:
        names = _traces(program, s.projection) if s.kind in ("forward", "recurrent") else []
        if names:
            s.epoch.append(Operation(f"{s.name}_trace_reset", ORDER_RESET, "\n".join(
                f"{syn_name(v)} = {syn_name(v)}*(1 - endsample_post)" for v in names),
                learning=True))

"""Recurrent networks on the spiking targets: what a rule's time statements mean there.

A recurrent rule (``on R``, an ``end`` phase) runs on a spiking network through the existing
*learning epochs within a sample* (:mod:`.noise`): a sequence of S steps is one sample, each
of its steps is shown for E spike steps and is one learning epoch (T = S * E). The neuron
state runs on through the sequence, the epoch traces restart per learning epoch, and the
epoch program runs at the end of each. So

* an equation ``during`` an ``end`` phase holds in the sequence's last learning epoch only
  (the compartment is 0, or its plain equation's value, before it): ``err = r - target``
  arrives at the last step, as in rate mode;
* every synaptic variable other than ``w`` is an **eligibility trace**: one copy per sequence
  (per sample of a batch), 0 at the sequence's start, updated at the end of each learning
  epoch *before* that epoch's weight updates read it (rate mode's order, docs/rule-language.md);
  the weight increments are batch means, applied at the end of each learning epoch;
* the recurrent synapses ``R`` of a layer are a projection from the layer to itself with the
  usual one step of synaptic delay (a spike at step t reaches the layer's current at t + 1),
  so ``pre.*`` of an R synapse is the layer's own compartments of this learning epoch, what
  it sent through R, exactly as ``pre.*`` of a W synapse is the layer below's.

Nothing here knows a rule by name: the checks read the rule's statements.
"""

from __future__ import annotations

import math
from typing import Any

from neurolocal.errors import LoweringError
from neurolocal.rule import END, RECURRENT, Rule
from neurolocal.symbols import TIME_COMPARTMENTS, refs_in

__all__ = ["end_phases", "check_timed", "sequence_config", "encode_sequence",
           "trace_vars", "refuse_timed", "du_for_leak", "check_recurrent"]


def _where(line: int) -> str:
    return f" (line {line})" if line else ""


def end_phases(rule: Rule) -> set[str]:
    """The rule's ``end`` phases (the last step of a sequence)."""
    return {name for name, ph in rule.phases.items() if ph.kind == END}


def check_timed(rule: Rule) -> None:
    """Refuse, naming the statement, the time statements spiking targets do not lower:
    projections from ``future`` (a sweep backward in time), reads of ``leak``, updates
    ``during`` an ``end`` phase."""
    for fb in rule.feedback.values():
        if fb.source.scope == "future":
            raise LoweringError(
                f"rule {rule.name}: feedback {fb.name} = {fb.source} -> {fb.target}"
                f"{_where(fb.line)} reads the next step (future-in-time): a spiking network "
                "runs forward in time only; run it in rate mode (--target numpy|torch)")
    timed = set(TIME_COMPARTMENTS)
    for eq in (*rule.output, *rule.neuron):
        for ref in refs_in(eq.expr):
            if ref.name in timed and ref.scope in ("self", "post"):
                raise LoweringError(
                    f"rule {rule.name}: {eq.where} {eq.target} = {eq.text}{_where(eq.line)} "
                    f"reads {ref.name}: a spiking neuron has no rate leak to read (its memory "
                    "across steps is its current decay du, a neuron parameter)")
    ends = end_phases(rule)
    for u in rule.updates:
        if u.phase in ends:
            raise LoweringError(
                f"rule {rule.name}: on {u.projection} during {u.phase}: d{u.var} = {u.text}"
                f"{_where(u.line)}: spiking targets do not lower updates during an end phase; "
                "write the update without 'during' and let a compartment that holds during "
                f"{u.phase} (output err during {u.phase} = ...) gate it")
        if any(ref.name in timed for ref in u.reads if ref.scope in ("pre", "post")):
            raise LoweringError(
                f"rule {rule.name}: on {u.projection}: d{u.var} = {u.text}{_where(u.line)} "
                "reads leak: a spiking neuron has no rate leak to read")


def trace_vars(program: Any, projection: str) -> tuple[str, ...]:
    """The eligibility traces of ``projection`` in a timed program (its non-``w`` state)."""
    if not program.timed:
        return ()
    return tuple(v for v in program.rule.state_vars(projection) if v != "w")


def sequence_config(config: Any, rows: int, steps_per_row: int) -> Any:
    """``config`` for sequences of ``rows`` steps, each shown for ``steps_per_row`` spike
    steps and learnt as one learning epoch."""
    for name, value in (("sequence steps", rows), ("spike steps per sequence step",
                                                  steps_per_row)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise LoweringError(f"{name} must be an integer >= 1, got {value!r}")
    return config.with_options(timesteps=rows * steps_per_row, learning_epochs=rows)


def encode_sequence(x: Any, config: Any, *, seed: Any = None) -> Any:
    """Sequences (B, S, F) in [0, 1] -> input spikes (S * E, B, F): step s of a sequence is
    encoded for the E = T / S spike steps of learning epoch s (the encoder restarts per step)."""
    from .encoding import poisson_encode, regular_encode

    if len(x.shape) != 3:
        raise LoweringError(f"a recurrent network learns sequences (batch, steps, features); "
                            f"got an input of shape {tuple(x.shape)}")
    batch, rows, feats = x.shape
    if config.timesteps % rows:
        raise LoweringError(f"T = {config.timesteps} spike steps do not divide into the "
                            f"sequence's {rows} steps")
    per = config.timesteps // rows
    if config.encoding == "poisson":
        s = poisson_encode(x, per, max_rate=config.input_rate, seed=seed)
    else:
        s = regular_encode(x, per, max_rate=config.input_rate)
    # (E, B, S, F) -> (S, E, B, F) -> (S * E, B, F)
    s = s.permute(2, 0, 1, 3) if hasattr(s, "permute") else s.transpose(2, 0, 1, 3)
    return s.reshape(rows * per, batch, feats)


def du_for_leak(leak: float, steps_per_row: int) -> float:
    """The current decay per spike step that keeps ``leak`` of the synaptic current over one
    sequence step (E spike steps): the spiking counterpart of a rate layer's ``leak``
    (leak 0: du = 1, the current is this step's input, the default neuron)."""
    if not 0.0 <= leak < 1.0:
        raise LoweringError(f"leak must lie in [0, 1), got {leak!r}")
    return 1.0 if leak == 0 else 1.0 - math.exp(math.log(leak) / steps_per_row)


def refuse_timed(program: Any, target: str, reason: str = "") -> None:
    """A target that does not lower recurrent programs yet says so, naming the statements."""
    if getattr(program, "timed", False):
        what = "; ".join(program.rule.time_statements())
        raise LoweringError(f"rule {program.rule.name}: {what}: the {target} target does not "
                            f"lower recurrent rules yet{reason} (snntorch and brian2 do)")


def check_recurrent(net: Any, program: Any, target: str) -> None:
    """A recurrent network needs a recurrent rule, and a rule of R a recurrent network."""
    if net.recurrent and not program.timed:
        raise LoweringError(
            f"layer {min(net.recurrent)} of this network is recurrent (R) and rule "
            f"{program.name} has no time statements (on R, an end phase): on {target} a "
            "recurrent network learns with a recurrent rule (dfa-rnn, sdfa-rnn)")
    if RECURRENT in program.learned_projections and not net.recurrent:
        raise LoweringError(f"rule {program.name} updates recurrent synapses R; this "
                            "network has no recurrent layer (build_rnn, --recurrent N)")

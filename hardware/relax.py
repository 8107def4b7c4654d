"""Relax phases in the spiking learning epoch: the settling stretch as data.

A rule's ``during`` equations become :class:`RelaxPlan` data of the
:class:`~.semantics.SpikingProgram`: S Euler steps between the epoch program's equations and
its updates, every layer at once, the values that follow the relaxed ones brought in line
after each step (the rate target's executor on the measured compartments). The semantics
are in docs/spiking.md, "Relax phases: the settling stretch"; nothing here knows a rule.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from neurolocal.errors import LoweringError
from neurolocal.rule import Rule
from neurolocal.symbols import refs_in

from .noise import SLOW_PREFIX


@dataclass(frozen=True)
class RelaxPlan:
    """One relax phase lowered: ``steps`` Euler steps of size ``rate``.

    ``hidden_rates`` / ``output_rates``: the right-hand sides dx/dt (each a
    :class:`~.semantics.CompartmentEq` whose ``target`` is x); ``hidden_derived`` /
    ``output_derived``: the static equations re-run after every step, in the rule's order.
    """

    name: str
    steps: int
    rate: float
    hidden_rates: tuple
    output_rates: tuple
    hidden_derived: tuple
    output_derived: tuple
    line: int = 0

    @property
    def relaxed(self) -> tuple[str, ...]:
        """The compartments this phase integrates (hidden and output)."""
        return tuple(dict.fromkeys(e.target for e in (*self.hidden_rates, *self.output_rates)))


def _where(line: int) -> str:
    return f" (line {line})" if line else ""


def split_dynamic(eqs: list, rule: Rule) -> tuple[list, list]:
    """The rule's equations split into the others and those ``during`` a relax phase (an end
    phase's equations are the last learning epoch's: :mod:`.timed`)."""
    relax = {name for name, ph in rule.phases.items() if ph.kind == "relax"}
    return [e for e in eqs if e.phase not in relax], [e for e in eqs if e.phase in relax]


def relaxed_names(dynamic: list, where: str) -> set[str]:
    """Targets of the ``during`` equations of hidden (``neuron``) or ``output`` neurons."""
    return {e.target for e in dynamic if (e.where == "output") == (where == "output")}


def relax_plans(rule: Rule, dynamic: list, output_eqs: tuple, hidden_eqs: tuple,
                check) -> tuple[RelaxPlan, ...]:
    """The rule's relax phases as plans, checked; ``dynamic``: its ``during`` equations.

    ``check(eq, where)`` is the spiking check of one equation (``semantics._compartment_eq``:
    no other neuron's value read directly, no measured compartment overwritten).
    """
    for eq in dynamic:
        ph = rule.phases.get(eq.phase)
        text = f"rule {rule.name}: {eq.where} {eq.target} during {eq.phase} = {eq.text}" \
               f"{_where(eq.line)}"
        if ph is None:
            raise LoweringError(f"{text} runs during phase {eq.phase!r}, which the rule does "
                                "not declare")
        if ph.kind != "relax":
            raise LoweringError(f"{text}: an equation during a {ph.kind} phase has no "
                                "spiking meaning; only relax phases integrate equations")
        if any(r.name.startswith(SLOW_PREFIX) for r in refs_in(eq.expr)):
            raise LoweringError(f"{text} reads slow(...): the slow part of a compartment "
                                "does not change while the epoch settles; read it in an "
                                "update, or compute it in a static equation")
    hid_dyn, out_dyn = relaxed_names(dynamic, "neuron"), relaxed_names(dynamic, "output")
    hidden_derived = tuple(e for e in hidden_eqs if e.target not in hid_dyn)
    output_derived = tuple(e for e in output_eqs if e.target not in out_dyn)
    plans = []
    for name, ph in rule.phases.items():
        if ph.kind != "relax":
            continue
        steps, rate = ph.params["steps"], float(ph.params["rate"])
        if steps != int(steps) or not 0 < steps <= 100000 or not rate > 0:
            raise LoweringError(f"rule {rule.name}: phase {name} = relax(steps={steps:g}, "
                                f"rate={rate:g}){_where(ph.line)}: steps must be a whole "
                                "number in 1..100000 and rate > 0")
        during = [e for e in dynamic if e.phase == name]
        hid = tuple(check(replace(e, phase=None), "neuron") for e in during
                    if e.where != "output")
        out = tuple(check(replace(e, phase=None), "output") for e in during
                    if e.where == "output")
        plans.append(RelaxPlan(name, int(steps), rate, hid, out, hidden_derived,
                               output_derived, ph.line))
    return tuple(plans)


def source_layer(scope: str, layer: int, top: int) -> int:
    """The layer a projection of ``scope`` into ``layer`` reads (``top``: the output), one
    map for every spiking target."""
    return {"next": layer + 1, "output": top, "lateral": layer, "prev": layer - 1}[scope]


def settling_feedback(rule: Rule, fb, where: str, plan_type):
    """A projection from ``lateral.X`` (the same layer, delivered with the others, top-down)
    or ``prev.X via W`` (the forward synapses themselves carrying X up, delivered bottom-up
    while the epoch settles) as a :class:`~.semantics.FeedbackPlan`."""
    if fb.source.scope == "prev":
        if not any(ph.kind == "relax" for ph in rule.phases.values()):
            raise LoweringError(f"{where}: a projection from prev.* is delivered while the "
                                "epoch settles (bottom-up after every relaxation step); "
                                "declare a relax phase")
        others = [o.name for o in rule.feedback.values()
                  if o.target == fb.target and o.source.scope != "prev"]
        if others:
            raise LoweringError(f"{where}: {fb.target} is also fed by {', '.join(others)} "
                                "from above; a compartment takes projections from prev.* "
                                "or from the other scopes, not both")
        mode = "forward"
    else:
        if "resample" in {s.name for s in fb.weights.free_symbols}:
            raise LoweringError(f"{where}: 'resample' redraws the feedback weights for every "
                                "batch; synapses keep their weights (nearest: 'random')")
        mode = "learned" if rule.is_learned(fb.name) else "fixed"
    return plan_type(fb.name, fb.source.scope, fb.source.name, fb.target, mode, fb.weights,
                     fb.weights_text, fb.line)


def describe_relax(program) -> list[str]:
    """The settling stretch as comment lines (between the equations and the updates)."""
    lines = []
    up = [fb for fb in program.feedback if fb.scope == "prev"]
    for n, plan in enumerate(program.relax):
        if n == 0:
            lines.append("  2a. the follow pass below, once (what follows the relaxed values)")
        lines.append(f"  2b. relax {plan.name}: {plan.steps} Euler steps of rate {plan.rate:g}, "
                     "all layers at once (the measured compartments stay fixed):")
        for e in plan.output_rates:
            lines.append(f"      output: {e.target} += {plan.rate:g} * ({e.text})")
        for e in plan.hidden_rates:
            lines.append(f"      hidden: {e.target} += {plan.rate:g} * ({e.text})")
        lines.append("      after every step, top-down: output "
                     + ("; ".join(f"{e.target} = {e.text}" for e in plan.output_derived)
                        or "(nothing)")
                     + "; each hidden layer from the top: its feedback recomputed from the "
                     "layer above, then "
                     + ("; ".join(f"{e.target} = {e.text}" for e in plan.hidden_derived)
                        or "(nothing)"))
        if up:
            lines.append("      then bottom-up from layer 2: " + "; ".join(
                f"{fb.target} = W . prev.{fb.source}" for fb in up)
                + " (the forward synapses), and that layer's static equations")
    return lines


def refuse_relax(program, target: str, missing: str) -> None:
    """A LoweringError naming the relax phase (or the lateral / prev projection) and what
    ``target``'s lowering lacks."""
    if program.relax:
        plan = program.relax[0]
        raise LoweringError(f"rule {program.rule.name}: phase {plan.name} = relax(steps="
                            f"{plan.steps}, rate={plan.rate:g}){_where(plan.line)}: the "
                            f"{target} target {missing}")
    for fb in program.feedback:
        if fb.scope in ("lateral", "prev"):
            raise LoweringError(f"rule {program.rule.name}: feedback {fb.name} = {fb.scope}."
                                f"{fb.source} -> {fb.target}{_where(fb.line)}: the {target} "
                                f"target does not lower projections from {fb.scope}.* yet "
                                "(a missing lowering); run it on snntorch or brian2")

"""Brian2: the settling stretch of a relax phase (:mod:`..relax`) as epoch-clock operations.

Every Euler step of the relaxation is a set of ``run_regularly`` operations of the epoch
clock in the ``end`` slot, between the hidden equations and the updates: each group steps
its relaxed compartments (``x = x + rate*(rhs)``, all groups at the same order: the layers
step at once from the values before the step); then, top-down, the output group runs its
static equations, every feedback ``Synapses`` sums ``w * source_pre`` into its target
group's accumulator (``racc_<B>_post += ...``, a real synaptic operation over all its
synapses), and the target group reads the accumulator into the compartment and runs its
static equations. The stretch is unrolled: ``steps`` times these operations, identical code
(one code object per distinct text for Cython's cache).
"""

from __future__ import annotations

from neurolocal.errors import LoweringError

from ..semantics import SpikingProgram


def _lower():
    from . import lower

    return lower


def base_order(depth: int) -> int:
    """First epoch-clock order of the stretch (after every hidden layer's equations)."""
    return _lower().ORDER_HIDDEN + 2 * depth


def stride(depth: int) -> int:
    """Orders per Euler step: the step, the output, a (synapse, group) pair per hidden layer."""
    return 2 * depth


def check(program: SpikingProgram, depth: int) -> None:
    """Refuse what this lowering cannot order or combine, naming the phase."""
    if not program.relax:
        return
    lw = _lower()
    total = sum(plan.steps for plan in program.relax)
    last = base_order(depth) + total * stride(depth)
    if last >= lw.ORDER_UPDATE:
        most = (lw.ORDER_UPDATE - base_order(depth)) // stride(depth) - 1
        plan = program.relax[0]
        raise LoweringError(
            f"rule {program.rule.name}: phase {plan.name} = relax(steps={plan.steps}, ...): "
            f"the brian2 lowering unrolls the settling stretch into epoch-clock operations "
            f"before the updates (order {lw.ORDER_UPDATE}); a network of {depth} layers fits "
            f"at most {most} Euler steps in all, this rule asks for {total}")
    if program.noise_phases:
        raise LoweringError(
            f"rule {program.rule.name}: relax phases together with noise phases "
            f"({', '.join(ph.name for ph in program.noise_phases)}) are not lowered to brian2: "
            "the settling stretch would run in the noise epochs too")


def group_model(program: SpikingProgram, layer: int, depth: int) -> list[str]:
    """A hidden group's accumulators, one per feedback projection into it."""
    if not program.relax or not 0 < layer < depth:
        return []
    return [f"racc_{fb.name} : 1" for fb in program.feedback]


def namespace(program: SpikingProgram) -> dict[str, float]:
    return {f"rrate_{plan.name}": float(plan.rate) for plan in program.relax}


def _eq_lines(eqs) -> list[str]:
    lw = _lower()
    gp = lw.Brian2Printer("group")
    return [f"# {e.target} = {e.text}\n{lw.comp_name(e.target)} = {gp.doprint(e.expr)}"
            for e in eqs]


def _steps(program: SpikingProgram, depth: int):
    """(plan, order of the step's first operation) for every Euler step, in order."""
    k = 0
    for plan in program.relax:
        for _ in range(plan.steps):
            yield plan, base_order(depth) + k * stride(depth)
            k += 1


def group_operations(program: SpikingProgram, layer: int, depth: int) -> list:
    """Layer ``layer``'s share of every Euler step of the stretch."""
    if not program.relax or layer == 0:
        return []
    lw = _lower()
    gp = lw.Brian2Printer("group")
    name, out, k = f"nl_L{layer}", [], 0
    for plan, o in _steps(program, depth):
        rates = plan.output_rates if layer == depth else plan.hidden_rates
        if rates:
            code = [f"# d{e.target}/dt = {e.text}\nd_{lw.comp_name(e.target)} = "
                    f"{gp.doprint(e.expr)}" for e in rates]
            code += [f"{lw.comp_name(e.target)} = {lw.comp_name(e.target)} + "
                     f"rrate_{plan.name}*d_{lw.comp_name(e.target)}" for e in rates]
            out.append(lw.Operation(f"{name}_relax{k}", o, "\n".join(code), learning=True))
        if layer == depth:
            derived = _eq_lines(plan.output_derived)
            if derived:
                out.append(lw.Operation(f"{name}_relaxout{k}", o + 1, "\n".join(derived),
                                        learning=True))
        else:
            code = [f"{lw.comp_name(t)} = " + " + ".join(f"racc_{fb.name}" for fb in fbs)
                    for t, fbs in program.feedback_into().items()]
            code += [f"racc_{fb.name} = 0" for fb in program.feedback]
            code += _eq_lines(plan.hidden_derived)
            out.append(lw.Operation(f"{name}_relaxfb{k}", o + 3 + 2 * (depth - 1 - layer),
                                    "\n".join(code), learning=True))
        k += 1
    return out


def synapse_operations(program: SpikingProgram, fb, layer: int, depth: int) -> list:
    """Feedback synapses into hidden ``layer``: their sum at every Euler step."""
    if not program.relax:
        return []
    lw = _lower()
    src = f"{lw.comp_name(fb.source)}_pre"
    return [lw.Operation(f"nl_{fb.name}{layer}_relax{k}", o + 2 + 2 * (depth - 1 - layer),
                         f"racc_{fb.name}_post += w*{src}", learning=True)
            for k, (_plan, o) in enumerate(_steps(program, depth))]

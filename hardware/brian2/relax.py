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


def _up(program: SpikingProgram) -> list:
    return [fb for fb in program.feedback if fb.scope == "prev"]


def stride(program: SpikingProgram, depth: int) -> int:
    """Orders per Euler step: the step, the output, a (synapse, group) pair per hidden layer
    top-down, and with prev.X via W a (forward synapse, group) pair per layer bottom-up."""
    return 4 * depth - 2 if _up(program) else 2 * depth


def check(program: SpikingProgram, depth: int) -> None:
    """Refuse what this lowering cannot order or combine, naming the phase."""
    if not program.relax:
        return
    lw = _lower()
    total = 1 + sum(plan.steps for plan in program.relax)
    last = base_order(depth) + total * stride(program, depth)
    if last >= lw.ORDER_UPDATE:
        most = (lw.ORDER_UPDATE - 1 - base_order(depth)) // stride(program, depth) - 1
        plan = program.relax[0]
        raise LoweringError(
            f"rule {program.rule.name}: phase {plan.name} = relax(steps={plan.steps}, ...): "
            f"the brian2 lowering unrolls the settling stretch into epoch-clock operations "
            f"before the updates (order {lw.ORDER_UPDATE}); a network of {depth} layers fits "
            f"at most {most} Euler steps in all, this rule asks for {total - 1}")
    if program.noise_phases:
        raise LoweringError(
            f"rule {program.rule.name}: relax phases together with noise phases "
            f"({', '.join(ph.name for ph in program.noise_phases)}) are not lowered to brian2: "
            "the settling stretch would run in the noise epochs too")


def group_model(program: SpikingProgram, layer: int, depth: int) -> list[str]:
    """A group's accumulators: one per projection into it from above or itself (hidden
    layers) and one per prev.X via W (layers above the first hidden one)."""
    if not program.relax or layer == 0:
        return []
    out = [f"racc_{fb.name} : 1" for fb in program.feedback
           if fb.scope != "prev" and layer < depth]
    return out + [f"racc_{fb.name} : 1" for fb in _up(program) if layer >= 2]


def namespace(program: SpikingProgram) -> dict[str, float]:
    return {f"rrate_{plan.name}": float(plan.rate) for plan in program.relax}


def _eq_lines(eqs) -> list[str]:
    lw = _lower()
    gp = lw.Brian2Printer("group")
    return [f"# {e.target} = {e.text}\n{lw.comp_name(e.target)} = {gp.doprint(e.expr)}"
            for e in eqs]


def _steps(program: SpikingProgram, depth: int):
    """(plan, order of the step's first operation) for the settle before the first Euler step
    (plan None) and every Euler step, in order."""
    st = stride(program, depth)
    yield None, base_order(depth)
    k = 1
    for plan in program.relax:
        for _ in range(plan.steps):
            yield plan, base_order(depth) + k * st
            k += 1


def _collect(program: SpikingProgram, fbs) -> list[str]:
    """Accumulators read into their compartments, then cleared."""
    lw = _lower()
    into: dict[str, list[str]] = {}
    for fb in fbs:
        into.setdefault(fb.target, []).append(f"racc_{fb.name}")
    code = [f"{lw.comp_name(t)} = " + " + ".join(accs) for t, accs in into.items()]
    return code + [f"racc_{fb.name} = 0" for fb in fbs]


def group_operations(program: SpikingProgram, layer: int, depth: int) -> list:
    """Layer ``layer``'s share of the settle before the stretch and of every Euler step."""
    if not program.relax or layer == 0:
        return []
    lw = _lower()
    gp = lw.Brian2Printer("group")
    first = program.relax[0]
    name, out = f"nl_L{layer}", []
    down = [fb for fb in program.feedback if fb.scope != "prev"]
    for k, (plan, o) in enumerate(_steps(program, depth)):
        rates = () if plan is None else \
            (plan.output_rates if layer == depth else plan.hidden_rates)
        if rates:
            code = [f"# d{e.target}/dt = {e.text}\nd_{lw.comp_name(e.target)} = "
                    f"{gp.doprint(e.expr)}" for e in rates]
            code += [f"{lw.comp_name(e.target)} = {lw.comp_name(e.target)} + "
                     f"rrate_{plan.name}*d_{lw.comp_name(e.target)}" for e in rates]
            out.append(lw.Operation(f"{name}_relax{k}", o, "\n".join(code), learning=True))
        derived = first.output_derived if layer == depth else first.hidden_derived
        if layer == depth and derived:
            out.append(lw.Operation(f"{name}_relaxout{k}", o + 1,
                                    "\n".join(_eq_lines(derived)), learning=True))
        elif layer < depth:
            code = _collect(program, down) + _eq_lines(derived)
            out.append(lw.Operation(f"{name}_relaxfb{k}", o + 3 + 2 * (depth - 1 - layer),
                                    "\n".join(code), learning=True))
        if _up(program) and layer >= 2:
            code = _collect(program, _up(program)) + _eq_lines(derived)
            out.append(lw.Operation(f"{name}_relaxup{k}", o + 2 * depth + 2 * (layer - 2) + 1,
                                    "\n".join(code), learning=True))
    return out


def synapse_operations(program: SpikingProgram, fb, layer: int, depth: int) -> list:
    """Feedback synapses ``fb`` into hidden ``layer``: their sum in every settle."""
    if not program.relax:
        return []
    lw = _lower()
    src = f"{lw.comp_name(fb.source)}_pre"
    return [lw.Operation(f"nl_{fb.name}{layer}_relax{k}", o + 2 + 2 * (depth - 1 - layer),
                         f"racc_{fb.name}_post += w*{src}", learning=True)
            for k, (_plan, o) in enumerate(_steps(program, depth))]


def forward_operations(program: SpikingProgram, layer: int, depth: int) -> list:
    """The forward synapses into ``layer`` carrying prev.X up (their own weight ``w``)."""
    up = _up(program)
    if not program.relax or not up or layer < 2:
        return []
    lw = _lower()
    code = "\n".join(f"racc_{fb.name}_post += w*{lw.comp_name(fb.source)}_pre" for fb in up)
    return [lw.Operation(f"nl_W{layer}_relaxup{k}", o + 2 * depth + 2 * (layer - 2), code,
                         learning=True)
            for k, (_plan, o) in enumerate(_steps(program, depth))]

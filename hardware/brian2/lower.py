"""Brian2 lowering: the spiking program as NeuronGroups and Synapses, printed as data.

Every layer is a ``NeuronGroup`` (threshold ``v > vth``, reset to 0, traces bumped in the
reset), every forward projection a ``Synapses`` whose ``on_pre`` delivers the weight to the
post neuron's input, every feedback projection a ``Synapses`` with a summed variable that
carries the source compartment into the target neuron's error compartment. The learning
epoch is a set of ``run_regularly`` operations with ``dt = T`` steps, scheduled in the
``end`` slot in the order of the spiking semantics (measure, output equations, feedback and
hidden equations top-down, updates, reset); their code is printed from the rule's equations
and update terms. Brian2 needs time units: one step is ``1*ms`` and every variable is
dimensionless.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy

from neurolocal.errors import LoweringError
from neurolocal.rule import FORWARD
from neurolocal.symbols import AXON_SIGNALS, Ref

from ..noise import NOISE_VALUE
from ..printing import ExprPrinter
from ..relax import source_layer
from ..semantics import (
    CONSTANTS,
    RAW_STATE,
    FeedbackPlan,
    SpikingProgram,
    describe_program,
)
from . import epochs as ep
from . import relax as rx

INPUT_MODES = ("poisson", "raster")
#: epoch-clock orders in the ``end`` slot (the spiking semantics' order)
ORDER_MEASURE, ORDER_OUTPUT, ORDER_TIED, ORDER_HIDDEN = 1, 2, 3, 10
ORDER_UPDATE, ORDER_RECORD, ORDER_RESET, ORDER_NEXT = 1000, 1001, 1002, 1003

_BRIAN_RESERVED = {
    "t", "dt", "i", "j", "N", "N_pre", "N_post", "N_incoming", "N_outgoing", "xi",
    "lastspike", "not_refractory", "rand", "randn", "inf", "pi", "e", "True", "False",
    "exp", "log", "log10", "sin", "cos", "tan", "sinh", "cosh", "tanh", "arcsin", "arccos",
    "arctan", "sqrt", "abs", "sign", "clip", "int", "floor", "ceil", "exprel", "timestep",
    "and", "or", "not", "lastupdate", "delay", "t_in_timesteps",
}
_OWN = {"u", "v", "I", "b", "last", "age", "flag", "p_in", "vel", "w", "mu", *RAW_STATE,
        *CONSTANTS, *ep.OWN_NAMES}


def _safe(name: str, prefix: str) -> str:
    """A Brian2 variable name for a rule name (renamed where Brian2 or we use it)."""
    if name in _BRIAN_RESERVED or name in _OWN or name.endswith(("_pre", "_post")) \
            or name.startswith("_"):
        return f"{prefix}_{name}"
    return name


def comp_name(name: str) -> str:
    """Brian2 name of a compartment."""
    return _safe(name, "c")


def syn_name(var: str) -> str:
    """Brian2 name of a synaptic state variable (``w`` stays ``w``)."""
    return "w" if var == "w" else _safe(var, "sv")


def glob_name(name: str) -> str:
    return f"g_{name}"


class Brian2Printer(ExprPrinter):
    """Rule expressions in Brian2's abstract code syntax."""

    functions = {
        "exp": "exp", "log": "log", "tanh": "tanh", "sign": "sign", "abs": "abs",
        "sqrt": "sqrt",
    }

    def __init__(self, mode: str, bias: bool = False, phase: str | None = None):
        super().__init__()
        self.mode = mode  # "group" (self.*) or "synapse" (pre/post/syn)
        self.bias = bias  # pre = the always-on bias neuron; syn.* = the post group's b*
        self.phase = phase  # a noise epoch's update: post.noise_value is nv_<phase>

    def _print_Symbol(self, expr: sympy.Symbol) -> str:
        if "__" not in expr.name:
            return expr.name  # raw state or a namespace constant
        return self.symbol(Ref.of(expr))

    def symbol(self, ref: Ref) -> str:
        if self.phase is not None and ref.name == NOISE_VALUE:
            return f"nv_{self.phase}_{ref.scope}"
        if ref.scope == "glob":
            return glob_name(ref.name)
        if ref.scope == "self":
            return comp_name(ref.name)
        if ref.scope == "syn":
            if self.bias:
                return "b" if ref.name == "w" else f"b_{syn_name(ref.name)}"
            return syn_name(ref.name)
        if ref.scope == "pre" and self.bias:
            return "1.0" if ref.name in AXON_SIGNALS else "0.0"
        if ref.scope == "post" and self.bias:
            return comp_name(ref.name)
        if ref.scope in ("pre", "post"):
            return f"{comp_name(ref.name)}_{ref.scope}"
        raise LoweringError(f"{ref} has no Brian2 spelling")

    def _print_Heaviside(self, expr) -> str:
        return f"int(({self._print(expr.args[0])}) > 0)"

    def _print_Max(self, expr) -> str:
        out = self._print(expr.args[0])
        for a in expr.args[1:]:
            out = f"clip({out}, {self._print(a)}, inf)"
        return out

    def _print_Min(self, expr) -> str:
        out = self._print(expr.args[0])
        for a in expr.args[1:]:
            out = f"clip({out}, -inf, {self._print(a)})"
        return out

    def _print_Rational(self, expr) -> str:
        return repr(float(expr))

    def _print_Half(self, expr) -> str:
        return "0.5"

    def _print_Integer(self, expr) -> str:
        return f"{int(expr)}.0" if abs(int(expr)) < 2**52 else repr(float(expr))


# --------------------------------------------------------------------------------------
# The model as data (printed by compile_text, instantiated by Brian2Runner)


@dataclass
class Operation:
    """A ``run_regularly`` of the epoch clock: ``when='end'``, ``order``, ``code``."""

    name: str
    order: int
    code: str
    learning: bool = False  # inactive when the runner only infers


@dataclass
class GroupSpec:
    name: str
    layer: int
    n: int
    model: list[str]
    threshold: str
    reset: str
    step: str
    epoch: list[Operation] = field(default_factory=list)
    constants: dict[str, float] = field(default_factory=dict)


@dataclass
class SynapseSpec:
    name: str
    kind: str  # "forward" or "feedback"
    projection: str
    layer: int
    source: str
    target: str
    model: list[str]
    on_pre: str | None
    epoch: list[Operation] = field(default_factory=list)
    summed: tuple[str, int] | None = None  # (target variable, order)
    plan: FeedbackPlan | None = None


@dataclass
class Brian2Model:
    program: SpikingProgram
    sizes: list[int]
    input_mode: str
    groups: list[GroupSpec]
    synapses: list[SynapseSpec]
    namespace: dict[str, float]

    def text(self) -> str:
        """The generated Brian2 program as readable text."""
        out = [f"# Brian2 target, rule {self.program.rule.name!r}, layers "
               f"{'-'.join(map(str, self.sizes))}, input {self.input_mode}"]
        out += [f"# {line}" for line in describe_program(self.program)]
        out.append("# one step = 1*ms; all variables dimensionless; the run starts at t = 1 "
                   "step; epoch clock dt = E_epoch steps (one learning epoch; T_epoch = T "
                   "steps per sample); in a group's code T is its window, T_epoch - layer "
                   "with one learning epoch per sample")
        out.append("namespace = {" + ", ".join(f"{k!r}: {v!r}" for k, v in
                                               self.namespace.items()) + "}")
        for g in self.groups:
            layer_ns = ", ".join(f"{k!r}: {v!r}" for k, v in g.constants.items())
            out += ["", f"{g.name} = NeuronGroup({g.n}, '''", *[f"    {m}" for m in g.model],
                    f"''', threshold={g.threshold!r},", f"    reset='''{g.reset}''',",
                    f"    name={g.name!r}, namespace={{**namespace, {layer_ns}}}, dt=1*ms)"]
            if g.step:
                out += [f"{g.name}.run_regularly('''", _indent(g.step),
                        f"''', when='groups', name='{g.name}_step')"]
            for op in g.epoch:
                out += [f"{g.name}.run_regularly('''", _indent(op.code),
                        f"''', dt=E_epoch*ms, when='end', order={op.order}, name={op.name!r})"]
        for s in self.synapses:
            on_pre = f", on_pre={s.on_pre!r}" if s.on_pre else ""
            out += ["", f"{s.name} = Synapses({s.source}, {s.target}, '''",
                    *[f"    {m}" for m in s.model], f"'''{on_pre}, name={s.name!r}, "
                    "namespace=namespace, dt=1*ms)", f"{s.name}.connect()"]
            if s.summed:
                out.append(f"{s.name}.summed_updaters[{s.summed[0] + '_post'!r}].when = 'end'"
                           f"; ....order = {s.summed[1]}   # every step; read at epoch end")
            if s.plan is not None and s.plan.mode == "tied":
                out.append(f"@network_operation(dt=E_epoch*ms, when='end', order={ORDER_TIED})  "
                           f"# {s.name}.w = {s.plan.text} (weight transport)")
            for op in s.epoch:
                out += [f"{s.name}.run_regularly('''", _indent(op.code),
                        f"''', dt=E_epoch*ms, when='end', order={op.order}, name={op.name!r})"]
        return "\n".join(out) + "\n"


def _strip(code: str) -> str:
    """Brian2's abstract code has no comments: drop the '# ...' lines kept for printing."""
    return "\n".join(line for line in code.splitlines() if not line.lstrip().startswith("#"))


def _indent(code: str) -> str:
    return "\n".join(f"    {line}" for line in code.splitlines())


def _update_code(program: SpikingProgram, projection: str, *, bias: bool, ups=None,
                 gate: str = "", phase: str | None = None) -> str:
    """Epoch code applying updates of one projection (deltas first, then adds).

    ``ups``: the updates (default: the sample epoch's); ``gate``: a factor that switches them
    off in the epochs they do not belong to; ``phase``: a noise phase's updates.
    """
    pr = Brian2Printer("synapse", bias=bias, phase=phase)
    lines: list[str] = []
    ups = program.updates_for(projection) if ups is None else ups
    g = f"*{gate}" if gate else ""
    if program.timed and phase is None:  # eligibility traces first, then w reads them
        traces = tuple(u for u in ups if u.var != "w")
        ups = tuple(u for u in ups if u.var == "w")
        if traces:
            lines += _update_code(program, projection, bias=bias, ups=traces, gate=gate,
                                  phase="").splitlines()
    for up in ups:
        lines.append(f"# d{up.var} = {up.text}")
        body = " + ".join(f"({pr.doprint(t.expr)})" for t in up.terms) or "0.0"
        target = ("b" if up.var == "w" else f"b_{syn_name(up.var)}") if bias \
            else syn_name(up.var)
        lines.append(f"d_{target} = {body}")
    for up in ups:
        target = ("b" if up.var == "w" else f"b_{syn_name(up.var)}") if bias \
            else syn_name(up.var)
        if up.var == "w" and program.config.optimiser == "momentum":
            vel = "b_vel" if bias else "vel"
            if gate:
                lines.append(f"{vel} = {vel} + (mu*{vel} + d_{target} - {vel}){g}")
                lines.append(f"{target} += {vel}{g}")
            else:
                lines.append(f"{vel} = mu*{vel} + d_{target}")
                lines.append(f"{target} += {vel}")
        else:
            lines.append(f"{target} += d_{target}{g}")
    return "\n".join(lines)


def build_model(program: SpikingProgram, sizes: list[int], *,
                input_mode: str = "poisson", recurrent: tuple[int, ...] = ()) -> Brian2Model:
    """The Brian2 objects for ``program`` on an MLP of ``sizes`` (as data); ``recurrent``:
    the layers with recurrent synapses R (a Synapses from the group to itself)."""
    if input_mode not in INPUT_MODES:
        raise LoweringError(f"unknown Brian2 input mode {input_mode!r}: expected one of "
                            f"{', '.join(INPUT_MODES)}")
    rx.check(program, len(sizes) - 1)
    cfg = program.config
    ns: dict[str, float] = {k: float(v) for k, v in cfg.constants().items()
                            if k in ("vth", "d1", "d2", "d3")}
    ns.update({"du": float(cfg.du), "dv": float(cfg.dv), "mu": float(cfg.momentum),
               "T_epoch": float(cfg.timesteps), "E_epoch": float(program.epoch_steps)})
    ns.update({glob_name(k): float(v) for k, v in program.globals.items()})
    ns.update(ep.namespace(program))
    ns.update(rx.namespace(program))
    groups = [_group(program, layer, n, len(sizes) - 1, input_mode)
              for layer, n in enumerate(sizes)]
    synapses = _synapses(program, len(sizes) - 1)
    if recurrent or program.timed:
        from .recurrent import add_trace_resets, recurrent_synapses

        synapses += recurrent_synapses(program, recurrent)
        add_trace_resets(program, synapses)
    return Brian2Model(program, list(sizes), input_mode, groups, synapses, ns)


def _syn_vars(program: SpikingProgram, projection: str) -> list[str]:
    return [v for v in program.state_vars.get(projection, ()) if v != "w"]


def _group_dynamics(program: SpikingProgram, layer: int, depth: int, input_mode: str
                    ) -> tuple[list[str], str, str, str]:
    """Model equations, threshold, reset and per-step code of layer ``layer``'s group."""
    cfg = program.config
    traces = [n for n in ("tr1", "tr2", "tr3") if n in program.raw]
    model = [f"{t} : 1" for t in traces] + ["spk : 1", "asum : 1"]
    model += [f"{comp_name(c)} : 1" for c in (*program.measured, *program.computed)]
    model += ep.group_model(program, layer, depth)
    bump = "\n".join([f"{t} += 1" for t in traces] + ["spk = 1"])
    # a trace with tau = inf is a counter: no decay statement (and no step code at all for an
    # input layer of counters -- one code object less per step)
    decay = "\n".join(f"{t} = d{t[-1]}*{t}" for t in traces if cfg.decay(int(t[-1])) != 1.0)
    if layer == 0:
        model.append("flag : 1" if input_mode == "raster" else "p_in : 1")
        threshold = "flag > 0.5" if input_mode == "raster" else "rand() < p_in"
        return model, threshold, bump + "\nasum += 1", decay
    model = ["u : 1", "v : 1", "I : 1", "b : 1", *model]
    if FORWARD in program.learned_projections:
        model += [f"b_{syn_name(v)} : 1" for v in _syn_vars(program, FORWARD)]
        if cfg.optimiser == "momentum":
            model.append("b_vel : 1")
    if layer == depth:
        model.append(f"{comp_name('target')} : 1")
    sub = cfg.reset == "subtract"
    if sub:
        model.insert(3, "last : 1")
    model.append("age : 1 (shared)")
    if 0 < layer < depth:
        model += [f"fbsum_{fb.name} : 1" for fb in program.feedback if fb.scope != "prev"]
    model += rx.group_model(program, layer, depth)
    reset = ("last = 1\n" if sub else "v = 0\n") + bump
    vextra = ep.voltage_extra(program, layer, depth)
    step = "\n".join(["age = age + 1", ep.current_code(program, layer, depth), "I = 0",
                      f"v = (1 - dv)*v + u{vextra} - vth*last\nlast = 0" if sub
                      else f"v = (1 - dv)*v + u{vextra}",
                      "asum += u*int(age > lay)", decay]).strip()
    return model, "v > vth", reset, step


def _epoch_operations(program: SpikingProgram, layer: int, depth: int) -> list[Operation]:
    """What layer ``layer``'s group runs at the end of each learning epoch, in order."""
    gp, name = Brian2Printer("group"), f"nl_L{layer}"
    measure = ep.measure_prefix(program)
    measure += [f"{comp_name(c)} = {gp.doprint(program.symbols[c])}" for c in program.measured]
    measure += [f"{comp_name(c)} = 0" for c in program.computed]
    measure += ep.measure_suffix(program, layer)
    ops = [Operation(f"{name}_measure", ORDER_MEASURE, "\n".join(measure))]

    def eq_code(eqs) -> list[str]:
        return [f"# {e.target} = {e.text}\n{comp_name(e.target)} = {gp.doprint(e.expr)}"
                if not e.last else  # an end-phase equation: the last learning epoch only
                f"# {e.target} = {e.text} (last learning epoch only)\n{comp_name(e.target)} = "
                f"endsample*({gp.doprint(e.expr)}) + (1 - endsample)*{comp_name(e.target)}"
                for e in eqs]

    if layer == depth and (program.output_eqs or ep.after_equations(program, layer)):
        ops.append(Operation(f"{name}_output", ORDER_OUTPUT, "\n".join(
            eq_code(program.output_eqs) + ep.after_equations(program, layer))))
    if 0 < layer < depth:
        code = [f"{comp_name(target)} = {comp_name(target)} + "
                + " + ".join(f"fbsum_{fb.name}" for fb in fbs)
                for target, fbs in program.feedback_into().items()]
        code += eq_code(program.hidden_eqs) + ep.after_equations(program, layer)
        if code:
            ops.append(Operation(f"{name}_hidden", ORDER_HIDDEN + 2 * (depth - layer),
                                 "\n".join(code)))
    ops += rx.group_operations(program, layer, depth)
    if layer > 0 and FORWARD in program.learned_projections:
        ops.append(Operation(f"{name}_bias_update", ORDER_UPDATE,
                             _update_code(program, FORWARD, bias=True,
                                          gate=ep.sample_gate(program, "")), learning=True))
    traces = [t for t in ("tr1", "tr2", "tr3") if t in program.raw]
    if ep.scheduled(program):
        resets = ep.reset_code(program, layer, depth, traces)
        if program.timed and layer and FORWARD in program.learned_projections:
            resets += [f"b_{syn_name(v)} = b_{syn_name(v)}*(1 - endsample)"  # per sequence
                       for v in _syn_vars(program, FORWARD)]
    else:
        resets = ["age = 0", "u = 0", "v = 0", "I = 0"] if layer else []
        if layer and program.config.reset == "subtract":
            resets.append("last = 0")
        resets += [f"{t} = 0" for t in traces]
        resets += ["spk = 0", "asum = 0"]
    ops.append(Operation(f"{name}_reset", ORDER_RESET, "\n".join(resets)))
    return ops


def _group(program: SpikingProgram, layer: int, n: int, depth: int, input_mode: str
           ) -> GroupSpec:
    model, threshold, reset, step = _group_dynamics(program, layer, depth, input_mode)
    return GroupSpec(f"nl_L{layer}", layer, n, model, threshold, reset, step,
                     epoch=_epoch_operations(program, layer, depth),
                     constants=ep.window_constants(program, layer))


def _synapses(program: SpikingProgram, depth: int) -> list[SynapseSpec]:
    """Forward synapses of every layer, then every feedback projection's synapses."""
    momentum = program.config.optimiser == "momentum"
    out: list[SynapseSpec] = []
    learned = FORWARD in program.learned_projections
    for layer in range(1, depth + 1):
        model = ["w : 1", *[f"{syn_name(v)} : 1" for v in _syn_vars(program, FORWARD)]]
        if momentum and learned:
            model.append("vel : 1")
        s = SynapseSpec(f"nl_W{layer}", "forward", FORWARD, layer, f"nl_L{layer - 1}",
                        f"nl_L{layer}", model, "I_post += w")
        s.epoch += rx.forward_operations(program, layer, depth)
        if learned:
            s.epoch.append(Operation(f"nl_W{layer}_update", ORDER_UPDATE,
                                     _update_code(program, FORWARD, bias=False,
                                                  gate=ep.sample_gate(program, "_post")),
                                     learning=True))
        out.append(s)
    for fb in program.feedback:
        if fb.scope == "prev":
            continue  # the forward synapses carry it (relax.forward_operations)
        fb_learned = ep.learns(program, fb.name)
        for layer in range(1, depth):
            src = source_layer(fb.scope, layer, depth)
            model = ["w : 1", *[f"{syn_name(v)} : 1" for v in _syn_vars(program, fb.name)]]
            if momentum and fb_learned:
                model.append("vel : 1")
            model.append(f"fbsum_{fb.name}_post = w*{ep.feedback_source(program, fb)} "
                         ": 1 (summed)")
            s = SynapseSpec(f"nl_{fb.name}{layer}", "feedback", fb.name, layer, f"nl_L{src}",
                            f"nl_L{layer}", model, None,
                            summed=(f"fbsum_{fb.name}", ORDER_HIDDEN - 1 + 2 * (depth - layer)),
                            plan=fb)
            if fb.name in program.learned_projections:
                s.epoch.append(Operation(f"nl_{fb.name}{layer}_update", ORDER_UPDATE,
                                         _update_code(program, fb.name, bias=False,
                                                      gate=ep.sample_gate(program, "_post")),
                                         learning=True))
            s.epoch += rx.synapse_operations(program, fb, layer, depth)
            for ph, ups in ep.noise_updates(program, fb.name):
                s.epoch.append(Operation(f"nl_{fb.name}{layer}_{ph.name}", ORDER_UPDATE,
                                         _update_code(program, fb.name, bias=False, ups=ups,
                                                      gate=f"ph_{ph.name}_post",
                                                      phase=ph.name), learning=True))
            out.append(s)
    return out

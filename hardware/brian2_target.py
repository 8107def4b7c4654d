"""Brian2 target: the spiking program as NeuronGroups and Synapses, updates from the rule.

Every layer is a ``NeuronGroup`` (threshold ``v > vth``, reset to 0, traces bumped in the
reset), every forward projection a ``Synapses`` whose ``on_pre`` delivers the weight to the
post neuron's input, every feedback projection a ``Synapses`` with a summed variable that
carries the source compartment into the target neuron's error compartment. The learning
epoch is a set of ``run_regularly`` operations with ``dt = T`` steps, scheduled in the
``end`` slot in the order of the spiking semantics (measure, output equations, feedback and
hidden equations top-down, updates, reset); their code is printed from the rule's equations
and update terms. Objects have stable names and the Cython cache lives under
``~/.cache/neurolocal/brian2`` so a network compiles once; ``codegen="numpy"`` needs no
compiler (unit tests use it).

Brian2 needs time units: one step is ``1*ms`` and every variable is dimensionless. The
simulation starts at t = 1 step, so epoch k covers steps kT+1 .. kT+T and ends on a tick of
the epoch clock.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sympy

from neurolocal.errors import LoweringError, NeurolocalError
from neurolocal.network import Network, build_mlp
from neurolocal.rule import FORWARD, Rule
from neurolocal.symbols import AXON_SIGNALS, Ref

from .codegen import ExprPrinter
from .spiking import (
    CONSTANTS,
    RAW_STATE,
    FeedbackPlan,
    SpikingConfig,
    SpikingProgram,
    describe_program,
    encode_input,
    feedback_matrix,
    lower_rule,
    require_dense,
)

TARGET = "brian2"
CODEGENS = ("numpy", "cython", "auto")
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
_OWN = {"u", "v", "I", "b", "last", "age", "flag", "p_in", "vel", "w", *RAW_STATE, *CONSTANTS}


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

    def __init__(self, mode: str, bias: bool = False):
        super().__init__()
        self.mode = mode  # "group" (self.*) or "synapse" (pre/post/syn)
        self.bias = bias  # pre = the always-on bias neuron; syn.* = the post group's b*

    def _print_Symbol(self, expr: sympy.Symbol) -> str:
        if "__" not in expr.name:
            return expr.name  # raw state or a namespace constant
        return self.symbol(Ref.of(expr))

    def symbol(self, ref: Ref) -> str:
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
                   "step; epoch clock dt = T_epoch steps; in a group's code T is its window, "
                   "T_epoch - layer")
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
                        f"''', dt=T_epoch*ms, when='end', order={op.order}, name={op.name!r})"]
        for s in self.synapses:
            on_pre = f", on_pre={s.on_pre!r}" if s.on_pre else ""
            out += ["", f"{s.name} = Synapses({s.source}, {s.target}, '''",
                    *[f"    {m}" for m in s.model], f"'''{on_pre}, name={s.name!r}, "
                    "namespace=namespace, dt=1*ms)", f"{s.name}.connect()"]
            if s.summed:
                out.append(f"{s.name}.summed_updaters[{s.summed[0] + '_post'!r}].when = 'end'"
                           f"; ....order = {s.summed[1]}   # every step; read at epoch end")
            if s.plan is not None and s.plan.mode == "tied":
                out.append(f"@network_operation(dt=T_epoch*ms, when='end', order={ORDER_TIED})  "
                           f"# {s.name}.w = {s.plan.text} (weight transport)")
            for op in s.epoch:
                out += [f"{s.name}.run_regularly('''", _indent(op.code),
                        f"''', dt=T_epoch*ms, when='end', order={op.order}, name={op.name!r})"]
        return "\n".join(out) + "\n"


def _strip(code: str) -> str:
    """Brian2's abstract code has no comments: drop the '# ...' lines kept for printing."""
    return "\n".join(line for line in code.splitlines() if not line.lstrip().startswith("#"))


def _indent(code: str) -> str:
    return "\n".join(f"    {line}" for line in code.splitlines())


def _update_code(program: SpikingProgram, projection: str, *, bias: bool) -> str:
    """Epoch code applying the rule's updates of one projection (deltas first, then adds)."""
    pr = Brian2Printer("synapse", bias=bias)
    lines: list[str] = []
    ups = program.updates_for(projection)
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
            lines.append(f"{vel} = mu*{vel} + d_{target}")
            lines.append(f"{target} += {vel}")
        else:
            lines.append(f"{target} += d_{target}")
    return "\n".join(lines)


def build_model(program: SpikingProgram, sizes: list[int], *,
                input_mode: str = "poisson") -> Brian2Model:
    """The Brian2 objects for ``program`` on an MLP of ``sizes`` (as data)."""
    if input_mode not in INPUT_MODES:
        raise LoweringError(f"unknown Brian2 input mode {input_mode!r}: expected one of "
                            f"{', '.join(INPUT_MODES)}")
    cfg = program.config
    depth = len(sizes) - 1
    ns: dict[str, float] = {k: float(v) for k, v in cfg.constants().items()
                            if k in ("vth", "d1", "d2", "d3")}
    ns.update({"du": float(cfg.du), "dv": float(cfg.dv), "mu": float(cfg.momentum),
               "T_epoch": float(cfg.timesteps)})
    ns.update({glob_name(k): float(v) for k, v in program.globals.items()})
    traces = [n for n in ("tr1", "tr2", "tr3") if n in program.raw]
    comps = [*program.measured, *program.computed]
    gp = Brian2Printer("group")
    fb_by_layer_target = program.feedback_into()
    groups: list[GroupSpec] = []
    syn_vars = {p: [v for v in vars_ if v != "w"] for p, vars_ in program.state_vars.items()}
    for layer, n in enumerate(sizes):
        name = f"nl_L{layer}"
        model = [f"{t} : 1" for t in traces] + ["spk : 1", "asum : 1"]
        model += [f"{comp_name(c)} : 1" for c in comps]
        bump = "\n".join([f"{t} += 1" for t in traces] + ["spk = 1"])
        # a trace with tau = inf is a counter: no decay statement (and no step code at all
        # for an input layer of counters -- one code object less per step)
        decay = "\n".join(f"{t} = d{t[-1]}*{t}" for t in traces
                           if cfg.decay(int(t[-1])) != 1.0)
        if layer == 0:
            model.append("flag : 1" if input_mode == "raster" else "p_in : 1")
            threshold = "flag > 0.5" if input_mode == "raster" else "rand() < p_in"
            reset = bump + "\nasum += 1"
            step = decay
        else:
            model = ["u : 1", "v : 1", "I : 1", "b : 1", *model]
            if FORWARD in program.learned_projections:
                model += [f"b_{syn_name(v)} : 1" for v in syn_vars.get(FORWARD, [])]
                if cfg.optimiser == "momentum":
                    model.append("b_vel : 1")
            if layer == depth:
                model.append(f"{comp_name('target')} : 1")
            threshold = "v > vth"
            sub = cfg.reset == "subtract"
            if sub:
                model.insert(3, "last : 1")
            reset = ("last = 1\n" if sub else "v = 0\n") + bump
            model.append("age : 1 (shared)")
            step = "\n".join(["age = age + 1", "u = (1 - du)*u + I + b*int(age >= lay)", "I = 0",
                              "v = (1 - dv)*v + u - vth*last\nlast = 0" if sub
                              else "v = (1 - dv)*v + u",
                              "asum += u*int(age > lay)", decay]).strip()
        if 0 < layer < depth:
            model += [f"fbsum_{fb.name} : 1" for fb in program.feedback]
        consts = cfg.constants(layer)
        g = GroupSpec(name, layer, n, model, threshold, reset, step,
                      constants={k: consts[k] for k in ("T", "k1", "k2", "k3", "lay")})
        measure = [f"{comp_name(c)} = {gp.doprint(program.symbols[c])}"
                   for c in program.measured]
        measure += [f"{comp_name(c)} = 0" for c in program.computed]
        g.epoch.append(Operation(f"{name}_measure", ORDER_MEASURE, "\n".join(measure)))
        if layer == depth and program.output_eqs:
            code = [f"# {e.target} = {e.text}\n{comp_name(e.target)} = {gp.doprint(e.expr)}"
                    for e in program.output_eqs]
            g.epoch.append(Operation(f"{name}_output", ORDER_OUTPUT, "\n".join(code)))
        if 0 < layer < depth:
            code = []
            for target, fbs in fb_by_layer_target.items():
                add = " + ".join(f"fbsum_{fb.name}" for fb in fbs)
                code.append(f"{comp_name(target)} = {comp_name(target)} + {add}")
            code += [f"# {e.target} = {e.text}\n{comp_name(e.target)} = {gp.doprint(e.expr)}"
                     for e in program.hidden_eqs]
            if code:
                g.epoch.append(Operation(f"{name}_hidden", ORDER_HIDDEN + 2 * (depth - layer),
                                         "\n".join(code)))
        if layer > 0 and FORWARD in program.learned_projections:
            g.epoch.append(Operation(f"{name}_bias_update", ORDER_UPDATE,
                                     _update_code(program, FORWARD, bias=True), learning=True))
        resets = ["age = 0", "u = 0", "v = 0", "I = 0"] if layer else []
        if layer and cfg.reset == "subtract":
            resets.append("last = 0")
        resets += [f"{t} = 0" for t in traces] + ["spk = 0", "asum = 0"]
        g.epoch.append(Operation(f"{name}_reset", ORDER_RESET, "\n".join(resets)))
        groups.append(g)

    synapses: list[SynapseSpec] = []
    for layer in range(1, depth + 1):
        model = ["w : 1", *[f"{syn_name(v)} : 1" for v in syn_vars.get(FORWARD, [])]]
        if cfg.optimiser == "momentum" and FORWARD in program.learned_projections:
            model.append("vel : 1")
        s = SynapseSpec(f"nl_W{layer}", "forward", FORWARD, layer, f"nl_L{layer - 1}",
                        f"nl_L{layer}", model, "I_post += w")
        if FORWARD in program.learned_projections:
            s.epoch.append(Operation(f"nl_W{layer}_update", ORDER_UPDATE,
                                     _update_code(program, FORWARD, bias=False),
                                     learning=True))
        synapses.append(s)
    for fb in program.feedback:
        for layer in range(1, depth):
            src = layer + 1 if fb.scope == "next" else depth
            model = ["w : 1", *[f"{syn_name(v)} : 1" for v in syn_vars.get(fb.name, [])]]
            learned = fb.name in program.learned_projections
            if cfg.optimiser == "momentum" and learned:
                model.append("vel : 1")
            model.append(f"fbsum_{fb.name}_post = w*{comp_name(fb.source)}_pre : 1 (summed)")
            s = SynapseSpec(f"nl_{fb.name}{layer}", "feedback", fb.name, layer, f"nl_L{src}",
                            f"nl_L{layer}", model, None,
                            summed=(f"fbsum_{fb.name}", ORDER_HIDDEN - 1 + 2 * (depth - layer)),
                            plan=fb)
            if learned:
                s.epoch.append(Operation(f"nl_{fb.name}{layer}_update", ORDER_UPDATE,
                                         _update_code(program, fb.name, bias=False),
                                         learning=True))
            synapses.append(s)
    return Brian2Model(program, list(sizes), input_mode, groups, synapses, ns)


def compile_text(rule: Rule, **options: Any) -> str:
    """What ``neurolocal compile --target brian2`` prints (a 784-500-10 network by default)."""
    hidden = options.get("hidden") or [500]
    config = SpikingConfig().with_options(**{k: v for k, v in options.items()
                                             if k in SpikingConfig.__dataclass_fields__})
    program = lower_rule(rule, config, check_locality=False,
                         allow_nonlocal=bool(options.get("allow_nonlocal", True)))
    return build_model(program, [784, *hidden, 10]).text()


# --------------------------------------------------------------------------------------
# Running it


def cache_dir() -> Path:
    """Where Brian2's Cython cache lives (stable names make its entries reusable)."""
    return Path.home() / ".cache" / "neurolocal" / "brian2"


def _cython_works() -> bool:
    try:
        import Cython  # noqa: F401
    except ImportError:
        return False
    import shutil
    return shutil.which("cc") is not None or shutil.which("gcc") is not None


def _set_prefs(codegen: str) -> str:
    from brian2 import prefs
    if codegen not in CODEGENS:
        raise LoweringError(f"unknown Brian2 code generation target {codegen!r}: expected "
                            f"one of {', '.join(CODEGENS)}")
    if codegen == "auto":
        codegen = "cython" if _cython_works() else "numpy"
    if codegen == "cython":
        path = cache_dir()
        path.mkdir(parents=True, exist_ok=True)
        prefs.codegen.runtime.cython.cache_dir = str(path)
    prefs.codegen.target = codegen
    return codegen


class Brian2Runner:
    """A Brian2 network for a lowered rule, built once, fed samples epoch by epoch.

    ``input_mode="poisson"`` draws input spikes inside Brian2 (``rand() < p_in``, p_in set
    per epoch); ``"raster"`` replays given spike trains step by step (exact, for tests).
    """

    def __init__(self, net: Network, config: SpikingConfig | None = None, *,
                 codegen: str = "numpy", input_mode: str = "raster",
                 allow_nonlocal: bool = False, seed: int = 0):
        import brian2 as b2

        require_dense(net, "brian2")
        self.b2, self.net = b2, net
        self.program = lower_rule(net.rule, config, allow_nonlocal=allow_nonlocal)
        self.cfg = self.program.config
        self.codegen = _set_prefs(codegen)
        b2.seed(seed)
        self.model = build_model(self.program, net.sizes, input_mode=input_mode)
        self.input_mode = input_mode
        self._build()

    # -- construction ----------------------------------------------------------------
    def _build(self) -> None:
        b2, ms = self.b2, self.b2.ms
        model, t_ep = self.model, self.cfg.timesteps * self.b2.ms
        objs: list = []
        self.groups, self.synapses, self.learning_ops = {}, {}, []
        ns = dict(model.namespace)
        for g in model.groups:
            grp = b2.NeuronGroup(g.n, "\n".join(g.model), threshold=g.threshold, reset=g.reset,
                                 name=g.name, namespace={**ns, **g.constants}, dt=1 * ms)
            if g.step:
                grp.run_regularly(g.step, when="groups", name=f"{g.name}_step")
            for op in g.epoch:
                ro = grp.run_regularly(_strip(op.code), dt=t_ep, when="end", order=op.order,
                                       name=op.name)
                if op.learning:
                    self.learning_ops.append(ro)
            self.groups[g.layer] = grp
            objs.append(grp)
        self.tied = []
        for s in model.synapses:
            syn = b2.Synapses(self.groups[int(s.source[4:])], self.groups[int(s.target[4:])],
                              "\n".join(s.model), on_pre=s.on_pre, name=s.name, namespace=ns,
                              dt=1 * ms)
            syn.connect()
            if s.summed:
                upd = syn.summed_updaters[f"{s.summed[0]}_post"]
                upd.when, upd.order = "end", s.summed[1]
            for op in s.epoch:
                ro = syn.run_regularly(_strip(op.code), dt=t_ep, when="end", order=op.order,
                                       name=op.name)
                if op.learning:
                    self.learning_ops.append(ro)
            self.synapses[(s.projection, s.layer)] = (syn, s)
            if s.plan is not None and s.plan.mode == "tied":
                self.tied.append((syn, s))
            objs.append(syn)
        self._load_weights()
        out = self.groups[self.net.depth]
        self.monitor = b2.StateMonitor(out, ["tr1", "asum"], record=True, dt=t_ep, when="end",
                                       order=ORDER_RECORD, name="nl_output_monitor")
        objs.append(self.monitor)
        self.counters = [b2.SpikeMonitor(self.groups[layer], record=False,
                                         name=f"nl_count_L{layer}")
                         for layer in range(self.net.depth)]
        objs += self.counters
        self._queue: dict = {}
        self._step_rows = None
        self._step = 0
        self._epoch = 0
        objs.append(b2.NetworkOperation(self._next_epoch, dt=t_ep, when="end",
                                        order=ORDER_NEXT, name="nl_next_epoch"))
        if self.input_mode == "raster":
            objs.append(b2.NetworkOperation(self._next_step, dt=1 * ms, when="start",
                                            name="nl_input_step"))
        if self.tied:
            objs.append(b2.NetworkOperation(self._copy_tied, dt=t_ep, when="end",
                                            order=ORDER_TIED, name="nl_tied_feedback"))
        self.network = b2.Network(*objs)
        self.network.t_ = float(1 * ms)

    def _load_weights(self) -> None:
        for (proj, layer), (syn, spec) in self.synapses.items():
            st = self.net.state[proj][layer]
            i, j = syn.i[:], syn.j[:]
            if spec.kind == "forward":
                for var, value in st.items():
                    setattr(syn, syn_name(var), np.asarray(value, np.float64)[j, i])
                grp = self.groups[layer]
                grp.b = np.asarray(st["w"][:, -1], np.float64)
                for var, value in st.items():
                    if var != "w" and f"b_{syn_name(var)}" in grp.variables:
                        setattr(grp, f"b_{syn_name(var)}", np.asarray(value[:, -1], np.float64))
            else:
                w = np.asarray(st["w"], np.float64)
                if spec.plan.mode == "fixed":
                    w = feedback_matrix(spec.plan, w)
                for var, value in st.items():
                    setattr(syn, syn_name(var),
                            (w if var == "w" else np.asarray(value, np.float64))[j, i])

    def _copy_tied(self) -> None:
        for syn, spec in self.tied:
            fwd, _ = self.synapses[(FORWARD, spec.layer + 1)]
            w_next = np.zeros((self.net.sizes[spec.layer + 1], self.net.sizes[spec.layer]))
            w_next[fwd.j[:], fwd.i[:]] = fwd.w[:]
            stored = np.asarray(self.net.state[spec.projection][spec.layer]["w"], np.float64)
            b = feedback_matrix(spec.plan, stored, w_next)
            syn.w = b[syn.j[:], syn.i[:]]

    def weights(self) -> dict:
        """Current synaptic state as the network IR lays it out (float64 copies)."""
        out: dict = {}
        for (proj, layer), (syn, spec) in self.synapses.items():
            st = self.net.state[proj][layer]
            i, j = syn.i[:], syn.j[:]
            d = {}
            for var in st:
                m = np.zeros(st[var].shape)
                if spec.kind == "forward":
                    m[j, i] = getattr(syn, syn_name(var))[:]
                    grp = self.groups[layer]
                    m[:, -1] = grp.b[:] if var == "w" else (
                        getattr(grp, f"b_{syn_name(var)}")[:]
                        if f"b_{syn_name(var)}" in grp.variables else 0.0)
                else:
                    m[j, i] = getattr(syn, syn_name(var))[:]
                d[var] = m
            out.setdefault(proj, {})[layer] = d
        return out

    def sync(self) -> Network:
        """Write the weights back into the network."""
        for proj, layers in self.weights().items():
            for layer, d in layers.items():
                if proj != FORWARD and self.synapses[(proj, layer)][1].plan.mode != "learned":
                    continue
                for var, m in d.items():
                    self.net.state[proj][layer][var] = m.astype(np.float32)
        return self.net

    # -- feeding samples -------------------------------------------------------------
    def _set_epoch(self, k: int) -> None:
        """Load sample k's per-epoch values (target; input probability in poisson mode)."""
        q = self._queue
        if k >= q["n"]:
            return
        out = self.groups[self.net.depth]
        if q.get("target") is not None:
            setattr(out, comp_name("target"), q["target"][k])
        if self.input_mode == "poisson":
            self.groups[0].p_in = q["p"][k]

    def _next_epoch(self) -> None:
        self._epoch += 1
        self._set_epoch(self._epoch)

    def _next_step(self) -> None:
        if self._step < len(self._step_rows):
            self.groups[0].flag = self._step_rows[self._step]
        self._step += 1

    def run(self, inputs: np.ndarray, targets: np.ndarray | None = None, *,
            learn: bool = True, progress=None) -> np.ndarray:
        """Present samples one epoch each; returns output scores (N, classes).

        ``inputs``: spike trains (N, T, n0) in raster mode, pixels (N, n0) in poisson mode.
        ``targets``: one-hot (N, classes), needed when ``learn``.
        """
        n = len(inputs)
        if learn and targets is None:
            raise NeurolocalError("Brian2Runner.run(learn=True) needs targets")
        if self.input_mode == "raster":
            inputs = np.asarray(inputs, np.float64)
            if inputs.ndim != 3 or inputs.shape[1] != self.cfg.timesteps:
                raise LoweringError(f"raster input must be (N, T={self.cfg.timesteps}, n0), "
                                    f"got {inputs.shape}")
            self._step_rows = inputs.reshape(-1, inputs.shape[2])
            self._step = 0
        p = None if self.input_mode == "raster" else \
            np.asarray(inputs, np.float64) * self.cfg.input_rate
        self._queue = {"n": n, "p": p,
                       "target": None if targets is None else np.asarray(targets, np.float64)}
        for op in self.learning_ops:
            op.active = bool(learn)
        self._epoch = 0
        self._set_epoch(0)
        before = len(self.monitor.t)
        # every Network.run pays Brian2's before_run (tens of ms): chunk only for progress
        chunk = n if progress is None else max(1, min(n, 1000))
        for start in range(0, n, chunk):
            steps = min(chunk, n - start) * self.cfg.timesteps
            self.network.run(steps * self.b2.ms, namespace={})
            if progress is not None:
                progress(min(start + chunk, n))
        tr1 = np.asarray(self.monitor.tr1[:, before:]).T
        asum = np.asarray(self.monitor.asum[:, before:]).T
        t = self.cfg.timesteps
        depth = self.net.depth
        return self.cfg.gain(1, depth) * tr1 + (0.5 / t) * np.tanh(
            asum / self.cfg.window(depth))

    @property
    def events(self) -> float:
        """Synaptic events delivered so far (pre spikes x fan-out, forward projections)."""
        return float(sum(int(np.sum(self.counters[layer].count[:])) * self.net.sizes[layer + 1]
                         for layer in range(self.net.depth)))


# --------------------------------------------------------------------------------------
# Training (CLI)


def train_from_args(args: argparse.Namespace) -> dict:
    """``neurolocal train --spiking --target brian2``: online training (batch size 1)."""
    from neurolocal.data import load_dataset

    from .snntorch_target import rule_from_args, spiking_config_from_args

    rule = rule_from_args(args)
    cfg = spiking_config_from_args(args)
    quiet = bool(getattr(args, "json", False))
    if args.epochs < 1:
        raise NeurolocalError(f"--epochs must be >= 1, got {args.epochs}")
    if getattr(args, "batch_size", None) not in (1, None) and not quiet:
        print("neurolocal train --spiking --target brian2: Brian2 learns strictly online "
              f"(batch size 1); --batch-size {args.batch_size} is ignored", file=sys.stderr)
    train_set = load_dataset(args.dataset, "train", limit=args.samples, verbose=not quiet)
    test_set = load_dataset(args.dataset, "test", limit=getattr(args, "test_samples", None),
                            verbose=not quiet)
    net = build_mlp([train_set.x.shape[1], *args.hidden, 10], rule, seed=args.seed)
    codegen = getattr(args, "codegen", None) or os.environ.get("NEUROLOCAL_BRIAN2_CODEGEN",
                                                                "auto")
    runner = Brian2Runner(net, cfg, codegen=codegen,
                          input_mode="poisson" if cfg.encoding == "poisson" else "raster",
                          allow_nonlocal=bool(getattr(args, "allow_nonlocal", False)),
                          seed=args.seed)
    eye = np.eye(10)
    rng = np.random.default_rng(args.seed)
    history, seconds, events = [], 0.0, 0.0
    for epoch in range(1, args.epochs + 1):
        order = rng.permutation(len(train_set.x))
        x, y = train_set.x[order], eye[train_set.y[order]]
        if runner.input_mode == "raster":
            x = np.moveaxis(encode_input(np.asarray(x), cfg, seed=rng), 0, 1)
        t0, before = time.perf_counter(), runner.events
        runner.run(x, y, learn=True)
        seconds += time.perf_counter() - t0
        events += runner.events - before
        xt = test_set.x if runner.input_mode == "poisson" else \
            np.moveaxis(encode_input(np.asarray(test_set.x), cfg, seed=rng), 0, 1)
        scores = runner.run(xt, None, learn=False)
        acc = 100.0 * float((scores.argmax(1) == test_set.y).mean())
        history.append({"epoch": epoch, "test_accuracy": acc, "seconds": seconds})
        if not quiet:
            print(f"  epoch {epoch}: test {acc:.2f}%  ({seconds:.1f} s, "
                  f"{runner.codegen})", file=sys.stderr)
    if not math.isfinite(history[-1]["test_accuracy"]):
        raise NeurolocalError("Brian2 training produced no accuracy")
    return {"rule": rule.name, "target": TARGET, "dataset": args.dataset,
            "test_accuracy": history[-1]["test_accuracy"], "epochs": args.epochs,
            "seconds": seconds, "samples": len(train_set.x), "test_samples": len(test_set.x),
            "timesteps": cfg.timesteps, "history": history, "codegen": runner.codegen,
            "batch_size": 1,
            "synaptic_events": events,
            "synaptic_events_per_second": events / max(seconds, 1e-9),
            "data_source": train_set.source}

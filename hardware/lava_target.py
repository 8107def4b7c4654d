"""Lava target: a rule lowered to Loihi 2 learning-engine strings and run as a Lava graph.

The rule is first lowered by :mod:`.spiking` (the same :class:`~.spiking.SpikingProgram` the
snntorch and Brian2 targets run); :func:`lower_to_loihi` then maps every update term of that
program onto the Loihi 2 sum-of-products learning engine:

* ``coef * pre * post * syn`` (the split of :mod:`neurolocal.terms`) becomes one product term
  ``m * 2^e * dependency * factors`` (two for a signed post factor);
* the pre factor reads the pre-synaptic traces the engine keeps: ``pre.r``/``pre.x1`` -> ``x1``
  (a spike counter; the normalisation ``k1 / impulse`` is folded into the scale), ``pre.x2``
  -> ``x2``, ``pre.s`` -> the ``x0`` dependency;
* the post factor (``post.delta`` = the rule's ``err * dphi``, or any other post-neuron
  expression) is computed by the post neuron's program at the end of the epoch and handed to
  the engine as a graded third factor in a post trace (Loihi3FLearningRule): unsigned factors
  take one of ``y1..y3``, signed ones (errors) a pair, ``y2`` for the positive and ``y3`` for
  the negative part, because Loihi traces are unsigned 7-bit; a bare ``post.s`` in a term with
  no pre trace becomes the ``y0`` dependency;
* ``syn.w`` -> ``w``, a second synaptic variable -> the tag ``t`` (``dt``), a third -> ``d``;
* ``coef * normalisations`` -> ``m * 2^e`` (``float_to_mantissa_exp``); for terms with a
  graded post factor the post neuron's channel gain absorbs the rounding, so the scale is
  exact; fixed-point Lava drops ``sum(widths) + 4 - 15`` LSBs of a product (2^-3 for two
  traces), which the fixed_pt strings compensate in the exponent;
* every string is validated against the hardware profile with
  :func:`~.loihi_rule.validate_loihi_rule` before it reaches Lava.

A term that Loihi 2 cannot express raises :class:`~neurolocal.errors.LoweringError` naming the
rule term, the limit it breaks and, where one exists, the nearest expressible form.

The graph (see :class:`LavaRunner` and ``neurolocal compile --target lava``)::

    EpochSource --s_out--> EpochLearningDense W1 --a_out--> NeuroLIF L1 --s_out--> ... --> L_out
                 t_out ---------------------------------------------------------------> target_in
    L_out.s_fb_out --> Dense B (graded, fixed random) --> L_l.a_third_factor_in
    L_l.s_out_y1..3 --> W_l.s_in_y1..3  (post factors for the learning engine)

with ``t_epoch = L`` (one sample: a lead step, T forward steps, the error steps), run with
``Loihi2SimCfg(select_tag="floating_pt" | "fixed_pt")`` and always stopped in ``finally``. The
error path runs on the graph: no value is computed on the host between epochs.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sympy

from neurolocal.errors import LoweringError, NeurolocalError, ShapeError
from neurolocal.network import Network, build_mlp
from neurolocal.rule import FORWARD, Rule
from neurolocal.symbols import Ref

from .codegen import ArrayPrinter
from .loihi_rule import (
    Factor,
    LoihiRuleError,
    ProductTerm,
    RuleSet,
    float_to_mantissa_exp,
    validate_loihi_rule,
)
from .profiles import LOIHI2, Profile
from .spiking import (
    CONSTANTS,
    FeedbackPlan,
    SpikingConfig,
    SpikingProgram,
    describe_program,
    encode_input,
    feedback_matrix,
    lower_rule,
    require_dense,
)

__all__ = [
    "LavaOptions", "LoihiProgram", "LoihiTermMap", "PostFactor", "ProductMap", "SynapseGroup",
    "FeedbackGroup", "NeuronSpec", "LavaRunner", "LavaGraphError", "lower_to_loihi",
    "compile_text", "fixed_point_network", "epoch_error_bound", "train", "train_from_args",
    "throughput_benchmark", "lowering_table",
]

TARGET = "lava"
TAGS = ("floating_pt", "fixed_pt")
#: a trace that never decays: Lava's float model takes inf; its fixed model casts tau to an
#: integer, so it gets 2^30 (a loss of one trace LSB per ~10^7 trace-steps at most).
NO_DECAY_TAU = {"floating_pt": math.inf, "fixed_pt": float(2**30)}
SYN_VARS = ("w", "t", "d")  # rule state var order -> Loihi synaptic variable
SYN_TARGET = {"w": "dw", "t": "dt", "d": "dd"}
TRACE_NAMES = ("y1", "y2", "y3")


# ----------------------------------------------------------------------------------------------
# Options and the lowered program (data)


@dataclass(frozen=True)
class LavaOptions:
    """Numeric choices of the lowering, all in one place (``compile`` prints them).

    ``weight_headroom``: the weight LSB is the power of two that lets the largest initial
    weight of a layer grow this many times before the 8-bit weight saturates.
    ``third_factor_range``: the magnitude of a post factor (an error) that fills a 7-bit y
    channel (larger values saturate). ``feedback_range``: the magnitude of the feedback source
    value (an output error) that fills a graded payload of ``payload_bits`` (signed).
    ``max_scale_error``: a term whose scale Loihi can only approximate worse than this
    (relative) is a LoweringError. ``rng_seed``: Lava's stochastic rounding (fixed_pt).
    """

    weight_headroom: float = 3.0
    third_factor_range: float = 1.0
    feedback_range: float = 1.0
    payload_bits: int = 8
    max_scale_error: float = 0.5
    rng_seed: int = 0

    def __post_init__(self) -> None:
        for name in ("weight_headroom", "third_factor_range", "feedback_range"):
            if not getattr(self, name) > 0:
                raise LoweringError(f"Lava option {name} must be > 0, got "
                                    f"{getattr(self, name)!r}")
        if not 2 <= self.payload_bits <= 24:
            raise LoweringError(f"payload_bits must lie in [2, 24] (Loihi 2 graded spikes "
                                f"carry up to 24 bits), got {self.payload_bits}")
        if not 0 < self.max_scale_error <= 1:
            raise LoweringError(f"max_scale_error must lie in (0, 1], got "
                                f"{self.max_scale_error}")

    @property
    def payload_max(self) -> int:
        return 2 ** (self.payload_bits - 1) - 1


@dataclass(frozen=True)
class LoihiTermMap:
    """How one term of a rule update became one or two Loihi product terms (rule level).

    ``pre``: trace factors (``x1``, ``x2``), normalised per synapse group by
    :meth:`pre_gain`; ``channel``: index of the post factor in :attr:`LoihiProgram.post_factors`
    (None: no post factor or the ``y0`` dependency); ``syn``: Loihi synaptic factors.
    """

    projection: str
    var: str
    target: str
    index: int
    text: str
    coef: float
    dependency: str
    pre: tuple[str, ...]
    channel: int | None
    syn: tuple[Factor, ...]
    syn_var: str | None
    line: int = 0

    def pre_gain(self, config: SpikingConfig, layer: int) -> float:
        """Rate per trace unit of the pre factors for the synapses into ``layer``.

        The pre neurons are layer ``layer - 1``: their traces are normalised over that
        layer's window (:meth:`.spiking.SpikingConfig.gain`).
        """
        gain = 1.0
        for tr in self.pre:
            gain *= config.gain(1 if tr == "x1" else 2, layer - 1)
        return gain

    @property
    def where(self) -> str:
        return f"on {self.projection}: d{self.var} term[{self.index}] {self.text!r}" + \
            (f" (line {self.line})" if self.line else "")


@dataclass(frozen=True)
class PostFactor:
    """A post-synaptic factor the post neuron computes and hands over in y channels."""

    expr: sympy.Expr
    text: str
    signed: bool
    traces: tuple[str, ...]  # ("y2", "y3") for signed (+, -), ("y1",) for unsigned


@dataclass(frozen=True)
class ProductMap:
    """One Loihi product term of one synapse group, with its provenance and precision."""

    term: LoihiTermMap
    part: str  # "" or "+"/"-" (the positive / negative part of a signed post factor)
    wanted: float  # the exact scale (weight LSB per factor unit)
    products: dict  # tag -> ProductTerm
    rel_error: float
    shift: int  # LSBs Lava's fixed-point engine drops from this product


@dataclass(frozen=True)
class SynapseGroup:
    """A learned forward projection of one layer: ``EpochLearningDense`` + its rule strings."""

    projection: str
    layer: int
    shape: tuple[int, int]
    weight_step: float
    channel_gain: dict  # trace -> Q (y units per post-factor unit)
    products: tuple[ProductMap, ...]
    rule_sets: dict  # tag -> RuleSet (validated)
    uses_bap: bool
    x_impulse: dict = field(default_factory=dict)  # "x1"/"x2" -> impulse per pre spike

    def strings(self, tag: str) -> dict[str, str]:
        return self.rule_sets[tag].to_lava_strings()


@dataclass(frozen=True)
class FeedbackGroup:
    """A fixed feedback projection into hidden layer ``layer``: a graded ``Dense``."""

    plan: FeedbackPlan
    layer: int
    source_layer: int
    shape: tuple[int, int]
    weight_step: float
    arrives: int  # within-epoch step at which B . source reaches the hidden neurons


@dataclass(frozen=True)
class NeuronSpec:
    """The program one NeuroLIF population runs (``program`` goes to Lava as proc_params)."""

    layer: int
    role: str
    n: int
    eq_step: int
    source: str | None
    program: dict


@dataclass
class LoihiProgram:
    """A rule lowered to Loihi 2 for a concrete network: strings, traces, graph, scales."""

    spiking: SpikingProgram
    options: LavaOptions
    profile: Profile
    sizes: tuple[int, ...]
    timesteps: int
    epoch_len: int
    x_impulse: dict  # the smallest pre-trace impulses; each group's own: SynapseGroup.x_impulse
    terms: tuple[LoihiTermMap, ...]
    post_factors: tuple[PostFactor, ...]
    groups: tuple[SynapseGroup, ...]
    feedback: tuple[FeedbackGroup, ...]
    neurons: tuple[NeuronSpec, ...]
    payload_quantum: float
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def rule(self) -> Rule:
        return self.spiking.rule

    @property
    def config(self) -> SpikingConfig:
        return self.spiking.config

    @property
    def depth(self) -> int:
        return len(self.sizes) - 1

    def group(self, layer: int, projection: str = FORWARD) -> SynapseGroup:
        return next(g for g in self.groups if g.layer == layer and g.projection == projection)

    def trace_params(self, tag: str, layer: int = 1) -> dict[str, Any]:
        """Keyword arguments of ``Loihi3FLearningRule`` plus the y taus set afterwards."""
        cfg, keep = self.config, NO_DECAY_TAU[tag]
        impulse = self.group(layer).x_impulse
        out: dict[str, Any] = {"t_epoch": self.epoch_len, "rng_seed": self.options.rng_seed}
        for name, k in (("x1", 1), ("x2", 2)):
            tau = getattr(cfg, f"tau{k}")
            out[f"{name}_impulse"] = float(impulse.get(name, 0.0))
            out[f"{name}_tau"] = keep if math.isinf(tau) else float(tau)
        for name in TRACE_NAMES:
            out[f"{name}_tau"] = keep
        return out


# ----------------------------------------------------------------------------------------------
# Lowering


def _nonnegative_post(expr: sympy.Expr, config: SpikingConfig) -> bool:
    """True when the post factor cannot be negative (rates, traces, spikes, dphi)."""
    nonneg = {"r", "x1", "x2", "y1", "y2", "y3", "s", "dphi"}
    subs = {}
    for s in expr.free_symbols:
        ref = Ref.of(s)
        if ref.scope == "post" and ref.name in nonneg:
            subs[s] = sympy.Symbol(f"nn_{ref.name}", nonnegative=True)
        elif ref.scope == "glob":
            subs[s] = sympy.Symbol(f"g_{ref.name}", real=True)
    return bool(expr.xreplace(subs).is_nonnegative)


def _is_spike_flag(expr: sympy.Expr, config: SpikingConfig) -> bool:
    """A bare ``post.s`` (or ``post.dphi`` with surrogate 'spiked'): the y0 dependency."""
    if not isinstance(expr, sympy.Symbol):
        return False
    ref = Ref.of(expr)
    return ref.scope == "post" and (ref.name == "s" or
                                    (ref.name == "dphi" and config.surrogate == "spiked"))


def _map_term(program: SpikingProgram, up, index: int, term, syn_names: dict[str, str]
              ) -> tuple[LoihiTermMap, sympy.Expr | None]:
    """Rule-level mapping of one term: dependency, pre traces, post factor, syn factors."""
    cfg, rule = program.config, program.rule
    text = term.text
    where = f"rule {rule.name}: on {up.projection}: d{up.var} = {up.text}" + \
        (f" (line {up.line})" if up.line else "") + f", term {text!r}"
    if not term.separable:
        raise LoweringError(
            f"{where}: the factor {sympy.sstr(term.mixed)} couples pre- and post-synaptic "
            "values; the Loihi 2 learning engine multiplies separate pre, post and synapse "
            "factors (limit: sum of products of traces). Nearest expressible form: expand it "
            "into products of one pre and one post factor")
    coef = sympy.sympify(term.coef).xreplace(
        {Ref("glob", k).symbol: sympy.Float(v) for k, v in program.globals.items()})
    if coef.free_symbols or not coef.is_number:
        raise LoweringError(f"{where}: the coefficient {sympy.sstr(term.coef)} is not a number "
                            "once the globals are bound (a Loihi scale is a constant)")
    dependency = "u0"
    pre: list[str] = []
    for factor in sympy.Mul.make_args(term.pre):
        if factor == 1:
            continue
        base, power = factor.as_base_exp()
        name = Ref.of(base).name if isinstance(base, sympy.Symbol) else None
        if power != 1 or name is None:
            raise LoweringError(
                f"{where}: the pre-synaptic factor {sympy.sstr(factor)} is not a trace; the "
                "learning engine reads the pre neuron only as x0 (spiked), x1 and x2, each "
                "at most once per product. Nearest expressible form: pre.r (x1)")
        if name in ("r", "x1"):
            pre.append("x1")
        elif name == "x2":
            pre.append("x2")
        elif name == "s":
            dependency = "x0"
        else:
            raise LoweringError(
                f"{where}: pre.{name} is not a pre-synaptic trace (the learning engine reads "
                "the pre neuron only as x0 = spiked, x1, x2); nearest expressible form: "
                "pre.r (x1)")
    if len(set(pre)) != len(pre):
        raise LoweringError(f"{where}: the pre trace {pre[0]} appears twice in one product; "
                            "Loihi 2 reads each trace at most once per product term")
    post_expr: sympy.Expr | None = None
    if term.post != 1:
        if _is_spike_flag(term.post, cfg) and not pre and dependency == "u0":
            dependency = "y0"
        else:
            post_expr = term.post
    syn: list[Factor] = []
    syn_var = None
    for factor in sympy.Mul.make_args(term.syn):
        if factor == 1:
            continue
        sgn = False
        base = factor
        if isinstance(factor, sympy.sign):
            sgn, base = True, factor.args[0]
        if not isinstance(base, sympy.Symbol) or Ref.of(base).name not in syn_names:
            raise LoweringError(
                f"{where}: the synaptic factor {sympy.sstr(factor)} is not one Loihi 2 can "
                "form (w, d, t or sgn() of one of them, each once per product)")
        loihi = syn_names[Ref.of(base).name]
        if any(f.var == loihi for f in syn):
            raise LoweringError(f"{where}: syn.{Ref.of(base).name} appears twice in one "
                                "product; Loihi 2 reads each synaptic variable once per term")
        syn.append(Factor(loihi, sgn=sgn))
        syn_var = None if sgn else Ref.of(base).name
    if len(syn) > 1:
        syn_var = None
    target = SYN_TARGET[syn_names[up.var]]
    return LoihiTermMap(up.projection, up.var, target, index, text, float(coef), dependency,
                        tuple(pre), None, tuple(syn), syn_var, up.line), post_expr


def _scale_up(value: float, profile: Profile) -> tuple[int, int]:
    """The smallest representable ``m * 2^e >= value > 0`` (m in 1..7), saturating."""
    eng = profile.learning
    assert eng is not None
    (_, mhi), (elo, ehi) = eng.scale_mantissa_range, eng.scale_exp_range
    best: tuple[float, int, int] | None = None
    for e in range(elo, ehi + 1):
        for m in range(1, mhi + 1):
            v = m * 2.0**e
            if v >= value * (1 - 1e-12) and (best is None or v < best[0]):
                best = (v, m, e)
    return (best[1], best[2]) if best else (mhi, ehi)


def _pow2_at_least(x: float) -> float:
    return 2.0 ** math.ceil(math.log2(x)) if x > 0 else 1.0


def _fixed_product(m: int, e: int, shift: int, where: str, profile: Profile) -> tuple[int, int]:
    """Exponent (and mantissa) compensating the LSBs Lava's fixed model drops."""
    eng = profile.learning
    assert eng is not None
    ehi = eng.scale_exp_range[1]
    mlo, mhi = eng.scale_mantissa_range
    e_f, m_f = e + shift, m
    while e_f > ehi and mlo <= m_f * 2 <= mhi:
        m_f, e_f = m_f * 2, e_f - 1
    if e_f > ehi:
        raise LoweringError(
            f"{where}: in fixed point Lava drops {shift} LSBs of this product, and "
            f"compensating needs the scale {m}*2^{e + shift}, beyond the largest Loihi 2 scale "
            f"{mhi}*2^{ehi} (limit: scale exponent in [{eng.scale_exp_range[0]}, {ehi}]); "
            "nearest expressible form: a larger weight step (--set a smaller lr) or fewer "
            "trace factors in the term")
    return m_f, e_f


def lower_to_loihi(rule: Rule, config: SpikingConfig | None = None, *, net: Network | None = None,
                   sizes: tuple[int, ...] | list[int] | None = None,
                   options: LavaOptions | None = None, allow_nonlocal: bool = False,
                   check_locality: bool = True, profile: Profile = LOIHI2) -> LoihiProgram:
    """Lower ``rule`` to Loihi 2 for ``net`` (default: a fresh 784-100-10 MLP, seed 0).

    Goes through :func:`.spiking.lower_rule` first (the same program every spiking target
    runs), then maps its terms; raises LoweringError naming the term, the limit and the
    nearest expressible form for anything Loihi 2 cannot express.
    """
    options = options or LavaOptions()
    config = config or SpikingConfig()
    program = lower_rule(rule, config, allow_nonlocal=allow_nonlocal,
                         check_locality=check_locality)
    if net is None:
        net = build_mlp(list(sizes or (784, 100, 10)), rule, seed=0)
    elif net.rule is not rule and net.rule.name != rule.name:
        raise LoweringError(f"network was built for rule {net.rule.name!r}, not {rule.name!r}")
    require_dense(net, "lava")
    cfg, name = config, rule.name
    eng = profile.learning
    assert eng is not None and profile.traces is not None and profile.weights is not None
    notes: list[str] = []
    warnings: list[str] = []
    t = cfg.timesteps
    tmax = profile.traces.range[1]

    # --- feedback: fixed graded Dense projections; timing of the error path ------------------
    for plan in program.feedback:
        if plan.mode == "tied":
            raise LoweringError(
                f"rule {name}: feedback {plan.name} = {plan.scope}.{plan.source} -> {plan.target} "
                f"via {plan.text}" + (f" (line {plan.line})" if plan.line else "")
                + " is tied to the forward weights (weight transport): a Loihi 2 synapse group"
                " cannot read another group's weights, and copying W into B from "
                "the host every epoch is not a graph that learns on chip. Nearest expressible "
                "form: feedback via random (fa / dfa)")
    depth = net.depth
    src_of: dict[int, str] = {}
    into: dict[int, list[FeedbackPlan]] = {}
    for plan in program.feedback:
        for layer in range(1, depth):
            source_layer = depth if plan.scope == "output" else layer + 1
            if src_of.setdefault(source_layer, plan.source) != plan.source:
                raise LoweringError(
                    f"rule {name}: layer {source_layer} would send two compartments down "
                    f"({src_of[source_layer]} and {plan.source}); a NeuroLIF population has one "
                    "graded feedback output on the Lava target")
            into.setdefault(layer, []).append(plan)
    eq_step = {depth: t + 1}
    fb_groups: list[FeedbackGroup] = []
    for layer in range(depth - 1, 0, -1):
        plans = into.get(layer, [])
        arrivals = set()
        for plan in plans:
            source_layer = depth if plan.scope == "output" else layer + 1
            arrivals.add(eq_step[source_layer] + 1)
        if len({p.target for p in plans}) > 1 or len(arrivals) > 1:
            raise LoweringError(
                f"rule {name}: hidden layer {layer} receives feedback "
                f"{', '.join(p.name for p in plans)} into different compartments or at "
                "different steps; a NeuroLIF population has one feedback input "
                "(a_third_factor_in) on the Lava target")
        eq_step[layer] = arrivals.pop() if arrivals else t + 1
        for plan in plans:
            source_layer = depth if plan.scope == "output" else layer + 1
            stored = net.state[plan.name][layer]["w"]
            b = np.asarray(feedback_matrix(plan, stored), dtype=np.float64)
            step = _pow2_at_least(float(np.abs(b).max()) / profile.weights.range_mixed[1])
            fb_groups.append(FeedbackGroup(plan, layer, source_layer, tuple(b.shape), step,
                                           eq_step[layer]))
    epoch_len = max(eq_step.values())
    if epoch_len > 2 ** eng.epoch_time_bits - 1:
        warnings.append(
            f"t_epoch = {epoch_len} steps exceeds Loihi 2's {eng.epoch_time_bits}-bit epoch "
            f"time (<= {2 ** eng.epoch_time_bits - 1}); Lava's simulator does not check it, a "
            f"chip would need T <= {2 ** eng.epoch_time_bits - 1 - (epoch_len - t)}")
    quantum = 2.0 ** -math.floor(math.log2(options.payload_max / options.feedback_range))

    # --- pre-trace impulses ------------------------------------------------------------------
    # the smallest impulse: x1 is the spike count, exact; each synapse group raises it as far
    # as its scales allow (finer products, see _choose_impulse); T > 127 would saturate
    x_impulse = {"x1": 1.0 if t <= tmax else tmax / t}
    x_impulse["x2"] = x_impulse["x1"]
    if t > tmax:
        warnings.append(f"T = {t} > {tmax}: x1 counts spikes with a fractional impulse "
                        f"{x_impulse['x1']:.4g} (stochastic rounding in fixed_pt)")

    # --- rule-level term mapping --------------------------------------------------------------
    syn_names: dict[str, str] = {}
    for proj, vars_ in program.state_vars.items():
        if proj != FORWARD:
            continue
        if len(vars_) > len(SYN_VARS):
            raise LoweringError(
                f"rule {name}: projection {proj} keeps {len(vars_)} synaptic variables "
                f"({', '.join(vars_)}); a Loihi 2 synapse has three (w, tag t, delay d)")
        syn_names = {v: SYN_VARS[i] for i, v in enumerate(vars_)}
    maps: list[LoihiTermMap] = []
    post_exprs: list[tuple[sympy.Expr, LoihiTermMap]] = []
    for up in program.updates:
        if up.projection != FORWARD:
            fb = next(p for p in program.feedback if p.name == up.projection)
            term0 = next((t.text for t in up.terms if t.pre != 1),
                         up.terms[0].text if up.terms else up.text)
            raise LoweringError(
                f"rule {name}: on {up.projection}: d{up.var} = {up.text}"
                + (f" (line {up.line})" if up.line else "")
                + f", term {term0!r}: learning the feedback synapses {fb.name} "
                f"({fb.scope}.{fb.source} -> {fb.target}) needs a pre-synaptic factor of the "
                f"graded value they carry ({fb.source}, signed); Loihi 2's pre traces x1/x2 "
                "are unsigned 7-bit spike traces (a graded spike only counts as an event), so "
                "no product term can read it. Nearest expressible form: a fixed feedback "
                f"projection (drop 'on {up.projection}', e.g. fa or fa-decay)")
        for i, term in enumerate(up.terms):
            tm, post_expr = _map_term(program, up, i, term, syn_names)
            maps.append(tm)
            if post_expr is not None:
                post_exprs.append((post_expr, tm))
    if cfg.tau1 != math.inf and any("x1" in m.pre for m in maps):
        warnings.append(
            f"tau1 = {cfg.tau1:g}: Lava keeps pre traces per epoch and decays all but the last "
            "spike of an epoch from the epoch start, so x1 only approximates the reference's "
            "exponential trace; agreement with the reference is exact for tau1 = inf")
    if any("x2" in m.pre for m in maps):
        warnings.append(f"x2 (tau2 = {cfg.tau2:g}) uses Lava's per-epoch trace approximation "
                        "(all but the last spike of an epoch decayed from the epoch start)")

    # channels: one per unsigned post factor, a (+, -) pair per signed one
    factors: list[PostFactor] = []
    free = list(TRACE_NAMES)
    final_maps: list[LoihiTermMap] = []
    channel_of: dict[int, int] = {}
    for expr, tm in post_exprs:
        found = next((k for k, f in enumerate(factors) if sympy.simplify(f.expr - expr) == 0),
                     None)
        if found is None:
            signed = not _nonnegative_post(expr, cfg)
            need = 2 if signed else 1
            if len(free) < need:
                raise LoweringError(
                    f"rule {name}: {tm.where}: its post factor {sympy.sstr(expr)} needs "
                    f"{need} more post trace(s), but the rule's other post factors already use "
                    f"{', '.join(t for t in TRACE_NAMES if t not in free)} (limit: Loihi 2 "
                    "has 3 post traces y1 y2 y3; a signed factor takes two, y2 for its positive "
                    "and y3 for its negative part). Nearest expressible form: compute one post "
                    "compartment that combines the factors (neuron q = ...) and read post.q")
            if signed:
                pair = ("y2", "y3") if "y2" in free and "y3" in free else tuple(free[:2])
                traces = tuple(pair)
            else:
                traces = (free[0],)
            for tr in traces:
                free.remove(tr)
            factors.append(PostFactor(expr, sympy.sstr(expr).replace("post__", "post."),
                                      signed, traces))
            found = len(factors) - 1
        channel_of[id(tm)] = found
    for tm in maps:
        final_maps.append(dataclasses.replace(tm, channel=channel_of.get(id(tm))))

    # --- neuron programs -----------------------------------------------------------------------
    u_unit_float = {}  # per layer: weight step (float units per LSB)
    groups: list[SynapseGroup] = []
    wmax = profile.weights.range_mixed[1]
    for layer in range(1, depth + 1):
        w = np.asarray(net.state[FORWARD][layer]["w"], dtype=np.float64)
        peak = float(np.abs(w).max())
        step = _pow2_at_least(options.weight_headroom * peak / wmax) if peak > 0 else \
            _pow2_at_least(cfg.vth / 64)
        u_unit_float[layer] = step
        vth_int = cfg.vth / step
        if abs(vth_int - round(vth_int)) > 1e-9 or vth_int > profile.lif.vth_range[1]:
            warnings.append(f"layer {layer}: vth = {cfg.vth:g} is {vth_int:.6g} weight LSBs; "
                            "the fixed-point threshold rounds it")
        groups.append(_synapse_group(program, final_maps, factors, layer, net, step, options,
                                     profile, x_impulse))
    neurons = tuple(_neuron_spec(program, layer, net, eq_step, src_of, fb_groups, factors,
                                 groups, quantum, u_unit_float[layer], options, epoch_len)
                    for layer in range(1, depth + 1))
    if cfg.du != 1.0 or cfg.dv != 0.0:
        notes.append(f"du = {cfg.du:g}, dv = {cfg.dv:g}: fixed_pt LIF decays are 12-bit "
                     "((4096 - du_int - 1)/4096 for u), so fixed-point dynamics approximate "
                     "the reference; du = 1, dv = 0 are exact")
    return LoihiProgram(program, options, profile, tuple(net.sizes), t, epoch_len, x_impulse,
                        tuple(final_maps), tuple(factors), tuple(groups), tuple(fb_groups),
                        neurons, quantum, notes, warnings)


def _choose_impulse(program: SpikingProgram, maps: list[LoihiTermMap], layer: int, step: float,
                    options: LavaOptions, profile: Profile, base: float) -> float:
    """The largest integer pre-trace impulse (x1 <= 127 over T spikes) that keeps every
    pre-trace term's scale representable with the post channels at full gain.

    A larger impulse makes the engine's products larger, so Lava's truncating shift (2^-3
    for two traces in fixed point) costs relatively less, and the scale smaller.
    """
    eng = profile.learning
    assert eng is not None and profile.traces is not None
    tmax, t = profile.traces.range[1], program.config.timesteps
    smallest = 2.0 ** eng.scale_exp_range[0]
    q0 = tmax / options.third_factor_range
    for ix in range(max(1, tmax // t), 1, -1):
        ok = True
        for tm in maps:
            if not tm.pre:
                continue
            syn_unit = 1.0 if tm.syn_var is not None else 1.0 / step
            value = abs(tm.coef) * tm.pre_gain(program.config, layer) * syn_unit / \
                ix ** len(tm.pre)
            if tm.channel is not None:
                ok = ok and value / q0 >= smallest * (1 - 1e-12)
            else:
                ok = ok and float_to_mantissa_exp(value, profile)[2] <= options.max_scale_error
        if ok:
            return float(ix)
    return base


def _synapse_group(program: SpikingProgram, maps: list[LoihiTermMap], factors: list[PostFactor],
                   layer: int, net: Network, step: float, options: LavaOptions,
                   profile: Profile, x_impulse: dict) -> SynapseGroup:
    """Scales of every term for this layer's weight step; strings validated per tag."""
    eng = profile.learning
    assert eng is not None
    tmax = profile.traces.range[1] if profile.traces else 127
    ix = _choose_impulse(program, maps, layer, step, options, profile, x_impulse["x1"])
    x_impulse = {"x1": ix, "x2": ix}
    gain: dict[str, float] = {}
    products: list[ProductMap] = []
    for tm in maps:
        pre_gain = 1.0
        for tr in tm.pre:
            pre_gain *= 1.0 / x_impulse[tr]
        pre_gain *= tm.pre_gain(program.config, layer)
        # weight LSBs per unit of the product: syn factor in LSBs cancels the weight step
        syn_unit = 1.0 if tm.syn_var is not None else 1.0 / step
        base = tm.coef * pre_gain * syn_unit
        parts: list[tuple[str, str | None, int]] = [("", None, 1)]
        if tm.channel is not None:
            pf = factors[tm.channel]
            parts = [("+", pf.traces[0], 1), ("-", pf.traces[1], -1)] if pf.signed else \
                [("", pf.traces[0], 1)]
        where = f"rule {program.rule.name}: {tm.where}"
        for part, trace, sign in parts:
            if trace is not None and trace not in gain:
                # choose the channel gain Q so the scale is exactly m * 2^e
                q0 = tmax / options.third_factor_range
                m, e = _scale_up(abs(base) / q0, profile)
                gain[trace] = abs(base) / (m * 2.0**e)
                if gain[trace] * options.third_factor_range < 1:
                    raise LoweringError(
                        f"{where}: the scale {base:.4g} weight LSBs per unit of "
                        f"{factors[tm.channel].text} needs more than {m}*2^{e} per 7-bit trace "
                        "step (limit: scale mantissa in [-8, 7] x 2^[-7, 8]), so the post "
                        "factor would round to 0. Nearest expressible form: a smaller lr or "
                        "a finer weight step (smaller weight_headroom)")
            wanted = base * sign / gain[trace] if trace is not None else base * sign
            if wanted == 0:
                continue
            m, e, rel = float_to_mantissa_exp(wanted, profile)
            if rel > options.max_scale_error:
                lo = eng.scale_mantissa_range
                smallest = 2.0 ** eng.scale_exp_range[0]
                hint = f"--set the rule's globals so that |scale| >= {smallest:g}"
                raise LoweringError(
                    f"{where}: its scale {wanted:.4g} (weight LSBs per product unit) "
                    + ("underflows: below the smallest Loihi 2 scale "
                       f"1*2^{eng.scale_exp_range[0]} = {2.0**eng.scale_exp_range[0]:g}"
                       if rel >= 1 else f"can only be approximated with {100 * rel:.0f}% error")
                    + f" (limit: mantissa in [{lo[0]}, {lo[1]}] x 2^[{eng.scale_exp_range[0]}, "
                    f"{eng.scale_exp_range[1]}], one u<k> per rule set so no decimation). "
                    f"Nearest expressible form: "
                    + (f"{m}*2^{e} = {m * 2.0**e:.4g} ({100 * rel:.0f}% off)" if rel < 1 else
                       f"drop the term, or raise its coefficient {tm.text.split('*syn')[0]!r} "
                       f"(= {tm.coef:.4g} per epoch) to >= {smallest / abs(wanted / tm.coef):.4g}")
                    + f"; {hint}")
            factor_list = [Factor(tr) for tr in tm.pre]
            if trace is not None:
                factor_list.append(Factor(trace))
            factor_list += list(tm.syn)
            shift = eng.fixed_point_shift([f.var for f in factor_list])
            m_f, e_f = _fixed_product(m, e, shift, where, profile)
            prods = {"floating_pt": ProductTerm(m, e, tm.dependency, tuple(factor_list)),
                     "fixed_pt": ProductTerm(m_f, e_f, tm.dependency, tuple(factor_list))}
            products.append(ProductMap(tm, part, wanted, prods, rel, shift))
    rule_sets = {}
    for tag in TAGS:
        by_target: dict[str, list[ProductTerm]] = {}
        for pm in products:
            by_target.setdefault(pm.term.target, []).append(pm.products[tag])
        strings = {k: RuleSet(**{k: tuple(v)}).to_lava_string(k) for k, v in by_target.items()}
        if not strings:
            strings = {"dw": "0*2^0*u0"}
        try:
            rule_sets[tag] = validate_loihi_rule(strings.get("dw"), strings.get("dd"),
                                                 strings.get("dt"), profile=profile)
        except LoihiRuleError as exc:  # pragma: no cover - a lowering bug, not user input
            raise LoweringError(f"rule {program.rule.name}: layer {layer} ({tag}): the "
                                f"generated Loihi string is invalid: {exc}") from exc
    uses_bap = any(pm.term.dependency == "y0" for pm in products)
    w = net.state[FORWARD][layer]["w"]
    return SynapseGroup(FORWARD, layer, tuple(w.shape), step, gain, tuple(products), rule_sets,
                        uses_bap, x_impulse)


class _RawPrinter(ArrayPrinter):
    """Measured symbols: raw state ``st[...]``, constants ``k[...]``."""

    def _print_Symbol(self, expr: sympy.Symbol) -> str:
        if "__" not in expr.name:
            table = "k" if expr.name in CONSTANTS else "st"
            return f"{table}[{expr.name!r}]"
        return super()._print_Symbol(expr)


def _neuron_code(program: SpikingProgram, role: str, factors: list[PostFactor]) -> str:
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


def _neuron_spec(program: SpikingProgram, layer: int, net: Network, eq_step: dict,
                 src_of: dict, fb_groups: list[FeedbackGroup], factors: list[PostFactor],
                 groups: list[SynapseGroup], quantum: float, step: float,
                 options: LavaOptions, epoch_len: int) -> NeuronSpec:
    cfg = program.config
    role = "output" if layer == net.depth else "hidden"
    fbs = [g for g in fb_groups if g.layer == layer]
    group = groups[layer - 1]
    channels = []
    for index, pf in enumerate(factors):
        signs = (1, -1) if pf.signed else (1,)
        for tr, sign in zip(pf.traces, signs):
            channels.append((TRACE_NAMES.index(tr), index, sign, group.channel_gain.get(tr, 0.0)))
    traces = sorted({int(s[2]) - 1 for n in program.measured
                     for s in (str(x) for x in program.symbols[n].free_symbols)
                     if s.startswith("tr")} | {0})
    prog = {
        "name": f"{program.rule.name} L{layer}", "n": net.sizes[layer], "T": cfg.timesteps,
        "L": epoch_len, "role": role, "learn": True, "eq_step": eq_step[layer],
        "fb_target": fbs[0].plan.target if fbs else None,
        "fb_unit": fbs[0].weight_step * quantum if fbs else 0.0,
        "src": src_of.get(layer), "src_quantum": quantum, "payload_max": options.payload_max,
        "u_unit": step, "decays": [cfg.decay(1), cfg.decay(2), cfg.decay(3)],
        "traces": traces, "code": _neuron_code(program, role, factors),
        "globals": dict(program.globals), "constants": cfg.constants(layer), "layer": layer,
        "computed": list(program.computed), "channels": channels,
        "reset": getattr(cfg, "reset", "zero"),
    }
    return NeuronSpec(layer, role, net.sizes[layer], eq_step[layer], src_of.get(layer), prog)


# ----------------------------------------------------------------------------------------------
# Fixed-point network and the quantisation bound


def fixed_point_network(net: Network, lp: LoihiProgram) -> Network:
    """A copy of ``net`` whose forward and feedback weights lie on the fixed_pt grids.

    Forward weights: even multiples of the layer's weight step in [-256, 254] (Lava's
    mixed-sign Dense drops the LSB on load); fixed feedback weights: likewise with their own
    step. Running the reference on this network isolates the learning-path quantisation.
    """
    out = Network(list(net.sizes), net.rule, net.hidden_activation, net.output_activation,
                  {p: {layer: {k: np.array(v, dtype=np.float64) for k, v in d.items()}
                       for layer, d in s.items()} for p, s in net.state.items()})
    for g in lp.groups:
        st = out.state[g.projection][g.layer]
        st["w"] = _even_grid(st["w"], g.weight_step) * g.weight_step
    for fb in lp.feedback:
        st = out.state[fb.plan.name][fb.layer]
        st["w"] = _even_grid(st["w"], fb.weight_step) * fb.weight_step
    return out


def _even_grid(w: np.ndarray, step: float) -> np.ndarray:
    lo, hi = LOIHI2.weights.range_mixed  # type: ignore[union-attr]
    return np.clip(2.0 * np.round(np.asarray(w, dtype=np.float64) / step / 2.0), lo, hi - 1)


def epoch_error_bound(lp: LoihiProgram, layer: int, pre_counts: np.ndarray,
                      fb_abs_sum: np.ndarray | None = None) -> np.ndarray:
    """Largest |fixed_pt - exact| weight change of one epoch for the synapses of ``layer``.

    Given the same start weights and spike trains, per synapse (in float weight units)::

        sum over products  |m 2^e| x prod(pre traces) x (1/2 + Q dv)    post-factor rounding
                         + 2^e_fixed                                     Lava's truncating shift
        + 1                                                              stochastic rounding

    times the weight step, where ``dv`` bounds the post factor's error from the graded
    feedback payload (half a payload quantum per feedback synapse: ``fb_abs_sum`` = sum_j
    |B_ij| per hidden neuron) and Q is the channel gain. ``pre_counts``: spikes per pre neuron
    (bias unit last, T). Values in weight units, shape (n_post, n_pre + 1).
    """
    g = lp.group(layer)
    n_post = g.shape[0]
    imp = g.x_impulse
    bound = np.ones(g.shape)
    dv = np.zeros(n_post)
    if fb_abs_sum is not None:
        fbg = next((f for f in lp.feedback if f.layer == layer), None)
        if fbg is not None:
            dv = 0.5 * lp.payload_quantum * np.asarray(fb_abs_sum, dtype=float)
    for pm in g.products:
        p = pm.products["floating_pt"]
        pf = p.scale_mantissa * 2.0**p.scale_exp
        pre = np.ones(g.shape[1])
        for tr in pm.term.pre:
            pre = pre * np.asarray(pre_counts, dtype=float) * imp[tr]
        post = np.ones(n_post)
        trace = next((f.var for f in p.factors if f.var in TRACE_NAMES), None)
        if trace is not None:
            q = g.channel_gain[trace]
            post = 0.5 + q * dv
        fx = pm.products["fixed_pt"]
        bound = bound + abs(pf) * np.outer(post, pre) + 2.0**fx.scale_exp
    return bound * g.weight_step


# ----------------------------------------------------------------------------------------------
# Printing


def _used_traces(g: SynapseGroup, tag: str) -> list[str]:
    return sorted({f.var for pm in g.products for f in pm.products[tag].factors
                   if f.var in TRACE_NAMES})


def _graph_lines(lp: LoihiProgram, tag: str) -> list[str]:
    sizes, depth = lp.sizes, lp.depth
    lines = [f"process graph (Loihi2SimCfg(select_tag={tag!r}), t_epoch = {lp.epoch_len}):",
             f"  source  EpochSource         s_out ({sizes[0]}+1 bias)  t_out ({sizes[-1]})"]
    for layer in range(1, depth + 1):
        g = lp.group(layer)
        pre = "source.s_out" if layer == 1 else f"L{layer - 1}.s_out"
        ys = _used_traces(g, tag)
        lines.append(f"  W{layer:<6} EpochLearningDense  weights {g.shape}  s_in <- {pre}; "
                     f"a_out -> L{layer}.a_in"
                     + "".join(f"; s_in_{y} <- L{layer}.s_out_{y}" for y in ys)
                     + (f"; s_in_bap <- L{layer}.s_out_bap" if g.uses_bap else ""))
        spec = lp.neurons[layer - 1]
        extra = "; target_in <- source.t_out" if spec.role == "output" else ""
        lines.append(f"  L{layer:<6} NeuroLIF ({spec.role:<6})   ({spec.n},) s_out ({spec.n}+1 "
                     f"bias){extra}; program at step {spec.eq_step}")
    for fb in lp.feedback:
        lines.append(f"  {fb.plan.name}{fb.layer:<5} Dense (graded)      weights {fb.shape}  "
                     f"s_in <- L{fb.source_layer}.s_fb_out ({fb.plan.source}); a_out -> "
                     f"L{fb.layer}.a_third_factor_in ({fb.plan.target}, arrives step "
                     f"{fb.arrives})")
    return lines


def _report_lines(lp: LoihiProgram) -> list[str]:
    prof, cfg, opts = lp.profile, lp.config, lp.options
    res = prof.resources
    assert res is not None and prof.learning is not None
    lines = [f"resource report against profile {prof.name!r} ({prof.description}):"]
    neurons = sum(lp.sizes[1:]) + (lp.depth - 1)  # + bias units of hidden layers
    syn_fwd = sum(int(np.prod(g.shape)) for g in lp.groups)
    syn_fb = sum(int(np.prod(f.shape)) for f in lp.feedback)
    cores = 0
    for layer in range(1, lp.depth + 1):
        n = lp.sizes[layer]
        syn_in = int(np.prod(lp.group(layer).shape)) + sum(
            int(np.prod(f.shape)) for f in lp.feedback if f.layer == layer)
        cores += max(math.ceil(n / res.neurons_per_core),
                     math.ceil(syn_in / res.synapses_per_core))
    lines += [
        f"  neurons   {neurons} (+{lp.sizes[0]} input axons) of {res.neurons_per_chip} per chip",
        f"  synapses  {syn_fwd} learned (forward incl. bias) + {syn_fb} fixed feedback",
        f"  cores     >= {cores} of {res.neuro_cores_per_chip} (one population per core at "
        f"least; {res.neurons_per_core} neurons, ~{res.synapses_per_core} synapses per core "
        "[estimate])",
        f"  epoch     t_epoch = {lp.epoch_len} = 1 lead + T={lp.timesteps} forward + "
        f"{lp.epoch_len - lp.timesteps - 1} error step(s) "
        f"(limit {2 ** prof.learning.epoch_time_bits - 1})",
        "precision report:",
    ]
    for g in lp.groups:
        e2 = int(math.log2(g.weight_step))
        lines.append(f"  W{g.layer}: weight LSB = {g.weight_step:.6g} (2^{e2}); 8-bit + sign: "
                     f"|w| <= {256 * g.weight_step:.4g}; vth = {cfg.vth / g.weight_step:.6g} LSB")
        for tr, q in sorted(g.channel_gain.items()):
            lines.append(f"      {tr}: {q:.6g} trace units per unit of post factor -> range "
                         f"{127 / q:.4g}, resolution {1 / q:.3g}")
        for pm in g.products:
            p, pf = pm.products["floating_pt"], pm.products["fixed_pt"]
            lines.append(f"      term[{pm.term.index}]{pm.part or ' '} {pm.term.text}: wanted "
                         f"{pm.wanted:.6g}, Loihi {p.scale_mantissa}*2^{p.scale_exp} "
                         f"(rel. error {100 * pm.rel_error:.3g}%); fixed_pt drops {pm.shift} "
                         f"LSBs -> {pf.scale_mantissa}*2^{pf.scale_exp}")
    for fb in lp.feedback:
        lines.append(f"  {fb.plan.name}{fb.layer}: weight LSB = {fb.weight_step:.6g}; payload "
                     f"quantum {lp.payload_quantum:g} ({opts.payload_bits}-bit signed, range "
                     f"±{opts.payload_max * lp.payload_quantum:g})")
    imps = ", ".join(f"W{g.layer} {g.x_impulse['x1']:g}" for g in lp.groups)
    lines += [
        f"  x1: impulse per pre spike {imps} (the largest that keeps the scales "
        f"representable), no decay (tau1 = {cfg.tau1:g}), 7-bit: <= impulse x {lp.timesteps} "
        "of 127",
        "  fixed_pt learning: 16-bit accumulator (weight LSB = 2^7), products truncated "
        "(floor), new weights stochastically rounded (Lava's seeded generator) and clipped "
        "to [-256, 255]; y channels rounded to 7-bit unsigned; payloads to "
        f"{opts.payload_bits}-bit signed",
        "  bound per epoch and synapse (fixed_pt vs exact, same spikes): see "
        "lava_target.epoch_error_bound",
    ]
    for w in lp.warnings:
        lines.append(f"  warning: {w}")
    for n in lp.notes:
        lines.append(f"  note: {n}")
    return lines


def compile_text(rule: Rule, **options: Any) -> str:
    """What ``neurolocal compile --target lava`` prints.

    Options: SpikingConfig fields (``timesteps`` ...), ``hidden`` (layer sizes, default
    [100]), ``tag`` (default fixed_pt), LavaOptions fields, ``allow_nonlocal``.
    """
    cfg = SpikingConfig().with_options(**{k: v for k, v in options.items()
                                          if k in SpikingConfig.__dataclass_fields__})
    lopts = LavaOptions(**{k: v for k, v in options.items()
                           if k in LavaOptions.__dataclass_fields__})
    tag = options.get("tag", "fixed_pt")
    hidden = list(options.get("hidden") or [100])
    net = build_mlp([784, *hidden, 10], rule, seed=int(options.get("seed", 0)))
    lp = lower_to_loihi(rule, cfg, net=net, options=lopts, check_locality=False,
                        allow_nonlocal=bool(options.get("allow_nonlocal", True)))
    out = [f"# Lava target (Loihi 2), rule {rule.name!r}, network {'-'.join(map(str, lp.sizes))}"]
    out += [f"# {line}" for line in describe_program(lp.spiking)]
    out.append("")
    out.append("Loihi 2 learning rules (Loihi3FLearningRule; validated against the profile):")
    for g in lp.groups:
        for t in TAGS:
            for target, s in g.strings(t).items():
                out.append(f"  W{g.layer} {t:<11} {target} = {s}")
    out.append("  where:")
    for tm in lp.terms:
        pf = lp.post_factors[tm.channel] if tm.channel is not None else None
        via = f", post factor {pf.text} in {'/'.join(pf.traces)}" if pf else ""
        out.append(f"    {tm.where}: dependency {tm.dependency}"
                   + (f", pre {'*'.join(tm.pre)}" if tm.pre else "")
                   + via + (", syn " + "*".join(f.to_lava_string() for f in tm.syn)
                            if tm.syn else ""))
    out.append("trace parameters (Lava units):")
    for g in lp.groups:
        for t in TAGS:
            tp = lp.trace_params(t, g.layer)
            out.append(f"  W{g.layer} {t:<11} " + ", ".join(
                f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in tp.items()))
    out.append("  y1..y3 hold the post neuron's factors (3F rule): no impulse, no decay")
    out += _graph_lines(lp, tag)
    out.append("neuron program (NeuroLIF, generated from the rule):")
    for spec in (lp.neurons[0], lp.neurons[-1]) if lp.depth > 1 else lp.neurons:
        out.append(f"  [{spec.role}] at step {spec.eq_step}"
                   + (f": {spec.program['fb_target']} += a_third_factor_in x "
                      f"{spec.program['fb_unit']:g}" if spec.program["fb_target"] else "")
                   + (f"; sends {spec.source} on s_fb_out" if spec.source else ""))
        out += ["    " + line for line in spec.program["code"].splitlines() if line.strip()]
    out += _report_lines(lp)
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------------------------
# Running the graph


class LavaGraphError(NeurolocalError):
    """Lava could not build or run the generated graph (the message says which step)."""


class LavaRunner:
    """The generated Lava graph for a network and a lowered rule.

    Each :meth:`run` builds the graph for a batch of samples (one learning epoch each), runs
    it, reads the learned weights back into ``net`` and stops Lava (also on error). Weights
    are kept in float units in ``net``; the graph holds them in weight LSBs (powers of two,
    so the float graph computes exactly what the reference computes). With ``fixed_pt`` the
    network's weights are first snapped to the fixed-point grid (:func:`fixed_point_network`).
    """

    def __init__(self, net: Network, config: SpikingConfig | None = None, *,
                 tag: str = "fixed_pt", options: LavaOptions | None = None,
                 allow_nonlocal: bool = False, program: LoihiProgram | None = None) -> None:
        if tag not in TAGS:
            raise LoweringError(f"Lava tag must be one of {', '.join(TAGS)}, got {tag!r}")
        self.net, self.tag = net, tag
        self.lp = program or lower_to_loihi(net.rule, config, net=net, options=options,
                                            allow_nonlocal=allow_nonlocal)
        self.cfg = self.lp.config
        if tag == "fixed_pt":
            q = fixed_point_network(net, self.lp)
            self.net.state = q.state
        self.events = 0.0
        self.last_procs: list = []

    # -- graph construction ---------------------------------------------------------------------
    def _weights_lsb(self, layer: int) -> np.ndarray:
        g = self.lp.group(layer)
        w = np.asarray(self.net.state[FORWARD][layer]["w"], dtype=np.float64) / g.weight_step
        return _even_grid(w * g.weight_step, g.weight_step) if self.tag == "fixed_pt" else w

    def build(self, spikes: np.ndarray, targets: np.ndarray, *, learn: bool) -> dict:
        """The Lava processes for ``spikes`` (K, T, n0) and one-hot ``targets`` (K, n_out)."""
        from .lava_compat import ensure_lava_importable

        ensure_lava_importable()
        from lava.magma.core.learning.learning_rule import Loihi3FLearningRule
        from lava.proc.dense.process import Dense
        from lava.utils.weightutils import SignMode

        from .lava_procs.procs import EpochLearningDense, EpochSource, NeuroLIF

        lp, tag, cfg = self.lp, self.tag, self.cfg
        fixed = tag == "fixed_pt"
        k = spikes.shape[0]
        epoch_len = lp.epoch_len if learn else lp.timesteps + 1
        src = EpochSource(spikes=spikes, targets=targets.astype(np.int32 if fixed else float),
                          epoch_len=epoch_len, name="nl_source")
        procs: dict[str, Any] = {"source": src}
        prev_out = src.s_out
        neurons = []
        for layer in range(1, lp.depth + 1):
            g = lp.group(layer)
            spec = lp.neurons[layer - 1]
            program = dict(spec.program, L=epoch_len, learn=learn)
            if fixed:
                program["u_unit"] = g.weight_step / 2 ** LOIHI2.lif.activation_shift  # type: ignore[union-attr]
                du = max(0, round(cfg.du * 4096) - 1)
                dv = round(cfg.dv * 4096)
                vth = round(cfg.vth / g.weight_step)
            else:
                program["u_unit"] = g.weight_step
                du, dv, vth = cfg.du, cfg.dv, cfg.vth / g.weight_step
            neuron = NeuroLIF(shape=(spec.n,), du=du, dv=dv, vth=vth, program=program,
                              n_samples=k, name=f"nl_L{layer}")
            w = self._weights_lsb(layer)
            if learn:
                tp = lp.trace_params(tag, layer)
                ys = {n: tp.pop(f"{n}_tau") for n in TRACE_NAMES}
                rule = Loihi3FLearningRule(**g.strings(tag), **tp)
                for n, tau in ys.items():
                    setattr(rule, f"{n}_tau", tau)
                dense = EpochLearningDense(weights=w, learning_rule=rule, name=f"nl_W{layer}",
                                           sign_mode=SignMode.MIXED)
                for n in _used_traces(g, tag):  # unconnected y ports cost no messages
                    getattr(neuron, f"s_out_{n}").connect(getattr(dense, f"s_in_{n}"))
                if g.uses_bap:
                    neuron.s_out_bap.connect(dense.s_in_bap)
            else:
                dense = Dense(weights=w, name=f"nl_W{layer}", sign_mode=SignMode.MIXED)
            prev_out.connect(dense.s_in)
            dense.a_out.connect(neuron.a_in)
            prev_out = neuron.s_out
            procs[f"W{layer}"], procs[f"L{layer}"] = dense, neuron
            neurons.append(neuron)
        if learn:
            src.t_out.connect(neurons[-1].target_in)
            for fb in lp.feedback:
                b = np.asarray(self.net.state[fb.plan.name][fb.layer]["w"], dtype=np.float64)
                b = feedback_matrix(fb.plan, b) / fb.weight_step
                if fixed:
                    b = _even_grid(b * fb.weight_step, fb.weight_step)
                dense = Dense(weights=b, num_message_bits=lp.options.payload_bits,
                              name=f"nl_{fb.plan.name}{fb.layer}", sign_mode=SignMode.MIXED)
                neurons[fb.source_layer - 1].s_fb_out.connect(dense.s_in)
                dense.a_out.connect(neurons[fb.layer - 1].a_third_factor_in)
                procs[f"{fb.plan.name}{fb.layer}"] = dense
        procs["_epoch_len"] = epoch_len
        return procs

    # -- running --------------------------------------------------------------------------------
    def run(self, spikes: np.ndarray, targets: np.ndarray | None = None, *, learn: bool = True,
            chunk: int | None = None,
            progress: Callable[[int, int, float], None] | None = None) -> dict:
        """Run one learning epoch per sample (``learn``) or inference only; always stops Lava.

        ``spikes``: (K, T, n0) 0/1; ``targets``: (K, n_out) one-hot (needed to learn).
        ``chunk``: samples per ``run`` call (progress is reported between calls).
        Returns ``pred`` (K,), ``counts`` (spike counts of the last sample per layer),
        ``seconds`` (running, without building), ``events`` (forward synaptic events).
        """
        from .lava_compat import ensure_lava_importable

        ensure_lava_importable()
        from lava.magma.core.run_conditions import RunSteps
        from lava.magma.core.run_configs import Loihi2SimCfg

        spikes = np.asarray(spikes)
        lp = self.lp
        if spikes.ndim != 3 or spikes.shape[1] != lp.timesteps or spikes.shape[2] != lp.sizes[0]:
            raise ShapeError(f"spikes must have shape (samples, T={lp.timesteps}, "
                             f"{lp.sizes[0]}), got {spikes.shape}")
        if spikes.size and not np.isin(spikes, (0, 1)).all():
            raise ShapeError("spikes must be 0/1")
        k = spikes.shape[0]
        if targets is None:
            if learn:
                raise ShapeError("learning needs targets (samples, n_out), one-hot")
            targets = np.zeros((k, lp.sizes[-1]))
        targets = np.asarray(targets)
        if targets.shape != (k, lp.sizes[-1]):
            raise ShapeError(f"targets must have shape ({k}, {lp.sizes[-1]}), got "
                             f"{targets.shape}")
        procs = self.build(spikes.astype(np.int8), targets, learn=learn)
        epoch_len = procs.pop("_epoch_len")
        self.last_procs = list(procs.values())
        anchor = procs["source"]
        cfg = Loihi2SimCfg(select_tag=self.tag)
        chunk = int(chunk or k) or 1
        done, seconds = 0, 0.0
        result: dict[str, Any] = {}
        try:
            try:  # compile and start the runtime (not counted in ``seconds``)
                anchor.create_runtime(run_cfg=cfg)
            except Exception as exc:
                raise LavaGraphError(f"Lava failed to compile the generated graph "
                                     f"({type(exc).__name__}: {exc})") from exc
            while done < k:
                n = min(chunk, k - done)
                t0 = time.perf_counter()
                try:
                    anchor.run(condition=RunSteps(num_steps=n * epoch_len))
                except Exception as exc:
                    raise LavaGraphError(f"Lava failed while running the generated graph "
                                         f"({type(exc).__name__}: {exc})") from exc
                seconds += time.perf_counter() - t0
                done += n
                if progress is not None:
                    progress(done, k, seconds)
            result = self._read(procs, k, learn)
        finally:
            anchor.stop()
        result["seconds"] = seconds
        events = float(spikes.sum()) * lp.sizes[1]
        for layer in range(1, lp.depth):
            events += float(result["spikes_total"][layer - 1]) * lp.sizes[layer + 1]
        result["events"] = events
        self.events += events
        return result

    def _read(self, procs: dict, k: int, learn: bool) -> dict:
        lp = self.lp
        out: dict[str, Any] = {"pred": np.asarray(procs[f"L{lp.depth}"].pred.get())[:k]
                               .astype(int)}
        out["counts"] = [np.asarray(procs[f"L{layer}"].counts.get())
                         for layer in range(1, lp.depth + 1)]
        out["spikes_total"] = [float(np.asarray(procs[f"L{layer}"].spikes_total.get()).sum())
                               for layer in range(1, lp.depth + 1)]
        if learn:
            weights = {}
            for g in lp.groups:
                w = np.asarray(procs[f"W{g.layer}"].weights.get(), dtype=np.float64)
                self.net.state[FORWARD][g.layer]["w"] = w * g.weight_step
                weights[g.layer] = w
            out["weights_lsb"] = weights
        return out

    # -- conveniences ---------------------------------------------------------------------------
    def learn(self, spikes: np.ndarray, targets: np.ndarray, **kw: Any) -> dict:
        return self.run(spikes, targets, learn=True, **kw)

    def predict(self, spikes: np.ndarray, **kw: Any) -> np.ndarray:
        return self.run(spikes, None, learn=False, **kw)["pred"]


# ----------------------------------------------------------------------------------------------
# Training (CLI)


def train(rule: Rule, *, dataset: str = "mnist", hidden: tuple[int, ...] = (100,),
          epochs: int = 1, samples: int | None = 1000, test_samples: int | None = 1000,
          config: SpikingConfig | None = None, tag: str = "fixed_pt", seed: int = 0,
          options: LavaOptions | None = None, allow_nonlocal: bool = False,
          progress: bool = True, log=sys.stderr) -> dict:
    """Online (batch 1) training on the generated Lava graph; a JSON-ready result.

    Test accuracy is measured on an inference graph (``Dense`` + NeuroLIF) with the learned
    weights, on the first ``test_samples`` test images (Lava's Python simulation runs about a
    thousand steps per second here, so the full 10k test set takes minutes).
    """
    from neurolocal.data import load_dataset

    cfg = config or SpikingConfig()
    if epochs < 1:
        raise NeurolocalError(f"--epochs must be >= 1, got {epochs}")
    train_set = load_dataset(dataset, "train", limit=samples, verbose=progress)
    test_set = load_dataset(dataset, "test", limit=test_samples, verbose=progress)
    n_classes = int(train_set.y.max()) + 1
    net = build_mlp([train_set.x.shape[1], *hidden, n_classes], rule, seed=seed)
    runner = LavaRunner(net, cfg, tag=tag, options=options, allow_nonlocal=allow_nonlocal)
    eye = np.eye(n_classes)
    rng = np.random.default_rng(seed)
    history, seconds, events = [], 0.0, 0.0
    wall0 = time.perf_counter()

    def show(done: int, total: int, secs: float) -> None:
        if progress:
            print(f"\r  lava {tag}: {done}/{total} samples, {secs:.1f} s "
                  f"({done / max(secs, 1e-9):.1f} samples/s)", end="", file=log, flush=True)

    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(train_set.x))
        x, y = np.asarray(train_set.x)[order], train_set.y[order]
        spikes = np.moveaxis(encode_input(x, cfg, seed=rng), 0, 1)
        res = runner.learn(spikes, eye[y], chunk=max(1, min(100, len(x))), progress=show)
        if progress:
            print(file=log)
        seconds += res["seconds"]
        events += res["events"]
        train_acc = 100.0 * float((res["pred"] == y).mean())
        if not all(np.isfinite(runner.net.state[FORWARD][g.layer]["w"]).all()
                   for g in runner.lp.groups):
            from neurolocal.errors import DivergenceError
            raise DivergenceError(f"Lava training of rule {rule.name!r} diverged in epoch "
                                  f"{epoch}: lower lr with --set lr=...")
        xt = np.asarray(test_set.x)
        test_spikes = np.moveaxis(encode_input(xt, cfg, seed=rng), 0, 1)
        pred = runner.predict(test_spikes, chunk=max(1, min(250, len(xt))))
        acc = 100.0 * float((pred == test_set.y).mean())
        history.append({"epoch": epoch, "test_accuracy": acc, "train_accuracy_online": train_acc,
                        "seconds": seconds})
        if progress:
            print(f"  epoch {epoch}: online train {train_acc:.2f}%, test {acc:.2f}% "
                  f"({seconds:.1f} s learning)", file=log, flush=True)
    return {"rule": rule.name, "target": TARGET, "tag": tag, "dataset": dataset,
            "test_accuracy": history[-1]["test_accuracy"], "epochs": epochs,
            "seconds": seconds, "wall_seconds": time.perf_counter() - wall0,
            "samples": len(train_set.x), "test_samples": len(test_set.x),
            "timesteps": cfg.timesteps, "epoch_steps": runner.lp.epoch_len,
            "hidden": list(hidden), "batch_size": 1, "history": history,
            "synaptic_events": events,
            "synaptic_events_per_second": events / max(seconds, 1e-9),
            "lr": runner.lp.spiking.globals.get("lr"), "data_source": train_set.source}


def train_from_args(args) -> dict:
    """``neurolocal train --spiking --target lava``: online training on Lava (fixed_pt)."""
    from .snntorch_target import rule_from_args, spiking_config_from_args

    rule = rule_from_args(args)
    cfg = spiking_config_from_args(args)
    quiet = bool(getattr(args, "json", False))
    if getattr(args, "batch_size", None) not in (1, None) and not quiet:
        print("neurolocal train --spiking --target lava: Lava learns strictly online (one "
              f"learning epoch per sample); --batch-size {args.batch_size} is ignored",
              file=sys.stderr)
    tag = getattr(args, "lava_tag", None) or "fixed_pt"
    samples = args.samples if args.samples is not None else 1000
    return train(rule, dataset=args.dataset, hidden=tuple(args.hidden), epochs=args.epochs,
                 samples=samples, test_samples=getattr(args, "test_samples", None) or 1000,
                 config=cfg, tag=tag, seed=args.seed,
                 allow_nonlocal=bool(getattr(args, "allow_nonlocal", False)),
                 progress=not quiet)


# ----------------------------------------------------------------------------------------------
# Rule x target table and throughput


def lowering_table(names: list[str] | None = None) -> list[dict]:
    """For each built-in rule: does it lower to Lava (locally / with allow_nonlocal)?"""
    from neurolocal.errors import LocalityError
    from neurolocal.rules import builtin_names, get_rule

    rows = []
    for rule_name in names or builtin_names():
        rule = get_rule(rule_name)
        row = {"rule": rule_name}
        for mode, allow in (("local", False), ("allow_nonlocal", True)):
            try:
                lower_to_loihi(rule, sizes=(20, 10, 3), allow_nonlocal=allow)
                row[mode] = "ok"
            except LocalityError as exc:
                row[mode] = "refused: not local (" + ", ".join(
                    sorted({v.kind for v in exc.report.violations})) + ")"
            except LoweringError as exc:
                row[mode] = f"LoweringError: {exc}"
        rows.append(row)
    return rows


def _handwritten_graph(weights: list[np.ndarray], biases: list[np.ndarray | None],
                       data: np.ndarray, vth: list[float], tag: str, rules: list | None = None):
    """A plain Lava graph for the same network, written by hand from stock processes.

    ``RingBuffer -> (Dense | LearningDense) -> LIF`` per layer; the first layer's bias is an
    always-on input row, deeper layers' biases are ``bias_mant`` (<< 6 in fixed point, as the
    LIF adds it to v after the input's shift). ``rules``: one Lava learning rule per layer
    (then ``LearningDense``; stock LIFs send no post traces, so the engine sees y = 0).
    """
    from lava.proc.dense.process import Dense, LearningDense
    from lava.proc.io.source import RingBuffer
    from lava.proc.lif.process import LIF
    from lava.utils.weightutils import SignMode

    src = RingBuffer(data=data)
    prev, procs = src.s_out, [src]
    for layer, w in enumerate(weights, start=1):
        if rules is None:
            dense = Dense(weights=w, sign_mode=SignMode.MIXED)
        else:
            dense = LearningDense(weights=w, sign_mode=SignMode.MIXED,
                                  learning_rule=rules[layer - 1])
        bias = biases[layer - 1]
        kw: dict[str, Any] = {}
        if bias is not None:
            kw = {"bias_mant": bias, "bias_exp": 6} if tag == "fixed_pt" else {"bias_mant": bias}
        lif = LIF(shape=(w.shape[0],), du=4095 if tag == "fixed_pt" else 1.0, dv=0,
                  vth=vth[layer - 1], **kw)
        prev.connect(dense.s_in)
        dense.a_out.connect(lif.a_in)
        prev = lif.s_out
        procs += [dense, lif]
    return procs


def _handwritten_dfa_graph(runner: LavaRunner, spikes: np.ndarray, targets: np.ndarray,
                           rules: list, tag: str) -> list:
    """DFA on Lava written by hand: RingBuffers, LearningDense, HandDFANeuron.

    The LearningDense is :class:`.lava_procs.procs.EpochLearningDense` (Lava's, plus the
    per-epoch pre-trace reset that one-sample learning epochs need and Lava's stock class
    lacks: without it x1 would count spikes across samples), so both graphs learn the same.
    """
    from lava.proc.dense.process import Dense
    from lava.proc.io.source import RingBuffer
    from lava.utils.weightutils import SignMode

    from .lava_procs.handwritten import HandDFANeuron
    from .lava_procs.procs import EpochLearningDense

    lp, cfg = runner.lp, runner.cfg
    k, t, steps = spikes.shape[0], lp.timesteps, lp.epoch_len
    data = np.zeros((lp.sizes[0] + 1, k * steps))
    tdata = np.zeros((lp.sizes[-1], k * steps))
    for i in range(k):
        data[:-1, i * steps + 1:i * steps + 1 + t] = spikes[i].T
        data[-1, i * steps:i * steps + t] = 1
        tdata[:, i * steps + t] = targets[i]
    src, tsrc = RingBuffer(data=data), RingBuffer(data=tdata)
    procs, prev, neurons = [src, tsrc], src.s_out, []
    fixed = tag == "fixed_pt"
    for layer in range(1, lp.depth + 1):
        g = lp.group(layer)
        fbg = next((f for f in lp.feedback if f.layer == layer), None)
        u_unit = g.weight_step / 64 if fixed else g.weight_step
        params = {"T": t, "L": steps, "n": lp.sizes[layer], "output": layer == lp.depth,
                  "layer": layer,
                  "q": g.channel_gain["y2"], "quantum": lp.payload_quantum,
                  "fb_unit": fbg.weight_step * lp.payload_quantum if fbg else 0.0,
                  "u_unit": u_unit, "vth_float": cfg.vth}
        vth = round(cfg.vth / g.weight_step) if fixed else cfg.vth / g.weight_step
        neuron = HandDFANeuron(shape=(lp.sizes[layer],), du=4095 if fixed else 1.0, dv=0,
                               vth=vth, params=params)
        dense = EpochLearningDense(weights=runner._weights_lsb(layer),
                                   sign_mode=SignMode.MIXED, learning_rule=rules[layer - 1])
        prev.connect(dense.s_in)
        dense.a_out.connect(neuron.a_in)
        neuron.s_out_y2.connect(dense.s_in_y2)
        neuron.s_out_y3.connect(dense.s_in_y3)
        prev = neuron.s_out
        procs += [dense, neuron]
        neurons.append(neuron)
    tsrc.s_out.connect(neurons[-1].target_in)
    for fb in lp.feedback:
        b = feedback_matrix(fb.plan, np.asarray(runner.net.state[fb.plan.name][fb.layer]["w"],
                                                dtype=np.float64))
        b = _even_grid(b, fb.weight_step) if fixed else b / fb.weight_step
        dense = Dense(weights=b, num_message_bits=lp.options.payload_bits,
                      sign_mode=SignMode.MIXED)
        neurons[fb.source_layer - 1].s_fb_out.connect(dense.s_in)
        dense.a_out.connect(neurons[fb.layer - 1].a_third_factor_in)
        procs.append(dense)
    return procs


def _time_graph(procs: list, steps: int, tag: str) -> float:
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg

    try:
        procs[0].create_runtime(run_cfg=Loihi2SimCfg(select_tag=tag))
        t0 = time.perf_counter()
        procs[0].run(condition=RunSteps(num_steps=steps))
        return time.perf_counter() - t0
    finally:
        procs[0].stop()


def throughput_benchmark(net: Network, spikes: np.ndarray, targets: np.ndarray, *,
                         tag: str = "fixed_pt", config: SpikingConfig | None = None,
                         repeats: int = 3) -> dict:
    """Synaptic events/s of the generated graphs next to hand-written plain Lava graphs.

    Same network, input spikes, epoch layout and number of steps, run one after the other in
    this process, compile time excluded, each pair ``repeats`` times interleaved (the best
    time of each counts: the machine is shared). Events are the forward synaptic events of
    this workload (pre spikes x fan-out, counted on the generated graph), so events/s
    compares wall time per sample. Pairs: the generated inference graph (EpochSource ->
    Dense -> NeuroLIF) against RingBuffer -> Dense -> LIF; the generated learning graph
    (EpochLearningDense, NeuroLIF with the error path, feedback Dense, teaching signal)
    against RingBuffer -> LearningDense (the same rule strings) -> LIF, which learns nothing
    useful (stock LIFs send no third factor) but runs the same learning engine; and, for
    dfa-shaped rules, against the same learning graph written by hand (RingBuffers,
    LearningDense with the pre-trace reset, a hand-coded DFA neuron:
    ``lava_procs.handwritten``), the like-for-like
    comparison of generated against hand-written code.
    """
    from .lava_compat import ensure_lava_importable

    ensure_lava_importable()
    from lava.magma.core.learning.learning_rule import Loihi3FLearningRule

    runner = LavaRunner(net, config, tag=tag)
    lp = runner.lp
    k, t = spikes.shape[0], lp.timesteps
    w0 = {g.layer: np.array(runner.net.state[FORWARD][g.layer]["w"]) for g in lp.groups}
    weights, biases, vth = [], [], []
    for layer in range(1, lp.depth + 1):
        w = runner._weights_lsb(layer)
        weights.append(w if layer == 1 else w[:, :-1])
        biases.append(None if layer == 1 else w[:, -1])
        g = lp.group(layer)
        vth.append(round(lp.config.vth / g.weight_step) if tag == "fixed_pt"
                   else lp.config.vth / g.weight_step)

    def layout(steps: int) -> np.ndarray:
        data = np.zeros((lp.sizes[0] + 1, k * steps))
        for i in range(k):
            data[:-1, i * steps + 1:i * steps + 1 + t] = spikes[i].T
            data[-1, i * steps:i * steps + t] = 1
        return data

    rules = []
    for g in lp.groups:
        tp = lp.trace_params(tag, g.layer)
        ys = {n: tp.pop(f"{n}_tau") for n in TRACE_NAMES}
        rule = Loihi3FLearningRule(**g.strings(tag), **tp)
        for n, tau in ys.items():
            setattr(rule, f"{n}_tau", tau)
        rules.append(rule)
    # the hand-written DFA neuron covers rules shaped like dfa: output error to every hidden
    # layer, one signed post factor in y2/y3
    dfa = bool(lp.feedback) and all(f.plan.scope == "output" for f in lp.feedback) and \
        len(lp.post_factors) == 1 and lp.post_factors[0].traces == ("y2", "y3")
    best: dict[str, float] = {}
    events = {"inference": 0.0, "learning": 0.0, "dfa": 0.0}
    for _ in range(max(1, repeats)):
        for g in lp.groups:  # every learning run starts from the same weights
            runner.net.state[FORWARD][g.layer]["w"] = w0[g.layer].copy()
        inf = runner.run(spikes, None, learn=False)
        events["inference"] = inf["events"]
        secs = {"generated_inference": inf["seconds"]}
        secs["handwritten_inference"] = _time_graph(
            _handwritten_graph(weights, biases, layout(t + 1), vth, tag), k * (t + 1), tag)
        lrn = runner.run(spikes, targets, learn=True)
        events["learning"] = events["dfa"] = lrn["events"]
        secs["generated_learning"] = lrn["seconds"]
        secs["handwritten_learning"] = _time_graph(
            _handwritten_graph(weights, biases, layout(lp.epoch_len), vth, tag, rules),
            k * lp.epoch_len, tag)
        if dfa:
            secs["handwritten_dfa"] = _time_graph(
                _handwritten_dfa_graph(runner, spikes, targets, rules, tag),
                k * lp.epoch_len, tag)
        for key, v in secs.items():
            best[key] = min(best.get(key, math.inf), v)
    out: dict[str, Any] = {"samples": k, "timesteps": t, "tag": tag, "sizes": list(lp.sizes),
                           "repeats": repeats, "events": events}
    for key, v in best.items():
        kind = key.split("_")[1]
        out[key] = {"seconds": v, "events_per_s": events[kind] / v}
    for kind in ("inference", "learning"):
        out[f"ratio_{kind}"] = out[f"generated_{kind}"]["events_per_s"] / \
            out[f"handwritten_{kind}"]["events_per_s"]
    if dfa:
        out["ratio_learning_vs_handwritten_dfa"] = \
            out["generated_learning"]["events_per_s"] / out["handwritten_dfa"]["events_per_s"]
    for g in lp.groups:  # leave the network as it was
        runner.net.state[FORWARD][g.layer]["w"] = w0[g.layer]
    return out


# ----------------------------------------------------------------------------------------------
# Benchmarks (python -m neurolocal.hardware.lava_target ...)


def _bench_dfa(args) -> dict:
    """DFA on a training subset: Lava fixed_pt (and floating_pt) beside snntorch, batch 1."""
    from neurolocal.rules import get_rule

    rule = get_rule(args.rule).with_globals(lr=args.lr)
    cfg = SpikingConfig(timesteps=args.timesteps)
    rows: dict[str, Any] = {}
    if "snntorch" in args.targets:
        import torch

        from .snntorch_target import train as snn_train

        torch.set_num_threads(1)
        r = snn_train(rule, hidden=tuple(args.hidden), epochs=args.epochs, batch_size=1,
                      samples=args.samples, test_samples=args.test_samples, config=cfg,
                      seed=args.seed, progress=False)
        r.pop("program", None)
        rows["snntorch"] = r
    for tag in TAGS:
        if f"lava-{tag}" in args.targets:
            rows[f"lava-{tag}"] = train(rule, hidden=tuple(args.hidden), epochs=args.epochs,
                                        samples=args.samples, test_samples=args.test_samples,
                                        config=cfg, tag=tag, seed=args.seed, progress=True)
    print(f"{args.rule} {'-'.join(map(str, [784, *args.hidden, 10]))}, T = {args.timesteps}, "
          f"lr = {args.lr}, batch 1, {args.samples} training / {args.test_samples} test "
          f"images, {args.epochs} pass(es)")
    print(f"{'target':<18} {'test acc %':>10} {'learn s':>9} {'samples/s':>10} {'events/s':>10}")
    for name, r in rows.items():
        n = r["samples"] * r["epochs"]
        print(f"{name:<18} {r['test_accuracy']:>10.1f} {r['seconds']:>9.1f} "
              f"{n / r['seconds']:>10.1f} {r['synaptic_events_per_second']:>10.3g}")
    return rows


def _bench_throughput(args) -> dict:
    from neurolocal.data import load_dataset
    from neurolocal.rules import get_rule

    cfg = SpikingConfig(timesteps=args.timesteps)
    ds = load_dataset("mnist", "train", limit=args.samples, verbose=False)
    rule = get_rule(args.rule).with_globals(lr=args.lr)
    net = build_mlp([784, *args.hidden, 10], rule, seed=args.seed)
    x = np.asarray(ds.x)
    spikes = np.moveaxis(encode_input(x, cfg, seed=np.random.default_rng(args.seed)), 0, 1)
    res = throughput_benchmark(net, spikes, np.eye(10)[ds.y], tag=args.tag, config=cfg,
                               repeats=args.repeats)
    print(f"throughput, {args.rule} {'-'.join(map(str, res['sizes']))}, T = {args.timesteps}, "
          f"{args.samples} samples, {args.tag}, best of {args.repeats}")
    print(f"{'graph':<26} {'seconds':>8} {'events/s':>10}")
    for key in ("generated_inference", "handwritten_inference", "generated_learning",
                "handwritten_learning", "handwritten_dfa"):
        if key in res:
            print(f"{key:<26} {res[key]['seconds']:>8.2f} {res[key]['events_per_s']:>10.3g}")
    for key in ("ratio_inference", "ratio_learning", "ratio_learning_vs_handwritten_dfa"):
        if key in res:
            print(f"{key:<34} {res[key]:.2f}")
    return res


def main(argv: list[str] | None = None) -> int:
    """``python -m neurolocal.hardware.lava_target {dfa,throughput} ...`` (docs/lava.md)."""
    import argparse
    import json

    p = argparse.ArgumentParser(prog="python -m neurolocal.hardware.lava_target",
                                description=main.__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("dfa", "throughput"):
        s = sub.add_parser(name)
        s.add_argument("--rule", default="dfa")
        s.add_argument("--hidden", type=int, nargs="+", default=[100])
        s.add_argument("--timesteps", type=int, default=20)
        s.add_argument("--lr", type=float, default=0.02)
        s.add_argument("--seed", type=int, default=0)
        s.add_argument("--json", help="also write the results to this file")
    d = sub.choices["dfa"]
    d.add_argument("--samples", type=int, default=1000)
    d.add_argument("--test-samples", type=int, default=1000)
    d.add_argument("--epochs", type=int, default=1)
    d.add_argument("--targets", nargs="+",
                   default=["snntorch", "lava-floating_pt", "lava-fixed_pt"])
    t = sub.choices["throughput"]
    t.add_argument("--samples", type=int, default=100)
    t.add_argument("--tag", default="fixed_pt", choices=TAGS)
    t.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    print("command: python -m neurolocal.hardware.lava_target " +
          " ".join(argv if argv is not None else sys.argv[1:]))
    res = _bench_dfa(args) if args.cmd == "dfa" else _bench_throughput(args)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=1, default=float)
    return 0


if __name__ == "__main__":
    sys.exit(main())

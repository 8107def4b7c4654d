"""Spiking execution of a rule: the target-neutral part every spiking backend shares.

A rule that runs in rate mode runs on a spiking network by *re-reading its symbols*: the
rule text is not changed, its compartments get spiking meanings (``pre.r`` is the pre
neuron's spike rate over the learning epoch, ``post.dphi`` a surrogate derivative, ...) and
its ``on W``/``on B`` updates become a per-epoch synaptic update program. This module holds

* :class:`SpikingConfig` -- the neuron, trace, encoding and learning-epoch parameters, kept
  in one place so every target (snntorch, Brian2, Lava) reads the same numbers;
* :data:`SYMBOLS` -- the mapping from rate-mode compartments to spiking quantities;
* :func:`lower_rule` -- the rule lowered into a :class:`SpikingProgram` (data: compartment
  equations, feedback projections, update terms), or a :class:`~neurolocal.errors.LoweringError`
  naming the statement and why a spiking target cannot run it;
* :func:`describe_program` -- the program as the comment every target's printout starts with.

:mod:`.reference` runs these semantics step by step in numpy: the oracle of every target.

The semantics (written up in docs/spiking.md):

*Time* is discrete (dt = 1 step). One sample is shown for ``T`` steps = one learning epoch;
neuron state and traces are reset between samples.

*Neurons* are Lava's current-based LIF: ``u = (1-du) u + I; v = (1-dv) v + u; spike if
v > vth; v = 0 after a spike`` (IF when ``dv = 0``). ``I`` is the input of this step: the
weighted spikes the layer below emitted in the *previous* step (one step of synaptic delay per
layer, as in Lava's ``Dense`` and in Brian2's schedule) plus the bias: the weight of a synapse
from an always-on neuron of the layer below, which fires at every step of that layer's window
(steps l-1 .. T-1 for layer l), so its spike count over the window is the window and its rate
exactly 1 on every target, Lava's learning engine included.

*Traces*: each neuron keeps ``tr_k <- d_k tr_k + s`` (``d_k = exp(-1/tau_k)``, +1 per spike).
The sample reaches layer l at step l, so layer l's *window* is its last T - l steps; rules read
traces normalised to rates over it, ``tr_k (1-d_k)/(1-d_k^(T-l))`` (spike count / (T - l)
when ``tau_k = inf``), so a trace means the same as in rate mode, where every trace equals
``r``, and a neuron firing at every step of its window has rate 1. In expressions the
constant ``T`` is the layer's window.

*The learning epoch* ends after step T: compartments are read from the state, the output
equations run (``err = r - target``), the error travels down the feedback projections into each
hidden neuron's error compartment (a graded third factor, once per epoch), the hidden equations
run, and every update term is evaluated once, averaged over the batch, and applied (plain SGD,
or per-synapse momentum). A rule with relax phases settles between the equations and the
updates (:mod:`.relax`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import sympy

from neurolocal.errors import LoweringError, NeurolocalError
from neurolocal.feedback_weights import evaluate_weights
from neurolocal.network import Network
from neurolocal.rule import FORWARD, FeedbackDecl, Rule
from neurolocal.symbols import OTHER_NEURON_SCOPES, Ref, refs_in
from neurolocal.terms import Term, split_terms

from .noise import (
    SLOW_PREFIX,
    NoisePhase,
    NoiseSource,
    learning_epochs,
    noise_phases,
    noise_sources,
    reserved_names,
    rewrite_slow,
    slow_name,
)
from .relax import relax_plans, settling_feedback, split_dynamic
from .timed import check_timed, end_phases

__all__ = [
    "SYMBOLS", "SpikingConfig", "SpikingSymbol", "SpikingProgram", "CompartmentEq",
    "FeedbackPlan", "UpdatePlan", "lower_rule",
    "feedback_matrix", "describe_program", "require_dense",
]

SURROGATES = ("spiked", "boxcar")
RESETS = ("zero", "subtract")
ENCODINGS = ("poisson", "regular")
OPTIMISERS = ("sgd", "momentum")


# --------------------------------------------------------------------------------------
# Parameters


@dataclass(frozen=True)
class SpikingConfig:
    """Neuron, trace, input-encoding and learning-epoch parameters shared by every target.

    ``timesteps``: T, steps per sample = per learning epoch. ``du``/``dv``: current and
    voltage decay per step (Lava's LIF; ``du = 1``: the current is this step's input,
    ``dv = 0``: integrate-and-fire). ``vth``: threshold (spike if v > vth). ``reset``:
    ``"zero"`` (Lava's LIF: v = 0 in the step it spikes) or ``"subtract"`` (snntorch's
    default: vth is subtracted in the next step, so the rate is ~ drive / vth instead of a
    staircase).
    ``tau1/2/3``: trace time constants in steps (``inf``: a spike counter); trace 1 carries
    ``r``, ``x1`` and ``y1``, trace 2 ``x2``/``y2``, trace 3 ``y3``. ``surrogate``: what
    ``dphi`` means (``"spiked"``: the neuron spiked in this epoch, Loihi's y0 dependency;
    ``"boxcar"``: that, and its epoch-mean drive lay below threshold, i.e. it was not
    saturated). ``encoding``: pixel -> input spikes (``"poisson"``: Bernoulli per step with
    probability ``input_rate * x``; ``"regular"``: an IF encoder, deterministic).
    ``optimiser``: ``"sgd"`` (w += dw) or ``"momentum"`` (a per-synapse velocity).
    ``learning_epochs``: learning epochs per sample (None: 1, or 4 for a rule with private
    noise or slow(), see :mod:`.noise`); the neuron state runs on through a sample, the
    epoch's traces restart. ``noise_epochs``: noise epochs after every sample epoch (noise
    phases; rate mode runs one noise phase per step). ``tau_slow``: the time constant of
    slow(X) in steps (None: T, one sample).
    """

    timesteps: int = 20
    du: float = 1.0
    dv: float = 0.0
    vth: float = 1.0
    tau1: float = math.inf
    tau2: float = 5.0
    tau3: float = 20.0
    reset: str = "zero"
    surrogate: str = "boxcar"
    encoding: str = "poisson"
    input_rate: float = 1.0
    optimiser: str = "sgd"
    momentum: float = 0.9
    learning_epochs: int | None = None
    noise_epochs: int = 1
    tau_slow: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.timesteps, bool) or not isinstance(self.timesteps, int) \
                or self.timesteps < 1:
            raise LoweringError(f"timesteps must be an integer >= 1, got {self.timesteps!r} "
                                "(e.g. --timesteps 20)")
        for name in ("du", "dv"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise LoweringError(f"{name} is a decay fraction per step and must lie in "
                                    f"[0, 1], got {value!r}")
        if not self.vth > 0:
            raise LoweringError(f"vth must be > 0, got {self.vth!r}")
        for name in ("tau1", "tau2", "tau3"):
            if not getattr(self, name) > 0:
                raise LoweringError(f"{name} is a trace time constant in steps and must be "
                                    f"> 0 (inf for a spike counter), got {getattr(self, name)!r}")
        if self.reset not in RESETS:
            raise LoweringError(f"unknown reset {self.reset!r}: expected one of "
                                f"{', '.join(RESETS)}")
        if self.surrogate not in SURROGATES:
            raise LoweringError(f"unknown surrogate {self.surrogate!r}: expected one of "
                                f"{', '.join(SURROGATES)}")
        if self.encoding not in ENCODINGS:
            raise LoweringError(f"unknown encoding {self.encoding!r}: expected one of "
                                f"{', '.join(ENCODINGS)}")
        if not 0.0 <= self.input_rate <= 1.0:
            raise LoweringError(f"input_rate is a spike probability per step and must lie in "
                                f"[0, 1], got {self.input_rate!r}")
        if self.optimiser not in OPTIMISERS:
            raise LoweringError(f"spiking targets run a synapse-local optimiser: "
                                f"{' or '.join(OPTIMISERS)}, not {self.optimiser!r} (Adam "
                                "needs a division and a square root at every synapse)")
        if not 0.0 <= self.momentum < 1.0:
            raise LoweringError(f"momentum must lie in [0, 1), got {self.momentum!r}")
        for name in ("learning_epochs", "noise_epochs"):
            value = getattr(self, name)
            if value is None and name == "learning_epochs":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise LoweringError(f"{name} must be an integer >= 1, got {value!r}")
        if self.tau_slow is not None and not self.tau_slow > 0:
            raise LoweringError(f"tau_slow is a time constant in steps and must be > 0, got "
                                f"{self.tau_slow!r}")

    def decay(self, k: int) -> float:
        """Per-step decay factor of trace ``k`` (1, 2 or 3)."""
        tau = getattr(self, f"tau{k}")
        return 1.0 if math.isinf(tau) else math.exp(-1.0 / tau)

    def window(self, layer: int = 0, sub: int = 0, epochs: int = 1) -> int:
        """Steps of learning epoch ``sub`` (of ``epochs`` per sample) in which the sample has
        reached ``layer``: T - layer for one epoch per sample.

        Each projection delays by one step, so layer l first hears from the input at step l.
        """
        steps = self.timesteps // epochs
        start = sub * steps
        if start + steps <= layer:
            raise LoweringError(
                f"timesteps T = {self.timesteps} ({epochs} learning epoch(s) of {steps} steps) "
                f"is too short for a network with {layer} layers after the input: the sample "
                f"reaches layer {layer} only at step {layer}; use T > {layer} per learning "
                "epoch (more --timesteps, or fewer learning epochs)")
        return steps - max(0, layer - start)

    def gain(self, k: int, layer: int = 0, sub: int = 0, epochs: int = 1) -> float:
        """Factor that turns trace ``k`` of ``layer`` at the end of the epoch into a rate.

        A neuron spiking at every step of its window (see :meth:`window`) has rate 1.
        """
        d, t = self.decay(k), self.window(layer, sub, epochs)
        return 1.0 / t if d == 1.0 else (1.0 - d) / (1.0 - d ** t)

    def constants(self, layer: int = 0, sub: int = 0, epochs: int = 1) -> dict[str, float]:
        """The named constants the lowered expressions use for ``layer`` in learning epoch
        ``sub`` of ``epochs`` per sample (:data:`CONSTANTS`).

        ``T`` is the layer's window (T - layer steps with one epoch per sample), ``lay`` the
        layer index.
        """
        return {"T": float(self.window(layer, sub, epochs)), "vth": float(self.vth),
                "k1": self.gain(1, layer, sub, epochs), "k2": self.gain(2, layer, sub, epochs),
                "k3": self.gain(3, layer, sub, epochs), "d1": self.decay(1),
                "d2": self.decay(2), "d3": self.decay(3), "lay": float(layer)}

    def with_options(self, **options) -> SpikingConfig:
        """A copy with some fields replaced (unknown names are an error, not ignored)."""
        known = set(self.__dataclass_fields__)
        bad = sorted(set(options) - known)
        if bad:
            raise LoweringError(f"unknown spiking option(s) {', '.join(bad)}; options are "
                                f"{', '.join(sorted(known))}")
        return replace(self, **options)


#: Names of the constants in lowered expressions (bound by each target from the config).
CONSTANTS = ("T", "vth", "k1", "k2", "k3", "d1", "d2", "d3", "lay")
#: Raw per-neuron state every spiking target keeps besides u and v.
RAW_STATE = ("tr1", "tr2", "tr3", "spk", "asum")


# --------------------------------------------------------------------------------------
# Symbol mapping: rate-mode compartments -> spiking quantities


@dataclass(frozen=True)
class SpikingSymbol:
    """One compartment's spiking meaning: an expression over raw state and constants."""

    name: str
    expr: str
    meaning: str
    loihi: str


def _sym(name: str) -> sympy.Symbol:
    return sympy.Symbol(name, real=True)


#: What each built-in compartment becomes in spiking mode (``expr`` over :data:`RAW_STATE`
#: and :data:`CONSTANTS`; ``dphi`` depends on the surrogate, see :func:`symbol_exprs`).
SYMBOLS: dict[str, SpikingSymbol] = {s.name: s for s in (
    SpikingSymbol("r", "k1*tr1", "spike rate over the layer's window (T - layer steps): "
                  "trace 1 normalised (spike count / (T - layer) for tau1 = inf)",
                  "x1 (pre) / y1 (post), scale k1"),
    SpikingSymbol("x1", "k1*tr1", "pre trace 1, normalised (the same trace as r)", "x1"),
    SpikingSymbol("y1", "k1*tr1", "post trace 1, normalised (the same trace as r)", "y1"),
    SpikingSymbol("x2", "k2*tr2", "pre trace 2 (tau2), normalised", "x2"),
    SpikingSymbol("y2", "k2*tr2", "post trace 2 (tau2), normalised", "y2"),
    SpikingSymbol("y3", "k3*tr3", "post trace 3 (tau3), normalised", "y3"),
    SpikingSymbol("s", "spk", "1 if the neuron spiked in this epoch, else 0", "x0 / y0"),
    SpikingSymbol("a", "asum/T", "epoch-mean drive: the current u averaged over the layer's "
                  "window (rate mode: the pre-activation)",
                  "none (a post-neuron variable; 3F rule)"),
    SpikingSymbol("abar", "slow_a", "slow part of the drive, slow(a): the low-pass of a over "
                  "the sample's learning epochs (a itself with one learning epoch per sample)",
                  "a post trace with its own tau (neuron program)"),
    SpikingSymbol("dphi", "spk", "surrogate derivative: 'spiked' = spk (the ReLU-derivative "
                  "analogue); 'boxcar' = spk * [a < vth] (not saturated)",
                  "y0 ('spiked'); a 3F post factor ('boxcar')"),
    SpikingSymbol("err", "0 + feedback", "error compartment: 0 at the end of each epoch, then "
                  "the feedback projections add their weighted source compartments",
                  "third factor: y2/y3 of a Loihi3FLearningRule"),
    SpikingSymbol("target", "one-hot label", "teaching input of the output neurons, held for "
                  "the epoch", "none (delivered to the output neurons' error)"),
)}

MEASURED = ("r", "x1", "y1", "x2", "y2", "y3", "s", "a", "abar", "dphi")


def symbol_exprs(config: SpikingConfig, noise: tuple = ()) -> dict[str, sympy.Expr]:
    """Each measured compartment as a sympy expression over raw state and constants
    (``noise``: the private noise sources, each measured as its raw draw)."""
    tr1, tr2, tr3, spk, asum = (_sym(n) for n in RAW_STATE)
    k1, k2, k3, t_, vth = (_sym(n) for n in ("k1", "k2", "k3", "T", "vth"))
    a = asum / t_
    dphi = spk if config.surrogate == "spiked" else spk * sympy.Heaviside(vth - a)
    out = {"r": k1 * tr1, "x1": k1 * tr1, "y1": k1 * tr1, "x2": k2 * tr2, "y2": k2 * tr2,
           "y3": k3 * tr3, "s": spk, "a": a, "abar": a, "dphi": dphi}
    out.update({n.name: _sym(n.raw) for n in noise})
    return out


# --------------------------------------------------------------------------------------
# The lowered program (data)


@dataclass(frozen=True)
class CompartmentEq:
    """``target = expr`` at the end of the epoch; ``expr`` reads ``self.*`` and globals."""

    target: str
    expr: sympy.Expr
    text: str
    line: int = 0
    last: bool = False  # holds during an end phase: the sequence's last learning epoch only


@dataclass(frozen=True)
class FeedbackPlan:
    """A feedback projection: ``source`` compartment of the layer above (``scope='next'``),
    of the output layer (``'output'``), of the same layer (``'lateral'``) or of the layer
    below through the forward synapses (``'prev'``), weighted, added to ``target`` here.

    ``mode``: ``"fixed"`` (weights drawn once), ``"learned"`` (the rule updates them),
    ``"tied"`` (a function of the forward weights, copied every epoch: weight transport,
    only with ``allow_nonlocal``) or ``"forward"`` (``prev.X via W``: the forward synapses
    into this layer themselves, each reading its own weight).
    """

    name: str
    scope: str
    source: str
    target: str
    mode: str
    weights: sympy.Expr
    text: str
    line: int = 0


@dataclass(frozen=True)
class UpdatePlan:
    """``d<var> = sum(terms)`` on a projection, evaluated once per learning epoch."""

    projection: str
    var: str
    terms: tuple[Term, ...]
    expr: sympy.Expr
    text: str
    line: int = 0
    phase: str | None = None  # a noise phase's update (hardware.noise), else None


@dataclass(frozen=True)
class SpikingProgram:
    """A rule lowered to the spiking semantics: what runs at the end of each learning epoch.

    Targets print and execute this, never the rule by name. ``measured`` lists the
    compartments read from spiking state (their expressions in ``symbols``), ``computed``
    those the program writes (error compartments, rule equations; 0 until written), ``raw``
    the per-neuron state the measured ones need.
    """

    rule: Rule
    config: SpikingConfig
    globals: dict[str, float]
    symbols: dict[str, sympy.Expr]
    measured: tuple[str, ...]
    computed: tuple[str, ...]
    raw: tuple[str, ...]
    output_eqs: tuple[CompartmentEq, ...]
    hidden_eqs: tuple[CompartmentEq, ...]
    feedback: tuple[FeedbackPlan, ...]
    updates: tuple[UpdatePlan, ...]
    notes: tuple[str, ...] = ()
    state_vars: dict[str, tuple[str, ...]] = field(default_factory=dict)
    epochs: int = 1  # learning epochs per sample
    noise_sources: tuple[NoiseSource, ...] = ()
    slow_measured: tuple[str, ...] = ()  # slow(X) of measured X (after measuring)
    slow_computed: tuple[str, ...] = ()  # slow(X) of computed X (after the equations)
    slow_decay: float = 0.0  # per learning epoch
    noise_phases: tuple[NoisePhase, ...] = ()
    timed: bool = False  # a recurrent rule: traces per sequence, updated before w (.timed)
    relax: tuple = ()  # of relax.RelaxPlan: settling stretches, in declaration order

    @property
    def name(self) -> str:
        return self.rule.name

    @property
    def epoch_steps(self) -> int:
        """Steps per learning epoch (T with one learning epoch per sample)."""
        return self.config.timesteps // self.epochs

    def constants(self, layer: int, sub: int = 0) -> dict[str, float]:
        """The expressions' constants for ``layer`` in learning epoch ``sub`` of a sample."""
        return self.config.constants(layer, sub, self.epochs)

    @property
    def slow(self) -> tuple[str, ...]:
        return (*self.slow_measured, *self.slow_computed)

    @property
    def noise_projections(self) -> tuple[str, ...]:
        """Projections a noise phase updates."""
        return tuple(dict.fromkeys(u.projection for ph in self.noise_phases
                                   for u in ph.updates))

    def check_depth(self, depth: int) -> None:
        """Every layer must hear from the sample within the first learning epoch."""
        self.config.window(depth, 0, self.epochs)
        if self.noise_phases and self.config.timesteps < 2:
            raise LoweringError("a noise epoch needs T >= 2 steps (its drive arrives one step "
                                "after the noise-driven spikes)")

    def updates_for(self, projection: str) -> tuple[UpdatePlan, ...]:
        return tuple(u for u in self.updates if u.projection == projection)

    @property
    def learned_projections(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(u.projection for u in self.updates))

    def feedback_into(self) -> dict[str, tuple[FeedbackPlan, ...]]:
        """Feedback plans grouped by the compartment they add to (those delivered down or
        sideways; ``prev`` projections arrive bottom-up while settling, :mod:`.relax`)."""
        out: dict[str, list[FeedbackPlan]] = {}
        for fb in self.feedback:
            if fb.scope == "prev":
                continue
            out.setdefault(fb.target, []).append(fb)
        return {k: tuple(v) for k, v in out.items()}


def _where(line: int) -> str:
    return f" (line {line})" if line else ""


def _has(expr: sympy.Expr, name: str) -> bool:
    return any(isinstance(s, sympy.Symbol) and s.name == name for s in expr.free_symbols)


def lower_rule(rule: Rule, config: SpikingConfig | None = None, *,
               allow_nonlocal: bool = False, check_locality: bool = True) -> SpikingProgram:
    """Lower ``rule`` to the spiking semantics, or raise a LoweringError naming the statement.

    ``check_locality``: refuse a non-local rule (LocalityError) unless ``allow_nonlocal``;
    printing (``neurolocal compile``) passes False because the CLI has already checked.
    """
    if config is None and "recurrent" in rule.features():  # printed: row-by-row MNIST's shape
        from .timed import sequence_config
        config = sequence_config(SpikingConfig(), 28, 10)
    config = config or SpikingConfig()
    if check_locality and not allow_nonlocal:
        from neurolocal.locality import require_local
        require_local(rule)
    _check_globals(rule)
    _check_features(rule)
    timed = "recurrent" in rule.features()
    if timed:
        check_timed(rule)
    _check_functions(rule)
    _check_held_values(rule)
    sources = noise_sources(rule)
    eqs, ups, slow_refs = _rewritten(rule)
    reserved_names(rule, {r.name for r in slow_refs})
    eqs, dynamic = split_dynamic(eqs, rule)
    output_eqs = tuple(_compartment_eq(rule, eq, "output") for eq in eqs if eq.where == "output")
    hidden_eqs = tuple(_compartment_eq(rule, eq, "neuron") for eq in eqs if eq.where != "output")
    relax = relax_plans(rule, dynamic, output_eqs, hidden_eqs,
                        lambda eq, where: _compartment_eq(rule, eq, where))
    rates = tuple(e for plan in relax for e in (*plan.hidden_rates, *plan.output_rates))
    notes: list[str] = []
    plans = tuple(_feedback_plan(rule, fb, allow_nonlocal, notes) for fb in rule.feedback.values())
    updates = tuple(_update_plan(rule, u, sources, slow_refs) for u in ups)
    measured, raw, sym = _measured(config, output_eqs, (*hidden_eqs, *rates), plans, updates,
                                   sources)
    slow_m, slow_c = _slow_split(rule, slow_refs, measured, output_eqs, hidden_eqs)
    measured = tuple(dict.fromkeys([*measured, *(n for n in slow_m if n not in measured)]))
    computed = tuple(dict.fromkeys([*(fb.target for fb in rule.feedback.values()), "err",
                                    *(eq.target for eq in rule.output),
                                    *(eq.target for eq in rule.neuron)]))
    epochs = learning_epochs(rule, config, bool(slow_refs))
    steps = config.timesteps // epochs
    tau_slow = config.tau_slow if config.tau_slow is not None else float(config.timesteps)
    return SpikingProgram(
        rule=rule, config=config, globals=rule.scalar_globals(),
        symbols={n: sym[n] for n in measured}, measured=measured, computed=computed, raw=raw,
        output_eqs=output_eqs, hidden_eqs=hidden_eqs, feedback=plans, updates=updates,
        notes=tuple(notes), state_vars={p: tuple(rule.state_vars(p)) for p in rule.projections},
        epochs=epochs, noise_sources=sources, slow_measured=slow_m, slow_computed=slow_c,
        slow_decay=math.exp(-steps / tau_slow), noise_phases=noise_phases(rule, plans, config),
        timed=timed, relax=relax)


def _rewritten(rule: Rule):
    """The rule's equations and sample-epoch updates with slow(X) as compartments slow_X."""
    from dataclasses import replace as _replace

    found: set = set()
    eqs = []
    for eq in (*rule.output, *rule.neuron):
        expr, refs = rewrite_slow(eq.expr)
        found |= refs
        eqs.append(_replace(eq, expr=expr))
    ups = []
    for u in rule.updates:
        if u.phase is not None:
            continue  # noise-phase updates: hardware.noise
        expr, refs = rewrite_slow(u.expr)
        found |= refs
        ups.append(_replace(u, expr=expr))
    return eqs, ups, found


def _slow_split(rule: Rule, refs: set, measured, output_eqs, hidden_eqs
                ) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """slow(X) of measured X (known once measured) and of computed X (after the equations).

    An equation may read the slow part of a measured compartment only: the equations run
    once per epoch, so the slow part of a compartment they compute exists after them.
    """
    names = {r.name for r in refs}
    computed_names = {e.target for e in (*output_eqs, *hidden_eqs)} | \
        {fb.target for fb in rule.feedback.values()}
    for eq in (*output_eqs, *hidden_eqs):
        for ref in refs_in(eq.expr):
            if ref.name.startswith(SLOW_PREFIX) and ref.name[len(SLOW_PREFIX):] in \
                    computed_names:
                raise LoweringError(
                    f"rule {rule.name}: {eq.target} = {eq.text}{_where(eq.line)} reads "
                    f"slow({ref.name[len(SLOW_PREFIX):]}), the slow part of a compartment the "
                    "equations compute: in spiking mode it exists after the equations ran; read "
                    "it in an update, or take the slow part of a measured compartment (a, r)")
    slow_m = tuple(sorted(n for n in names if n not in computed_names))
    slow_c = tuple(sorted(n for n in names if n in computed_names))
    for n in slow_m:
        if n not in MEASURED and n not in measured:
            raise LoweringError(f"rule {rule.name}: slow({n}) reads a compartment that no "
                                "equation computes and spiking targets do not measure")
    return slow_m, slow_c


def step_globals(rule: Rule, projection: str = FORWARD) -> tuple[str, ...]:
    """The globals that scale every term of ``projection``'s sample-epoch updates: its step
    size (``lr`` for ``dw = -lr * post.delta * pre.r - lr * wd * syn.w``), found from the
    update's form, not its name."""
    common: set[str] | None = None
    timed = "recurrent" in rule.features()  # eligibility traces take no step
    for u in rule.updates:
        if u.projection != projection or u.phase is not None or (timed and u.var != "w"):
            continue
        for term in split_terms(u.expr):
            names = {Ref.of(s).name for s in sympy.sympify(term.coef).free_symbols
                     if Ref.of(s).scope == "glob"}
            common = names if common is None else common & names
    return tuple(sorted(common or ()))


def sample_epochs(rule: Rule, config: SpikingConfig) -> int:
    """Learning epochs per sample for ``rule`` under ``config`` (as :func:`lower_rule`'s; 1
    where it cannot lower: lowering then says why)."""
    try:
        return learning_epochs(rule, config, bool(_rewritten(rule)[2]))
    except NeurolocalError:
        return 1


def _check_globals(rule: Rule) -> None:
    for g in rule.globals.values():
        if g.vector:
            raise LoweringError(
                f"rule {rule.name}: global vector {g.name!r}{_where(g.line)} has no spiking "
                "counterpart: a vector broadcast to every synapse is no synapse-local "
                "signal; deliver it through a feedback projection instead")
        if g.value is None:
            raise LoweringError(f"rule {rule.name}: global {g.name!r}{_where(g.line)} has no "
                                "default value; give one (global NAME = VALUE) or --set it")


def _check_held_values(rule: Rule) -> None:
    """Refuse ``x@phase`` reads: spiking targets run one kind of epoch."""
    items = [(f"{eq.where} {eq.target} = {eq.text}", eq.line, refs_in(eq.expr))
             for eq in (*rule.output, *rule.neuron)]
    items += [(f"on {u.projection}: d{u.var} = {u.text}", u.line, u.reads) for u in rule.updates]
    for what, line, refs in items:
        for ref in refs:
            if ref.phase:
                raise LoweringError(f"rule {rule.name}: {what}{_where(line)} reads {ref}, a value "
                                    f"held from phase {ref.phase}: spiking targets do not "
                                    "hold values from a phase yet; read the compartment "
                                    "itself (updates read its relaxed value)")


def _compartment_eq(rule: Rule, eq, where: str) -> CompartmentEq:
    """An output or hidden equation the epoch program runs, checked for what spiking allows."""
    name = rule.name
    phase = getattr(eq, "phase", None)
    last = phase in end_phases(rule)
    if phase and not last and getattr(rule.phases.get(phase), "kind", None) != "relax":
        raise LoweringError(f"rule {name}: {where} {eq.target} during {phase} = "
                            f"{eq.text}{_where(eq.line)}: spiking targets run equations "
                            "during end and relax phases only")
    for ref in refs_in(eq.expr):
        if ref.scope in OTHER_NEURON_SCOPES:
            via = [fb.name for fb in rule.feedback.values()
                   if fb.source.scope == ref.scope and fb.source.name == ref.name]
            hint = (f"; feedback {via[0]} already carries it into "
                    f"{rule.feedback[via[0]].target}") if via else \
                f"; declare feedback NAME = {ref.scope}.{ref.name} -> COMPARTMENT via random"
            raise LoweringError(
                f"rule {name}: {where} {eq.target} = {eq.text}{_where(eq.line)} reads "
                f"{ref} directly: in spiking mode another neuron's value reaches this "
                f"neuron only through feedback synapses{hint}")
        if ref.scope == "self" and ref.name == "target" and where == "neuron":
            raise LoweringError(
                f"rule {name}: neuron {eq.target} = {eq.text}{_where(eq.line)} reads "
                "target, which exists at output neurons only")
    if eq.target in MEASURED or eq.target == "target":
        raise LoweringError(
            f"rule {name}: {where} {eq.target} = {eq.text}{_where(eq.line)} overwrites "
            f"{eq.target}, which spiking targets measure from the spikes "
            f"({SYMBOLS[eq.target].meaning}); compute a new compartment instead")
    return CompartmentEq(eq.target, eq.expr, eq.text, eq.line, last)


def _update_plan(rule: Rule, u, sources=(), slow_refs=()) -> UpdatePlan:
    """An update as sum-of-products terms, once every symbol it reads is known to exist."""
    available = set(SYMBOLS) | {eq.target for eq in (*rule.output, *rule.neuron)} | \
        {fb.target for fb in rule.feedback.values()} | {n.name for n in sources} | \
        {slow_name(r.name) for r in slow_refs}
    where = f"rule {rule.name}: on {u.projection}: d{u.var} = {u.text}{_where(u.line)}"
    for ref in u.reads:
        if ref.scope in ("pre", "post"):
            if ref.name == "target":
                raise LoweringError(f"{where} reads {ref}: the teaching input exists at "
                                    "output neurons only; read it through an output "
                                    "equation (output err = r - target)")
            if ref.name not in available:
                raise LoweringError(f"{where} reads {ref}, which no equation computes "
                                    "and spiking targets do not measure")
        elif ref.scope in OTHER_NEURON_SCOPES:
            raise LoweringError(f"{where}: term reads {ref}, the state of a neuron this "
                                "synapse does not connect (non-local: no spiking lowering)")
    return UpdatePlan(u.projection, u.var, tuple(split_terms(u.expr)), u.expr, u.text, u.line)


def _measured(config: SpikingConfig, output_eqs, hidden_eqs, plans, updates, sources=()
              ) -> tuple[tuple[str, ...], tuple[str, ...], dict[str, sympy.Expr]]:
    """The compartments read from spiking state, the raw state they need, their formulas."""
    reads: set[str] = {"r"}  # the output rate is always read (error, prediction)
    for eq in (*output_eqs, *hidden_eqs):
        reads |= {r.name for r in refs_in(eq.expr) if r.scope == "self"}
    reads |= {plan.source for plan in plans}
    for up in updates:
        reads |= {r.name for r in refs_in(up.expr) if r.scope in ("pre", "post")}
    sym = symbol_exprs(config, sources)
    reads |= {n[len(SLOW_PREFIX):] for n in reads if n.startswith(SLOW_PREFIX)}
    measured = tuple(n for n in (*MEASURED, *(s.name for s in sources)) if n in reads)
    raw = {"tr1", "spk", "asum"}
    for n in measured:
        raw |= {s.name for s in sym[n].free_symbols if s.name in RAW_STATE}
    return measured, tuple(n for n in RAW_STATE if n in raw), sym


#: What a spiking target cannot run (keys of ``Rule.features()``), and why.
UNSUPPORTED_FEATURES = {
    "hold": "values held from an earlier phase need phases; spiking targets run one kind of "
            "epoch",
}


def _check_features(rule: Rule) -> None:
    """Refuse, by name, every declared feature the spiking semantics has no counterpart for."""
    features = rule.features() if hasattr(rule, "features") else {}
    for ph in rule.phases.values():  # older Rule objects without features()
        kind = {"noise": "noise-phase"}.get(ph.kind, ph.kind)
        features.setdefault(kind, [])
        if ph.name not in features[kind]:
            features[kind].append(ph.name)
    for kind, names in features.items():
        if kind not in UNSUPPORTED_FEATURES:
            continue
        what = ", ".join(names) if names else kind
        where = ""
        if kind in ("relax", "noise-phase", "hold"):
            lines = [f"{n} = {rule.phases[n].kind}(...) (line {rule.phases[n].line})"
                     for n in names if n in rule.phases]
            users = [f"on {u.projection} during {u.phase} (line {u.line})"
                     for u in rule.updates if u.phase in names]
            where = "phase " + "; ".join(lines) + (f"; used by {', '.join(users)}"
                                                  if users else "")
        elif kind in ("forward-multiplex", "lateral"):
            where = "feedback " + "; ".join(
                f"{n} = {rule.feedback[n].source} -> {rule.feedback[n].target} "
                f"(line {rule.feedback[n].line})" for n in names if n in rule.feedback)
        elif kind == "noise-source":
            where = "noise " + what
        raise LoweringError(f"rule {rule.name}: {where or what}: {UNSUPPORTED_FEATURES[kind]}")


#: sympy functions every spiking printer spells (the rule language's elementwise functions).
SUPPORTED_FUNCTIONS = {"exp", "log", "tanh", "sign", "Abs", "sqrt", "Heaviside", "Max", "Min",
                       "slow"}


def _check_functions(rule: Rule) -> None:
    """Refuse a function the spiking printers cannot spell, naming the statement."""
    items = [(f"{eq.where} {eq.target} = {eq.text}", eq.line, eq.expr)
             for eq in (*rule.output, *rule.neuron)]
    items += [(f"on {u.projection}: d{u.var} = {u.text}", u.line, u.expr) for u in rule.updates]
    for what, line, expr in items:
        for node in sympy.preorder_traversal(expr):
            if isinstance(node, sympy.Function) and type(node).__name__ not in \
                    SUPPORTED_FUNCTIONS:
                raise LoweringError(
                    f"rule {rule.name}: {what}{_where(line)}: {type(node).__name__}(...) has "
                    "no spiking lowering (spiking targets spell exp, log, tanh, sign, abs, "
                    "sqrt, step, min, max)")


def _feedback_plan(rule: Rule, fb: FeedbackDecl, allow_nonlocal: bool,
                   notes: list[str]) -> FeedbackPlan:
    where = f"rule {rule.name}: feedback {fb.name} = {fb.source} -> {fb.target} via " \
            f"{fb.weights_text}{_where(fb.line)}"
    if fb.target in MEASURED or fb.target == "target":
        raise LoweringError(f"{where}: feeds {fb.target}, which spiking targets measure "
                            "from the spikes; feed an error compartment (err) instead")
    if fb.source.scope in ("lateral", "prev"):
        return settling_feedback(rule, fb, where, FeedbackPlan)
    if fb.source.scope not in ("next", "output"):
        raise LoweringError(f"{where}: spiking targets carry feedback from next.*, output.*, "
                            "lateral.* or prev.* (via W) only")
    if _has(fb.weights, "resample"):
        raise LoweringError(f"{where}: 'resample' redraws the feedback weights for every "
                            "batch; synapses keep their weights, so spiking targets do not "
                            "lower it (nearest: 'random', drawn once)")
    learned = rule.is_learned(fb.name)
    if _has(fb.weights, FORWARD):
        if learned:
            raise LoweringError(f"{where}: a feedback projection both tied to W and "
                                "learned by the rule has no single weight to keep")
        if fb.source.scope != "next":
            raise LoweringError(f"{where}: 'W' means the forward weights of the source layer, "
                                "which exist only for feedback from next.<compartment>")
        if not allow_nonlocal:
            raise LoweringError(f"{where}: the feedback weights read the forward weights "
                                "(weight/sign transport); spiking targets run it only with "
                                "allow_nonlocal (--allow-nonlocal), copying them every epoch")
        notes.append(f"feedback {fb.name} is tied to the forward weights ({fb.weights_text}): "
                     "copied from W at every epoch end -- weight transport, not local")
        mode = "tied"
    else:
        mode = "learned" if learned else "fixed"
    return FeedbackPlan(fb.name, fb.source.scope, fb.source.name, fb.target, mode,
                        fb.weights, fb.weights_text, fb.line)


def feedback_matrix(plan: FeedbackPlan, stored: Any, w_next: Any = None, xp: Any = np) -> Any:
    """The weights of ``plan`` as its expression defines them (n_target x n_source).

    ``stored``: the projection's stored matrix (the ``random`` draw, sparsity applied);
    ``w_next``: forward weights of the layer above without bias, (n_source, n_target),
    needed for tied feedback. Works on numpy arrays and torch tensors.
    """
    if plan.mode == "learned":
        return stored

    return evaluate_weights(
        plan.weights, name=plan.name, text=plan.text, stored=stored, xp=xp,
        forward=None if w_next is None else (lambda: w_next), where="on a spiking target")


# --------------------------------------------------------------------------------------
# Printing (shared by compile_text of every target)


def describe_program(program: SpikingProgram) -> list[str]:
    """Target-neutral description of the program as comment lines (without '# ')."""
    from .describe import describe

    return describe(program)


def require_dense(net: Network, target: str, *, recurrent: bool = False) -> None:
    """Spiking targets lower dense layers (and recurrent ones where ``recurrent``); a conv or
    recurrent net gets an error naming it (conv nets: :func:`.conv_spiking.conv_refusal`)."""
    if getattr(net, "recurrent", None) and not recurrent:
        raise LoweringError(
            f"the {target} target runs feed-forward layers only; layer {min(net.recurrent)} of "
            "this network is recurrent (R): recurrent networks run in rate mode (--target "
            "numpy|torch) and, spiking, on snntorch and brian2")
    if getattr(net, "convs", None):
        from .conv_spiking import conv_refusal

        raise LoweringError(conv_refusal(net, target))

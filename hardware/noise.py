"""Noise and slow parts in the spiking program: noise phases, private noise sources, slow(X).

Three rule features that rate mode runs by drawing numbers get a spiking meaning here, shared
by every spiking target (semantics in docs/spiking.md):

* a **noise phase** (``phase mirror = noise(sigma=s)``, weight mirror, information alignment)
  becomes a second kind of learning epoch: every hidden neuron is driven by its own noise
  current ``xi ~ N(0, s^2)`` (one draw per neuron and noise epoch, injected at every step)
  instead of the sample; the layer above receives the resulting spikes through its forward
  synapses and measures what arrives (its *drive*); the feedback synapses carry that drive
  down. The phase's updates read, at the noise-driven neuron, its noise (``post.r`` and every
  other measured compartment; ``dphi`` = 1) and what its feedback delivered (``post.err`` =
  B . drive), and at the layer above its drive (every measured compartment and the feedback
  source). ``noise_epochs`` of them follow every sample epoch.
* a **private noise source** (``noise xi = normal(sigma=s) -> r|a``, PAL) is a per-neuron
  noise current of every hidden neuron, drawn afresh in every learning epoch and injected at
  every step of it while learning: into the voltage (``-> r``: the rate moves, the measured
  drive ``a`` does not) or into the current (``-> a``: the drive moves too). The compartment
  ``xi`` is this epoch's value.
* ``slow(X)`` is a low-pass trace of X over the learning epochs of the current sample
  (normalised: ``sum_j d^(m-j) X_j / sum_j d^(m-j)`` over the epochs ``j <= m`` so far,
  ``d = exp(-epoch_steps / tau_slow)``), and ``a - slow(a)`` the fast part of the drive.
  It is reset with the neuron state between samples. ``abar`` is ``slow(a)``.

This module turns those statements into data of the :class:`~.semantics.SpikingProgram`;
nothing here knows a rule by name.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from neurolocal.errors import LoweringError
from neurolocal.rule import Rule
from neurolocal.symbols import Ref
from neurolocal.terms import Term, split_terms

#: the noise a noise-driven neuron receives in a noise epoch (its r, a, ... there)
NOISE_VALUE = "noise_value"
#: the epoch-mean drive a neuron receives from the noise-driven layer below
NOISE_DRIVE = "noise_drive"
#: ``slow(X)`` is the compartment ``slow_X`` in the lowered program
SLOW_PREFIX = "slow_"
#: learning epochs per sample a rule with private noise or slow() gets by default
DEFAULT_NOISY_EPOCHS = 4


@dataclass(frozen=True)
class NoiseSource:
    """A private noise source: every hidden neuron's own noise current, one draw per learning
    epoch, added to its voltage (``into = "r"``) or current (``into = "a"``)."""

    name: str
    sigma: float
    into: str
    line: int = 0

    @property
    def raw(self) -> str:
        """The per-neuron raw state holding this epoch's draw."""
        return f"nz_{self.name}"


@dataclass(frozen=True)
class NoisePhase:
    """A noise phase lowered to a noise epoch: its std, epochs per sample epoch, updates."""

    name: str
    sigma: float
    epochs: int
    updates: tuple  # of semantics.UpdatePlan, over NOISE_VALUE / NOISE_DRIVE / the fb target
    feedback: tuple[str, ...]  # the feedback projections it updates
    line: int = 0


def _where(line: int) -> str:
    return f" (line {line})" if line else ""


def slow_name(name: str) -> str:
    return f"{SLOW_PREFIX}{name}"


def rewrite_slow(expr: sympy.Expr, *, abar: bool = True) -> tuple[sympy.Expr, set[Ref]]:
    """``expr`` with every ``slow(scope.X)`` (and ``scope.abar``) as ``scope.slow_X``.

    Returns the new expression and the compartments whose slow part it reads.
    """
    found: set[Ref] = set()
    subs: dict = {}
    for node in sympy.preorder_traversal(expr):
        if isinstance(node, sympy.Function) and type(node).__name__ == "slow":
            ref = Ref.of(node.args[0])
            found.add(Ref(ref.scope, ref.name))
            subs[node] = Ref(ref.scope, slow_name(ref.name)).symbol
    if subs:
        expr = expr.xreplace(subs)
    if abar:
        extra = {}
        for s in expr.free_symbols:
            ref = Ref.of(s)
            if ref.name == "abar" and ref.scope in ("self", "pre", "post"):
                found.add(Ref(ref.scope, "a"))
                extra[s] = Ref(ref.scope, slow_name("a")).symbol
        expr = expr.xreplace(extra) if extra else expr
    return expr, found


def learning_epochs(rule: Rule, config, uses_slow: bool) -> int:
    """Learning epochs per sample: the config's, or a default for the rule.

    A rule with private noise or slow() learns several times per sample (its fast and slow
    parts need more than one epoch: with one, slow(X) = X); every other rule once.
    """
    t, asked = config.timesteps, config.learning_epochs
    if rule.phases and any(p.kind == "noise" for p in rule.phases.values()):
        if asked not in (None, 1):
            raise LoweringError(f"rule {rule.name}: learning_epochs = {asked}: a rule with a "
                                "noise phase learns once per sample (a sample epoch, then its "
                                "noise epochs); use learning_epochs = 1")
        return 1
    if asked is not None:
        if t % asked:
            raise LoweringError(f"learning_epochs = {asked} does not divide T = {t} steps; "
                                "pick a divisor of --timesteps")
        return int(asked)
    if not (rule.noise or uses_slow):
        return 1
    for m in (DEFAULT_NOISY_EPOCHS, 2):
        if t % m == 0 and t // m >= 4:
            return m
    return 1


def noise_sources(rule: Rule) -> tuple[NoiseSource, ...]:
    return tuple(NoiseSource(n.name, float(n.sigma), n.into, n.line)
                 for n in rule.noise.values())


def _phase_symbol(ref: Ref, role: str, plan, where: str) -> sympy.Expr:
    """What ``ref`` (pre or post) means in a noise epoch (see the module docstring)."""
    from .semantics import MEASURED

    value = NOISE_DRIVE if role == "pre" else NOISE_VALUE
    if ref.name == "dphi":
        return sympy.Integer(1)
    if ref.name in MEASURED or (role == "pre" and ref.name == plan.source):
        return Ref(ref.scope, value).symbol
    if role == "post" and ref.name == plan.target:
        return Ref(ref.scope, plan.target).symbol
    kept = f"{plan.scope}.{plan.source}" if role == "pre" else f"post.{plan.target}"
    raise LoweringError(
        f"{where} reads {ref}, which has no value in a noise epoch: the noise-driven neuron "
        "has its noise (post.r, post.a, ...) and what its feedback delivered "
        f"({'post.' + plan.target}), the layer above its drive (pre.r, ..., {kept})")


def _phase_update(rule: Rule, u, plan):
    """One ``on B during P`` update with every symbol replaced by its noise-epoch meaning."""
    from .semantics import UpdatePlan

    where = f"rule {rule.name}: on {u.projection} during {u.phase}: d{u.var} = {u.text}" \
            f"{_where(u.line)}"
    if any(type(n).__name__ == "slow" for n in sympy.preorder_traversal(u.expr)):
        raise LoweringError(f"{where}: slow() in a noise epoch has no meaning (a noise epoch "
                            "is one learning epoch, not part of a sample)")
    subs = {}
    for s in u.expr.free_symbols:
        ref = Ref.of(s)
        if ref.scope in ("pre", "post"):
            subs[s] = _phase_symbol(ref, ref.scope, plan, where)
        elif ref.scope not in ("syn", "glob"):
            raise LoweringError(f"{where} reads {ref}, the state of a neuron this synapse does "
                                "not connect (non-local: no spiking lowering)")
    expr = u.expr.xreplace(subs)
    terms: tuple[Term, ...] = tuple(split_terms(expr))
    return UpdatePlan(u.projection, u.var, terms, expr, u.text, u.line, phase=u.phase)


def noise_phases(rule: Rule, plans, config) -> tuple[NoisePhase, ...]:
    """The rule's noise phases as noise epochs (``plans``: the lowered feedback plans)."""
    out = []
    for ph in rule.phases.values():
        if ph.kind != "noise":
            continue
        ups = [u for u in rule.updates if u.phase == ph.name]
        lowered = []
        for u in ups:
            plan = next((p for p in plans if p.name == u.projection), None)
            if plan is None:
                raise LoweringError(
                    f"rule {rule.name}: on {u.projection} during {ph.name}{_where(u.line)}: a "
                    "noise epoch updates feedback synapses only (the forward synapses carry "
                    "the noise up)")
            if plan.scope != "next":
                raise LoweringError(
                    f"rule {rule.name}: phase {ph.name} (noise) needs feedback {plan.name} to "
                    f"come from next.<compartment>, not {plan.scope}.{plan.source}: the "
                    "noise-driven layer's drive reaches the layer above only")
            lowered.append(_phase_update(rule, u, plan))
        out.append(NoisePhase(ph.name, float(ph.params["sigma"]), int(config.noise_epochs),
                              tuple(lowered), tuple(dict.fromkeys(u.projection for u in ups)),
                              ph.line))
    return tuple(out)


def reserved_names(rule: Rule, slow: set[str]) -> None:
    """Refuse a rule compartment that would collide with a name this lowering adds."""
    taken = {NOISE_VALUE, NOISE_DRIVE} | {slow_name(n) for n in slow}
    for eq in (*rule.output, *rule.neuron):
        if eq.target in taken:
            raise LoweringError(f"rule {rule.name}: compartment {eq.target!r}{_where(eq.line)} "
                                "is a name the spiking lowering uses itself; rename it")

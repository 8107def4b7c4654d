"""A learning rule as data.

A :class:`Rule` is what the rule text says, nothing more: declared globals and
phases, the feedback projections that feed each hidden neuron's error compartment,
neuron-local compartment equations, and synaptic update equations. The checker reads
it; every backend lowers it. No backend knows a rule by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy

from .errors import RuleError
from .symbols import TIME_COMPARTMENTS, Ref, refs_in

FORWARD = "W"  #: name of the forward projection into each layer
#: name of the recurrent projection of a recurrent layer: the same layer, one step earlier
RECURRENT = "R"
#: the phase kind of the last step of a sequence (``phase last = end()``)
END = "end"


@dataclass(frozen=True)
class GlobalDecl:
    """A declared global: a scalar every synapse may read (learning rate, reward, phase)."""

    name: str
    value: float | None
    vector: bool = False
    line: int = 0


@dataclass(frozen=True)
class PhaseDecl:
    """A phase the rule runs besides the ordinary forward/error sweep.

    ``noise``: every hidden layer in turn is driven by Gaussian noise of std ``sigma``
    and each neuron sends its drive down the feedback pathway (the weight-mirror phase).
    ``relax``: the neuron equations are iterated ``steps`` times before updates read them.
    ``end``: the last step of each sequence (recurrent networks): an update ``during`` it runs
    at that step only, an equation ``during`` it holds there (elsewhere its plain equation,
    or 0).
    """

    name: str
    kind: str
    params: dict[str, float]
    line: int = 0


@dataclass(frozen=True)
class FeedbackDecl:
    """A feedback projection: ``source`` compartment of another layer -> ``target`` here.

    ``weights`` is an expression over ``random``, ``resample``, ``sparse(p)`` and the
    forward weights ``W`` of the source layer (``transpose(W)``, ``sign(...)``).
    """

    name: str
    source: Ref
    target: str
    weights: sympy.Expr
    weights_text: str
    line: int = 0


@dataclass(frozen=True)
class Equation:
    """A neuron compartment equation, ``target = expr`` (hidden or output neurons).

    With ``phase`` (``neuron x during settle = expr``) the equation is a dynamic one: in
    that relax phase ``expr`` is the compartment's rate of change, dx/dt = expr.
    """

    target: str
    expr: sympy.Expr
    text: str
    where: str = "neuron"  # "neuron" (hidden) or "output"
    line: int = 0
    phase: str | None = None


@dataclass(frozen=True)
class NoiseDecl:
    """A private noise source of every hidden neuron, always on while learning.

    ``noise xi = normal(sigma=s) -> r``: each hidden neuron draws xi ~ N(0, s^2) afresh
    for every sample and adds it to its compartment ``into`` (``r`` or ``a``) in the
    forward sweep; ``xi`` is a compartment of that neuron.
    """

    name: str
    sigma: float
    into: str
    line: int = 0


@dataclass(frozen=True)
class Update:
    """A synaptic update ``d<var> = expr`` on a projection, optionally only in one phase."""

    projection: str
    var: str
    expr: sympy.Expr
    text: str
    phase: str | None = None
    line: int = 0

    @property
    def reads(self) -> list[Ref]:
        return refs_in(self.expr)


@dataclass
class Rule:
    """One learning rule. Build from text with :func:`neurolocal.parse_rule`."""

    name: str
    description: str = ""
    cite: list[str] = field(default_factory=list)
    globals: dict[str, GlobalDecl] = field(default_factory=dict)
    phases: dict[str, PhaseDecl] = field(default_factory=dict)
    feedback: dict[str, FeedbackDecl] = field(default_factory=dict)
    neuron: list[Equation] = field(default_factory=list)
    output: list[Equation] = field(default_factory=list)
    updates: list[Update] = field(default_factory=list)
    noise: dict[str, NoiseDecl] = field(default_factory=dict)
    text: str = ""
    source: str = "<rule>"

    @property
    def projections(self) -> list[str]:
        """Forward and feedback projections (the recurrent ``R`` is the network's: it exists
        in recurrent layers whatever the rule, see :attr:`updates_recurrent`)."""
        return [FORWARD, *self.feedback]

    @property
    def updates_recurrent(self) -> bool:
        return any(u.projection == RECURRENT for u in self.updates)

    def updates_for(self, projection: str, phase: str | None = None) -> list[Update]:
        return [u for u in self.updates if u.projection == projection and u.phase == phase]

    def state_vars(self, projection: str) -> list[str]:
        """Synaptic state of a projection: its weight plus every ``d<var>`` target."""
        names = ["w"]
        for u in self.updates:
            if u.projection == projection and u.var not in names:
                names.append(u.var)
        return names

    def is_learned(self, projection: str) -> bool:
        return any(u.projection == projection and u.var == "w" for u in self.updates)

    def features(self) -> dict[str, list[str]]:
        """What the rule needs from an executor beyond a forward sweep and error delivery.

        Keys (present only when used): ``relax`` (relax phases with dynamic equations),
        ``noise-phase`` (noise phases), ``hold`` (held values), ``noise-source`` (private
        always-on noise), ``forward-multiplex`` (a projection from ``prev`` through the
        forward synapses ``W``), ``lateral`` (projections within a layer), ``output-feedback``
        (projections from the output layer, as in DFA), ``recurrent`` (what needs time steps:
        updates of the recurrent synapses ``R``, ``end`` phases, projections from ``future``).
        A lowering that lacks one raises a LoweringError naming it.
        """
        out: dict[str, list[str]] = {}
        for name, ph in self.phases.items():
            kind = {"noise": "noise-phase"}.get(ph.kind, ph.kind)
            out.setdefault(kind, []).append(name)
        if self.noise:
            out["noise-source"] = list(self.noise)
        for fb in self.feedback.values():
            kind = {"prev": "forward-multiplex", "lateral": "lateral",
                    "output": "output-feedback"}.get(fb.source.scope)
            if kind:
                out.setdefault(kind, []).append(fb.name)
        timed = self.time_statements()
        if timed:
            out["recurrent"] = timed
        return out

    def time_statements(self) -> list[str]:
        """The statements that need a network with time steps (a recurrent layer), named."""
        out = [f"phase {p.name} = {END}() (line {p.line})" for p in self.phases.values()
               if p.kind == END]
        out += [f"feedback {fb.name} = {fb.source} (line {fb.line})"
                for fb in self.feedback.values() if fb.source.scope == "future"]
        out += [f"on {RECURRENT}: d{u.var} (line {u.line})" for u in self.updates
                if u.projection == RECURRENT]
        timed = set(TIME_COMPARTMENTS)
        for eq in self.neuron + self.output:
            if any(ref.name in timed and ref.scope in ("self", "post") for ref in refs_in(eq.expr)):
                out.append(f"{eq.where} {eq.target} reads {', '.join(sorted(timed))} (line "
                           f"{eq.line})")
        for u in self.updates:
            if any(ref.name in timed and ref.scope in ("pre", "post") for ref in u.reads):
                out.append(f"on {u.projection}: d{u.var} reads {', '.join(sorted(timed))} (line "
                           f"{u.line})")
        return out

    def scalar_globals(self) -> dict[str, float]:
        return {g.name: float(g.value) for g in self.globals.values()
                if not g.vector and g.value is not None}

    def with_globals(self, **values: float) -> Rule:
        """A copy with some global defaults replaced (hyper-parameters from the CLI)."""
        import dataclasses
        new = dict(self.globals)
        for k, v in values.items():
            if k not in new:
                raise RuleError(f"rule {self.name!r} declares no global {k!r}; "
                                f"its globals are: {', '.join(new) or '(none)'}")
            new[k] = dataclasses.replace(new[k], value=float(v))
        return dataclasses.replace(self, globals=new)

"""The locality checker: does every synaptic update read only what exists at its synapse?

Verdicts come from the rule's description alone. A synapse may read its own state
(``syn.*``), what its pre-synaptic neuron sends along this projection's axon, any
compartment of its post-synaptic neuron, and declared global scalars. Signals that
cross neurons must travel through synapses: a feedback projection carries a source
compartment of another layer into a compartment here. Its weights must themselves be
local: a feedback weight that reads the forward weights (``transpose(W)``) is weight
transport; one that reads their signs is sign transport.

In a recurrent network a synapse may also read what its neurons held one step earlier (the
recurrent synapses ``R`` carry the same layer's output from the previous step). A value from
a later step -- a projection from ``future.*``, a ``future.*`` read, a value held at the end of
the sequence read before it ends -- exists only after the sequence is over: backprop through
time needs it, and the checker names it ``future-in-time``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import sympy

from .errors import LocalityError
from .rule import END, FORWARD, RECURRENT, Rule
from .symbols import (
    AXON_SIGNALS,
    FUTURE,
    NEURON_COMPARTMENTS,
    OTHER_NEURON_SCOPES,
    TIME_COMPARTMENTS,
    Ref,
    pretty,
    refs_in,
)
from .terms import split_terms

KINDS = {
    "weight-transport": "a synapse reads the weight of another synapse (feedback tied to "
                        "forward weights, as in backprop)",
    "sign-transport": "a synapse reads the sign of another synapse's weight (sign symmetry)",
    "nonlocal-state": "a synapse or neuron reads the state of a neuron it has no synapse from",
    "global-vector": "a vector is broadcast to every synapse (a bus no chip provides per synapse)",
    "undeclared-phase": "the rule needs a phase (held values, a separate pass) it does not "
                        "declare",
    "future-in-time": "a synapse or neuron reads a value from a later time step (an error that "
                      "exists only after the sequence is over, as in backprop through time)",
}


@dataclass
class Violation:
    kind: str
    where: str
    symbol: str
    message: str


@dataclass
class Read:
    symbol: str
    origin: str
    local: bool
    via: list[str] = field(default_factory=list)


@dataclass
class TermReport:
    projection: str
    target: str
    phase: str | None
    term: str
    reads: list[Read]


@dataclass
class FeedbackReport:
    name: str
    source: str
    target: str
    weights: str
    learned: bool
    local: bool
    note: str


@dataclass
class LocalityReport:
    rule: str
    description: str
    local: bool
    violations: list[Violation]
    phases: list[dict]
    feedback: list[FeedbackReport]
    neurons: list[dict]
    terms: list[TermReport]
    notes: list[str]
    #: every signal that travels from one neuron to another, and through what
    crossings: list[dict] = field(default_factory=list)
    #: private noise sources (they never leave their neuron)
    noise: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_text(self) -> str:
        out = [f"rule {self.rule}" + (f" — {self.description}" if self.description else ""),
               f"verdict: {'LOCAL' if self.local else 'NOT LOCAL'}"
               + ("" if self.local else f" ({len(self.violations)} violation"
                  f"{'s' if len(self.violations) != 1 else ''})")]
        out.append("legend: pre.* = pre-synaptic neuron, post.* = post-synaptic neuron, "
                   "syn.* = this synapse, bare names = declared globals")
        if self.phases:
            out.append("phases: " + "; ".join(
                f"{p['name']} ({p['kind']}, {'declared' if p['declared'] else 'UNDECLARED'})"
                for p in self.phases))
        else:
            out.append("phases: none (forward sweep and error delivery only)")
        for c in self.crossings:
            mark = "" if c["local"] else "  <-- NOT LOCAL"
            out.append(f"crosses neurons: {c['signal']} ({c['from']}) -> {c['to']} via "
                       f"{c['via']}{mark}")
        for nz in self.noise:
            out.append(f"noise {nz['name']}: {nz['note']}")
        for fb in self.feedback:
            learned = " (learned)" if fb.learned else ""
            verdict = "ok" if fb.local else "NOT LOCAL"
            out.append(f"feedback {fb.name}: {fb.source} -> {fb.target} via {fb.weights}"
                       f"{learned}  [{verdict}]")
            out.append(f"    {fb.note}")
        for eq in self.neurons:
            during = f" during {eq['phase']}" if eq.get("phase") else ""
            out.append(f"{eq['where']} {eq['target']}{during} = {eq['text']}")
            for r in eq["reads"]:
                out.append(f"    {r['symbol']:<18} {r['origin']}")
        current = None
        for t in self.terms:
            head = f"projection {t.projection}: d{t.target}" + \
                (f" during {t.phase}" if t.phase else "")
            if head != current:
                out.append(head)
                current = head
            out.append(f"  term {t.term}")
            for r in t.reads:
                mark = "" if r.local else "  <-- NOT LOCAL"
                via = f" [via {', '.join(r.via)}]" if r.via else ""
                out.append(f"    {r.symbol:<18} {r.origin}{via}{mark}")
        for n in self.notes:
            out.append(f"note: {n}")
        if self.violations:
            out.append("violations:")
            for v in self.violations:
                out.append(f"  [{v.kind}] {v.where}: {v.message}")
        else:
            out.append("violations: none")
        return "\n".join(out)


class _Checker:
    def __init__(self, rule: Rule):
        self.rule = rule
        self.violations: list[Violation] = []
        self.seen_violations: set[tuple[str, str, str, str]] = set()
        #: projections with a dw update (learned weights), once instead of per projection
        self.learned = {u.projection for u in rule.updates if u.var == "w"}
        self.updated = {u.projection for u in rule.updates}
        #: what feeds each compartment, hidden (False) and output (True), computed once
        self.fed_by: dict[tuple[bool, str], list[str]] = {}
        for fb in rule.feedback.values():
            for output in (False, True):
                if fb.source.scope == "prev" or not output:
                    self.fed_by.setdefault((output, fb.target), []).append(fb.name)
        self.memo: dict[tuple, object] = {}
        self.used_phases: dict[str, str] = {}
        defined = [e.target for e in rule.neuron]
        self.eqs = {e.target: e for e in rule.neuron if e.phase is None}
        self.out_eqs = {e.target: e for e in rule.output if e.phase is None}
        #: dynamic equations (``during`` a relax phase), by (hidden/output, target)
        self.dyn = {(e.where == "output", e.target): e for e in rule.neuron + rule.output
                    if e.phase is not None}
        self.defined = defined
        self.fb_local: dict[str, bool] = {}

    def violate(self, kind: str, where: str, symbol: str, message: str) -> None:
        key = (kind, where, symbol, message)
        if key not in self.seen_violations:  # a set: a list scan was quadratic
            self.seen_violations.add(key)
            self.violations.append(Violation(*key))

    def phase_ref(self, phase: str, where: str, symbol: str, during: str | None = None) -> bool:
        """``X@phase``: declared? A value held at the end of the sequence (an ``end`` phase)
        read at any other step (not ``during`` it) comes from the future."""
        self.used_phases.setdefault(phase, where)
        if phase not in self.rule.phases:
            self.violate("undeclared-phase", where, symbol,
                         f"{symbol} needs phase {phase!r} (a value held from an earlier pass), "
                         f"which the rule does not declare; add 'phase {phase} = ...'")
            return False
        if self.rule.phases[phase].kind == END and during != phase:
            self.violate("future-in-time", where, symbol,
                         f"{symbol} is the value at the last step of the sequence ({phase} = "
                         f"{END}()), read at every earlier step, before it exists; read it "
                         f"'during {phase}' only, or carry it forward in a trace")
            return False
        return True

    def future_read(self, ref: Ref, where: str) -> str:
        self.violate("future-in-time", where, str(ref),
                     f"{ref} is the value this layer will hold one step later, which does not "
                     "exist yet (backprop through time reads it in a backward sweep after the "
                     "sequence); accumulate an eligibility trace forward in time instead")
        return "the same layer one step later (the future)"

    def carriers(self, comp: str, output: bool, seen: frozenset = frozenset()) -> list[str]:
        """Feedback projections whose signal reaches compartment ``comp`` of a neuron."""
        if seen:
            return self.find_carriers(comp, output, seen)
        key = ("carriers", comp, output)
        if key not in self.memo:  # every read of post.X asks again
            self.memo[key] = self.find_carriers(comp, output, seen)
        return list(self.memo[key])

    def find_carriers(self, comp: str, output: bool, seen: frozenset) -> list[str]:
        eqs = self.out_eqs if output else self.eqs
        via = list(self.fed_by.get((output, comp), []))
        exprs = [eqs[comp].expr] if comp in eqs else []
        if (output, comp) in self.dyn:
            exprs.append(self.dyn[(output, comp)].expr)
        if comp not in seen:
            for expr in exprs:
                for ref in refs_in(expr):
                    if ref.scope == "self":
                        via += self.carriers(ref.name, output, seen | {comp})
        return sorted(set(via))

    def compartment_origin(self, comp: str, output: bool | None) -> str:
        """Where a compartment's value comes from; ``output=None``: hidden and output."""
        key = ("origin", comp, output)
        if key not in self.memo:
            self.memo[key] = self.find_origin(comp, output)
        return self.memo[key]

    def find_origin(self, comp: str, output: bool | None) -> str:
        def one(eqs, is_out):
            if comp in self.rule.noise:
                nz = self.rule.noise[comp]
                return (f"{comp}: this neuron's private noise N(0, {nz.sigma:g}^2), always on, "
                        f"added to its {nz.into}")
            if (is_out, comp) in self.dyn:
                dyn = self.dyn[(is_out, comp)]
                ph = self.rule.phases.get(dyn.phase)
                if ph is not None and ph.kind == END:
                    before = eqs[comp].text if comp in eqs else "0"
                    return (f"{comp} = {dyn.text} at the last step of the sequence ({dyn.phase}),"
                            f" {before} at the steps before")
                start = f", starting at {eqs[comp].text}" if comp in eqs else ", starting at 0"
                return f"{comp} relaxes during {dyn.phase}: d{comp}/dt = {dyn.text}{start}"
            if comp in eqs:
                return f"{comp} = {eqs[comp].text}"
            fbs = self.fed_by.get((is_out, comp), [])
            if fbs:
                return f"{comp}, fed by projection {', '.join(fbs)}"
            meaning = NEURON_COMPARTMENTS.get(comp) or TIME_COMPARTMENTS.get(comp, "compartment")
            return f"{comp}: {meaning}"
        if output is None:
            hidden, out = one(self.eqs, False), one(self.out_eqs, True)
            return hidden if hidden == out else f"hidden {hidden}; output {out}"
        return one(self.out_eqs if output else self.eqs, output)

    def check_equations(self) -> list[dict]:
        out = []
        for eq in self.rule.neuron + self.rule.output:
            where = f"{eq.where} equation {eq.target} (line {eq.line})"
            if eq.phase is not None:
                where = f"{eq.where} equation {eq.target} during {eq.phase} (line {eq.line})"
                self.used_phases.setdefault(eq.phase, where)
                if eq.phase not in self.rule.phases:
                    self.violate("undeclared-phase", where, eq.phase,
                                 f"the equation runs during phase {eq.phase!r}, which the rule "
                                 f"does not declare; add 'phase {eq.phase} = relax(steps=..., "
                                 "rate=...)'")
            reads = []
            for ref in refs_in(eq.expr):
                local, origin = True, ""
                if ref.scope == "self":
                    origin = "this neuron: " + self.compartment_origin(
                        ref.name, eq.where == "output")
                elif ref.scope == "glob":
                    local, origin = self.global_read(ref, where)
                elif ref.scope == FUTURE:
                    local, origin = False, self.future_read(ref, where)
                else:
                    local = False
                    origin = f"state of a neuron in the {ref.scope} layer"
                    self.violate("nonlocal-state", where, str(ref),
                                 f"{ref} is the state of another neuron and no synapse carries "
                                 "it here; declare a feedback projection "
                                 f"'feedback NAME = {ref.scope}.{ref.name} -> <compartment> via "
                                 "random' and read that compartment instead")
                if ref.phase:
                    local = self.phase_ref(ref.phase, where, str(ref), eq.phase) and local
                reads.append({"symbol": str(ref), "origin": origin, "local": local})
            out.append({"where": eq.where, "target": eq.target, "text": eq.text,
                        "phase": eq.phase, "reads": reads})
        return out

    def global_read(self, ref: Ref, where: str) -> tuple[bool, str]:
        decl = self.rule.globals[ref.name]
        if decl.vector:
            self.violate("global-vector", where, str(ref),
                         f"{ref} is a global vector broadcast to every synapse; route it "
                         "through a feedback projection so each neuron gets its own weighted "
                         "sum")
            return False, "declared global VECTOR (broadcast to every synapse)"
        return True, "declared global scalar (broadcast)"

    def check_feedback(self) -> list[FeedbackReport]:
        out = []
        for fb in self.rule.feedback.values():
            where = f"feedback {fb.name} (line {fb.line})"
            before = len(self.violations)
            notes = [f"carries {fb.source} from another layer to compartment {fb.target} "
                     f"through its own synapses"]
            if fb.source.scope == "prev":
                # parser: prev.X only 'via W', the forward synapses into this layer themselves
                notes = [f"carries {fb.source} from the layer below to compartment {fb.target} "
                         f"through the forward synapses {FORWARD} themselves: each synapse "
                         "reads only its own weight (one synapse, two signals)"]
            elif fb.source.scope == FUTURE:
                notes = [f"carries {fb.source}, what the neurons of the same layer will hold one "
                         f"step later, back to compartment {fb.target}"]
                self.violate("future-in-time", where, str(fb.source),
                             f"feedback {fb.name} carries {fb.source} from the next time step "
                             "back in time: it exists only once the sequence has run on "
                             "(backprop through time); deliver errors forward in time (DFA "
                             "with eligibility traces) instead")
                self.scan_weights(fb.weights, fb, where, under_sign=False)
            elif fb.source.scope == "lateral":
                notes = [f"carries {fb.source} of the other neurons of the same layer to "
                         f"compartment {fb.target} through its own (lateral) synapses"]
                self.scan_weights(fb.weights, fb, where, under_sign=False)
            else:
                self.scan_weights(fb.weights, fb, where, under_sign=False)
            if any(isinstance(n, sympy.Symbol) and n.name == "resample"
                   for n in sympy.preorder_traversal(fb.weights)):
                notes.append("weights redrawn every batch (needs a local noise source)")
            learned = fb.name in self.learned
            if learned:
                notes.append(f"weights learned by their own update (initialised as "
                             f"{fb.weights_text})")
            self.fb_local[fb.name] = len(self.violations) == before
            out.append(FeedbackReport(fb.name, str(fb.source), fb.target, fb.weights_text,
                                      learned, self.fb_local[fb.name], "; ".join(notes)))
        return out

    def scan_weights(self, expr, fb, where: str, under_sign: bool) -> None:
        if isinstance(expr, sympy.Symbol) and expr.name == RECURRENT:
            kind = "sign-transport" if under_sign else "weight-transport"
            self.violate(kind, where, f"sign({RECURRENT})" if under_sign else RECURRENT,
                         f"feedback synapse {fb.name}[i,j] reads the "
                         f"{'sign of the ' if under_sign else ''}recurrent weight "
                         f"{RECURRENT}[j,i], stored at a synapse on another neuron (as "
                         "backprop through time does); use 'via random' or 'via sparse(p)'")
            return
        if isinstance(expr, sympy.Symbol) and expr.name == FORWARD:
            if under_sign:
                self.violate("sign-transport", where, f"sign({FORWARD})",
                             f"feedback synapse {fb.name}[i,j] reads the sign of forward "
                             f"weight {FORWARD}[j,i], stored at a synapse on another neuron "
                             "(sign symmetry); use 'via random' (feedback alignment) or learn "
                             "the feedback weights locally (Kolen-Pollack)")
            else:
                self.violate("weight-transport", where, FORWARD,
                             f"feedback synapse {fb.name}[i,j] reads forward weight "
                             f"{FORWARD}[j,i], stored at a synapse on another neuron (weight "
                             "transport, as in backprop); use 'via random' (feedback "
                             "alignment) or learn the feedback weights locally (Kolen-Pollack, "
                             "weight mirror)")
            return
        is_sign = isinstance(expr, sympy.sign)
        for arg in expr.args:
            self.scan_weights(arg, fb, where, under_sign or is_sign)

    def check_updates(self) -> list[TermReport]:
        out = []
        for u in self.rule.updates:
            where = f"update on {u.projection} d{u.var} (line {u.line})"
            if u.phase is not None:
                self.used_phases.setdefault(u.phase, where)
                if u.phase not in self.rule.phases:
                    self.violate("undeclared-phase", where, u.phase,
                                 f"the update runs during phase {u.phase!r}, which the rule "
                                 f"does not declare; add 'phase {u.phase} = ...'")
            for term in split_terms(u.expr):
                expr = term.expr
                reads = [self.read(ref, u.projection, where, u.phase) for ref in refs_in(expr)]
                out.append(TermReport(u.projection, u.var, u.phase, pretty(expr), reads))
        return out

    def read(self, ref: Ref, proj: str, where: str, during: str | None = None) -> Read:
        via: list[str] = []
        local = True
        if ref.scope == "glob":
            local, origin = self.global_read(ref, where)
        elif ref.scope == "syn":
            origin = f"this synapse's own state ({ref.name})"
        elif ref.scope == "post":
            origin = "post-synaptic " + self.compartment_origin(ref.name, None)
            via = self.carriers(ref.name, output=False) + \
                self.carriers(ref.name, output=True)
            bad = [v for v in via if not self.fb_local.get(v, True)]
            if bad:
                local = False
                origin += f" (carried by non-local feedback {', '.join(bad)})"
        elif ref.scope == "pre":
            if proj in (FORWARD, RECURRENT):
                carried = AXON_SIGNALS
                what = "its output (" + ", ".join(sorted(AXON_SIGNALS)) + ")"
                if proj == RECURRENT:
                    what += " one step earlier"
            else:
                carried = {self.rule.feedback[proj].source.name}
                what = f"{self.rule.feedback[proj].source}"
            if ref.name in carried and proj == RECURRENT:
                origin = (f"pre-synaptic {ref.name} one step earlier (the same layer), carried "
                          "by the recurrent synapse's own axon")
            elif ref.name in carried:
                origin = f"pre-synaptic {ref.name}, carried by this projection's own axon"
            else:
                local = False
                origin = f"pre-synaptic {ref.name}, which projection {proj} does not carry"
                self.violate("nonlocal-state", where, str(ref),
                             f"{ref} is the pre-synaptic neuron's {ref.name}, but projection "
                             f"{proj} carries only {what}; read it through a projection that "
                             "carries it, or read a post-synaptic compartment")
        elif ref.scope == FUTURE:
            local, origin = False, self.future_read(ref, where)
        elif ref.scope in OTHER_NEURON_SCOPES:
            local = False
            origin = f"state of a neuron in the {ref.scope} layer"
            self.violate("nonlocal-state", where, str(ref),
                         f"{ref} belongs to a neuron that is neither end of this synapse; bring "
                         "it into a post-synaptic compartment through a feedback projection")
        else:
            origin = "unknown"
            local = False
        if ref.phase:
            local = self.phase_ref(ref.phase, where, str(ref), during) and local
        return Read(str(ref), origin, local, via)

    def crossings(self) -> list[dict]:
        """Every signal that leaves one neuron for another, and the synapses it travels by."""
        out = [{"signal": "r", "from": "each neuron of the layer below",
                "to": "a (somatic drive)", "via": f"{FORWARD} (forward synapses)", "local": True}]
        if self.rule.updates_recurrent:
            out.append({"signal": "r", "from": "each neuron of the same layer, one step earlier",
                        "to": "a (somatic drive)", "via": f"{RECURRENT} (recurrent synapses)",
                        "local": True})
        where = {"next": "the layer above", "output": "the output layer",
                 "prev": "the layer below", "lateral": "the same layer",
                 FUTURE: "the same layer, one step later"}
        for fb in self.rule.feedback.values():
            out.append({"signal": str(fb.source), "from": where[fb.source.scope],
                        "to": fb.target, "via": f"{fb.name} = {fb.weights_text}",
                        "local": self.fb_local.get(fb.name, True)})
        return out

    def phases(self) -> list[dict]:
        out = []
        for name, ph in self.rule.phases.items():
            needed = name in self.used_phases or ph.kind == "relax"
            if needed:
                out.append({"name": name, "kind": ph.kind, "declared": True,
                            "params": ph.params, "used_by": self.used_phases.get(name, "")})
        for name, where in self.used_phases.items():
            if name not in self.rule.phases:
                out.append({"name": name, "kind": "unknown", "declared": False,
                            "params": {}, "used_by": where})
        return out


def check_locality(rule: Rule) -> LocalityReport:
    """Certify ``rule`` or name each of its violations."""
    c = _Checker(rule)
    feedback = c.check_feedback()
    neurons = c.check_equations()
    terms = c.check_updates()
    notes = []
    if any(e.target == "err" for e in rule.output):
        notes.append("output neurons compute their error from a teaching input (target) at "
                     "the neuron itself; with a softmax output that is divisive normalisation "
                     "within the output population")
    for fb in rule.feedback.values():
        if fb.name not in c.learned and fb.name in c.updated:
            notes.append(f"feedback {fb.name} has updates but no dw: its weights stay fixed")
    noise = [{"name": nz.name, "sigma": nz.sigma, "into": nz.into,
              "note": f"private N(0, {nz.sigma:g}^2) of each hidden neuron, added to its "
                      f"{nz.into} while learning; never leaves the neuron (no phase: always on)"}
             for nz in rule.noise.values()]
    return LocalityReport(rule.name, rule.description, not c.violations, c.violations,
                          c.phases(), feedback, neurons, terms, notes, c.crossings(), noise)


def require_local(rule: Rule) -> LocalityReport:
    """Raise :class:`LocalityError` with the checker's report unless ``rule`` is local."""
    report = check_locality(rule)
    if not report.local:
        kinds = ", ".join(sorted({v.kind for v in report.violations}))
        raise LocalityError(f"rule {rule.name!r} is not local ({kinds}); pass "
                            f"allow_nonlocal=True / --allow-nonlocal to run it anyway.\n"
                            + report.to_text(), report)
    return report

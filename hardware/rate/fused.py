"""The fused rate program: one rule and one layer chain as straight-line torch code.

:mod:`.lower` generates a rule's update functions once for every network; the runner then
walks the layers and fills dictionaries of compartments. This module generates, for one rule
*and* one chain of layers, two plain functions with every layer unrolled (print them with
:attr:`FusedProgram.source`):

``forward(x, W, b)``
    the forward sweep; returns the values the updates read and the output drive.
``backward(saved, teach, W, b, F, g, GW, Gb, GF)``
    the rule's equations top-down, then every update as a descent direction (the update's
    signs flipped in the text) into ``GW``/``Gb``/``GF``, the gradient slots of the forward
    weights, biases and learned feedback weights.

Compartments are local variables; derived ones (``dphi``, zeros) are made only where a rule
reads them; ``err * dphi`` under ReLU is one ``threshold_backward``; a coefficient rides in
the matrix product's ``alpha``; an outer product that two projections share up to a
transpose (Kolen-Pollack's ``dB = dW^T``) is computed once. ``teach`` is the target
(``teach="target"``, the rate runner) or the loss gradient at the output drive times the
batch size (``teach="grad"``, :mod:`neurolocal.torch`), from which the rule's target is
``r - teach``; ``sink="out"`` writes into preallocated slots, ``sink="new"`` makes fresh
tensors (what an autograd Function returns).

Rules that need more than one sweep (relax or noise phases, held values, noise sources),
redraw feedback per batch or couple scopes non-separably run on the runner's generic path;
:func:`fusable` names what keeps a rule there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy

from neurolocal.errors import LoweringError
from neurolocal.network import ConvSpec, Network
from neurolocal.rule import FORWARD, Rule
from neurolocal.symbols import Ref
from neurolocal.terms import split_terms

from ..printing import ArrayPrinter
from .lower import _conv_ready, _pre_fills, check_executable

TEACH = "nl_teach"  #: the pseudo-compartment carrying the teaching signal in grad mode
_ALIASES = ("s", "x1", "x2", "y1", "y2", "y3")
_ACTIVATIONS = ("relu", "tanh", "sigmoid", "linear", "softmax")


@dataclass(frozen=True)
class Layer:
    """One forward projection of a chain and its neurons: dense or conv, activation, bias."""

    n_in: int
    n_out: int
    activation: str
    conv: ConvSpec | None = None
    bias: bool = True


def chain_of(net: Network) -> list[Layer]:
    """The layer chain of a rate network (layer ``l`` of the network is ``chain[l - 1]``)."""
    pops = net.populations
    return [Layer(net.sizes[k - 1], net.sizes[k], pops[k].activation, net.convs.get(k))
            for k in range(1, net.depth + 1)]


# --------------------------------------------------------------------------------------------
# What the fused program runs


def fusable(rule: Rule, layers: list[Layer]) -> str | None:
    """None when :func:`generate_fused_source` can run ``rule`` on ``layers``, else why not."""
    try:
        check_executable(rule)
        _Generator(rule, layers, "target", "out").source()
    except LoweringError as exc:
        return str(exc)
    return None


def _refuse(why: str):
    raise LoweringError(f"fused rate program: {why}")


def _check_rule(rule: Rule) -> None:
    if rule.phases:
        _refuse(f"phases ({', '.join(rule.phases)}) need more than one sweep")
    if rule.noise:
        _refuse(f"noise sources ({', '.join(rule.noise)}) need a second, noise-free sweep")
    exprs = [e.expr for e in rule.neuron + rule.output] + [u.expr for u in rule.updates]
    for e in exprs:
        if e.has(sympy.Function("slow")):
            _refuse("slow() needs a noise-free sweep")
        if any(Ref.of(s).phase for s in e.free_symbols):
            _refuse("held values (x@phase)")
    for eq in rule.neuron + rule.output:
        if eq.phase is not None:
            _refuse(f"{eq.where} {eq.target} has dynamics")
    for u in rule.updates:
        if u.var != "w" or u.phase is not None:
            _refuse(f"update d{u.var} on {u.projection}: only dw outside phases")
    for fb in rule.feedback.values():
        if fb.source.scope not in ("next", "output", "lateral"):
            _refuse(f"feedback {fb.name} from {fb.source.scope}.{fb.source.name}")
        if fb.weights.has(sympy.Symbol("resample")):
            _refuse(f"feedback {fb.name} is redrawn every batch")


# --------------------------------------------------------------------------------------------
# The generator


class _Printer(ArrayPrinter):
    """Rule expressions over local variables: ``resolve(ref)`` names each compartment."""

    def __init__(self, resolve):
        super().__init__({})
        self.resolve = resolve

    def symbol(self, ref: Ref) -> str:
        if ref.scope == "glob":
            return f"g[{ref.name!r}]"
        return self.resolve(ref)


@dataclass
class _Scope:
    """Which layer each scope of an expression means, while one block is printed."""

    layers: dict[str, int]
    syn: tuple[str, str] | None = None  # (weight, bias) variable names of ``syn.w``


@dataclass
class _State:
    defined: dict = field(default_factory=dict)  # (layer, name) -> variable
    saved_r: set = field(default_factory=set)
    saved_a: set = field(default_factory=set)
    lines: list = field(default_factory=list)


class _Refs:
    """``refs[i]`` = (scaled post factor variable, pre code) of request ``i``, made on use."""

    def __init__(self, use, requests):
        self.use, self.requests = use, requests

    def __getitem__(self, i: int) -> tuple[str, str]:
        return self.use(i), self.requests[i][3]


class _Generator:
    def __init__(self, rule: Rule, layers: list[Layer], teach: str, sink: str):
        if teach not in ("target", "grad") or sink not in ("out", "new"):
            raise ValueError(f"teach={teach!r}, sink={sink!r}")
        self.rule, self.layers, self.teach, self.sink = rule, layers, teach, sink
        self.top = len(layers)
        self.st = _State()
        self.scope = _Scope({})
        self.pr = _Printer(self._resolve)

    # -- compartments --------------------------------------------------------------------
    def _layer(self, k: int) -> Layer:
        return self.layers[k - 1]

    def _activation(self, k: int) -> str:
        return "linear" if k == 0 else self._layer(k).activation

    def _resolve(self, ref: Ref) -> str:
        if ref.scope == "syn":
            if self.scope.syn is None or ref.name != "w":
                _refuse(f"syn.{ref.name} is not a synapse's weight here")
            return self.scope.syn[0]
        if ref.scope not in self.scope.layers:
            _refuse(f"{ref} cannot be read here")
        return self.comp(self.scope.layers[ref.scope], ref.name)

    def comp(self, k: int, name: str) -> str:
        """The variable holding compartment ``name`` of layer ``k`` (defined on demand)."""
        st = self.st
        if (k, name) in st.defined:
            return st.defined[(k, name)]
        if name == "r" or name in _ALIASES:
            return self._rate(k)
        if name in ("a", "abar"):
            if k == 0 or self._activation(k) == "linear":
                return self._rate(k)
            st.saved_a.add(k)
            return f"a{k}"
        if name == "dphi":
            r, act = self._rate(k), self._activation(k)
            value = {"relu": f"({r} > 0).to({r}.dtype)", "tanh": f"1 - {r} * {r}",
                     "sigmoid": f"{r} * (1 - {r})", "softmax": f"{r} * (1 - {r})",
                     "linear": f"torch.ones_like({r})"}[act]
            return self._define(k, name, f"dphi{k}", value)
        if name == "target" and k == self.top and self.teach == "target":
            return "teach"
        if name == TEACH and k == self.top:
            return "teach"
        feedback_targets = {fb.target for fb in self.rule.feedback.values()}
        if name == "err" or name in feedback_targets:
            return self._define(k, name, f"z{k}", f"torch.zeros_like({self._rate(k)})")
        _refuse(f"layer {k} has no compartment {name!r}")

    def _rate(self, k: int) -> str:
        if k == self.top:
            if (k, "r") not in self.st.defined:
                self.st.saved_a.add(k)
                act = self._activation(k)
                value = {"relu": f"torch.relu(a{k})", "tanh": f"torch.tanh(a{k})",
                         "sigmoid": f"torch.sigmoid(a{k})", "linear": f"a{k}",
                         "softmax": f"torch.softmax(a{k}, 1)"}[act]
                self._define(k, "r", f"r{k}", value)
            return self.st.defined[(k, "r")]
        self.st.saved_r.add(k)
        return f"r{k}"

    def _define(self, k: int, name: str, var: str, value: str) -> str:
        self.st.lines.append(f"    {var} = {value}")
        self.st.defined[(k, name)] = var
        return var

    def expr(self, e: sympy.Expr, layers: dict[str, int] | None = None) -> str:
        saved, self.scope = self.scope, _Scope(layers or {})
        try:
            return self.pr.doprint(e)
        finally:
            self.scope = saved

    # -- equations and deliveries --------------------------------------------------------
    def equation(self, k: int, eq) -> None:
        expr = eq.expr
        if self.teach == "grad" and k == self.top:
            target = Ref("self", "target").symbol
            expr = expr.xreplace({target: Ref("self", "r").symbol - Ref("self", TEACH).symbol})
        scopes = {"self": k, "next": k + 1, "output": self.top}
        if k == self.top:
            scopes.pop("next")
        dphi = Ref("self", "dphi").symbol
        rest = expr / dphi if expr.has(dphi) else None
        if rest is not None and self._activation(k) == "relu" and not rest.has(dphi) and \
                sympy.Mul(rest, dphi) == expr and k != self.top:
            value = f"torch.ops.aten.threshold_backward({self.expr(rest, scopes)}, " \
                    f"{self._rate(k)}, 0)"
        else:
            value = self.expr(expr, scopes)
            if all(Ref.of(s).scope == "glob" for s in expr.free_symbols):
                value = f"{value} + torch.zeros_like({self._rate(k)})"
        self.st.lines.append(f"    # {eq.target} = {eq.text}")
        self._define(k, eq.target, f"c{k}_{eq.target}", value)

    def feedback_matrix(self, fb, k: int) -> str:
        """Code for the matrix M that delivers ``src @ M.T`` into layer ``k``."""
        stored = f"F[{fb.name!r}][{k}]"
        if self.rule.is_learned(fb.name):
            return stored

        def ev(e) -> str:
            if isinstance(e, sympy.Symbol):
                if e.name == "random":
                    return stored
                if e.name == FORWARD:
                    if fb.source.scope != "next":
                        _refuse(f"feedback {fb.name}: W is read only from next.<compartment>")
                    if self._layer(k + 1).conv is not None:
                        _refuse(f"feedback {fb.name} reads the conv weights into layer {k + 1}")
                    return f"W[{k + 1}]"
                _refuse(f"feedback {fb.name}: cannot evaluate {e}")
            if e.is_Number:
                return repr(float(e))
            name = type(e).__name__
            if name == "transpose":
                return f"{ev(e.args[0])}.t()"
            if name == "sparse":
                return stored
            if name == "sign":
                return f"torch.sign({ev(e.args[0])})"
            if name == "Abs":
                return f"torch.abs({ev(e.args[0])})"
            if isinstance(e, sympy.Mul | sympy.Add):
                op = " * " if isinstance(e, sympy.Mul) else " + "
                return "(" + op.join(ev(a) for a in e.args) + ")"
            _refuse(f"feedback {fb.name}: cannot evaluate {e}")

        return ev(fb.weights)

    def deliveries(self, k: int) -> None:
        total: dict[str, str] = {}
        for fb in self.rule.feedback.values():
            src_layer = {"next": k + 1, "output": self.top, "lateral": k}[fb.source.scope]
            if self._layer(k).conv is not None and fb.source.scope != "output":
                _refuse(f"feedback {fb.name} into conv layer {k} from {fb.source.scope}")
            src = self.comp(src_layer, fb.source.name)
            m = self.feedback_matrix(fb, k)
            self.st.lines.append(f"    # feedback {fb.name} = {fb.source} -> {fb.target} "
                                 f"via {fb.weights_text}")
            if fb.target in total:
                var = total[fb.target]
                self.st.lines.append(f"    {var} = torch.addmm({var}, {src}, {m}.t())")
            else:
                var = self._define(k, fb.target, f"c{k}_{fb.target}",
                                   f"torch.mm({src}, {m}.t())")
                total[fb.target] = var

    # -- updates -------------------------------------------------------------------------
    def _terms(self, proj: str):
        """(coef, pre, post, syn) of each term of the descent of ``proj``'s dw."""
        out = []
        for u in self.rule.updates_for(proj):
            for t in split_terms(-u.expr):
                if not t.separable:
                    _refuse(f"d{u.var} on {proj} couples scopes non-separably ({t.text})")
                if (t.pre == 1) != (t.post == 1):
                    _refuse(f"d{u.var} on {proj}: a term with only one end ({t.text})")
                if t.pre != 1 and t.syn != 1:
                    _refuse(f"d{u.var} on {proj}: a synapse factor on an outer product")
                out.append(t)
        return out

    def updates(self) -> list[str]:
        """Descent lines for every projection, shared outer products computed once."""
        requests = []  # (slot, coef code, A code (post factor), B code (pre factor), term)
        syn_terms: dict = {}
        for k in range(1, self.top + 1):
            for t in self._terms(FORWARD):
                if t.pre == 1:
                    syn_terms.setdefault(("W", k), []).append(t)
                    continue
                requests.append((("W", k), self.expr(t.coef), self.expr(t.post, {"post": k}),
                                 self.expr(t.pre, {"pre": k - 1}), t))
        for fb in self.rule.feedback.values():
            if not self.rule.is_learned(fb.name):
                continue
            for k in range(1, self.top):
                src = {"next": k + 1, "output": self.top, "lateral": k}[fb.source.scope]
                for t in self._terms(fb.name):
                    if t.pre == 1:
                        syn_terms.setdefault((fb.name, k), []).append(t)
                        continue
                    requests.append(((fb.name, k), self.expr(t.coef),
                                     self.expr(t.post, {"post": k}),
                                     self.expr(t.pre, {"pre": src}), t))
        return self._emit_updates(requests, syn_terms)

    def _slot_names(self, slot) -> tuple[str, str | None, str, str | None]:
        proj, k = slot
        if proj == "W":
            bias = self._layer(k).bias
            return f"W[{k}]", f"b[{k}]" if bias else None, f"GW[{k}]", \
                f"Gb[{k}]" if bias else None
        return f"F[{proj!r}][{k}]", None, f"GF[{proj!r}][{k}]", None

    def _emit_updates(self, requests, syn_terms) -> list[str]:
        """Each term's scaled post factor ``A = coef/n * post`` once; products ``A^T pre``
        shared up to a transpose computed once; then every slot's sum."""
        lines: list[str] = []
        scaled: dict[tuple[str, str], str] = {}

        def use(i: int) -> str:
            _, c, a, _, _ = requests[i]
            if (a, c) not in scaled:
                scaled[(a, c)] = f"A{len(scaled)}"
                lines.append(f"    {scaled[(a, c)]} = ({a}) * (({c}) / n)")
            return scaled[(a, c)]

        refs = _Refs(use, requests)
        shared: dict[int, tuple[str, bool]] = {}  # request -> (product variable, transposed)
        for i, (slot, c, a, b, _) in enumerate(requests):
            if i in shared or self._is_conv(slot):
                continue
            for j in range(i + 1, len(requests)):
                s2, c2, a2, b2, _ = requests[j]
                if (c2, a2, b2) == (c, b, a) and j not in shared and not self._is_conv(s2):
                    lines.append(f"    P{i} = torch.mm({refs[i][0]}.t(), {b})")
                    shared[i], shared[j] = (f"P{i}", False), (f"P{i}", True)
                    break
        slots = list(dict.fromkeys([r[0] for r in requests] + list(syn_terms)))
        for slot in slots:
            w, bvar, gw, gb = self._slot_names(slot)
            mine = [i for i, r in enumerate(requests) if r[0] == slot]
            syns = syn_terms.get(slot, [])
            lines.append(f"    # descent of {slot[0]}{slot[1]}")
            items = []
            for i in mine:
                if i in shared:
                    var, tr = shared[i]
                    items.append(("prod", f"{var}.t()" if tr else var, tr))
                elif self._is_conv(slot):
                    items.append(("prod", self._conv_outer(slot, *refs[i]), False))
                else:
                    items.append(("gemm", *refs[i]))
            lines += self._sum_into(gw, w, items, self._syn_code(syns, w))
            if gb is not None:
                lines += self._sum_into(gb, bvar, self._bias_items(slot, mine, requests, refs),
                                        self._syn_code(syns, bvar))
        return lines

    def _is_conv(self, slot) -> bool:
        return slot[0] == "W" and self._layer(slot[1]).conv is not None

    def _conv_outer(self, slot, a: str, b: str) -> str:
        """The kernel gradient: the outer product summed over positions, as a convolution."""
        spec = self._layer(slot[1]).conv
        return (f"torch.nn.grad.conv2d_weight(({b}).view(-1, {spec.in_channels}, "
                f"{spec.in_height}, {spec.in_width}), W[{slot[1]}].shape, {a}.view(-1, "
                f"{spec.out_channels}, {spec.out_height}, {spec.out_width}), "
                f"stride={spec.stride}, padding={spec.padding})")

    def _syn_code(self, terms, var: str) -> list[tuple[str, str]]:
        """(coef, code) of each synapse-only term, ``syn.w`` read from ``var``."""
        out = []
        for t in terms:
            coef = self.expr(t.coef)
            saved, self.scope = self.scope, _Scope({}, (var, var))
            try:
                out.append((coef, self.pr.doprint(t.syn)))
            finally:
                self.scope = saved
        return out

    def _bias_items(self, slot, mine, requests, refs) -> list[tuple]:
        """The bias column: each term at the always-on neuron (pre factors at 1 or 0)."""
        conv = self._layer(slot[1]).conv
        items = []
        for i in mine:
            t = requests[i][4]
            fill = sympy.simplify(t.pre.xreplace(_pre_fills(t.pre)))
            if fill == 0:
                continue
            a = refs[i][0]
            total = f"{a}.view(-1, {conv.out_channels}, {conv.positions}).sum((0, 2))" \
                if conv is not None else f"{a}.sum(0)"
            items.append(("prod", total if fill == 1 else f"{total} * ({self.expr(fill)})",
                          False))
        return items

    def _sum_into(self, dst: str, like: str, items: list, syns: list) -> list[str]:
        """``dst = sum(items) + sum(coef * syn)``: into the slot (out) or a fresh tensor.

        Items: ("gemm", A, pre) = A^T pre, or ("prod", code, transposed). A ``syn.w`` term
        rides in the first product (``addmm``'s beta, ``add``'s alpha)."""
        out = self.sink == "out"
        syns = list(syns)
        plain = next((k for k, (_, body) in enumerate(syns) if body == like), None)
        lines, first = [], True
        for item in items:
            into = f", out={dst}" if out else ""
            if first and plain is not None:
                coef = syns.pop(plain)[0]
                if item[0] == "gemm":
                    code = f"torch.addmm({like}, {item[1]}.t(), {item[2]}, beta={coef}{into})"
                else:
                    if not out and item[2]:  # a transposed product: keep the weight's layout
                        into = f", out=torch.empty_like({like})"
                    code = f"torch.add({item[1]}, {like}, alpha={coef}{into})"
            elif item[0] == "gemm":
                code = f"torch.mm({item[1]}.t(), {item[2]}{into})" if first else \
                    f"{dst}.addmm_({item[1]}.t(), {item[2]})" if out else \
                    f"torch.addmm({dst}, {item[1]}.t(), {item[2]})"
            elif first:
                code = f"{dst}.copy_({item[1]})" if out else \
                    (f"{item[1]}.contiguous()" if item[2] else item[1])
            else:
                code = f"{dst}.add_({item[1]})" if out else f"{dst} + {item[1]}"
            lines.append(f"    {code}" if out else f"    {dst} = {code}")
            first = False
        for coef, body in syns:
            if first:
                lines.append(f"    torch.mul({body}, {coef}, out={dst})" if out else
                             f"    {dst} = ({coef}) * ({body})")
            else:
                lines.append(f"    {dst}.add_({body}, alpha={coef})" if out else
                             f"    {dst} = torch.add({dst}, {body}, alpha={coef})")
            first = False
        if first:
            lines.append(f"    {dst}.zero_()" if out else f"    {dst} = torch.zeros_like({like})")
        return lines

    # -- the module ----------------------------------------------------------------------
    def _forward_lines(self) -> list[str]:
        flat = "x" if self._layer(1).conv is not None else "x.flatten(1)"
        lines = ["def forward(x, W, b):", f"    r0 = {flat}"]
        for k in range(1, self.top + 1):
            layer = self._layer(k)
            r = f"r{k - 1}"
            bias = f"b[{k}]" if layer.bias else "None"
            if layer.conv is not None:
                s = layer.conv
                lines.append(f"    a{k} = F.conv2d({r}.view(-1, {s.in_channels}, {s.in_height}, "
                             f"{s.in_width}), W[{k}], {bias}, stride={s.stride}, "
                             f"padding={s.padding}).flatten(1)")
            else:
                lines.append(f"    a{k} = F.linear({r}, W[{k}], {bias})")
            if k == self.top:
                break
            act = layer.activation
            if act == "linear":
                lines.append(f"    r{k} = a{k}")
            elif act == "relu" and k not in self.st.saved_a:
                lines.append(f"    r{k} = torch.relu_(a{k})")
            else:
                fn = {"relu": "torch.relu", "tanh": "torch.tanh", "sigmoid": "torch.sigmoid"}
                lines.append(f"    r{k} = {fn[act]}(a{k})")
        return lines

    def source(self) -> str:
        rule, top = self.rule, self.top
        _check_rule(rule)
        for k, layer in enumerate(self.layers, start=1):
            if layer.activation not in _ACTIVATIONS or \
                    (layer.activation == "softmax" and k != top):
                _refuse(f"layer {k} activation {layer.activation!r}")
            if layer.conv is not None and not _conv_ready(rule, None):
                _refuse(f"conv layer {k}: the update's pre factor does not vanish in the "
                        "zero padding (the unfolded path computes it)")
        st = self.st
        st.lines.append("    # output layer")
        for eq in rule.output:
            self.equation(top, eq)
        for k in range(top - 1, 0, -1):
            st.lines.append(f"    # layer {k}")
            self.deliveries(k)
            for eq in rule.neuron:
                self.equation(k, eq)
        body = st.lines
        st.lines = []
        update_lines = self.updates()
        body += st.lines + update_lines
        saved = [f"r{k}" for k in sorted(st.saved_r | {0})] + \
            [f"a{k}" for k in sorted(st.saved_a)]
        forward = self._forward_lines()
        forward.append(f"    return ({', '.join(saved)},), a{top}")
        head = [f'"""Fused rate program of rule {rule.name!r} for a '
                f'{"-".join(str(x.n_out) for x in self.layers)} chain (teach={self.teach}, '
                f'sink={self.sink}). Generated by neurolocal; do not edit."""', ""]
        backward = ["def backward(saved, teach, W, b, F, g, GW, Gb, GF):",
                    f"    ({', '.join(saved)},) = saved", "    n = r0.shape[0]", *body]
        if self.sink == "new":
            backward.append("    return GW, Gb, GF")
        return "\n".join(head + forward + [""] + backward) + "\n"


def generate_fused_source(rule: Rule, layers: list[Layer], *, teach: str = "target",
                          sink: str = "out") -> str:
    """The fused program's module text for ``rule`` on ``layers`` (LoweringError if not)."""
    check_executable(rule)
    return _Generator(rule, layers, teach, sink).source()


class FusedProgram:
    """The compiled fused program: :attr:`forward` and :attr:`backward` (see the module)."""

    def __init__(self, rule: Rule, layers: list[Layer], *, teach: str = "target",
                 sink: str = "out"):
        import torch
        import torch.nn.functional as F  # noqa: N812

        from ..arrayops import torch_ops

        self.rule, self.layers, self.teach, self.sink = rule, list(layers), teach, sink
        self.source = generate_fused_source(rule, layers, teach=teach, sink=sink)
        ns: dict = {"torch": torch, "F": F, "ops": torch_ops()}
        exec(compile(self.source, f"<neurolocal fused program {rule.name}>", "exec"), ns)
        self.forward, self.backward = ns["forward"], ns["backward"]
        self.learned = [fb.name for fb in rule.feedback.values() if rule.is_learned(fb.name)]
        self.fixed = [fb.name for fb in rule.feedback.values() if not rule.is_learned(fb.name)]

    def __reduce__(self):
        """Pickled as its inputs (the generated functions are made again on load)."""
        return _rebuild, (self.rule, self.layers, self.teach, self.sink)


def _rebuild(rule: Rule, layers: list[Layer], teach: str, sink: str) -> FusedProgram:
    return FusedProgram(rule, layers, teach=teach, sink=sink)


__all__ = ["TEACH", "FusedProgram", "Layer", "chain_of", "fusable", "generate_fused_source"]

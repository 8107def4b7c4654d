"""Printing rule expressions as target code.

One printer base, one subclass per target language (the shape of Brian2's code
generators): the base walks sympy trees; subclasses decide how a scoped symbol and a
function call are spelled.
"""

from __future__ import annotations

import sympy
from sympy.printing.str import StrPrinter

from neurolocal.symbols import Ref


class ExprPrinter(StrPrinter):
    """Base printer: subclasses override :meth:`symbol` and :attr:`functions`."""

    functions: dict[str, str] = {}

    def symbol(self, ref: Ref) -> str:  # pragma: no cover - subclasses spell symbols
        raise TypeError(f"{type(self).__name__} must define how a scoped symbol is spelled")

    def _print_Symbol(self, expr: sympy.Symbol) -> str:
        return self.symbol(Ref.of(expr))

    def _call(self, name: str, args) -> str:
        return f"{self.functions[name]}({', '.join(self._print(a) for a in args)})"

    def _print_Function(self, expr) -> str:
        if type(expr).__name__ == "slow":  # sympy prints undefined functions here
            return self._print_slow(expr)
        return self._call(type(expr).__name__.lower(), expr.args)

    def _print_slow(self, expr) -> str:
        from neurolocal.errors import LoweringError
        raise LoweringError(f"slow({Ref.of(expr.args[0])}): this target has no low-pass "
                            "(slow part) of a compartment")

    def _print_exp(self, expr) -> str:
        return self._call("exp", expr.args)

    def _print_log(self, expr) -> str:
        return self._call("log", expr.args)

    def _print_tanh(self, expr) -> str:
        return self._call("tanh", expr.args)

    def _print_sign(self, expr) -> str:
        return self._call("sign", expr.args)

    def _print_Abs(self, expr) -> str:
        return self._call("abs", expr.args)

    def _print_Heaviside(self, expr) -> str:
        return self._call("step", expr.args[:1])

    def _print_Max(self, expr) -> str:
        return self._fold("max", expr.args)

    def _print_Min(self, expr) -> str:
        return self._fold("min", expr.args)

    def _fold(self, name: str, args) -> str:
        out = self._print(args[0])
        for a in args[1:]:
            out = f"{self.functions[name]}({out}, {self._print(a)})"
        return out

    def _print_Pow(self, expr, rational=False) -> str:
        base, exp = expr.args
        if exp == sympy.Rational(1, 2):
            return self._call("sqrt", [base])
        if exp == -sympy.Rational(1, 2):
            return f"(1.0/{self._call('sqrt', [base])})"
        return f"({self._print(base)})**({self._print(exp)})"

    def _print_Rational(self, expr) -> str:
        return f"({expr.p}/{expr.q})"

    def _print_Half(self, expr) -> str:
        return "(1/2)"

    def _print_Float(self, expr) -> str:
        return repr(float(expr))

    def _print_Integer(self, expr) -> str:
        return str(int(expr))


class ArrayPrinter(ExprPrinter):
    """Python over array dicts (numpy or torch through the same ``ops`` namespace)."""

    functions = {
        "exp": "ops.exp", "log": "ops.log", "tanh": "ops.tanh", "sign": "ops.sign",
        "abs": "ops.abs", "sqrt": "ops.sqrt", "step": "ops.step", "max": "ops.maximum",
        "min": "ops.minimum",
    }

    def __init__(self, names: dict[str, str]):
        super().__init__()
        self.names = names  # scope -> dict variable, e.g. {"pre": "pre", "self": "c"}

    def symbol(self, ref: Ref) -> str:
        if ref.scope == "glob":
            return f"g[{ref.name!r}]"
        key = ref.name if ref.phase is None else f"{ref.name}@{ref.phase}"
        return f"{self.names[ref.scope]}[{key!r}]"

    def _print_slow(self, expr) -> str:
        ref = Ref.of(expr.args[0])
        key = ref.name if ref.phase is None else f"{ref.name}@{ref.phase}"
        return f"slow({self.names[ref.scope]}, {key!r})"


def update_term_lines(terms, var: str, pr: ExprPrinter, prb: ExprPrinter, *,
                      conv_bias=None) -> tuple[list[str], bool]:
    """Lines computing ``d[var] = sum(terms)`` over rows of pre/post, divided by ``n``.

    Shared by every array target that evaluates an update as batched matrices (the rate
    program, the snntorch program), so the term-to-code mapping exists once. ``terms``:
    sum-of-products terms (:class:`neurolocal.terms.Term`-like: ``coef pre post syn mixed``,
    ``separable``); ``pr`` prints ``pre``/``post``/``syn`` as (rows x neurons) arrays,
    ``prb`` as broadcastable ``preb``/``postb``. Returns the lines and whether a
    non-separable term needs ``preb``/``postb``. ``conv_bias`` (conv layers, pre/post as
    flat maps): a function giving a term's pre factor at the bias neuron; pre x post terms
    then become ``ops.conv_outer`` (a kernel-gradient convolution plus the bias column).
    """
    out: list[str] = []
    full = pairwise = False
    for k, t in enumerate(terms):
        coef = pr.doprint(t.coef)
        syn = "" if t.syn == 1 else f" * ({pr.doprint(t.syn)})"
        if not t.separable:
            body = (f"(({prb.doprint(t.pre * t.post * t.mixed)}) + "
                    f"ops.zeros_like(postb['r'] * preb['r'])).sum(0) / n")
            full = pairwise = True
        elif t.pre != 1 and t.post != 1 and conv_bias is not None:
            body = (f"ops.conv_outer({coef} / n * {pr.doprint(t.post)}, {pr.doprint(t.pre)}, "
                    f"{conv_bias(t)}, spec)")
            coef, full = "", True
        elif t.pre != 1 and t.post != 1:
            # scale the small (rows x post) operand, not the (post x pre) product
            body = f"ops.matmul(({coef} / n * {pr.doprint(t.post)}).T, {pr.doprint(t.pre)})"
            coef, full = "", True
        elif t.post != 1:
            body = f"(({pr.doprint(t.post)}).sum(0) / n)[:, None]"
        elif t.pre != 1:
            body = f"(({pr.doprint(t.pre)}).sum(0) / n)[None, :]"
        else:
            body = "1"
        full = full or bool(syn)
        expr = f"{coef} * {body}{syn}" if coef else f"{body}{syn}"
        out.append(f"    acc = {expr}" if k == 0 else f"    acc = acc + {expr}")
    if not full:
        out.append(f"    acc = acc + ops.zeros_like(syn[{var!r}])")
    out.append(f"    d[{var!r}] = acc")
    return out, pairwise

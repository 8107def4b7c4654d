"""Sum-of-products form of update expressions, shared by every lowering.

An update ``dw = f(pre, post, syn, glob)`` is expanded into terms; each term is split
into a constant coefficient (numbers and global scalars), a pre-synaptic factor, a
post-synaptic factor and a synaptic factor. In rate mode a term becomes one outer
product; on Loihi 2 it becomes one product term of the learning engine; in Brian2 one
summand of ``on_pre``/``on_post`` code.

Expansion can explode (``(a + b + c + d + e)**64`` has 814,385 terms), so the size of an
expansion is estimated from the expression tree first and refused above the limits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import sympy

from .errors import RuleError
from .symbols import Ref, pretty

#: Most terms one update may expand to, and most terms expansion may multiply out in one
#: rule (checking and lowering cost about a millisecond per term; hardware runs far fewer).
MAX_TERMS = 512
#: Most decimal digits of a constant's numerator or denominator (Python prints at most 4300).
MAX_CONSTANT_DIGITS = 1000

_LOG10_2 = math.log10(2)


@dataclass(frozen=True)
class Term:
    """``coef * pre * post * syn``; ``mixed`` holds any factor that couples scopes."""

    coef: sympy.Expr
    pre: sympy.Expr
    post: sympy.Expr
    syn: sympy.Expr
    mixed: sympy.Expr

    @property
    def separable(self) -> bool:
        return self.mixed == 1

    @property
    def expr(self) -> sympy.Expr:
        return self.coef * self.pre * self.post * self.syn * self.mixed

    @property
    def text(self) -> str:
        return pretty(self.expr)


class Expansion(NamedTuple):
    """Upper bounds on what ``sympy.expand`` makes of an expression, from its tree alone.

    ``terms``: summands of the result; ``work``: summands of the largest expansion on the
    way (expand also multiplies out inside functions and denominators); ``made``: terms
    built by multiplying out, all parts together (what expanding costs); ``coef``: decimal
    digits of the result's largest coefficient; ``digits``: of the largest constant anywhere.
    """

    terms: float
    work: float
    made: float
    coef: float
    digits: float


def _log10(n: int) -> float:
    return math.log10(n) if n > 0 else 0.0


def constant_digits(c: sympy.Expr) -> float:
    """Decimal digits (log10) of a rational's numerator or denominator, whichever is longer."""
    if not c.is_Rational:
        return 0.0
    return max(_log10(abs(c.p)), _log10(c.q))


def coefficient_digits(expr: sympy.Expr) -> float:
    """Digits of the numeric coefficient of a product (of the number itself for a number)."""
    if expr.is_Mul and expr.args and expr.args[0].is_Number:
        return constant_digits(expr.args[0])
    return constant_digits(expr)


def sum_digits(coefficients: list[sympy.Expr]) -> float:
    """Digits of a sum of rationals, bounded without adding them: the numerator grows by
    the number of summands, the denominator to the product of the distinct denominators."""
    rationals = [c for c in coefficients if c.is_Rational]
    if not rationals:
        return 0.0
    numerator = max(_log10(abs(c.p)) for c in rationals)
    denominators = {c.q for c in rationals}
    return numerator + math.fsum(_log10(q) for q in denominators) + _log10(len(rationals))


def _multinomial_terms(n: float, k: float) -> float:
    """Monomials of ``(x_1 + ... + x_k)**n``: C(n + k - 1, n), as a float that may be inf."""
    if n == 0 or k <= 1:
        return 1.0
    if n > 1e15 or k > 1e15:
        return math.inf
    log_count = math.lgamma(n + k) - math.lgamma(n + 1) - math.lgamma(k)
    if log_count < 30 and k == int(k):  # exact below 2**53, so the limit is compared exactly
        return float(math.comb(int(n + k - 1), int(n)))
    return math.inf if log_count > 700 else math.exp(log_count)


def _as_float(value: sympy.Expr) -> float:
    """A numeric expression's float value; inf when it has none (too large, complex)."""
    try:
        out = float(value)
    except (TypeError, ValueError, OverflowError, ZeroDivisionError):
        return math.inf
    return out if math.isfinite(out) else math.inf


def numeric_part(exponent: sympy.Expr) -> float:
    """The constant summand of an (expanded) exponent: expand splits ``b**(x + c)``."""
    if exponent.is_Number:
        return _as_float(exponent)
    constant = exponent.as_coeff_Add()[0]
    return _as_float(constant) if constant.is_Number else 0.0


def exp_log_powers(arg: sympy.Expr) -> list[tuple[sympy.Expr, float]]:
    """The powers ``b**c`` that sympy makes of ``exp(arg)`` (``exp(c*log(b))`` is ``b**c``)."""
    from sympy.simplify.simplify import logcombine

    out = []
    for summand in sympy.Add.make_args(arg):
        logs, others = [], []
        for factor in sympy.Mul.make_args(summand):
            combined = logcombine(factor) if factor.has(sympy.log) else factor
            (logs if isinstance(combined, sympy.log) else others).append(combined)
        if len(logs) == 1 and all(f.is_comparable for f in others):
            out.append((logs[0].args[0], _as_float(sympy.Mul(*others))))
    return out


def _power_bounds(n_value: float, base: Expansion) -> Expansion:
    """``base**c``: the integer part n of |c| multiplies out to C(n + k - 1, n) terms."""
    n = float(math.floor(abs(n_value))) if math.isfinite(n_value) else math.inf
    coef = base.coef
    if n:
        coef = n * (base.coef + math.log10(max(base.terms, 1.0)))
    work = _multinomial_terms(n, base.terms)
    made = work if work > 1 else 0.0
    # a negative power is one term, but expand still multiplies out its denominator
    return Expansion(work if n_value > 0 else 1.0, work, made, coef, max(coef, base.digits))


def _split_cost(summands: float) -> float:
    """``b**(x + y)`` and ``exp(x + y)`` split into one factor per summand, which the product
    then joins again: sympy builds each summand twice."""
    return 2.0 * summands if summands > 1 else 0.0


#: Functions that may evaluate to one of their arguments (``Max(x**2, 0)`` is ``x**2``).
_MAY_RETURN_ARG = (sympy.Abs, sympy.Max, sympy.Min)


class _Estimator:
    """Bottom-up :class:`Expansion` of every sub-expression, memoised, without recursion
    (a nesting of 64 sigmoids is 260 sympy levels deep).

    sympy expands the arguments of powers and functions first, so an exponent that only
    expands to a number, ``(a + b)**((y + 1)**2 - y**2 - 2*y + 63)``, is expanded here too;
    that is affordable because its own size was bounded first.
    """

    def __init__(self):
        self.memo: dict[sympy.Expr, Expansion] = {}

    def __call__(self, expr: sympy.Expr) -> Expansion:
        stack = [(expr, False)]
        while stack:
            node, children_done = stack.pop()
            if node in self.memo:
                continue
            if children_done or not node.args:
                self.memo[node] = self.compute(node)
            else:
                stack.append((node, True))
                stack.extend((a, False) for a in node.args if a not in self.memo)
        return self.memo[expr]

    def compute(self, expr: sympy.Expr) -> Expansion:
        if not expr.args:
            digits = constant_digits(expr)
            return Expansion(1.0, 1.0, 0.0, digits, digits)
        parts = [self.memo[a] for a in expr.args]
        work = max(p.work for p in parts)
        made = math.fsum(p.made for p in parts)
        digits = max(p.digits for p in parts)
        if work > MAX_TERMS or digits > MAX_CONSTANT_DIGITS:
            return Expansion(work, work, made, digits, digits)  # refused: expand nothing
        coef = 0.0  # functions: their constants stay inside them
        if expr.is_Add:
            terms = math.fsum(p.terms for p in parts)
            coef = max(p.coef for p in parts) + math.log10(len(parts))
        elif expr.is_Mul:
            terms = math.prod(p.terms for p in parts)
            coef = math.fsum(p.coef for p in parts)
            if sum(p.terms > 1 for p in parts) > 1:  # a product of sums multiplies out
                made += terms
        elif expr.is_Pow:
            exponent = expr.exp if expr.exp.is_Number else sympy.expand(expr.exp)
            power = _power_bounds(numeric_part(exponent), parts[0])
            split = _split_cost(len(exponent.args) if exponent.is_Add else 0)
            terms, coef = power.terms, power.coef
            work, made = max(work, power.work), made + power.made + split
        elif isinstance(expr, sympy.exp):
            made += _split_cost(parts[0].terms)
            if expr.args[0].has(sympy.log):
                return self.exp_of_logs(expr.args[0], Expansion(1.0, work, made, 0.0, digits))
            terms = 1.0
        elif isinstance(expr, _MAY_RETURN_ARG):
            terms, coef = max(p.terms for p in parts), max(p.coef for p in parts)
        elif isinstance(expr, sympy.log):
            inner = [self(f.args[0]) for f in sympy.Mul.make_args(expr.args[0])
                     if isinstance(f, sympy.exp)]
            terms = math.fsum(p.terms for p in inner) + len(sympy.Mul.make_args(expr.args[0]))
            coef = max((p.coef for p in inner), default=0.0)
        else:
            terms = 1.0
        return Expansion(terms, max(work, terms), made, coef, max(digits, coef))

    def exp_of_logs(self, arg: sympy.Expr, acc: Expansion) -> Expansion:
        """``exp(2*log(a + b) + x)`` expands to ``(a + b)**2 * exp(x)``."""
        terms, work, made, coef, digits = acc
        for base, power in exp_log_powers(sympy.expand(arg)):
            p = _power_bounds(power, self(base))
            terms, work, made = terms * p.terms, max(work, p.work), made + p.made
            coef, digits = coef + p.coef, max(digits, p.digits)
        return Expansion(terms, max(work, terms), made, coef, max(digits, coef))


def estimate_expansion(expr: sympy.Expr) -> Expansion:
    """Bound the size of ``sympy.expand(expr)`` without expanding it (linear in the tree)."""
    return _Estimator()(expr)


def _count(n: float) -> str:
    return f"about {round(n):,}" if n < 1e15 else "more than 10^15"


def _digits_text(digits: float) -> str:
    return f"about {round(digits):,} digits" if digits < 1e15 else "more than 10^15 digits"


def expansion_problem(expr: sympy.Expr, what: str = "the update",
                      fix: str = "write the update as a sum of products, or compute a common "
                                 "factor in a neuron equation and read it as post.NAME",
                      ) -> str | None:
    """Why expanding ``expr`` is refused (the limit and the fix), or None when it is not."""
    est = estimate_expansion(expr)
    if est.work > MAX_TERMS:
        return (f"{what} expands to {_count(est.work)} terms (limit: {MAX_TERMS} terms; "
                f"products of sums and powers of sums multiply out, also inside functions): "
                f"{fix}")
    if est.digits > MAX_CONSTANT_DIGITS:
        return constant_problem(est.digits, what)
    return None


def constant_problem(digits: float, what: str) -> str:
    """The message for a constant beyond :data:`MAX_CONSTANT_DIGITS`."""
    return (f"{what} makes a constant of {_digits_text(digits)}: the limit is "
            f"{MAX_CONSTANT_DIGITS} digits per constant (powers and products of constants "
            "multiply their digits); use smaller constants, or a global for a scale factor")


def _scopes(expr: sympy.Expr) -> set[str]:
    return {Ref.of(s).scope for s in expr.free_symbols}


def _expand(expr: sympy.Expr) -> sympy.Expr:
    """``sympy.expand``, refused before it starts when the result would be too large."""
    problem = expansion_problem(expr)
    if problem:
        raise RuleError(problem)
    expanded = sympy.expand(expr)
    digits = max((constant_digits(a) for a in expanded.atoms(sympy.Rational)), default=0.0)
    if digits > MAX_CONSTANT_DIGITS:
        raise RuleError(constant_problem(digits, "the expanded update"))
    return expanded


def split_terms(expr: sympy.Expr) -> list[Term]:
    """Expand ``expr`` and split each summand by scope."""
    terms = []
    for summand in sympy.Add.make_args(_expand(expr)):
        parts = {"coef": [], "pre": [], "post": [], "syn": [], "mixed": []}
        for factor in sympy.Mul.make_args(summand):
            scopes = _scopes(factor) - {"glob"}
            if not scopes:
                parts["coef"].append(factor)
            elif len(scopes) == 1 and next(iter(scopes)) in ("pre", "post", "syn"):
                parts[next(iter(scopes))].append(factor)
            else:
                parts["mixed"].append(factor)
        terms.append(Term(**{k: sympy.Mul(*v) for k, v in parts.items()}))
    return terms

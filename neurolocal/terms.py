"""Sum-of-products form of update expressions, shared by every lowering.

An update ``dw = f(pre, post, syn, glob)`` is expanded into terms; each term is split
into a constant coefficient (numbers and global scalars), a pre-synaptic factor, a
post-synaptic factor and a synaptic factor. In rate mode a term becomes one outer
product; on Loihi 2 it becomes one product term of the learning engine; in Brian2 one
summand of ``on_pre``/``on_post`` code.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from .symbols import Ref, pretty


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


def _scopes(expr: sympy.Expr) -> set[str]:
    return {Ref.of(s).scope for s in expr.free_symbols}


def split_terms(expr: sympy.Expr) -> list[Term]:
    """Expand ``expr`` and split each summand by scope."""
    terms = []
    for summand in sympy.Add.make_args(sympy.expand(expr)):
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

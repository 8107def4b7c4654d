"""Evaluating a feedback projection's weight expression (``via WEXPR``) on arrays.

One evaluator for every backend: the leaves are bound by the caller (the stored random
draw, a fresh draw, the forward weights), the operators mean the same everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sympy

from .errors import LoweringError
from .rule import FORWARD, RECURRENT


def evaluate_weights(expr: sympy.Expr, *, name: str, text: str, stored: Any, xp: Any,
                     forward: Callable[[], Any] | None = None,
                     resample: Callable[[], Any] | None = None, where: str = "",
                     recurrent: Callable[[], Any] | None = None) -> Any:
    """``expr`` with ``random``/``sparse(p)`` -> ``stored``, ``W`` -> ``forward()``,
    ``R`` -> ``recurrent()``, ``resample`` -> ``resample()``; checked against ``stored``'s
    shape."""

    def leaf(symbol: str, make: Callable[[], Any] | None, why: str) -> Any:
        if make is None:
            raise LoweringError(f"feedback {name}: '{symbol}' cannot be used {where}: {why}")
        return make()

    def ev(e):
        if isinstance(e, sympy.Symbol):
            if e.name == "random":
                return stored
            if e.name == "resample":
                return leaf("resample", resample, "no per-batch random draw here")
            if e.name == FORWARD:
                return leaf(FORWARD, forward, "'W' means the forward weights of the source "
                            "layer, which only exists for feedback from next.<compartment>")
            if e.name == RECURRENT:
                return leaf(RECURRENT, recurrent, "'R' means the recurrent weights of this "
                            "layer, for feedback from future.<compartment> in a recurrent "
                            "network")
        if e.is_Number:
            return float(e)
        fname = type(e).__name__
        if fname == "transpose":
            return ev(e.args[0]).T
        if fname == "sparse":
            return stored
        if fname == "sign":
            return xp.sign(ev(e.args[0]))
        if fname == "Abs":
            return xp.abs(ev(e.args[0]))
        if isinstance(e, sympy.Mul | sympy.Add):
            parts = [ev(a) for a in e.args]
            out = parts[0]
            for p in parts[1:]:
                out = out * p if isinstance(e, sympy.Mul) else out + p
            return out
        raise LoweringError(f"feedback {name}: cannot evaluate {e} {where}")

    value = ev(expr)
    if tuple(getattr(value, "shape", ())) != tuple(stored.shape):
        raise LoweringError(f"feedback {name} = {text} has shape "
                            f"{tuple(getattr(value, 'shape', ()))} but must map "
                            f"{stored.shape[1]} source neurons to {stored.shape[0]} targets; "
                            "did you mean transpose(W)?")
    return value

"""Validate Loihi 2 sum-of-products learning-rule strings before they reach Lava.

Lava's own parser (``lava/magma/core/learning/symbolic_equation.py`` + ``product_series.py``)
answers most mistakes with an ``AttributeError: 'NoneType' object has no attribute 'expr'``,
and silently mis-reads a few others (``(-x1)`` loses its minus, ``x12`` means ``x1*2``,
``((x1+1))`` vanishes, ``x0*y0`` parses but then crashes the floating-point model). This module
parses the same language with its own, stricter parser, so that every string it accepts means
the same thing to Lava as to us, and every string it rejects gets a message that names the rule,
the term, the limit and -- where one exists -- the nearest expressible form.

Grammar accepted (whitespace ignored; ``*`` required between factors)::

    rule    := ['+'|'-'] term (('+'|'-') term)*
    term    := factor ('*' factor)*            exactly one dependency factor per term
    factor  := literal | dependency | var | '(' bracket ')' | 'sgn(' sgnarg ')'
    literal := INT | '2^' ['+'|'-'] INT        (so n*2^e is two literal factors)
    dependency := 'x0' | 'y0' | 'u' DIGIT      one u<k> (same k) per rule set
    var     := 'x1' | 'x2' | 'y1' | 'y2' | 'y3' | 'w' | 'd' | 't'
    bracket := ['+'] var | var ('+'|'-') const | const ('+'|'-') var | ['+'|'-'] literal
    sgnarg  := var_wdt [('+'|'-') const] | const '+' var_wdt

All literals of a term multiply into its scale ``m * 2^e``; as in Lava, ``m`` is then halved
(and ``e`` incremented) while ``|m| > 7`` and ``m`` is even, and the result must satisfy
``m in [-8, 7]`` and ``e in [-7, 8]``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import NoReturn

from neurolocal.errors import LoweringError

from ..profiles import LOIHI2, LearningEngine, Profile

__all__ = [
    "Factor",
    "LoihiRuleError",
    "LoweringError",
    "ProductTerm",
    "RuleSet",
    "float_to_mantissa_exp",
    "validate_loihi_rule",
]

TARGETS = ("dw", "dd", "dt")


class LoihiRuleError(LoweringError, ValueError):
    """A Loihi learning-rule string (or term) that Loihi 2 cannot express.

    Attributes name what broke so callers (the lowering, the CLI) can point at it:
    ``target`` (``"dw"``...), ``term_index`` (0-based, or ``None`` for rule-level problems),
    ``term_text``, ``reason`` (the limit broken) and ``suggestion`` (nearest expressible form,
    or ``None``).
    """

    def __init__(
        self,
        reason: str,
        *,
        target: str | None = None,
        term_index: int | None = None,
        term_text: str | None = None,
        suggestion: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.reason = reason
        self.target = target
        self.term_index = term_index
        self.term_text = term_text
        self.suggestion = suggestion
        where = ""
        if target is not None:
            where = f"{target}"
            if term_index is not None:
                where += f" term[{term_index}] {term_text!r}"
            where += ": "
        msg = where + reason
        if suggestion:
            msg += f"; nearest expressible: {suggestion}"
        if hint:
            msg += f" ({hint})"
        super().__init__(msg)


# ----------------------------------------------------------------------------------------------
# Data model


@dataclass(frozen=True)
class Factor:
    """One non-dependency factor: ``var``, ``(var + const)`` or ``sgn(var + const)``."""

    var: str
    const: int | None = None
    sgn: bool = False

    def to_lava_string(self) -> str:
        inner = self.var
        if self.const is not None:
            inner += f"+{self.const}" if self.const >= 0 else f"-{-self.const}"
        if self.sgn:
            return f"sgn({inner})"
        return inner if self.const is None else f"({inner})"


@dataclass(frozen=True)
class ProductTerm:
    """``scale_mantissa * 2^scale_exp * dependency * factors...``; one Loihi product.

    ``dependency`` is ``"x0"``, ``"y0"`` or ``"u<k>"``. ``factors`` may be given as a list;
    it is stored as a tuple so terms are hashable and comparable.
    """

    scale_mantissa: int
    scale_exp: int
    dependency: str
    factors: tuple[Factor, ...] = ()
    source: str | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "factors", tuple(self.factors))
        if not re.fullmatch(r"x0|y0|u\d", self.dependency):
            raise LoihiRuleError(
                f"dependency must be x0, y0 or u<digit>, got {self.dependency!r}"
            )

    @property
    def scale(self) -> float:
        return self.scale_mantissa * 2.0**self.scale_exp

    @property
    def decimate_exponent(self) -> int | None:
        """``k`` of a ``u<k>`` dependency (the term fires every ``2^k``-th epoch), else None."""
        return int(self.dependency[1:]) if self.dependency.startswith("u") else None

    def fixed_point_shift(self, profile: Profile = LOIHI2) -> int:
        """LSBs Lava's fixed-point engine drops from this product (see LearningEngine)."""
        return _engine(profile).fixed_point_shift([f.var for f in self.factors])

    def to_lava_string(self, first: bool = True) -> str:
        """The term as Lava text; ``first=False`` gives it a leading `` + ``/`` - ``."""
        m = self.scale_mantissa
        body = "*".join(
            [f"{abs(m)}*2^{self.scale_exp}", self.dependency]
            + [f.to_lava_string() for f in self.factors]
        )
        if first:
            return ("-" if m < 0 else "") + body
        return (" - " if m < 0 else " + ") + body


@dataclass(frozen=True)
class RuleSet:
    """The three learning targets of one Loihi synapse group (None = target not learned)."""

    dw: tuple[ProductTerm, ...] | None = None
    dd: tuple[ProductTerm, ...] | None = None
    dt: tuple[ProductTerm, ...] | None = None

    def __post_init__(self) -> None:
        for target in TARGETS:
            terms = getattr(self, target)
            if terms is None:
                continue
            terms = tuple(terms)
            if not terms:
                raise LoihiRuleError(
                    "a rule needs at least one term; use None for an unlearned target",
                    target=target,
                )
            object.__setattr__(self, target, terms)

    def items(self) -> Iterator[tuple[str, tuple[ProductTerm, ...]]]:
        for target in TARGETS:
            terms = getattr(self, target)
            if terms is not None:
                yield target, terms

    @property
    def decimate_exponent(self) -> int | None:
        ks = {t.decimate_exponent for _, terms in self.items() for t in terms}
        ks.discard(None)
        return ks.pop() if ks else None

    def to_lava_string(self, target: str) -> str | None:
        terms = getattr(self, target)
        if terms is None:
            return None
        return "".join(t.to_lava_string(first=(i == 0)) for i, t in enumerate(terms))

    def to_lava_strings(self) -> dict[str, str]:
        """``{"dw": ..., ...}`` for the learned targets, ready for ``Loihi2FLearningRule(**)``."""
        out: dict[str, str] = {}
        for target, _ in self.items():
            s = self.to_lava_string(target)
            assert s is not None
            out[target] = s
        return out


# ----------------------------------------------------------------------------------------------
# Scale representation


def float_to_mantissa_exp(value: float, profile: Profile = LOIHI2) -> tuple[int, int, float]:
    """Nearest ``mantissa * 2**exp`` to ``value`` within the profile's scale ranges.

    Returns ``(mantissa, exp, rel_error)`` with ``rel_error = |approx - value| / |value|``
    (0 for ``value == 0``). Ties go to the larger magnitude; among equal values the smallest
    ``|mantissa|`` wins, so exactly representable values round-trip with ``rel_error == 0``.
    Values beyond the range saturate to the largest magnitude; magnitudes below half the
    smallest step (``2^-8`` for Loihi 2) underflow to ``(0, 0, 1.0)`` -- a lowering should treat
    ``rel_error == 1`` as "this rate vanishes on the chip".
    """
    if not math.isfinite(value):
        raise ValueError(f"cannot represent non-finite scale {value!r} as mantissa*2^exp")
    if value == 0:
        return 0, 0, 0.0
    eng = _engine(profile)
    (mlo, mhi), (elo, ehi) = eng.scale_mantissa_range, eng.scale_exp_range
    target = Fraction(value)
    best: tuple[Fraction, Fraction, int, int, int] = (abs(target), Fraction(0), 0, 0, 0)
    for e in range(elo, ehi + 1):
        for m in range(mlo, mhi + 1):
            if m == 0:
                continue
            approx = Fraction(m) * Fraction(2) ** e
            key = (abs(approx - target), -abs(approx), abs(m), e, m)
            if key < best:
                best = key
    m, e = best[4], best[3]
    approx = m * 2.0**e
    return m, e, abs(approx - value) / abs(value)


def _describe_scale(m: int, e: int) -> str:
    return f"{m}*2^{e} = {_fmt(m * 2.0**e)}"


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _suggest(value: float, profile: Profile) -> str:
    m, e, rel = float_to_mantissa_exp(value, profile)
    return f"{_describe_scale(m, e)} (rel. error {100 * rel:.3g}%)"


# ----------------------------------------------------------------------------------------------
# Lexer


_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<float>(?:\d+\.\d*|\.\d+)(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+)
  | (?P<int>\d+)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>[-+*^/()])
  | (?P<bad>.)
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class _Tok:
    kind: str  # int float ident op end
    text: str
    start: int
    end: int


def _lex(text: str, target: str) -> list[_Tok]:
    toks: list[_Tok] = []
    for m in _TOKEN_RE.finditer(text):
        kind = m.lastgroup
        assert kind is not None
        if kind == "ws":
            continue
        if kind == "bad":
            raise LoihiRuleError(
                f"unexpected character {m.group()!r} at position {m.start()}",
                target=target,
                hint="a rule uses + - * ^ ( ), integers, x0 y0 u<k> x1 x2 y1 y2 y3 w d t, sgn()",
            )
        toks.append(_Tok(kind, m.group(), m.start(), m.end()))
    toks.append(_Tok("end", "", len(text), len(text)))
    return toks


# ----------------------------------------------------------------------------------------------
# Parser


@dataclass
class _TermAcc:
    """What one term collects while it is parsed (Lava-style mantissa/exponent bookkeeping)."""

    sign: int = 1
    mantissa: int = 1
    exp: int = 0
    value: Fraction = Fraction(1)
    non_integer: str | None = None
    dependencies: list[str] = field(default_factory=list)
    factors: list[Factor] = field(default_factory=list)

    def add_literal(self, mantissa: int, exp: int) -> None:
        self.mantissa *= mantissa
        self.exp += exp
        self.value *= Fraction(mantissa) * Fraction(2) ** exp


class _Parser:
    def __init__(self, text: str, target: str, profile: Profile) -> None:
        self.text = text
        self.target = target
        self.eng = _engine(profile)
        self.profile = profile
        self.toks = _lex(text, target)
        self.i = 0
        self.term_index = 0
        self.term_tok = 0

    # -- helpers --------------------------------------------------------------------------
    @property
    def tok(self) -> _Tok:
        return self.toks[self.i]

    def advance(self) -> _Tok:
        t = self.toks[self.i]
        self.i += 1
        return t

    def term_text(self) -> str:
        """Source text of the current term: up to the next top-level + or - (or the end)."""
        depth, j = 0, self.term_tok
        while self.toks[j].kind != "end":
            t = self.toks[j]
            depth += (t.text == "(") - (t.text == ")")
            separator = t.text in ("+", "-") and self.toks[j - 1].text not in "^*("
            if depth == 0 and j > self.term_tok and separator:
                break
            j += 1
        return self.text[self.toks[self.term_tok].start : self.toks[j].start].strip()

    def fail(
        self, reason: str, *, suggestion: str | None = None, hint: str | None = None
    ) -> NoReturn:
        raise LoihiRuleError(
            reason,
            target=self.target,
            term_index=self.term_index,
            term_text=self.term_text() or self.text.strip(),
            suggestion=suggestion,
            hint=hint,
        )

    def known_vars(self) -> str:
        e = self.eng
        lo, hi = e.uk_digits
        names = ["x0", "y0", f"u{lo}..u{hi}", *e.pre_traces, *e.post_traces, *e.synaptic_vars]
        return " ".join(names)

    # -- grammar --------------------------------------------------------------------------
    def parse_rule(self) -> list[ProductTerm]:
        if self.tok.kind == "end":
            raise LoihiRuleError(
                "empty rule string; pass None for a target that does not learn",
                target=self.target,
            )
        terms: list[ProductTerm] = []
        sign = 1
        if self.tok.text in ("+", "-"):
            sign = -1 if self.advance().text == "-" else 1
        while True:
            self.term_tok = self.i
            terms.append(self.parse_term(sign))
            if self.tok.kind == "end":
                return terms
            op = self.advance()
            assert op.text in ("+", "-")
            sign = -1 if op.text == "-" else 1
            self.term_index += 1

    def parse_term(self, sign: int) -> ProductTerm:
        start = self.tok.start
        acc = _TermAcc(sign=sign)
        if self.tok.kind == "end" or self.tok.text in ("+", "-"):
            self.fail("empty term (two operators in a row, or a trailing + / -)")
        self.parse_factor(acc)
        while True:
            t = self.tok
            if t.kind == "end" or t.text in ("+", "-"):
                break
            if t.text == "*":
                self.advance()
                if self.tok.text in ("+", "-"):
                    self.fail(
                        f"sign inside a product ('*{self.tok.text}')",
                        hint="Lava splits terms at every + and -: put the sign in front of "
                        "the term, e.g. '- 2^-2*x0*y1'",
                    )
                if self.tok.kind == "end":
                    self.fail("product ends with '*'")
                self.parse_factor(acc)
                continue
            if t.text == ")":
                self.fail("unbalanced ')'")
            if t.text == "/":
                self.fail(
                    "division is not supported",
                    hint="write the scale as m*2^e, e.g. x1*y0/4 -> 2^-2*x1*y0",
                )
            if t.text == "^":
                self.fail("'^' is only allowed as 2^e (a power of two)")
            self.fail(
                f"missing '*' before {t.text!r}",
                hint="Lava reads juxtaposed symbols as an implicit product; write '*'",
            )
        source = self.text[start : self.tok.start].strip()
        return self.finish_term(acc, source)

    def parse_literal(self) -> tuple[int, int, Fraction, str | None]:
        """INT | FLOAT | 2^[+-]INT -> (mantissa, exp, value, non_integer_text)."""
        t = self.advance()
        if t.kind == "float":
            if self.tok.text == "^":
                self.fail(f"non-integer literal {t.text}", hint="only 2^e powers are allowed")
            return 1, 0, Fraction(t.text), t.text
        n = int(t.text)
        if self.tok.text != "^":
            return n, 0, Fraction(n), None
        if t.text != "2":
            self.fail(
                f"'{t.text}^...' is not a power of two",
                hint="scales are m*2^e with integer m in [-8, 7] and e in [-7, 8]",
            )
        self.advance()  # '^'
        esign = 1
        if self.tok.text in ("+", "-"):
            esign = -1 if self.advance().text == "-" else 1
        et = self.advance()
        if et.kind == "float":
            self.fail(f"non-integer exponent 2^{et.text}")
        if et.kind != "int":
            self.fail(f"2^ must be followed by an integer exponent, got {et.text or 'end'!r}")
        e = esign * int(et.text)
        if self.tok.text == "^":
            self.fail("chained powers (2^a^b) are not supported")
        return 1, e, Fraction(2) ** e, None

    def parse_factor(self, acc: _TermAcc) -> None:
        t = self.tok
        if t.kind in ("int", "float"):
            m, e, value, bad = self.parse_literal()
            if bad is not None:
                acc.non_integer = acc.non_integer or bad
                acc.value *= value
            else:
                acc.add_literal(m, e)
            return
        if t.kind == "ident":
            if t.text == "sgn":
                self.advance()
                if self.tok.text != "(":
                    self.fail("sgn must be called with brackets, e.g. sgn(w)")
                self.parse_sgn(acc)
                return
            self.advance()
            kind = self.classify(t.text)
            if kind == "dep":
                acc.dependencies.append(t.text)
            else:
                acc.factors.append(Factor(t.text))
            return
        if t.text == "(":
            self.parse_bracket(acc)
            return
        if t.text == ")":
            self.fail("unbalanced ')'")
        if t.text == "*":
            self.fail("'*' without a left operand")
        if t.text == "^":
            self.fail("'^' is only allowed as 2^e (a power of two)")
        if t.text == "/":
            self.fail("division is not supported", hint="write the scale as m*2^e")
        self.fail(f"unexpected {t.text or 'end of rule'!r}")

    def classify(self, name: str) -> str:
        e = self.eng
        if name in ("x0", "y0") or re.fullmatch(r"u\d", name):
            if name.startswith("u"):
                lo, hi = e.uk_digits
                if not lo <= int(name[1:]) <= hi:
                    self.fail(f"unknown variable {name}", hint=f"u<k> needs k in {lo}..{hi}")
            return "dep"
        if name in e.pre_traces or name in e.post_traces or name in e.synaptic_vars:
            return "var"
        hint = f"known: {self.known_vars()}"
        if re.fullmatch(r"y\d+", name):
            hint = f"Loihi 2 has {len(e.post_traces)} post traces: {' '.join(e.post_traces)}"
        elif re.fullmatch(r"x\d+", name):
            hint = f"Loihi 2 has {len(e.pre_traces)} pre traces: {' '.join(e.pre_traces)}"
        elif re.fullmatch(r"u\d{2,}", name):
            hint = "u<k> takes a single digit k (the term fires every 2^k-th epoch)"
        elif name == "u":
            hint = "u needs its decimation digit, e.g. u0 (every epoch)"
        elif re.fullmatch(r"r\d", name):
            hint = (
                "Loihi 1 reward traces do not exist in Lava's Loihi 2 rules; bring a third "
                "factor in through y2/y3 (Loihi3FLearningRule)"
            )
        elif name.lower() != name and self.is_known(name.lower()):
            hint = f"names are lower case: {name.lower()}"
        self.fail(f"unknown variable {name}", hint=hint)

    def is_known(self, name: str) -> bool:
        e = self.eng
        return (
            name in ("x0", "y0")
            or bool(re.fullmatch(r"u\d", name))
            or name in e.pre_traces + e.post_traces + e.synaptic_vars
        )

    def bracket_tokens(self) -> list[_Tok]:
        """Tokens between '(' (current) and its matching ')'; consumes both."""
        open_tok = self.advance()
        inner: list[_Tok] = []
        while True:
            t = self.tok
            if t.kind == "end":
                self.i -= len(inner) + 1
                self.fail(f"'(' at position {open_tok.start} is never closed")
            if t.text == "(":
                self.fail(
                    "nested brackets are not supported",
                    hint="bracketed factor must be (var ± const); Lava drops a nested bracket",
                )
            if t.text == ")":
                self.advance()
                return inner
            inner.append(self.advance())

    def parse_const(self, toks: list[_Tok], what: str, sign: int = 1) -> int:
        """An integer constant inside a bracket: INT | 2^INT | INT*2^INT (integer valued)."""
        text = "".join(t.text for t in toks)
        m = re.fullmatch(r"(\d+)|2\^([+-]?\d+)|(\d+)\*2\^([+-]?\d+)", text)
        if m is None:
            if any(t.kind == "float" for t in toks):
                self.fail(f"non-integer constant {text} in {what}")
            self.fail(f"bracketed factor must be (var ± const), got {what}")
        if m.group(1) is not None:
            value = Fraction(int(m.group(1)))
        elif m.group(2) is not None:
            value = Fraction(2) ** int(m.group(2))
        else:
            value = int(m.group(3)) * Fraction(2) ** int(m.group(4))
        if value.denominator != 1:
            self.fail(f"non-integer constant {text} = {_fmt(float(value))} in {what}")
        value *= sign
        lo, hi = self.eng.constant_range
        if not lo <= value <= hi:
            self.fail(f"constant {int(value)} in {what} outside [{lo}, {hi}]")
        return int(value)

    def split_bracket(self, inner: list[_Tok], what: str) -> tuple[int, _Tok | None, list[_Tok]]:
        """Split ``[s] a [op rest]`` into (leading sign, a, [op, *rest])."""
        if not inner:
            self.fail(f"empty brackets {what}")
        j = 0
        lead = 1
        if inner[0].text in ("+", "-"):
            lead = -1 if inner[0].text == "-" else 1
            j = 1
        if j >= len(inner):
            self.fail(f"bracketed factor must be (var ± const), got {what}")
        return lead, inner[j], inner[j + 1 :]

    def parse_bracket(self, acc: _TermAcc) -> None:
        open_tok = self.tok
        inner = self.bracket_tokens()
        what = self.text[open_tok.start : self.toks[self.i - 1].end]
        lead, first, rest = self.split_bracket(inner, what)
        # (literal) / (-literal): a scale factor, as in Lava
        if first.kind in ("int", "float") and not any(t.kind == "ident" for t in rest):
            lit = [first, *rest]
            text = "".join(t.text for t in lit)
            if first.kind == "float" and not rest:
                acc.non_integer = acc.non_integer or text
                acc.value *= Fraction(text) * lead
                return
            lm = re.fullmatch(r"(\d+)|2\^([+-]?\d+)|(\d+)\*2\^([+-]?\d+)", text)
            if lm is None:
                self.fail(f"bracketed factor must be (var ± const), got {what}")
            if lm.group(1) is not None:
                acc.add_literal(lead * int(lm.group(1)), 0)
            elif lm.group(2) is not None:
                acc.add_literal(lead, int(lm.group(2)))
            else:
                acc.add_literal(lead * int(lm.group(3)), int(lm.group(4)))
            return
        # (var) / (var ± const) / (const ± var)
        if first.kind == "ident":
            var, var_sign = first.text, lead
            if rest:
                if rest[0].text not in ("+", "-") or len(rest) < 2:
                    self.fail(f"bracketed factor must be (var ± const), got {what}")
                const = self.parse_const(rest[1:], what, -1 if rest[0].text == "-" else 1)
            else:
                const = None
        else:
            # const ± var
            ops = [k for k, t in enumerate(rest) if t.text in ("+", "-")]
            if not ops or rest[-1].kind != "ident" or ops[-1] != len(rest) - 2:
                self.fail(f"bracketed factor must be (var ± const), got {what}")
            k = ops[-1]
            const = self.parse_const([first, *rest[:k]], what, lead)
            var = rest[-1].text
            var_sign = -1 if rest[k].text == "-" else 1
        if self.classify(var) == "dep":
            self.fail(
                f"dependency {var} cannot be bracketed",
                hint="bracketed factor must be (var ± const) with var a trace or w/d/t",
            )
        if const is None:
            if var_sign < 0:
                self.fail(
                    f"({'-' + var}) loses its minus sign in Lava",
                    hint="put the sign in front of the term instead",
                )
            acc.factors.append(Factor(var))
            return
        if var_sign < 0:
            # -(var) + c == -(var - c): Lava flips the term's sign and negates the constant
            acc.sign *= -1
            const = -const
        acc.factors.append(Factor(var, const))

    def parse_sgn(self, acc: _TermAcc) -> None:
        open_tok = self.tok
        inner = self.bracket_tokens()
        what = "sgn" + self.text[open_tok.start : self.toks[self.i - 1].end]
        allowed = ", ".join(self.eng.sgn_vars)
        lead, first, rest = self.split_bracket(inner, what)
        if first.kind == "ident":
            var, var_sign = first.text, lead
            const: int | None = None
            if rest:
                if rest[0].text not in ("+", "-") or len(rest) < 2:
                    self.fail(f"sgn() argument must be var ± const, got {what}")
                const = self.parse_const(rest[1:], what, -1 if rest[0].text == "-" else 1)
        else:
            ops = [k for k, t in enumerate(rest) if t.text in ("+", "-")]
            if not ops or rest[-1].kind != "ident" or ops[-1] != len(rest) - 2:
                self.fail(f"sgn() only on {allowed} (optionally ± const), got {what}")
            k = ops[-1]
            const = self.parse_const([first, *rest[:k]], what, lead)
            var, var_sign = rest[-1].text, (-1 if rest[k].text == "-" else 1)
        if var not in self.eng.sgn_vars:
            self.fail(f"sgn() only on {allowed}, got {what}")
        if var_sign < 0:
            self.fail(
                f"the variable in {what} cannot be negated",
                hint="Lava drops or rejects it; use -sgn(...) by negating the term",
            )
        acc.factors.append(Factor(var, const, sgn=True))

    def finish_term(self, acc: _TermAcc, source: str) -> ProductTerm:
        e = self.eng
        if not acc.dependencies:
            self.fail("term has no dependency (needs exactly one of x0, y0, u<k>)")
        if len(acc.dependencies) > 1:
            a, b = acc.dependencies[0], acc.dependencies[1]
            self.fail(
                f"term has two dependencies {a} and {b}",
                hint=f"one of x0, y0, u<k> per term; Lava's floating_pt model crashes on "
                f"{a}*{b} and {b} is not a trace",
            )
        value = float(acc.value * acc.sign)
        if acc.non_integer is not None:
            self.fail(
                f"non-integer literal {acc.non_integer}",
                suggestion=f"term scale {_fmt(value)} -> " + _suggest(value, self.profile),
                hint="literals are integers: n, 2^e or n*2^e",
            )
        m, x = acc.mantissa * acc.sign, acc.exp
        # Lava's normalisation (product_series.ProductSeries._generate_product)
        while abs(m) > 7 and m % 2 == 0 and x < 8:
            m //= 2
            x += 1
        (mlo, mhi), (elo, ehi) = e.scale_mantissa_range, e.scale_exp_range
        orig = f"{acc.mantissa * acc.sign}*2^{acc.exp}"
        if not mlo <= m <= mhi:
            self.fail(
                f"scale mantissa {m} outside [{mlo}, {mhi}] (scale {orig} = {_fmt(value)})",
                suggestion=_suggest(value, self.profile),
            )
        if not elo <= x <= ehi:
            self.fail(
                f"scale exponent {x} outside [{elo}, {ehi}] (scale {orig} = {_fmt(value)})",
                suggestion=_suggest(value, self.profile),
            )
        return ProductTerm(m, x, acc.dependencies[0], tuple(acc.factors), source=source)


def _engine(profile: Profile) -> LearningEngine:
    if profile.learning is None:
        raise LoihiRuleError(
            f"profile {profile.name!r} has no sum-of-products learning engine; "
            f"Loihi rule strings only apply to a fixed-point profile such as 'loihi2'"
        )
    return profile.learning


def validate_loihi_rule(
    dw: str | None,
    dd: str | None = None,
    dt: str | None = None,
    profile: Profile = LOIHI2,
) -> RuleSet:
    """Parse and check Loihi learning-rule strings; return their :class:`RuleSet`.

    Raises :class:`LoihiRuleError` (a :class:`~neurolocal.errors.LoweringError` and a
    ``ValueError``) naming the target, the term (index and text), the limit and the nearest
    expressible form. Run this before any string goes to Lava, and hand Lava
    ``RuleSet.to_lava_strings()`` rather than the raw input.
    """
    engine = _engine(profile)
    given = {"dw": dw, "dd": dd, "dt": dt}
    parsed: dict[str, list[ProductTerm]] = {}
    for target, text in given.items():
        if text is None:
            continue
        if not isinstance(text, str):
            raise LoihiRuleError(
                f"rule must be a string or None, got {type(text).__name__}", target=target
            )
        parsed[target] = _Parser(text, target, profile).parse_rule()
    if not parsed:
        raise LoihiRuleError("no learning rule given: pass at least one of dw, dd, dt")
    uses: dict[str, tuple[str, int]] = {}
    for target, terms in parsed.items():
        for i, term in enumerate(terms):
            if term.decimate_exponent is not None:
                uses.setdefault(term.dependency, (target, i))
    if len(uses) > engine.max_uk_per_rule_set:
        (a, (ta, ia)), (b, (tb, ib)) = list(uses.items())[:2]
        raise LoihiRuleError(
            f"{a} and {b} in one rule set ({ta} term[{ia}] uses {a}, {tb} term[{ib}] uses {b})",
            hint="Loihi 2 has one u<k> decimation per learning rule: use the same k everywhere",
        )
    return RuleSet(**{t: tuple(v) for t, v in parsed.items()})


def rule_set_from_mapping(rules: Mapping[str, str | None] | RuleSet, profile: Profile = LOIHI2
                          ) -> RuleSet:
    """Accept ``{"dw": ..., "dd": ..., "dt": ...}`` or a RuleSet; validate either way."""
    if isinstance(rules, RuleSet):
        rules = rules.to_lava_strings()
    unknown = set(rules) - set(TARGETS)
    if unknown:
        raise LoihiRuleError(
            f"unknown learning target(s) {sorted(unknown)}; Loihi learns dw, dd and dt only"
        )
    return validate_loihi_rule(rules.get("dw"), rules.get("dd"), rules.get("dt"), profile=profile)


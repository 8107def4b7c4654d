"""Parser of the rule language (grammar in docs/rule-language.md).

Hand-written recursive descent over :mod:`neurolocal.lexer` tokens, building sympy
expressions directly: rule text is never evaluated as Python. Every failure is a
:class:`RuleSyntaxError` with line, column and what was expected.
"""

from __future__ import annotations

import math
import operator
from pathlib import Path

import sympy

from .errors import RuleSyntaxError, UnknownSymbolError
from .lexer import DIGITS, Token, split_lines, tokenize
from .rule import (
    END,
    FORWARD,
    RECURRENT,
    Equation,
    FeedbackDecl,
    GlobalDecl,
    NoiseDecl,
    PhaseDecl,
    Rule,
    Update,
)
from .symbols import (
    ALL_SCOPES,
    FUNCTIONS,
    NEURON_COMPARTMENTS,
    OTHER_NEURON_SCOPES,
    TIME_COMPARTMENTS,
    WEIGHT_FUNCTIONS,
    WEIGHT_LEAVES,
    Ref,
    sympy_function,
)
from .terms import (
    MAX_CONSTANT_DIGITS,
    MAX_TERMS,
    coefficient_digits,
    constant_problem,
    estimate_expansion,
    exp_log_powers,
    expansion_problem,
    sum_digits,
)

#: Levels of nesting: each '(', function call, sign and '**' is one (sympy recurses per level).
MAX_DEPTH = 64
#: Largest |exponent| of a power (and of ``exp(c*log(b))``, which is ``b**c``).
MAX_EXPONENT = 64
#: Digits of a number literal before its exponent, and the largest |exponent| of 10.
MAX_NUMBER_DIGITS, MAX_NUMBER_EXPONENT = 40, 300
#: Sums and products are folded with sympy's operators up to this many operands, so a
#: rule's expressions are exactly what they were; longer ones are built in one call (the
#: fold is quadratic).
FOLD_OPERANDS = 32
PHASE_KINDS = {"noise": ("sigma",), "relax": ("steps", "rate"), "hold": (), END: ()}
KEYWORDS = ("rule", "cite", "global", "phase", "feedback", "neuron", "output", "noise", "on")
#: Where a projection may come from: the layer above, the output layer, the layer below
#: (only through the forward synapses themselves, ``via W``), the same layer, or the same
#: layer one step later (``future``: parsed, so that the checker can name it).
PROJECTION_SOURCES = ("next", "output", "prev", "lateral", "future")
NOISE_TARGETS = ("r", "a")


class _Context:
    """What bare names mean where an expression is being parsed."""

    def __init__(self, kind: str, *, globals_: dict, compartments: set[str],
                 syn_vars: set[str] | None = None):
        self.kind = kind  # "update", "neuron", "output", "weights"
        self.globals = globals_
        self.compartments = compartments
        self.syn_vars = syn_vars or {"w"}

    def in_scope(self) -> list[str]:
        if self.kind == "weights":
            return [FORWARD, RECURRENT, *WEIGHT_LEAVES]
        names = [f"glob.{g}" for g in self.globals]
        comps = sorted(self.compartments)
        if self.kind == "update":
            names += [f"pre.{c}" for c in comps] + [f"post.{c}" for c in comps]
            names += [f"syn.{v}" for v in sorted(self.syn_vars)]
        else:
            names += comps + [f"{s}.{c}" for s in OTHER_NEURON_SCOPES for c in comps]
        return names


class _Parser:
    def __init__(self, text: str, source: str):
        self.text, self.source = text, source
        self.lines = split_lines(text)
        self.toks = tokenize(text, source)
        self.i = 0
        self.state_vars_by_projection: dict[str, set[str]] | None = None
        self.equation_targets: set[str] = set()
        self.made_terms = 0.0

    # -- token helpers -----------------------------------------------------------------
    @property
    def tok(self) -> Token:
        return self.toks[self.i]

    def error(self, message: str, tok: Token | None = None, cls=RuleSyntaxError):
        tok = tok or self.tok
        line_text = self.lines[tok.line - 1] if 0 < tok.line <= len(self.lines) else None
        return cls(message, line=tok.line, col=tok.col, source=self.source, text=line_text)

    def expect(self, kind: str, text: str | None = None, what: str | None = None) -> Token:
        tok = self.tok
        if tok.kind != kind or (text is not None and tok.text != text):
            wanted = what or (repr(text) if text else kind.lower())
            raise self.error(f"expected {wanted}, found {tok.describe()}")
        self.i += 1
        return tok

    def accept(self, text: str) -> bool:
        if self.tok.kind in ("OP", "NAME") and self.tok.text == text:
            self.i += 1
            return True
        return False

    def statement_text(self, start: int) -> str:
        end = self.i
        first, last = self.toks[start], self.toks[max(end - 1, start)]
        if first.line == last.line:
            return self.lines[first.line - 1][first.col - 1:last.col - 1 + len(last.text)]
        return " ".join(t.text for t in self.toks[start:end])

    # -- expressions -------------------------------------------------------------------
    def nesting_error(self) -> RuleSyntaxError:
        return self.error(f"expression nested more than {MAX_DEPTH} levels deep (each '(', "
                          "function call, sign and '**' is a level): split it, e.g. compute "
                          "part of it in a neuron equation")

    def expression(self, ctx: _Context, depth: int = 0) -> sympy.Expr:
        if depth > MAX_DEPTH:
            raise self.nesting_error()
        summands = [(self.tok, self.term(ctx, depth))]
        while self.tok.kind == "OP" and self.tok.text in "+-":
            op = self.tok
            if len(summands) == MAX_TERMS:
                raise self.error(f"more than {MAX_TERMS} summands in one sum (limit: "
                                 f"{MAX_TERMS} terms per expression); split it across "
                                 "neuron equations", op)
            self.i += 1
            right = self.term(ctx, depth)
            summands.append((op, right if op.text == "+" else -right))
        if len(summands) == 1:
            return summands[0][1]
        self.check_sum_constants(summands)
        return _fold(summands[0][1], [(operator.add, v, v) for _, v in summands[1:]], sympy.Add)

    def check_sum_constants(self, summands: list[tuple[Token, sympy.Expr]]) -> None:
        """Like terms' coefficients add up; refuse before sympy adds huge rationals."""
        groups: dict[sympy.Expr, list[sympy.Expr]] = {}
        for _, value in summands:
            for arg in sympy.Add.make_args(value):
                coeff, rest = arg.as_coeff_Mul()
                groups.setdefault(rest, []).append(coeff)
        for coefficients in groups.values():
            digits = sum_digits(coefficients)
            if digits > MAX_CONSTANT_DIGITS:
                raise self.error(constant_problem(digits, "this sum"), summands[0][0])

    def term(self, ctx: _Context, depth: int) -> sympy.Expr:
        left = self.unary(ctx, depth)
        digits = coefficient_digits(left)
        rest = []  # (operator, operand, factor of one Mul)
        while self.tok.kind == "OP" and self.tok.text in ("*", "/"):
            op_tok = self.tok
            if len(rest) + 1 == MAX_TERMS:
                raise self.error(f"more than {MAX_TERMS} factors in one product; write "
                                 "repeated factors as a power (x**3)", op_tok)
            self.i += 1
            right = self.unary(ctx, depth)
            factor = right
            if op_tok.text == "/":
                if right == 0:
                    raise self.error("division by zero", op_tok)
                factor = sympy.Pow(right, -1)
            digits += coefficient_digits(factor)
            if digits > MAX_CONSTANT_DIGITS:
                raise self.error(constant_problem(digits, "this product"), op_tok)
            rest.append((operator.truediv if op_tok.text == "/" else operator.mul, right, factor))
        return _fold(left, rest, sympy.Mul)

    def unary(self, ctx: _Context, depth: int) -> sympy.Expr:
        if depth > MAX_DEPTH:
            raise self.nesting_error()
        if self.tok.kind == "OP" and self.tok.text in "+-":
            neg = self.tok.text == "-"
            self.i += 1
            value = self.unary(ctx, depth + 1)
            return -value if neg else value
        return self.power(ctx, depth)

    def power(self, ctx: _Context, depth: int) -> sympy.Expr:
        base = self.atom(ctx, depth)
        if self.tok.kind == "OP" and self.tok.text in ("**", "^"):
            op_tok = self.tok
            self.i += 1
            exponent = self.unary(ctx, depth + 1)
            return self.safe_pow(base, exponent, op_tok)
        return base

    def check_power_size(self, base: sympy.Expr, exponent: float, tok: Token) -> None:
        """``(c*x)**n`` is ``c**n * x**n``: refuse before sympy computes a huge ``c**n``."""
        digits = abs(exponent) * coefficient_digits(base)
        if digits > MAX_CONSTANT_DIGITS:
            raise self.error(constant_problem(digits, "this power"), tok)

    def safe_pow(self, base: sympy.Expr, exponent: sympy.Expr, tok: Token) -> sympy.Expr:
        if exponent.is_Number:
            if abs(float(exponent)) > MAX_EXPONENT:
                raise self.error(f"exponent out of range: use |exponent| <= {MAX_EXPONENT}",
                                 tok)
            self.check_power_size(base, float(exponent), tok)
            if base.is_Number:
                try:
                    value = float(base) ** float(exponent)
                except (OverflowError, ZeroDivisionError, ValueError) as exc:
                    raise self.error(f"constant power cannot be evaluated ({exc})", tok) from None
                if isinstance(value, complex) or not math.isfinite(value):
                    raise self.error("constant power is not a finite real number", tok)
                exact = sympy.Pow(base, exponent)
                return exact if exact.is_Rational else sympy.Float(value)
        elif base.is_Number and base.is_positive is not True:
            raise self.error("a non-constant exponent needs a positive constant base", tok)
        if base == 0 and exponent.is_Number and exponent <= 0:
            raise self.error("0 raised to a non-positive power", tok)
        return sympy.Pow(base, exponent)

    def number(self, tok: Token) -> sympy.Expr:
        """An exact rational; the limits keep every literal printable and cheap."""
        mantissa, _, exp = tok.text.lower().partition("e")
        exp_digits = exp.lstrip("+-").lstrip("0")
        if len(exp_digits) > 3 or (exp_digits and int(exp_digits) > MAX_NUMBER_EXPONENT):
            raise self.error(f"number out of range: exponent must be within "
                             f"±{MAX_NUMBER_EXPONENT}", tok)
        digits = sum(ch in DIGITS for ch in mantissa)
        if digits > MAX_NUMBER_DIGITS:
            raise self.error(f"number has {digits} digits: at most {MAX_NUMBER_DIGITS} before "
                             "the exponent (write 1.5e-30, not 0.0000...15)", tok)
        return sympy.Rational(tok.text)

    def float_number(self, tok: Token) -> float:
        """A number that is used as a float (a default, a parameter): it must fit one."""
        value = float(self.number(tok))
        if not math.isfinite(value):
            raise self.error(f"number {tok.text} does not fit a float (at most about 1.8e308)",
                             tok)
        return value

    def atom(self, ctx: _Context, depth: int) -> sympy.Expr:
        tok = self.tok
        if tok.kind == "NUMBER":
            self.i += 1
            return self.number(tok)
        if tok.kind == "OP" and tok.text == "(":
            self.i += 1
            value = self.expression(ctx, depth + 1)
            self.expect("OP", ")", "')' to close the '(' at "
                        f"line {tok.line}, col {tok.col}")
            return value
        if tok.kind == "NAME":
            self.i += 1
            if self.tok.kind == "OP" and self.tok.text == "(":
                return self.call(tok, ctx, depth)
            return self.name(tok, ctx)
        raise self.error(f"expected a number, a name or '(', found {tok.describe()}")

    def call(self, name_tok: Token, ctx: _Context, depth: int) -> sympy.Expr:
        table = WEIGHT_FUNCTIONS if ctx.kind == "weights" else FUNCTIONS
        fname = name_tok.text
        if fname not in table:
            raise self.error(f"unknown function {fname!r}: expected one of "
                             f"{', '.join(sorted(table))}", name_tok)
        self.expect("OP", "(")
        args = [self.expression(ctx, depth + 1)]
        while self.accept(","):
            args.append(self.expression(ctx, depth + 1))
        self.expect("OP", ")", f"')' to close {fname}(")
        if len(args) != table[fname]:
            raise self.error(f"{fname}() takes {table[fname]} argument(s), got {len(args)}",
                             name_tok)
        if ctx.kind == "weights":
            if fname == "sparse":
                if not (args[0].is_Number and 0 < float(args[0]) <= 1):
                    raise self.error("sparse(p) needs a constant density 0 < p <= 1", name_tok)
                return sympy.Function("sparse")(args[0])
            if fname == "transpose":
                return sympy.Function("transpose")(args[0])
            return {"sign": sympy.sign, "abs": sympy.Abs}[fname](args[0])
        if fname == "slow" and not (isinstance(args[0], sympy.Symbol)
                                    and "__" in args[0].name):
            raise self.error("slow() takes one compartment, e.g. slow(post.delta) or slow(a)",
                             name_tok)
        for arg in args:  # sympy may expand an argument to evaluate the function (step)
            problem = expansion_problem(arg, f"the argument of {fname}()",
                                        "simplify the argument (sympy expands it to evaluate "
                                        f"{fname}), e.g. compute it in a neuron equation")
            if problem:
                raise self.error(problem, name_tok)
        if fname in ("exp", "sigmoid") and args[0].has(sympy.log):
            self.check_exp_of_log(args[0], name_tok)
        try:
            value = sympy_function(fname, args)
        except (ValueError, TypeError, ArithmeticError) as exc:  # sympy on legal input
            raise self.error(f"{fname}() cannot take these arguments ({exc})", name_tok) from None
        if value.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo, sympy.I):
            raise self.error(f"{fname}() of a constant that makes it infinite, complex or "
                             "undefined",
                             name_tok)
        return value

    def check_exp_of_log(self, arg: sympy.Expr, tok: Token) -> None:
        """sympy turns ``exp(c*log(b))`` into ``b**c``: the limits of a power apply."""
        for base, power in exp_log_powers(arg):
            if not abs(power) <= MAX_EXPONENT:
                raise self.error(f"exp(c*log(b)) is the power b**c, and |c| must be <= "
                                 f"{MAX_EXPONENT} as for any exponent", tok)
            self.check_power_size(base, power, tok)

    def name(self, tok: Token, ctx: _Context) -> sympy.Expr:
        if ctx.kind == "weights":
            if tok.text in (FORWARD, RECURRENT) or tok.text in WEIGHT_LEAVES:
                return sympy.Symbol(tok.text)
            raise self.error(f"unknown name {tok.text!r} in feedback weights: in scope are "
                             f"{', '.join(ctx.in_scope())} and functions "
                             f"{', '.join(sorted(WEIGHT_FUNCTIONS))}()", tok, UnknownSymbolError)
        if self.tok.kind == "OP" and self.tok.text == ".":
            self.i += 1
            member = self.expect("NAME", what=f"a name after '{tok.text}.'")
            ref = Ref(tok.text, member.text)
            if ref.scope not in ALL_SCOPES:
                raise self.error(f"unknown scope {tok.text!r}: expected one of "
                                 f"{', '.join(ALL_SCOPES)}", tok, UnknownSymbolError)
        elif tok.text in ctx.globals:
            ref = Ref("glob", tok.text)
        elif ctx.kind in ("neuron", "output") and tok.text in ctx.compartments:
            ref = Ref("self", tok.text)
        else:
            hint = ""
            if ctx.kind == "update" and tok.text in ctx.compartments:
                hint = f" (say pre.{tok.text} or post.{tok.text})"
            raise self.error(f"unknown symbol {tok.text!r}{hint}; in scope: "
                             f"{', '.join(ctx.in_scope())}", tok, UnknownSymbolError)
        if self.accept("@"):
            ref = Ref(ref.scope, ref.name, self.expect("NAME", what="a phase name after '@'").text)
        self.check_ref(ref, tok, ctx)
        return ref.symbol

    def check_ref(self, ref: Ref, tok: Token, ctx: _Context) -> None:
        ok = True
        if ref.scope == "glob":
            ok = ref.name in ctx.globals
        elif ref.scope == "syn":
            ok = ctx.kind == "update" and ref.name in ctx.syn_vars
        elif ref.scope in ("pre", "post"):
            ok = ctx.kind == "update" and ref.name in ctx.compartments
        elif ref.scope in (*OTHER_NEURON_SCOPES, "self"):
            ok = ref.name in ctx.compartments
        if not ok:
            raise self.error(f"unknown symbol {ref}; in scope: {', '.join(ctx.in_scope())}",
                             tok, UnknownSymbolError)

    # -- statements --------------------------------------------------------------------
    def parse(self) -> Rule:
        rule = Rule(name="", text=self.text, source=self.source)
        compartments = set(NEURON_COMPARTMENTS) | set(TIME_COMPARTMENTS)
        pending_updates: list[tuple[int, Token]] = []
        # First pass: declarations that define names (so statement order is free).
        start = self.i
        while self.tok.kind != "EOF":
            tok = self.tok
            if tok.kind == "NAME" and tok.text in ("neuron", "output", "noise"):
                self.i += 1
                compartments.add(self.expect("NAME", what="a compartment name").text)
            elif tok.kind == "NAME" and tok.text == "feedback":
                # a projection's target compartment is declared by the projection
                j = self.i
                while self.toks[j].kind not in ("NEWLINE", "EOF"):
                    if self.toks[j].text == "->" and self.toks[j + 1].kind == "NAME":
                        target = self.toks[j + 1].text
                        if target not in KEYWORDS and target not in FUNCTIONS:
                            compartments.add(target)
                        break
                    j += 1
            self.skip_line()
        self.i = start
        while self.tok.kind != "EOF":
            if self.tok.kind == "NEWLINE":
                self.i += 1
                continue
            head = self.expect("NAME", what=f"a statement keyword ({', '.join(KEYWORDS)})")
            kw = head.text
            if kw == "rule":
                if rule.name:
                    raise self.error("a rule file holds one 'rule' statement", head)
                rule.name = self.expect("NAME", what="the rule's name").text
                if self.tok.kind == "STRING":
                    rule.description = self.tok.text
                    self.i += 1
            elif kw == "cite":
                rule.cite.append(self.expect("STRING", what="a quoted citation").text)
            elif kw == "global":
                self.global_decl(rule, head, compartments)
            elif kw == "phase":
                self.phase_decl(rule, head)
            elif kw == "feedback":
                self.feedback_decl(rule, head, compartments)
            elif kw in ("neuron", "output"):
                self.equation(rule, kw, compartments)
            elif kw == "noise":
                self.noise_decl(rule, head)
            elif kw == "on":
                pending_updates.append((self.i, head))
                self.skip_line()
                continue
            else:
                raise self.error(f"expected a statement keyword ({', '.join(KEYWORDS)}), "
                                 f"found {head.text!r}", head)
            self.end_statement()
        if not rule.name:
            raise RuleSyntaxError("expected a 'rule NAME' statement", line=1, col=1,
                                  source=self.source)
        self.check_dynamic_equations(rule)
        for pos, head in pending_updates:
            self.i = pos
            self.update(rule, head, compartments)
            self.end_statement()
        return rule

    def skip_line(self) -> None:
        while self.tok.kind not in ("NEWLINE", "EOF"):
            self.i += 1
        if self.tok.kind == "NEWLINE":
            self.i += 1

    def end_statement(self) -> None:
        if self.tok.kind not in ("NEWLINE", "EOF"):
            raise self.error(f"expected end of line, found {self.tok.describe()}")
        if self.tok.kind == "NEWLINE":
            self.i += 1

    def new_name(self, rule: Rule, tok: Token, compartments: set[str]) -> str:
        name = tok.text
        if name in rule.globals or name in rule.feedback or name in rule.phases \
                or name == FORWARD:
            raise self.error(f"name {name!r} is already declared", tok)
        if name == RECURRENT:
            raise self.error(f"name {name!r} is reserved: it is the recurrent projection (the "
                             "same layer, one step earlier)", tok)
        if name in compartments:
            raise self.error(f"name {name!r} is a neuron compartment; pick another", tok)
        if name in KEYWORDS or name in FUNCTIONS:
            raise self.error(f"name {name!r} is reserved", tok)
        return name

    def global_decl(self, rule: Rule, head: Token, compartments: set[str]) -> None:
        vector = self.accept("vector")
        tok = self.expect("NAME", what="the global's name")
        name = self.new_name(rule, tok, compartments)
        value = None
        if self.accept("="):
            sign = -1 if self.accept("-") else 1
            value = sign * self.float_number(self.expect("NUMBER", what="a number"))
        elif not vector:
            raise self.error(f"expected '=' and a default value, found {self.tok.describe()}")
        rule.globals[name] = GlobalDecl(name, value, vector, head.line)

    def phase_decl(self, rule: Rule, head: Token) -> None:
        name = self.new_name(rule, self.expect("NAME", what="the phase's name"), set())
        self.expect("OP", "=")
        kind_tok = self.expect("NAME", what=f"a phase kind ({', '.join(PHASE_KINDS)})")
        if kind_tok.text not in PHASE_KINDS:
            raise self.error(f"unknown phase kind {kind_tok.text!r}: expected one of "
                             f"{', '.join(PHASE_KINDS)}", kind_tok)
        params: dict[str, float] = {}
        self.expect("OP", "(")
        while not self.accept(")"):
            key = self.expect("NAME", what="a parameter name")
            if key.text not in PHASE_KINDS[kind_tok.text]:
                raise self.error(f"phase kind {kind_tok.text} takes "
                                 f"{', '.join(PHASE_KINDS[kind_tok.text])}", key)
            self.expect("OP", "=")
            params[key.text] = self.float_number(self.expect("NUMBER", what="a number"))
            if not self.accept(","):
                self.expect("OP", ")", "',' or ')'")
                break
        missing = [p for p in PHASE_KINDS[kind_tok.text] if p not in params]
        if missing:
            raise self.error(f"phase {name} = {kind_tok.text}(...) needs "
                             f"{', '.join(missing)}", kind_tok)
        rule.phases[name] = PhaseDecl(name, kind_tok.text, params, head.line)

    def feedback_decl(self, rule: Rule, head: Token, compartments: set[str]) -> None:
        name = self.new_name(rule, self.expect("NAME", what="the projection's name"),
                             compartments)
        self.expect("OP", "=")
        scope = self.expect("NAME", what=f"a source ({', '.join(PROJECTION_SOURCES)}.NAME)")
        if scope.text not in PROJECTION_SOURCES:
            raise self.error(self.source_message(), scope)
        self.expect("OP", ".")
        comp = self.expect("NAME", what="a compartment name")
        if comp.text not in compartments:
            raise self.error(f"unknown compartment {comp.text!r}; compartments: "
                             f"{', '.join(sorted(compartments))}", comp, UnknownSymbolError)
        self.expect("OP", "->")
        target = self.expect("NAME", what="the target compartment (e.g. err)")
        if target.text not in compartments:
            raise self.error(f"unknown compartment {target.text!r}; compartments: "
                             f"{', '.join(sorted(compartments))}", target, UnknownSymbolError)
        self.expect("NAME", "via", "'via' and the feedback weights")
        start = self.i
        ctx = _Context("weights", globals_=rule.globals, compartments=compartments)
        weights = self.expression(ctx)
        if scope.text == "prev" and weights != sympy.Symbol(FORWARD):
            raise self.error(self.source_message(), scope)
        if scope.text == "lateral" and weights.has(sympy.Symbol(FORWARD)):
            raise self.error("a lateral projection (within one layer) cannot be built from the "
                             "forward weights W; use random, sparse(p) or resample", scope)
        if scope.text == "future" and weights.has(sympy.Symbol(FORWARD)):
            raise self.error("a projection from future.<compartment> (the same layer one step "
                             "later) runs beside the recurrent synapses: build it from R "
                             "(transpose(R) is backprop through time), random or sparse(p), "
                             "not W", scope)
        if scope.text != "future" and weights.has(sympy.Symbol(RECURRENT)):
            raise self.error("R (the recurrent weights) connects a layer to itself one step "
                             "apart: only a projection from future.<compartment> can be built "
                             "from it", scope)
        rule.feedback[name] = FeedbackDecl(
            name, Ref(scope.text, comp.text), target.text, weights,
            self.statement_text(start), head.line)

    @staticmethod
    def source_message() -> str:
        return ("feedback comes from 'next.<compartment>' (the layer above), "
                "'output.<compartment>' (the output layer, as in DFA), "
                "'lateral.<compartment>' (other neurons of the same layer), "
                "'future.<compartment>' (the same layer one step later), or "
                "'prev.<compartment>' 'via W' only (the layer below, through the forward "
                "synapses themselves)")

    def equation(self, rule: Rule, kw: str, compartments: set[str]) -> None:
        target = self.expect("NAME", what="a compartment name")
        if target.text in rule.globals:
            raise self.error(f"{target.text!r} is a global, not a compartment", target)
        if target.text in rule.noise:
            raise self.error(f"{target.text!r} is a noise source; it has no equation", target)
        phase = None
        if self.accept("during"):
            phase = self.expect("NAME", what="a relax or end phase name").text
        self.expect("OP", "=")
        start = self.i
        ctx = _Context(kw, globals_=rule.globals, compartments=compartments)
        expr = self.expression(ctx)
        eq = Equation(target.text, expr, self.statement_text(start), kw, target.line, phase)
        (rule.neuron if kw == "neuron" else rule.output).append(eq)
        self.equation_targets.add(eq.target)

    def check_dynamic_equations(self, rule: Rule) -> None:
        """``during P`` equations need a relax or end phase (an undeclared one is the
        checker's)."""
        seen: set[tuple[str, str, str]] = set()
        for eq in rule.neuron + rule.output:
            if eq.phase is None:
                continue
            ph = rule.phases.get(eq.phase)
            if ph is not None and ph.kind not in ("relax", END):
                raise RuleSyntaxError(
                    f"{eq.where} {eq.target} during {eq.phase}: a neuron equation runs during a "
                    f"relax or end phase, but {eq.phase} is a {ph.kind} phase",
                    line=eq.line, col=1, source=self.source,
                    text=self.lines[eq.line - 1] if 0 < eq.line <= len(self.lines) else None)
            key = (eq.where, eq.target, eq.phase)
            if key in seen:
                raise RuleSyntaxError(
                    f"{eq.where} {eq.target} has two equations during {eq.phase}",
                    line=eq.line, col=1, source=self.source)
            seen.add(key)

    def noise_decl(self, rule: Rule, head: Token) -> None:
        tok = self.expect("NAME", what="the noise compartment's name")
        name = tok.text
        if name in rule.globals or name in rule.feedback or name in rule.phases \
                or name in rule.noise or name == FORWARD:
            raise self.error(f"name {name!r} is already declared", tok)
        if name in NEURON_COMPARTMENTS or name in TIME_COMPARTMENTS or name in KEYWORDS \
                or name in FUNCTIONS:
            raise self.error(f"name {name!r} is reserved; pick another", tok)
        if name in self.equation_targets:
            raise self.error(f"{name!r} already has a neuron equation", tok)
        self.expect("OP", "=")
        self.expect("NAME", "normal", "'normal' (the only noise distribution)")
        self.expect("OP", "(")
        self.expect("NAME", "sigma", "'sigma'")
        self.expect("OP", "=")
        sigma = self.float_number(self.expect("NUMBER", what="a number"))
        self.expect("OP", ")", "')'")
        if not 0 < sigma < 1e6:
            raise self.error(f"noise sigma must be positive, got {sigma:g}", tok)
        self.expect("OP", "->", "'->' and the compartment it adds to (r or a)")
        into = self.expect("NAME", what="r or a")
        if into.text not in NOISE_TARGETS:
            raise self.error(f"noise adds to the rate r or the drive a, not {into.text!r}", into)
        rule.noise[name] = NoiseDecl(name, sigma, into.text, head.line)

    def update(self, rule: Rule, head: Token, compartments: set[str]) -> None:
        proj = self.expect("NAME", what="a projection name")
        if proj.text not in (FORWARD, RECURRENT) and proj.text not in rule.feedback:
            raise self.error(f"unknown projection {proj.text!r}: this rule has "
                             f"{', '.join(rule.projections)} (and {RECURRENT}, the recurrent "
                             "synapses of a recurrent layer)", proj, UnknownSymbolError)
        phase = None
        if self.accept("during"):
            phase = self.expect("NAME", what="a phase name").text
        self.expect("OP", ":", "':' before the update")
        target = self.expect("NAME", what="an update target such as dw")
        if not (target.text.startswith("d") and len(target.text) > 1):
            raise self.error("an update target is d<state>, e.g. dw or de", target)
        self.expect("OP", "=")
        start = self.i
        ctx = _Context("update", globals_=rule.globals, compartments=compartments,
                       syn_vars=self.syn_vars(proj.text))
        expr = self.expression(ctx)
        self.check_expansion(expr, f"update on {proj.text} {target.text}", self.toks[start])
        rule.updates.append(Update(proj.text, target.text[1:], expr,
                                   self.statement_text(start), phase, head.line))

    def check_expansion(self, expr: sympy.Expr, what: str, tok: Token) -> None:
        """Refuse an update whose expansion (for the checker and every lowering) is too big."""
        problem = expansion_problem(expr, what)
        if problem:
            raise self.error(problem, tok)
        made = estimate_expansion(expr).made
        self.made_terms += made
        if self.made_terms > MAX_TERMS:
            earlier = "" if made == self.made_terms else \
                f", {round(self.made_terms):,} with the rule's earlier updates"
            raise self.error(f"{what} multiplies out about {round(made):,} terms{earlier} "
                             f"(limit: {MAX_TERMS} terms multiplied out per rule, since "
                             "checking and lowering each term costs time): write the updates "
                             "as sums of products", tok)

    def syn_vars(self, projection: str) -> set[str]:
        """A projection's synaptic state: w and every d<var> it updates, wherever declared
        (an eligibility trace may be read before its own update)."""
        if self.state_vars_by_projection is None:
            self.state_vars_by_projection = self.scan_state_vars()
        return self.state_vars_by_projection.setdefault(projection, {"w"})

    def scan_state_vars(self) -> dict[str, set[str]]:
        """``on P ... : dX`` anywhere in the tokens, in one pass (per update it was quadratic)."""
        toks = self.toks
        stop = [0] * len(toks)  # index of the first ':' or end of line at or after each token
        for j in range(len(toks) - 1, -1, -1):
            ends = toks[j].kind in ("NEWLINE", "EOF") or toks[j].text == ":"
            stop[j] = j if ends or j == len(toks) - 1 else stop[j + 1]
        found: dict[str, set[str]] = {}
        for k, t in enumerate(toks[:-3]):
            if t.kind == "NAME" and t.text == "on":
                j = stop[k + 2]
                name = toks[j + 1].text if toks[j].text == ":" else ""
                if toks[j].text == ":" and toks[j + 1].kind == "NAME" \
                        and name.startswith("d") and len(name) > 1:
                    found.setdefault(toks[k + 1].text, {"w"}).add(name[1:])
        return found


def _fold(first: sympy.Expr, rest: list[tuple], build) -> sympy.Expr:
    """``((a op b) op c) ...`` exactly as sympy's operators build it (``rest`` holds
    ``(op, operand, item)``), but one ``build(acc, *items)`` call once the result holds more
    than :data:`FOLD_OPERANDS` operands: each step of the fold re-sorts all of them."""
    acc = first
    for k, (op, operand, _) in enumerate(rest):
        if len(acc.args) > FOLD_OPERANDS:
            return build(acc, *(item for _, _, item in rest[k:]))
        acc = op(acc, operand)
    return acc


def parse_rule(text: str, source: str = "<rule>") -> Rule:
    """Parse rule text into a :class:`Rule`; raises only :class:`RuleSyntaxError`."""
    if not isinstance(text, str):
        raise TypeError(f"rule text must be a str, got {type(text).__name__}")
    return _Parser(text, source).parse()


def load_rule_file(path: str | Path) -> Rule:
    """Parse a rule file; errors carry the file's name."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        from .errors import RuleError
        raise RuleError(f"cannot read rule file {path}: {exc}") from None
    return parse_rule(text, source=str(path))

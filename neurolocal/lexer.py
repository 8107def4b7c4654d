"""Tokens of the rule language, with line and column for every error message."""

from __future__ import annotations

import re
import unicodedata
from typing import NamedTuple

from .errors import RuleSyntaxError

OPERATORS = ("->", "**", "+", "-", "*", "/", "^", "(", ")", ",", ".", "@", "=", ":")
#: Only these are digits: ``str.isdigit`` also accepts superscripts and full-width digits.
DIGITS = frozenset("0123456789")
#: The only line breaks (``str.splitlines`` also splits at form feeds, U+2028, ...).
LINE_BREAK = re.compile(r"\r\n|\r|\n")
#: Longest numeric literal the lexer reads; the parser's own limits are tighter.
MAX_LITERAL_CHARS = 100

#: One token (or blank run) at a position; explicit ASCII classes, no Unicode matching.
_TOKEN = re.compile(r"""
    (?P<SPACE>[ \t\r\f\v]+)
  | (?P<COMMENT>\#)
  | (?P<NAME>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<NUMBER>(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)
  | (?P<STRING>"[^"]*")
  | (?P<OP>->|\*\*|[-+*/^(),.@=:])
""", re.VERBOSE)
#: A rule's own name may contain '-' before a letter (``rule fa-decay``).
_RULE_NAME = re.compile(r"[A-Za-z_](?:[A-Za-z0-9_]|-(?=[A-Za-z]))*")


class Token(NamedTuple):
    kind: str  # NAME NUMBER STRING OP NEWLINE EOF
    text: str
    line: int
    col: int

    def describe(self) -> str:
        if self.kind in ("NEWLINE", "EOF"):
            return "end of line" if self.kind == "NEWLINE" else "end of input"
        return f"{self.kind.lower()} {self.text!r}" if self.kind != "OP" else repr(self.text)


def split_lines(text: str) -> list[str]:
    """Lines as the lexer counts them: only ``\\n``, ``\\r\\n`` and ``\\r`` end a line.

    Same result as ``str.splitlines`` for those breaks, so line numbers agree with editors.
    """
    lines = LINE_BREAK.split(text)
    if lines[-1] == "":
        lines.pop()
    return lines


def _non_ascii_message(ch: str) -> str:
    name = unicodedata.name(ch, "")
    what = f"U+{ord(ch):04X}" + (f" {name}" if name else "")
    digit = unicodedata.numeric(ch, None) is not None
    fix = "write digits as 0-9" if digit else "use ASCII letters, digits and operators"
    return (f"non-ASCII character {ch!r} ({what}): rule text is ASCII outside comments and "
            f"quoted strings; {fix}")


def _bad_character(raw: str, i: int, lineno: int, source: str) -> RuleSyntaxError:
    ch = raw[i]
    if ch == '"':
        message = "unterminated string: expected a closing '\"'"
    elif not ch.isascii():
        message = _non_ascii_message(ch)
    else:
        message = (f"unexpected character {ch!r}: expected a name, a number, an operator "
                   f"({' '.join(OPERATORS)}) or '#' for a comment")
    return RuleSyntaxError(message, line=lineno, col=i + 1, source=source, text=raw)


def _line_tokens(raw: str, lineno: int, source: str, tokens: list[Token]) -> int:
    """Append the tokens of one line; returns the change in parenthesis depth."""
    i, n, depth = 0, len(raw), 0
    while i < n:
        m = _TOKEN.match(raw, i)
        if m is None:
            raise _bad_character(raw, i, lineno, source)
        kind, text = m.lastgroup, m.group()
        if kind == "COMMENT":
            break
        if kind == "NAME" and tokens and tokens[-1].text == "rule":
            text = _RULE_NAME.match(raw, i).group()
        elif kind == "NUMBER" and len(text) > MAX_LITERAL_CHARS:
            raise RuleSyntaxError(
                f"number literal of {len(text)} characters: at most {MAX_LITERAL_CHARS} "
                "(40 digits before the exponent, exponent within ±300); write it shorter, "
                "e.g. 1.5e-3", line=lineno, col=i + 1, source=source, text=raw)
        if kind == "STRING":
            tokens.append(Token("STRING", text[1:-1], lineno, i + 1))
        elif kind != "SPACE":
            tokens.append(Token(kind, text, lineno, i + 1))
            if kind == "OP" and text in "()":
                depth += 1 if text == "(" else -1
        i += len(text)
    return depth


def tokenize(text: str, source: str = "<rule>") -> list[Token]:
    """Split rule text into tokens; newlines inside parentheses continue the statement."""
    tokens: list[Token] = []
    lines = split_lines(text)
    depth = 0
    for lineno, raw in enumerate(lines, start=1):
        depth += _line_tokens(raw, lineno, source, tokens)
        if depth <= 0:
            depth = 0
            if tokens and tokens[-1].kind != "NEWLINE":
                tokens.append(Token("NEWLINE", "", lineno, len(raw) + 1))
    last = len(lines)
    if tokens and tokens[-1].kind != "NEWLINE":
        tokens.append(Token("NEWLINE", "", last, len(lines[-1]) + 1 if lines else 1))
    tokens.append(Token("EOF", "", max(last, 1), 1))
    return tokens

"""Tokens of the rule language, with line and column for every error message."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import RuleSyntaxError

OPERATORS = ("->", "**", "+", "-", "*", "/", "^", "(", ")", ",", ".", "@", "=", ":")


@dataclass(frozen=True)
class Token:
    kind: str  # NAME NUMBER STRING OP NEWLINE EOF
    text: str
    line: int
    col: int

    def describe(self) -> str:
        if self.kind in ("NEWLINE", "EOF"):
            return "end of line" if self.kind == "NEWLINE" else "end of input"
        return f"{self.kind.lower()} {self.text!r}" if self.kind != "OP" else repr(self.text)


def tokenize(text: str, source: str = "<rule>") -> list[Token]:
    """Split rule text into tokens; newlines inside parentheses continue the statement."""
    tokens: list[Token] = []
    lines = text.splitlines()
    depth = 0
    for lineno, raw in enumerate(lines, start=1):
        i, n = 0, len(raw)
        while i < n:
            ch = raw[i]
            col = i + 1
            if ch in " \t\r\f\v":
                i += 1
            elif ch == "#":
                break
            elif ch.isascii() and (ch.isalpha() or ch == "_"):
                j = i
                while j < n and raw[j].isascii() and (raw[j].isalnum() or raw[j] in "_-"):
                    # '-' inside names only when followed by a letter (rule names like fa-decay)
                    if raw[j] == "-" and not (j + 1 < n and raw[j + 1].isascii()
                                              and raw[j + 1].isalpha() and tokens
                                              and tokens[-1].text in ("rule",)):
                        break
                    j += 1
                tokens.append(Token("NAME", raw[i:j], lineno, col))
                i = j
            elif ch.isdigit() or (ch == "." and i + 1 < n and raw[i + 1].isdigit()):
                j = i
                while j < n and raw[j].isdigit():
                    j += 1
                if j < n and raw[j] == ".":
                    j += 1
                    while j < n and raw[j].isdigit():
                        j += 1
                if j < n and raw[j] in "eE":
                    k = j + 1
                    if k < n and raw[k] in "+-":
                        k += 1
                    if k < n and raw[k].isdigit():
                        while k < n and raw[k].isdigit():
                            k += 1
                        j = k
                tokens.append(Token("NUMBER", raw[i:j], lineno, col))
                i = j
            elif ch == '"':
                j = raw.find('"', i + 1)
                if j < 0:
                    raise RuleSyntaxError("unterminated string: expected a closing '\"'",
                                          line=lineno, col=col, source=source, text=raw)
                tokens.append(Token("STRING", raw[i + 1:j], lineno, col))
                i = j + 1
            else:
                for op in OPERATORS:
                    if raw.startswith(op, i):
                        tokens.append(Token("OP", op, lineno, col))
                        depth += {"(": 1, ")": -1}.get(op, 0)
                        i += len(op)
                        break
                else:
                    raise RuleSyntaxError(
                        f"unexpected character {ch!r}: expected a name, a number, an operator "
                        f"({' '.join(OPERATORS)}) or '#' for a comment",
                        line=lineno, col=col, source=source, text=raw)
        if depth <= 0:
            depth = 0
            if tokens and tokens[-1].kind != "NEWLINE":
                tokens.append(Token("NEWLINE", "", lineno, len(raw) + 1))
    last = len(lines)
    if tokens and tokens[-1].kind != "NEWLINE":
        tokens.append(Token("NEWLINE", "", last, len(lines[-1]) + 1 if lines else 1))
    tokens.append(Token("EOF", "", max(last, 1), 1))
    return tokens

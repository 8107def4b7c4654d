"""The project's error types.

Every error a user can provoke is a :class:`NeurolocalError`, so callers (and the
CLI) can tell bad input apart from bugs. Each message names the input and the fix.
"""

from __future__ import annotations


class NeurolocalError(Exception):
    """Base class of every error neurolocal raises on purpose."""


class RuleSyntaxError(NeurolocalError):
    """Rule text that does not parse; carries the line, column and what was expected."""

    def __init__(self, message: str, *, line: int, col: int, source: str = "<rule>",
                 text: str | None = None):
        self.line, self.col, self.source, self.bare = line, col, source, message
        where = f"{source}:{line}:{col}: "
        caret = ""
        if text is not None:
            caret = f"\n    {text}\n    {' ' * max(col - 1, 0)}^"
        super().__init__(where + message + caret)


class UnknownSymbolError(RuleSyntaxError):
    """A symbol that no scope defines; the message lists the symbols in scope."""


class RuleError(NeurolocalError):
    """A rule that parses but is inconsistent (e.g. an update for an undeclared projection)."""


class LocalityError(NeurolocalError):
    """A non-local rule was handed to something that only runs local rules."""

    def __init__(self, message: str, report=None):
        self.report = report
        super().__init__(message)


class LoweringError(NeurolocalError):
    """A rule that a target cannot express: names the term, the limit and the nearest form."""


class ShapeError(NeurolocalError, ValueError):
    """Arrays whose shapes do not fit the network they are handed to."""


class DivergenceError(NeurolocalError):
    """Training produced NaN/inf; names the epoch and the likely cause."""


class CheckpointError(NeurolocalError):
    """A checkpoint file that is missing, corrupt or of the wrong kind."""

"""neurolocal: local learning rules as data — check their locality, compile them to
rate, snntorch, Brian2 and Lava (Loihi 2) targets, train, convert and export."""

from .builder import make_rule
from .errors import (
    DivergenceError,
    LocalityError,
    LoweringError,
    NeurolocalError,
    RuleError,
    RuleSyntaxError,
    UnknownSymbolError,
)
from .locality import LocalityReport, check_locality, require_local
from .network import Network, build_mlp
from .parser import load_rule_file, parse_rule
from .rule import Rule
from .rules import builtin_names, get_rule

__all__ = [
    "DivergenceError", "LocalityError", "LoweringError", "NeurolocalError", "RuleError",
    "RuleSyntaxError", "UnknownSymbolError", "LocalityReport", "check_locality",
    "require_local", "Network", "build_mlp", "load_rule_file", "parse_rule", "Rule",
    "builtin_names", "get_rule", "make_rule",
]
__version__ = "0.1.0"

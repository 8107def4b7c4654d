"""The built-in rule library: one ``.rule`` file per rule, parsed like any user file."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from ..errors import RuleError
from ..parser import load_rule_file, parse_rule
from ..rule import Rule


def builtin_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files(__package__).iterdir()
                  if p.name.endswith(".rule"))


def builtin_text(name: str) -> str:
    if name not in builtin_names():
        raise RuleError(f"no built-in rule {name!r}; built-in rules: "
                        f"{', '.join(builtin_names())} (or give a path to a .rule file)")
    return resources.files(__package__).joinpath(f"{name}.rule").read_text(encoding="utf-8")


def get_rule(name_or_path: str | Path) -> Rule:
    """A built-in rule by name, or a rule file by path."""
    text = str(name_or_path)
    if text in builtin_names():
        return parse_rule(builtin_text(text), source=f"<builtin {text}>")
    path = Path(text)
    if path.suffix == ".rule" or path.exists():
        if not path.exists():
            raise RuleError(f"rule file {path} does not exist")
        return load_rule_file(path)
    raise RuleError(f"no built-in rule {text!r} and no such file; built-in rules: "
                    f"{', '.join(builtin_names())}")

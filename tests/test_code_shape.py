"""The code stays in small pieces: no file over 800 lines, no function over 80 lines in the
targets and converters (issue #9); ``import neurolocal`` loads no target."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("hardware", "converters")


def _sources(folders=FOLDERS):
    for folder in folders:
        yield from sorted((ROOT / folder).rglob("*.py"))


def test_no_file_over_800_lines():
    long = {str(p.relative_to(ROOT)): n for p in _sources(FOLDERS + ("neurolocal",))
            if (n := len(p.read_text().splitlines())) > 800}
    assert not long, f"files over 800 lines: {long}"


def test_no_function_over_80_lines():
    long = []
    for p in _sources():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > 80:
                    long.append(f"{p.relative_to(ROOT)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, "functions over 80 lines: " + "; ".join(long)


def test_the_language_imports_no_target():
    code = ("import sys, neurolocal, neurolocal.rules, neurolocal.parser; "
            "print([m for m in sys.modules if m.startswith(('neurolocal.hardware', "
            "'neurolocal.converters', 'lava', 'brian2', 'snntorch'))])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]", out

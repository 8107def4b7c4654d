"""One target interface: the registry drives the CLI, the API and the docs' rule x target table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from neurolocal.app.cli import build_parser, main, targets_markdown
from neurolocal.errors import LoweringError, NeurolocalError
from neurolocal.hardware import base
from neurolocal.hardware.base import REGISTRY, Target, choices, get_target, lowering_matrix
from neurolocal.parser import parse_rule
from neurolocal.rules import builtin_names, builtin_text, get_rule

DOCS = Path(__file__).resolve().parents[1] / "docs" / "targets.md"


def test_docs_rule_target_table_is_generated_from_the_registry():
    assert DOCS.read_text(encoding="utf-8") == targets_markdown(), \
        "docs/targets.md is stale: run `neurolocal rules --targets-markdown > docs/targets.md`"


def test_rules_json_has_a_targets_map_asked_of_every_registered_target(capsys):
    assert main(["rules", "--json"]) == 0
    rows = {r["rule"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == set(builtin_names())
    for row in rows.values():
        assert list(row["targets"]) == list(REGISTRY)
        for verdict in row["targets"].values():
            assert verdict == "runs" or verdict.startswith("rule ")
    assert rows["dfa"]["targets"] == {name: "runs" for name in REGISTRY}
    for rule in ("kp", "wm", "ia", "pal"):  # issue 11: they run on every spiking target
        assert rows[rule]["targets"] == {name: "runs" for name in REGISTRY}, rule


def test_verdicts_come_from_the_description_not_the_name():
    copy = parse_rule(builtin_text("kp").replace("rule kp ", "rule my-kp "))
    assert lowering_matrix(copy) == {
        k: v.replace("rule kp", "rule my-kp") for k, v in lowering_matrix(get_rule("kp")).items()}


def test_a_new_target_is_one_registry_line(monkeypatch):
    class PrintOnly(Target):
        """A target that only prints (what a code generator for a new chip starts as)."""

        name, mode = "print-only", "spiking"

        def lower(self, rule, *, network=None, config=None, allow_nonlocal=False):
            if rule.feedback and any(fb.source.scope == "next" for fb in rule.feedback.values()):
                raise LoweringError(f"rule {rule.name}: this chip carries output errors only")
            return rule.text

        def render(self, program):
            return program

        def bind(self, network, program, **options):
            raise LoweringError("print-only")

    monkeypatch.setitem(base.REGISTRY, "print-only", f"{__name__}:PrintOnly")
    monkeypatch.setitem(sys.modules[__name__].__dict__, "PrintOnly", PrintOnly)
    base._cache.pop("print-only", None)
    assert "print-only" in choices() and "print-only" in base.spiking_targets()
    assert lowering_matrix(get_rule("dfa"))["print-only"] == "runs"
    assert "output errors only" in lowering_matrix(get_rule("fa"))["print-only"]
    assert "print-only" in build_parser().parse_args(
        ["compile", "--rule", "dfa", "--target", "print-only"]).target
    base._cache.pop("print-only", None)


def test_importing_the_language_imports_no_target():
    code = ("import sys, neurolocal; bad = [m for m in sys.modules if m.startswith("
            "('neurolocal.hardware', 'neurolocal.converters', 'neurolocal.app'))]; "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_aliases_resolve_and_unknown_names_are_clear():
    assert get_target("lava").name == "lava:fixed_pt"
    with pytest.raises(LoweringError, match="unknown target 'loihi'.*lava:floating_pt"):
        get_target("loihi")


@pytest.mark.parametrize("args, fragment", [
    (["--timesteps", "10"], "--timesteps is for spiking targets"),
    (["--spiking", "--lr", "0.1"], "--lr is the rate optimiser's step"),
    (["--spiking", "--target", "brian2", "--batch-size", "5"], "learns strictly online"),
    (["--codegen", "numpy"], "--codegen applies to the brian2 target"),
    (["--spiking", "--target", "lava", "--device", "cuda"], "runs on the cpu only"),
    (["--spiking", "--target", "brian2", "--conv", "4:3"], "cannot learn conv layers"),
    (["--spiking", "--target", "torch"], "is a rate target"),
    (["--target", "snntorch"], "is a spiking target: add --spiking"),
    (["--spiking", "--target", "brian2", "--lr-decay", "0.5"], "cannot be decayed"),
    (["--epochs", "0"], "--epochs must be an integer >= 1"),
])
def test_options_a_target_cannot_honour_are_refused_before_work(args, fragment, capsys):
    assert main(["train", "--rule", "dfa", *args]) == 2
    assert fragment in capsys.readouterr().err


def test_bind_refuses_unknown_options_by_name():
    from neurolocal.network import build_mlp
    tgt = get_target("numpy")
    net = build_mlp([4, 3, 2], get_rule("fa"))
    with pytest.raises(NeurolocalError, match="no option 'codegen'.*its options"):
        tgt.bind(net, tgt.lower(net.rule), codegen="cython")

"""The locality checker: verdicts from descriptions, named violations, CLI exit codes."""

import json
import subprocess
import sys

import pytest

import neurolocal as nl
from neurolocal.rules import builtin_text

EXPECTED = {
    "bp": {"weight-transport"}, "fa": set(), "dfa": set(), "kp": set(), "wm": set(),
    "fa-decay": set(), "usf": {"sign-transport"}, "brsf": {"sign-transport"},
    "frsf": {"sign-transport"},
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_builtin_verdicts(name):
    rep = nl.check_locality(nl.get_rule(name))
    assert {v.kind for v in rep.violations} == EXPECTED[name]
    assert rep.local == (not EXPECTED[name])


@pytest.mark.parametrize("name", nl.builtin_names())
def test_user_copy_under_another_name_gets_the_same_verdict(name, tmp_path):
    text = builtin_text(name).replace(f"rule {name} ", "rule my_copy ")
    path = tmp_path / "copy.rule"
    path.write_text(text)
    a = nl.check_locality(nl.get_rule(name)).to_dict()
    b = nl.check_locality(nl.load_rule_file(path)).to_dict()
    for d in (a, b):
        d.pop("rule")
    assert a == b


def test_renamed_backprop_still_fails():
    text = builtin_text("bp").replace("rule bp", "rule totally_local").replace(
        "feedback B", "feedback Fb").replace("Backpropagation", "Nothing to see")
    rep = nl.check_locality(nl.parse_rule(text))
    assert not rep.local
    (v,) = rep.violations
    assert v.kind == "weight-transport" and "Fb" in v.where


def test_weight_mirror_needs_and_declares_its_mirror_phase():
    rep = nl.check_locality(nl.get_rule("wm"))
    assert [(p["name"], p["kind"], p["declared"]) for p in rep.phases] == \
        [("mirror", "noise", True)]
    assert nl.check_locality(nl.get_rule("fa")).phases == []


def test_undeclared_phase_is_a_violation():
    text = builtin_text("wm").replace("phase mirror = noise(sigma=1.0)\n", "")
    rep = nl.check_locality(nl.parse_rule(text))
    kinds = {v.kind for v in rep.violations}
    assert kinds == {"undeclared-phase"}
    assert "add 'phase mirror = ...'" in rep.violations[0].message


def test_frozen_forward_value_without_phase_is_named():
    rule = nl.parse_rule("rule frozen\nglobal lr = 1\n"
                         "on W: dw = -lr * post.err * pre.r@forward\n")
    rep = nl.check_locality(rule)
    (v,) = rep.violations
    assert v.kind == "undeclared-phase" and v.symbol == "pre.r@forward"


def test_another_neurons_state_is_named():
    rule = nl.parse_rule("rule peek\nglobal lr = 1\non W: dw = -lr * next.err * pre.r\n")
    (v,) = nl.check_locality(rule).violations
    assert v.kind == "nonlocal-state" and v.symbol == "next.err"


def test_pre_error_compartment_does_not_travel_on_the_forward_axon():
    rule = nl.parse_rule("rule preerr\nglobal lr = 1\non W: dw = -lr * post.r * pre.err\n")
    (v,) = nl.check_locality(rule).violations
    assert v.kind == "nonlocal-state" and "carries only" in v.message


def test_neuron_equation_reading_another_layer_is_named():
    rule = nl.parse_rule("rule n\nglobal lr = 1\nneuron delta = next.err * dphi\n"
                         "on W: dw = -lr * post.delta * pre.r\n")
    (v,) = nl.check_locality(rule).violations
    assert v.kind == "nonlocal-state" and "neuron equation delta" in v.where


def test_global_vector_broadcast_is_named():
    rule = nl.parse_rule("rule gv\nglobal lr = 1\nglobal vector e\n"
                         "on W: dw = -lr * glob.e * pre.r\n")
    (v,) = nl.check_locality(rule).violations
    assert v.kind == "global-vector" and v.symbol == "glob.e"


def test_sign_and_weight_transport_inside_one_expression():
    rule = nl.parse_rule("rule both\nglobal lr = 1\n"
                         "feedback B = next.err -> err via sign(transpose(W)) + transpose(W)\n"
                         "on W: dw = -lr * post.err * pre.r\n")
    kinds = sorted(v.kind for v in nl.check_locality(rule).violations)
    assert kinds == ["sign-transport", "weight-transport"]


def test_report_traces_cross_neuron_signals_through_feedback():
    rep = nl.check_locality(nl.get_rule("fa"))
    (term,) = rep.terms
    reads = {r.symbol: r for r in term.reads}
    assert reads["post.delta"].via == ["B"]
    assert reads["pre.r"].local and "axon" in reads["pre.r"].origin
    assert "B" in rep.to_text()


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "neurolocal", *args],
                          capture_output=True, text=True)


def test_cli_exit_codes_and_json(tmp_path):
    ok = _cli("check", "kp", "--json")
    assert ok.returncode == 0
    data = json.loads(ok.stdout)
    assert data["local"] is True and data["violations"] == []
    bad = _cli("check", "bp", "--json")
    assert bad.returncode == 1
    data = json.loads(bad.stdout)
    assert data["local"] is False and data["violations"][0]["kind"] == "weight-transport"
    broken = tmp_path / "broken.rule"
    broken.write_text("rule broken\non W: dw = \n")
    unusable = _cli("check", str(broken))
    assert unusable.returncode == 2 and "broken.rule:2" in unusable.stderr
    assert _cli("check", "no-such-rule").returncode == 2


def test_builtin_rules_doc_page_is_current():
    from pathlib import Path

    from neurolocal.app.cli import rules_markdown
    page = Path(__file__).resolve().parent.parent / "docs" / "rules-builtin.md"
    assert page.read_text() == rules_markdown(), \
        "regenerate: neurolocal rules --markdown > docs/rules-builtin.md"

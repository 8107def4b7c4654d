"""Recurrent layers in the language, the checker, the IR, checkpoints, data and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

import neurolocal as nl
from neurolocal.checkpoint import load_checkpoint, save_checkpoint
from neurolocal.errors import CheckpointError, RuleSyntaxError, ShapeError
from neurolocal.locality import check_locality
from neurolocal.network import build_rnn
from neurolocal.rule import FORWARD, RECURRENT
from neurolocal.rules import builtin_text, get_rule

HEAD = "rule t\nglobal lr = 0.1\nphase last = end()\noutput err = r - target\n"


def _kinds(rule) -> set[str]:
    return {v.kind for v in check_locality(rule).violations}


@pytest.mark.parametrize("name,local,kinds", [
    ("dfa-rnn", True, set()),
    ("sdfa-rnn", True, set()),
    ("bptt", False, {"weight-transport", "future-in-time"}),
])
def test_verdicts_come_from_the_description_not_the_name(name, local, kinds):
    for new_name in (name, "my-copy", "dfa-rnn" if name == "bptt" else "bptt"):
        text = builtin_text(name).replace(f"rule {name} ", f"rule {new_name} ", 1)
        rep = check_locality(nl.parse_rule(text))
        assert rep.rule == new_name
        assert rep.local is local and {v.kind for v in rep.violations} == kinds


def test_bptt_is_named_non_local_in_time_and_weight_transport():
    rep = check_locality(get_rule("bptt"))
    future = [v for v in rep.violations if v.kind == "future-in-time"]
    assert future and "feedback T" in future[0].where and "future.delta" in future[0].symbol
    assert any(v.kind == "weight-transport" and v.symbol == "R" for v in rep.violations)
    text = rep.to_text()
    assert "the same layer, one step later" in text and "[future-in-time]" in text


@pytest.mark.parametrize("extra,kind", [
    ("neuron d = future.err\non W: dw = -lr * post.d * pre.r", "future-in-time"),
    ("on W: dw = -lr * post.err@last * pre.r", "future-in-time"),
    ("on W: dw = -lr * future.err * pre.r", "future-in-time"),
    ("on R: dw = -lr * post.err * pre.err", "nonlocal-state"),
    ("feedback T = future.err -> err via sign(transpose(R))\non W: dw = -lr * post.err * pre.r",
     "sign-transport"),
])
def test_reads_from_the_future_and_through_R_are_named(extra, kind):
    assert kind in _kinds(nl.parse_rule(HEAD + extra))


def test_eligibility_traces_and_end_phases_are_local():
    rule = nl.parse_rule(HEAD + "feedback B = output.err -> err via random\n"
                                "on R: de = post.dphi * pre.r\n"
                                "on R during last: dw = -lr * post.err * syn.e + post.err@last\n")
    rep = check_locality(rule)
    assert rep.local, rep.to_text()
    reads = {r.symbol: r.origin for t in rep.terms for r in t.reads}
    assert "one step earlier" in reads["pre.r"]
    assert any("same layer, one step earlier" in c["from"] for c in rep.crossings)


@pytest.mark.parametrize("text,match", [
    ("feedback R = output.err -> err via random", "reserved: it is the recurrent projection"),
    ("feedback T = future.err -> err via transpose(W)", "build it from R"),
    ("feedback B = next.err -> err via transpose(R)", "only a projection from future"),
    ("phase h = hold()\noutput x during h = 1", "relax or end phase"),
    ("on Q: dw = pre.r", "and R, the recurrent synapses"),
    ("global leak = 0.5", "is a neuron compartment"),
])
def test_bad_recurrent_statements_are_refused_by_name(text, match):
    with pytest.raises(RuleSyntaxError, match=match):
        nl.parse_rule(HEAD + text)


def test_time_statements_are_listed_as_a_feature():
    feats = get_rule("dfa-rnn").features()
    assert any("on R" in s for s in feats["recurrent"])
    assert any("phase last" in s for s in feats["recurrent"])
    assert "recurrent" not in get_rule("dfa").features()
    reads_leak = nl.parse_rule(HEAD + "neuron k = leak\non W: dw = post.k * pre.r")
    assert any("reads leak" in s for s in reads_leak.time_statements())


def test_build_rnn_shapes_and_bad_leak():
    net = build_rnn(28, [16, 8], 10, get_rule("dfa-rnn"), hidden=[6], leak=0.5, seed=1)
    assert net.sizes == [28, 16, 8, 6, 10] and sorted(net.recurrent) == [1, 2]
    assert net.state[RECURRENT][1]["w"].shape == (16, 16)
    assert set(net.state[RECURRENT][2]) == {"w", "e"}
    assert net.state[FORWARD][1]["w"].shape == (16, 29) and net.leak(3) == 0.0
    for bad in (1.0, -0.1, True):
        with pytest.raises(ShapeError, match="leak"):
            build_rnn(28, [16], 10, get_rule("dfa-rnn"), leak=bad)
    with pytest.raises(ShapeError, match="at least one recurrent layer"):
        build_rnn(28, [], 10, get_rule("dfa-rnn"))


def test_checkpoints_store_recurrent_state_and_validate_it(tmp_path):
    net = build_rnn(5, [7], 3, get_rule("dfa-rnn"), leak=0.3, seed=2)
    path = save_checkpoint(tmp_path / "r.h5", net, meta={"epoch": 1})
    back, _ = load_checkpoint(path)
    assert back.recurrent == net.recurrent and back.leak(1) == pytest.approx(0.3)
    np.testing.assert_array_equal(back.state[RECURRENT][1]["w"], net.state[RECURRENT][1]["w"])
    np.testing.assert_array_equal(back.state[RECURRENT][1]["e"], net.state[RECURRENT][1]["e"])
    cases = [
        (lambda n: n.state[RECURRENT][1].pop("e"), "state/R/1/e is missing"),
        (lambda n: n.state[RECURRENT][1].__setitem__("w", np.zeros((7, 6), np.float32)),
         "recurrent weights of layer 1 have shape"),
        (lambda n: n.state[RECURRENT].__setitem__(2, {"w": np.zeros((3, 3), np.float32)}),
         "state/R/2/w does not belong"),
        (lambda n: n.state[RECURRENT][1]["w"].__setitem__((0, 0), np.nan), "NaN or inf"),
    ]
    for k, (edit, match) in enumerate(cases):
        bad = build_rnn(5, [7], 3, get_rule("dfa-rnn"), leak=0.3, seed=2)
        edit(bad)
        p = save_checkpoint(tmp_path / f"bad{k}.h5", bad)
        with pytest.raises(CheckpointError, match=match):
            load_checkpoint(p)


def test_feed_forward_checkpoints_carry_no_recurrent_field(tmp_path):
    import h5py

    path = save_checkpoint(tmp_path / "f.h5", nl.build_mlp([5, 4, 3], get_rule("dfa")))
    with h5py.File(path) as f:
        assert "recurrent" not in f.attrs
    net, _ = load_checkpoint(path)
    assert net.recurrent == {}


def test_sequence_data_sets():
    from neurolocal.app.data import DataError, load_dataset

    images = load_dataset("mnist", "test", limit=3, verbose=False)
    rows = load_dataset("smnist", "test", limit=3, verbose=False)
    assert rows.x.shape == (3, 28, 28) and rows.class_names[3] == "3"
    np.testing.assert_array_equal(rows.x[1, 5], images.x[1, 140:168])
    a = load_dataset("copy-30", "train", limit=10, verbose=False)
    b = load_dataset("copy-30", "train", verbose=False)
    assert a.x.shape == (10, 30, 9) and len(b) == 20_000
    np.testing.assert_array_equal(a.x, b.x[:10])
    assert (a.x[:, 0, :8].argmax(1) == a.y).all() and (a.x[:, 1:-1] == 0).all()
    assert (a.x[:, -1, 8] == 1).all()
    test = load_dataset("copy-30", "test", verbose=False)
    assert not np.array_equal(test.y[:50], b.y[:50])
    for bad in ("copy-1", "copy-100000"):
        with pytest.raises(DataError, match="delay T"):
            load_dataset(bad, "train", verbose=False)


def _cli(*args):
    from neurolocal.app.cli import main
    return main(list(args))


def test_cli_trains_checkpoints_and_continues_a_recurrent_net(tmp_path, capsys):
    out = tmp_path / "rnn.h5"
    args = ["train", "--rule", "dfa-rnn", "--recurrent", "12", "--leak", "0.5", "--dataset",
            "copy-5", "--samples", "300", "--test-samples", "100", "--epochs", "1",
            "--target", "numpy", "--out", str(out), "--json"]
    assert _cli(*args) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["update_angles"]) == {"W1", "W2", "R1"} and out.exists()
    net, meta = load_checkpoint(out)
    assert net.leak(1) == 0.5 and meta["dataset"] == "copy-5"
    assert _cli("train", "--init", str(out), "--dataset", "copy-5", "--samples", "100",
                "--test-samples", "50", "--target", "torch", "--json") == 0
    assert json.loads(capsys.readouterr().out)["rule"] == "dfa-rnn"


@pytest.mark.parametrize("args,match", [
    (["--rule", "dfa-rnn", "--dataset", "smnist"], "sequence data set: add a recurrent layer"),
    (["--rule", "dfa", "--recurrent", "8"], "--recurrent needs a sequence data set"),
    (["--rule", "dfa", "--leak", "0.5"], "--leak is the recurrent layers' leak"),
    (["--rule", "dfa-rnn", "--recurrent", "8", "--dataset", "copy-5", "--conv", "4:3"],
     "--recurrent and --conv"),
    (["--rule", "dfa", "--recurrent", "8", "--dataset", "copy-5", "--spiking"],
     "layer 1 of this network is recurrent"),
])
def test_cli_refuses_what_does_not_go_together_by_flag(args, match, capsys):
    assert _cli("train", *args, "--samples", "20", "--test-samples", "10") == 2
    assert match in capsys.readouterr().err


def test_compile_prints_the_recurrent_program(capsys):
    assert _cli("compile", "--rule", "dfa-rnn", "--target", "numpy") == 0
    text = capsys.readouterr().out
    assert "through time" in text and "def rec_update_R_hidden" in text

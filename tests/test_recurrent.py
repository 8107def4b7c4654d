"""Recurrent networks in rate mode: the program generated through time against an oracle that
runs the rule the slow way, BPTT written as a rule against autograd, numpy against torch, the
hand-written DFA-RNN loop against the generated one, and every refusal by name."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from support.naive_time import naive_sequence_updates

import neurolocal as nl
from neurolocal.errors import LoweringError, ShapeError
from neurolocal.network import build_rnn
from neurolocal.rule import FORWARD, RECURRENT
from neurolocal.rules import get_rule

torch = pytest.importorskip("torch")

from neurolocal.app.bptt import bptt_gradients, recurrent_update_angles  # noqa: E402
from neurolocal.hardware.rate import (  # noqa: E402
    Optimiser,
    RateRunner,
    RecurrentRunner,
    lower_recurrent,
)

#: a trace with a constant decay read at every step, one read at the last step only, a
#: post-only increment, a non-separable increment, weight decay (a synapse-only term per step)
MIXED = """
rule mixed-traces
global lr = 0.05
global lam = 0.7
global wd = 0.001
phase last = end()
output err = r - target
feedback B = output.err -> err via random
output g = 1
neuron g = dphi
on W: de = post.g * pre.r - (1 - lam) * syn.e
on W: dq = max(post.a, pre.r)
on W: dw = -lr * post.err * syn.e - wd * syn.w - 0.01 * lr * post.err * syn.q
on R: de = post.dphi * pre.r - (1 - lam) * syn.e
on R: dz = post.dphi
on R during last: dw = -lr * post.err * syn.e + 0.1 * lr * post.r * pre.r - lr * post.r * syn.z
"""
#: the error at every step, a trace that is never emptied (its read coefficients summed)
EVERY_STEP = """
rule every-step
global lr = 0.02
output err = r - target
feedback B = output.err -> err via sparse(0.5)
on W: de = post.dphi * pre.r
on W: dw = -lr * post.err * syn.e
on R: de = post.dphi * pre.r
on R: dw = -lr * post.err * syn.e
"""

#: a trace whose decay changes from step to step (it depends on the post neuron's rate)
VARYING = """
rule varying-decay
global lr = 0.03
output err = r - target
feedback B = output.err -> err via random
on W: de = post.dphi * pre.r - 0.5 * post.r * post.r * syn.e
on W: dw = -lr * post.err * syn.e
on R: de = post.dphi * pre.r - post.dphi * syn.e
on R: dw = -lr * post.err * syn.e
"""


def _data(n=4, steps=6, n_in=5, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, steps, n_in)).astype(np.float32)
    return x, np.eye(classes, dtype=np.float32)[rng.integers(0, classes, n)]


def _rules():
    return [get_rule("dfa-rnn"), get_rule("sdfa-rnn"), get_rule("dfa"), nl.parse_rule(MIXED),
            nl.parse_rule(EVERY_STEP), nl.parse_rule(VARYING)]


@pytest.mark.parametrize("rule", _rules(), ids=lambda r: r.name)
@pytest.mark.parametrize("hidden", [[], [4]], ids=["rnn", "rnn+dense"])
def test_generated_program_equals_the_slow_oracle(rule, hidden):
    x, y = _data()
    net = build_rnn(5, [7], 3, rule, hidden=hidden, leak=0.4, seed=1)
    want = naive_sequence_updates(copy.deepcopy(net), x, y)
    for backend in ("numpy", "torch"):
        got = RecurrentRunner(copy.deepcopy(net), backend=backend).raw_updates(x, y)
        assert set(got) == set(want)
        for key, dw in want.items():
            scale = float(np.abs(dw).max())
            assert scale > 0, f"{rule.name} {key}: nothing to compare"
            np.testing.assert_allclose(got[key], dw, rtol=1e-4, atol=1e-5 * scale,
                                       err_msg=f"{rule.name} {backend} {key}")


@pytest.mark.parametrize("leak,hidden", [(0.0, []), (0.6, []), (0.3, [4])])
def test_bptt_rule_computes_the_autograd_gradient(leak, hidden):
    """BPTT written as a rule (tied feedback, errors from the future), lowered by the
    generator and run backward in time, is what torch autograd computes."""
    x, y = _data(seed=2)
    rule = get_rule("bptt")
    net = build_rnn(5, [7], 3, rule, hidden=hidden, leak=leak, seed=3)
    grads = bptt_gradients(net, x, y.argmax(1))
    for backend in ("numpy", "torch"):
        ups = RecurrentRunner(copy.deepcopy(net), backend=backend,
                              allow_nonlocal=True).raw_updates(x, y)
        assert set(ups) == set(grads)
        for key, grad in grads.items():
            np.testing.assert_allclose(ups[key], -rule.scalar_globals()["lr"] * grad,
                                       rtol=1e-4, atol=1e-6 * float(np.abs(grad).max()),
                                       err_msg=f"{backend} {key}")


def test_dfa_updates_align_with_bptt_as_they_learn():
    """The alignment measure: the output layer's update is exactly backprop's (0 degrees);
    the hidden ones start near 90 degrees."""
    x, y = _data(n=16, seed=4)
    net = build_rnn(5, [12], 3, get_rule("dfa-rnn"), leak=0.5, seed=4)
    angles = recurrent_update_angles(RecurrentRunner(net), x, y.argmax(1))
    assert set(angles) == {"W1", "W2", "R1"}
    assert angles["W2"] < 1e-3
    assert 30 < angles["W1"] < 150 and 30 < angles["R1"] < 150


def test_handwritten_dfa_rnn_loop_computes_the_generated_update():
    from handwritten.dfa_rnn import HandwrittenDfaRnn

    x, y = _data(n=40, steps=9, n_in=6, classes=4, seed=5)
    rule = get_rule("dfa-rnn")
    net = build_rnn(6, [10], 4, rule, leak=0.9, seed=5)
    gen = RecurrentRunner(copy.deepcopy(net), backend="torch",
                          optimiser=Optimiser("adam", lr=2e-3), batch_size=8)
    st = copy.deepcopy(net.state)
    hand = HandwrittenDfaRnn(*(torch.tensor(st[p][k]["w"]) for p, k in
                               ((FORWARD, 1), (RECURRENT, 1), (FORWARD, 2), ("B", 1))),
                             leak=0.9, lr_rule=rule.scalar_globals()["lr"], adam_lr=2e-3)
    gen.learn(torch.tensor(x), torch.tensor(y))
    hand.learn(torch.tensor(x), torch.tensor(y), 8)
    moved = float((hand.w_in - torch.tensor(net.state[FORWARD][1]["w"])).abs().max())
    assert moved > 1e-3
    for (p, k), w in (((FORWARD, 1), hand.w_in), ((RECURRENT, 1), hand.rec),
                      ((FORWARD, 2), hand.w_out)):
        np.testing.assert_allclose(gen.state[p][k]["w"].numpy(), w.numpy(), atol=2e-6)


def test_numpy_and_torch_train_alike_and_learn_the_copy_task():
    from neurolocal.app.data import load_dataset

    tr = load_dataset("copy-6", "train", limit=600, verbose=False)
    te = load_dataset("copy-6", "test", limit=300, verbose=False)
    eye = np.eye(8, dtype=np.float32)
    net = build_rnn(9, [24], 8, get_rule("dfa-rnn"), leak=0.5, seed=0)
    runs = {b: RecurrentRunner(copy.deepcopy(net), backend=b, batch_size=20)
            for b in ("numpy", "torch")}
    for _ in range(4):
        for run in runs.values():
            run.learn(tr.x, eye[tr.y])
    w = {b: r.sync().state[FORWARD][1]["w"] for b, r in runs.items()}
    np.testing.assert_allclose(w["numpy"], w["torch"], atol=1e-4)
    acc = 100 * float((runs["numpy"].predict(te.x).argmax(1) == te.y).mean())
    assert acc > 50, f"dfa-rnn on copy-6: {acc:.1f}% (chance 12.5%)"


def test_recurrent_program_is_generated_from_the_description():
    text = lower_recurrent(get_rule("dfa-rnn"), "torch").text
    assert "def rec_update_R_hidden" in text and "def rec_descent_W_hidden" in text
    assert "lr" in text and "dfa" not in text.replace("'dfa-rnn'", "")  # no rule by name
    program = lower_recurrent(nl.parse_rule(get_rule("dfa-rnn").text.replace(
        "rule dfa-rnn", "rule mine")))
    assert program.output_last and {p.mode for p in program.traces} == {"sum", "now"}


def test_time_rules_refused_on_feed_forward_networks_and_vice_versa_by_name():
    from neurolocal.hardware.base import get_target

    rule = get_rule("dfa-rnn")
    mlp = nl.build_mlp([5, 7, 3], rule)
    with pytest.raises(LoweringError, match=r"on R: .*recurrent layer \(--recurrent N\)"):
        get_target("numpy").runner(mlp)
    with pytest.raises(LoweringError, match="phase last = end"):
        RateRunner(mlp)
    with pytest.raises(LoweringError, match="needs a network with a recurrent layer"):
        RecurrentRunner(mlp)
    run = RecurrentRunner(build_rnn(5, [7], 3, rule))
    with pytest.raises(ShapeError, match=r"sequences \(batch, steps, 5\)"):
        run.predict(np.zeros((2, 5), np.float32))


@pytest.mark.parametrize("text,pattern", [
    ("on W: de = post.dphi * pre.r * syn.w * syn.e\non W: dw = -lr * post.err * syn.e",
     "neither an increment nor a decay"),
    ("on W: de = post.dphi * pre.r\non W: dw = -lr * post.err * pre.r * syn.e",
     "dw reads the trace otherwise"),
    ("on W during last: de = post.dphi * pre.r\non W: dw = -lr * post.err * syn.e",
     "a trace is updated at every step"),
    ("on R: dw = -lr * post.err * pre.a", "recurrent synapse carries only"),
    ("phase settle = relax(steps=3, rate=0.1)\non W: dw = -lr * post.err * pre.r",
     "not relax phases"),
])
def test_what_the_recurrent_program_cannot_run_is_named(text, pattern):
    rule = nl.parse_rule("rule t\nglobal lr = 0.1\nphase last = end()\noutput err = r - target\n"
                         "feedback B = output.err -> err via random\n" + text)
    with pytest.raises(LoweringError, match=pattern):
        lower_recurrent(rule)


@pytest.mark.parametrize("target", ["snntorch", "brian2", "lava:fixed_pt"])
def test_spiking_targets_refuse_recurrent_networks_naming_the_layer(target):
    from neurolocal.hardware.base import get_target

    t = get_target(target)
    if t.available():
        pytest.skip(t.available())
    net = build_rnn(5, [7], 3, get_rule("dfa"))
    with pytest.raises(LoweringError, match="layer 1 of this network is recurrent"):
        t.runner(net)
    if target == "snntorch":  # lowers recurrent rules (tests/test_spiking_recurrent.py)
        assert t.lower(get_rule("dfa-rnn")).timed
        return
    if target == "brian2":
        assert "nl_R1 = Synapses(nl_L1, nl_L1" in t.compile(get_rule("dfa-rnn"))
        return
    with pytest.raises(LoweringError, match="on R"):
        t.lower(get_rule("dfa-rnn"))

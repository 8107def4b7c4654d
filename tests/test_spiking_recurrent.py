"""Recurrent networks on the spiking targets (hardware/timed.py): lowering, the reference's
semantics pinned by hand, and snntorch held to the reference."""

import numpy as np
import pytest

from neurolocal.errors import LoweringError
from neurolocal.hardware.base import get_target
from neurolocal.hardware.reference import ReferenceSimulator
from neurolocal.hardware.semantics import SpikingConfig, lower_rule
from neurolocal.hardware.timed import encode_sequence, sequence_config
from neurolocal.network import build_rnn
from neurolocal.parser import parse_rule
from neurolocal.rules import get_rule

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

ROWS, PER_ROW = 4, 6


def _net(rule, sizes=(6, [10], 3), hidden=(), seed=1, gain=3.0):
    net = build_rnn(sizes[0], sizes[1], sizes[2], rule, hidden=list(hidden), seed=seed)
    for proj in ("W", "R"):  # enough drive that every layer spikes
        for d in net.state[proj].values():
            d["w"] *= gain
    return net


def _program(name="dfa-rnn", config=None, lr=0.5):
    rule = get_rule(name).with_globals(lr=lr)
    cfg = sequence_config(config or SpikingConfig(), ROWS, PER_ROW)
    return rule, lower_rule(rule, cfg)


def test_dfa_rnn_lowers_with_the_error_in_the_last_epoch_only():
    _, prog = _program()
    assert prog.timed and prog.epochs == ROWS and prog.epoch_steps == PER_ROW
    last = {e.target: e.last for e in prog.output_eqs}
    assert last == {"err": True, "g": False, "keep": False}
    assert {u.projection for u in prog.updates} == {"W", "R"}
    text = get_target("snntorch").render(prog)
    assert "err = r - target (last learning epoch only)" in text
    assert "def output_neuron_early" in text and "eligibility traces syn.e" in text


@pytest.mark.parametrize("target", ["lava:fixed_pt", "lava:floating_pt"])
def test_targets_without_a_recurrent_lowering_name_the_statements(target):
    with pytest.raises(LoweringError, match=r"rule dfa-rnn: phase last = end\(\).*on R: dw.*"
                                            r"does not lower recurrent rules yet"):
        get_target(target).lower(get_rule("dfa-rnn"))


def test_bptt_and_leak_reads_are_refused_by_statement():
    with pytest.raises(LoweringError, match=r"feedback T = future.delta.*future-in-time"):
        lower_rule(get_rule("bptt"), allow_nonlocal=True)
    from pathlib import Path

    import neurolocal.rules as rules_pkg

    text = (Path(rules_pkg.__file__).parent / "dfa-rnn.rule").read_text()
    src = text.replace("neuron keep = 1", "neuron keep = leak")
    with pytest.raises(LoweringError, match=r"neuron keep = leak.*reads leak"):
        lower_rule(parse_rule(src))


def test_recurrent_rule_needs_a_recurrent_network():
    from neurolocal.network import build_mlp

    rule, prog = _program()
    with pytest.raises(LoweringError, match="updates recurrent synapses R; this network has no "
                                            "recurrent layer"):
        ReferenceSimulator(build_mlp([6, 10, 3], rule, seed=0), prog)


def test_hand_worked_chain_R_feeds_the_layer_its_own_spikes_one_step_later():
    """1-1-1, one input spike at step 0, W1 = 1.5: the hidden neuron spikes at step 1; with
    R = 1.5 its own spike drives it again at every later step, with R = 0 never again."""
    rule, prog = _program()
    spikes = np.zeros((ROWS * PER_ROW, 1, 1))
    spikes[0] = 1.0
    counts = {}
    for r in (0.0, 1.5):
        net = build_rnn(1, [1], 1, rule, seed=0)
        net.state["W"][1]["w"][:] = [[1.5, 0.0]]
        net.state["W"][2]["w"][:] = [[0.0, 0.0]]
        net.state["R"][1]["w"][:] = r
        ref = ReferenceSimulator(net, prog)
        neurons = ref._neurons(1)
        total = 0.0
        for sub in range(ROWS):
            layers = ref.simulate(spikes[sub * PER_ROW:(sub + 1) * PER_ROW], neurons=neurons,
                                  start=sub * PER_ROW)
            total += float(layers[1]["tr1"][0, 0])
        counts[r] = total
    assert counts == {0.0: 1.0, 1.5: ROWS * PER_ROW - 1.0}


def test_error_before_the_last_epoch_is_zero_and_traces_run_on():
    rule, prog = _program()
    net = _net(rule)
    ref = ReferenceSimulator(net, prog)
    rng = np.random.default_rng(0)
    spikes = encode_sequence(rng.random((2, ROWS, 6)), prog.config, seed=1)
    target = np.eye(3)[[0, 2]]
    w0 = {p: {k: d["w"].copy() for k, d in s.items()} for p, s in ref.state.items()}
    seen = []
    orig = ref.compartments

    def spy(layers, tgt, **kw):
        comps = orig(layers, tgt, **kw)
        seen.append((kw.get("sub"), comps[-1]["err"].copy(), comps[1]["err"].copy()))
        return comps

    ref.compartments = spy
    out = ref.run_epoch(spikes, target)
    assert [s[0] for s in seen] == list(range(ROWS))
    for sub, err_out, err_hid in seen[:-1]:
        assert not err_out.any() and not err_hid.any(), sub
    r_last = out["comps"][-1]["r"]
    np.testing.assert_allclose(seen[-1][1], r_last - target)
    assert np.abs(seen[-1][2]).sum() > 0
    # the hidden W trace summed over the sequence (keep = 1): larger than one epoch's share
    e = ref.traces[("W", 1)]["e"]
    assert e.shape == (2, 10, 7) and e.max() > 1.0
    # the output trace is this epoch's input only (keep = 0): the last epoch's rate
    np.testing.assert_allclose(ref.traces[("W", 2)]["e"][:, :, :-1],
                               np.broadcast_to(out["comps"][1]["r"][:, None, :], (2, 3, 10)))
    # w moved (in the last epoch, by -lr * err * e, batch mean)
    dw_out = -0.5 * np.mean(seen[-1][1][:, :, None] * ref.traces[("W", 2)]["e"], 0)
    np.testing.assert_allclose(ref.state["W"][2]["w"] - w0["W"][2], dw_out, atol=1e-12)
    assert np.abs(ref.state["R"][1]["w"] - w0["R"][1]).max() > 0


CONFIGS = {
    "if": SpikingConfig(),
    "lif": SpikingConfig(du=0.5, dv=0.2, vth=0.7, tau1=6.0, surrogate="spiked",
                         optimiser="momentum"),
}


@pytest.mark.parametrize("name", ["dfa-rnn", "sdfa-rnn"])
@pytest.mark.parametrize("kind", sorted(CONFIGS))
@pytest.mark.parametrize("batch", [1, 3])
def test_snntorch_agrees_with_the_reference(name, kind, batch):
    pytest.importorskip("snntorch")
    import torch

    rule, prog = _program(name, CONFIGS[kind])
    hidden = (5,) if kind == "lif" else ()
    ref = ReferenceSimulator(_net(rule, hidden=hidden), prog)
    net = _net(rule, hidden=hidden)
    snn = get_target("snntorch").bind(net, prog, dtype="float64", batch_size=batch)
    rng = np.random.default_rng(5)
    x = rng.random((2 * batch, ROWS, 6))
    y = np.eye(3)[rng.integers(0, 3, 2 * batch)]
    for i in range(0, len(x), batch):
        sp = encode_sequence(x[i:i + batch], prog.config, seed=i)
        ref.run_epoch(sp, y[i:i + batch])
        snn.run_epoch(torch.tensor(sp), y[i:i + batch])
    moved = 0.0
    for proj in ("W", "R"):
        for layer, d in ref.state[proj].items():
            np.testing.assert_allclose(snn.state[proj][layer]["w"].numpy(), d["w"], atol=1e-10)
            moved += float(np.abs(d["w"] - net.state[proj][layer]["w"]).max())
    assert moved > 1e-3  # the rule learned something on both
    sp = encode_sequence(x, prog.config, seed=99)
    r_ref = ref.run_epoch(sp, None)["comps"][-1]["r"]
    r_snn = snn.run_epoch(torch.tensor(sp))["comps"][-1]["r"].numpy()
    np.testing.assert_allclose(r_snn, r_ref, atol=1e-12)
    assert r_ref.sum() > 0


@pytest.mark.parametrize("name,kind", [("dfa-rnn", "if"), ("sdfa-rnn", "lif")])
def test_brian2_agrees_with_the_reference(name, kind):
    """Recurrent Synapses from a group to itself; online, one sequence at a time."""
    pytest.importorskip("brian2")
    rule, prog = _program(name, CONFIGS[kind])
    hidden = (5,) if kind == "lif" else ()
    ref = ReferenceSimulator(_net(rule, hidden=hidden), prog)
    net = _net(rule, hidden=hidden)
    b2 = get_target("brian2").runner(net, prog.config, codegen="numpy", input_mode="raster")
    assert any(s.kind == "recurrent" and s.source == s.target == "nl_L1"
               for s in b2.model.synapses)
    rng = np.random.default_rng(5)
    x = rng.random((3, ROWS, 6))
    y = np.eye(3)[rng.integers(0, 3, 3)]
    sp = encode_sequence(x, prog.config, seed=0)
    for i in range(3):
        ref.run_epoch(sp[:, i:i + 1], y[i:i + 1])
    b2.learn_spikes(sp, y)
    w, moved = b2.weights(), 0.0
    for proj in ("W", "R"):
        for layer, d in ref.state[proj].items():
            np.testing.assert_allclose(w[proj][layer]["w"], d["w"], atol=1e-10)
            moved += float(np.abs(d["w"] - net.state[proj][layer]["w"]).max())
    assert moved > 1e-3
    # the eligibility traces restarted with the sequence
    assert not np.any(w["W"][1]["e"]) and not np.any(w["R"][1]["e"])
    sp = encode_sequence(rng.random((4, ROWS, 6)), prog.config, seed=3)
    k = prog.constants(net.depth, prog.epochs - 1)
    out = ref.run_epoch(sp, None)["layers"][-1]
    score = k["k1"] * out["tr1"] + 0.5 / k["T"] * np.tanh(out["asum"] / k["T"])
    np.testing.assert_allclose(b2.predict_spikes(sp), score, atol=1e-12)
    assert out["tr1"].sum() > 0


def test_snntorch_learns_to_remember_a_class_across_blank_steps():
    """4 classes shown in the first 3 of 5 steps, answered at the blank last step: the error
    exists only in the last learning epoch, so only the eligibility traces (and R) carry the
    credit back. Online DFA through time on snntorch learns it (measured: 84 % after 300
    sequences, 100 % after 500)."""
    pytest.importorskip("snntorch")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 400)
    x = np.zeros((400, 5, 8), np.float32)
    for i, k in enumerate(y):
        x[i, :3, 2 * k:2 * k + 2] = 0.8
    rule = get_rule("dfa-rnn").with_globals(lr=0.01)
    net = build_rnn(8, [32], 4, rule, seed=0)
    prog = lower_rule(rule, sequence_config(SpikingConfig(), 5, 8))
    snn = get_target("snntorch").bind(net, prog, batch_size=1)
    before = (snn.predict(x[300:]).argmax(1) == y[300:]).mean()
    snn.learn(x[:300], np.eye(4)[y[:300]])
    after = (snn.predict(x[300:]).argmax(1) == y[300:]).mean()
    assert after >= 0.75 and after > before + 0.3

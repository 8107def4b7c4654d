"""Cross-target agreement: snntorch, Brian2 and the numpy reference run the same program.

One small network, one fixed input spike train, one rule, N learning epochs: the weights
each target ends with agree to float tolerance (float64 everywhere, so a spike cannot flip
on rounding). A hand-worked example pins the semantics themselves.
"""

import numpy as np
import pytest
from support.driven import driven_setup

from neurolocal.hardware.base import get_target
from neurolocal.hardware.reference import ReferenceSimulator
from neurolocal.hardware.semantics import SpikingConfig, lower_rule
from neurolocal.network import build_mlp
from neurolocal.rules import get_rule

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
pytest.importorskip("torch")
pytest.importorskip("snntorch")
pytest.importorskip("brian2")



def snntorch_runner(net, config, **kw):
    return get_target("snntorch").runner(net, config, **kw)


def brian2_runner(net, config, **kw):
    return get_target("brian2").runner(net, config, codegen="numpy", input_mode="raster", **kw)


SIZES = [20, 10, 3]
T, EPOCHS = 12, 6


def _setup(rule_name: str, config: SpikingConfig, sizes=SIZES, *, allow_nonlocal=False):
    rule = get_rule(rule_name).with_globals(lr=0.5)
    return driven_setup(rule, config, sizes, EPOCHS, allow_nonlocal=allow_nonlocal)[:4]


def _learned(ref, proj):
    return proj == "W" or any(f.name == proj and f.mode == "learned"
                              for f in ref.program.feedback)


CONFIGS = {
    "if": SpikingConfig(timesteps=T),
    "lif": SpikingConfig(timesteps=T, du=0.5, dv=0.2, vth=0.7, tau1=6.0, surrogate="spiked",
                         optimiser="momentum"),
}


@pytest.mark.parametrize("rule_name", ["dfa", "fa", "kp"])
@pytest.mark.parametrize("cfg_name", ["if", "lif"])
def test_snntorch_brian2_and_reference_agree(rule_name, cfg_name):
    config = CONFIGS[cfg_name]
    net, ref, spikes, targets = _setup(rule_name, config, SIZES if cfg_name == "if"
                                       else [20, 10, 8, 3])
    snn = snntorch_runner(net, config, dtype="float64")
    b2 = brian2_runner(net, config)
    total_spikes = 0.0
    for k in range(EPOCHS):
        out = ref.run_epoch(spikes[k][:, None, :], targets[k][None])
        total_spikes += sum(float(st["tr1"].sum()) for st in out["layers"][1:])
        snn.run_epoch(spikes[k][:, None, :], targets[k][None])
    scores = b2.run(spikes, targets, learn=True)
    assert total_spikes > 20, "the test network must spike to test anything"
    b2w = b2.weights()
    for proj, layers in ref.state.items():
        if not _learned(ref, proj):
            continue
        for layer, st in layers.items():
            start = np.asarray(net.state[proj][layer]["w"], np.float64)
            assert np.abs(st["w"] - start).max() > 1e-3, "the rule must have learned"
            np.testing.assert_allclose(snn.state[proj][layer]["w"].numpy(), st["w"],
                                       atol=1e-10, err_msg=f"snntorch {proj}{layer}")
            np.testing.assert_allclose(b2w[proj][layer]["w"], st["w"], atol=1e-10,
                                       err_msg=f"brian2 {proj}{layer}")
    assert scores.shape == (EPOCHS, SIZES[-1])


def test_batched_snntorch_averages_updates_like_the_reference():
    config = SpikingConfig(timesteps=T)
    net, ref, spikes, targets = _setup("dfa", config)
    snn = snntorch_runner(net, config, dtype="float64")
    batch = np.moveaxis(spikes, 0, 1)  # (T, B, n0): all epochs' samples side by side
    a = ref.run_epoch(batch, targets)
    b = snn.run_epoch(batch, targets)
    for key, d in a["increments"].items():
        np.testing.assert_allclose(b["increments"][key]["w"].numpy(), d["w"], atol=1e-12)


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA device")
def test_snntorch_on_cuda_agrees_with_the_reference():
    config = SpikingConfig(timesteps=T)
    net, ref, spikes, targets = _setup("dfa", config)
    snn = snntorch_runner(net, config, dtype="float64", device="cuda")
    batch = np.moveaxis(spikes, 0, 1)
    a = ref.run_epoch(batch, targets)
    b = snn.run_epoch(batch, targets)
    for key, d in a["increments"].items():
        np.testing.assert_allclose(b["increments"][key]["w"].cpu().numpy(), d["w"], atol=1e-10)


def test_float32_snntorch_stays_close_to_the_reference():
    config = SpikingConfig(timesteps=T)
    net, ref, spikes, targets = _setup("dfa", config)
    snn = snntorch_runner(net, config)  # float32, the training default
    for k in range(3):
        ref.run_epoch(spikes[k][:, None, :], targets[k][None])
        snn.run_epoch(spikes[k][:, None, :], targets[k][None])
    np.testing.assert_allclose(snn.state["W"][1]["w"].numpy(), ref.state["W"][1]["w"],
                               atol=1e-5)


def test_tied_feedback_runs_only_with_allow_nonlocal_and_agrees():
    config = SpikingConfig(timesteps=T)
    net, ref, spikes, targets = _setup("bp", config, allow_nonlocal=True)
    b2 = brian2_runner(net, config, allow_nonlocal=True)
    snn = snntorch_runner(net, config, dtype="float64", allow_nonlocal=True)
    for k in range(EPOCHS):
        ref.run_epoch(spikes[k][:, None, :], targets[k][None])
        snn.run_epoch(spikes[k][:, None, :], targets[k][None])
    b2.run(spikes, targets)
    for layer in (1, 2):
        np.testing.assert_allclose(b2.weights()["W"][layer]["w"], ref.state["W"][layer]["w"],
                                   atol=1e-10)
        np.testing.assert_allclose(snn.state["W"][layer]["w"].numpy(),
                                   ref.state["W"][layer]["w"], atol=1e-10)


def test_hand_worked_if_chain():
    """1-1-1 IF chain, w = 0.6, input spiking every step: the spike times follow by hand.

    Input spikes at steps 0..5 reach layer 1 one step later: v = 0, .6, 1.2 -> spike at
    step 2, then .6, 1.2 -> spikes at 2 and 4 (v resets to 0). Layer 1's spikes reach
    layer 2 a step later with w = 0.6: v(3) = .6, v(5) = 1.2 -> one spike at step 5.
    Layer l's window is steps l..5, so its rate is count / (6 - l).
    """
    rule = get_rule("dfa")
    config = SpikingConfig(timesteps=6)
    net = build_mlp([1, 1, 1], rule, seed=0)
    net.state["W"][1]["w"][:] = [[0.6, 0.0]]
    net.state["W"][2]["w"][:] = [[0.6, 0.0]]
    spikes = np.ones((6, 1, 1))
    expected = {1: 2.0, 2: 1.0}
    ref = ReferenceSimulator(net, lower_rule(rule, config))
    layers = ref.simulate(spikes)
    snn = snntorch_runner(net, config, dtype="float64")
    raw = snn.simulate(spikes)
    for layer, count in expected.items():
        assert layers[layer]["tr1"][0, 0] == count
        assert float(raw[layer]["tr1"][0, 0]) == count
    # rates are read over each layer's window (T - layer steps): 2/5 and 1/4
    comps = ref.compartments(layers, None)
    assert comps[1]["r"][0, 0] == pytest.approx(2 / 5)
    assert comps[2]["r"][0, 0] == pytest.approx(1 / 4)
    b2 = brian2_runner(net, config)
    scores = b2.run(spikes.transpose(1, 0, 2), learn=False)
    drive = float(layers[2]["asum"][0, 0]) / 4  # steps 2..5: 0, .6, 0, .6
    assert drive == pytest.approx(0.3)
    assert scores[0, 0] == pytest.approx(1 / 4 + 0.5 / 6 * np.tanh(drive))


def test_a_forward_update_reading_more_than_the_rate_agrees():
    """The runner prepares only the pre compartments an update reads (with the bias neuron):
    a rule reading the pre trace x1 and the drive a too must still match the reference."""
    import neurolocal as nl

    rule = nl.parse_rule(
        "rule dfa-x\nglobal lr = 0.5\noutput err = r - target\noutput delta = err\n"
        "feedback B = output.err -> err via random\nneuron delta = err * dphi\n"
        "on W: dw = -lr * post.delta * pre.r - 0.1 * lr * post.delta * pre.x1\n")
    config = SpikingConfig(timesteps=T)
    net, ref, spikes, targets, _ = driven_setup(rule, config, SIZES, EPOCHS)
    snn = snntorch_runner(net, config, dtype="float64")
    for k in range(EPOCHS):
        ref.run_epoch(spikes[k][:, None, :], targets[k][None])
        snn.run_epoch(spikes[k][:, None, :], targets[k][None])
    for layer in (1, 2):
        start = np.asarray(net.state["W"][layer]["w"], np.float64)
        assert np.abs(ref.state["W"][layer]["w"] - start).max() > 1e-3
        np.testing.assert_allclose(snn.state["W"][layer]["w"].numpy(),
                                   ref.state["W"][layer]["w"], atol=1e-10)

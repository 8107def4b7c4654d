"""Conv layers in spiking learning (issue 12, conv part): semantics, reference, snntorch.

The conv reference simulator (naive loops over positions) and the snntorch conv runner
(``F.conv2d``, unfolded kernel update) run the same program on tiny conv nets and end with
the same weights; hand-worked cases pin what the program means (a kernel entry moves by the
sum of its copies' updates; the conv projection is the dense projection with the unrolled,
tied matrix); targets that cannot learn a conv layer say why.
"""

import json

import numpy as np
import pytest

from neurolocal.errors import LoweringError, NeurolocalError
from neurolocal.hardware.base import get_target
from neurolocal.hardware.conv_reference import ConvReferenceSimulator
from neurolocal.hardware.reference import ReferenceSimulator
from neurolocal.hardware.semantics import SpikingConfig, lower_rule
from neurolocal.network import build_cnn, build_mlp
from neurolocal.parser import parse_rule
from neurolocal.rules import get_rule

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
pytest.importorskip("torch")
pytest.importorskip("snntorch")

T, EPOCHS, BATCH = 12, 4, 3

#: DFA plus terms of every other shape: pre trace 2, pre only, post only, synapse only
#: (weight decay) and a term coupling pre and post non-separably.
MIXED = """
rule dfa-mixed "DFA with every kind of term"
global lr = 0.3
global wd = 0.02
output err = r - target
output delta = err
feedback B = output.err -> err via random
neuron delta = err * dphi
""" + ("on W: dw = -lr * post.delta * pre.x2 - 0.1 * lr * pre.r + 0.05 * lr * post.delta"
       " - wd * syn.w - 0.05 * lr * abs(post.delta - pre.r) * syn.w\n")

NETS = {
    "conv-out": dict(input_shape=(1, 8, 8), convs=[(2, 3, 1, 0)], hidden=[]),
    "conv-conv-dense": dict(input_shape=(1, 8, 8), convs=[(2, 3, 2, 1), (3, 3, 1, 1)],
                            hidden=[6]),
}
CONFIGS = {
    "if": SpikingConfig(timesteps=T),
    "lif": SpikingConfig(timesteps=T, du=0.5, dv=0.2, vth=0.7, tau1=6.0, surrogate="spiked",
                         optimiser="momentum"),
}


def _rule(name: str):
    return parse_rule(MIXED) if name == "dfa-mixed" else get_rule(name).with_globals(lr=0.5)


def _net(rule, shape: str, seed: int = 3):
    net = build_cnn(n_out=10, rule=rule, seed=seed, **NETS[shape])
    for layer in range(1, net.depth + 1):  # enough drive that every layer spikes
        net.state["W"][layer]["w"] *= 4.0
        net.state["W"][layer]["w"][:, -1] = 0.1
    return net


def _data(n_in: int, timesteps: int = T, seed: int = 7):
    rng = np.random.default_rng(seed)
    spikes = (rng.random((EPOCHS, timesteps, BATCH, n_in)) < 0.4).astype(np.float64)
    targets = np.eye(10)[rng.integers(0, 10, (EPOCHS, BATCH))]
    return spikes, targets


@pytest.mark.parametrize("rule_name", ["dfa", "sdfa", "fa", "dfa-mixed"])
@pytest.mark.parametrize("cfg_name", ["if", "lif"])
@pytest.mark.parametrize("shape", list(NETS))
def test_snntorch_and_the_conv_reference_agree(rule_name, cfg_name, shape):
    rule, config = _rule(rule_name), CONFIGS[cfg_name]
    net = _net(rule, shape)
    program = lower_rule(rule, config)
    ref = ConvReferenceSimulator(net, program)
    snn = get_target("snntorch").bind(net, program, dtype="float64", batch_size=BATCH)
    spikes, targets = _data(net.sizes[0])
    map_spikes = 0.0
    for k in range(EPOCHS):
        out = ref.run_epoch(spikes[k], targets[k])
        map_spikes += float(out["layers"][1]["tr1"].sum())
        snn.run_epoch(spikes[k], targets[k])
    assert map_spikes > 20, "the feature maps must spike to test anything"
    for layer in range(1, net.depth + 1):
        start = np.asarray(net.state["W"][layer]["w"], np.float64)
        got = snn.state["W"][layer]["w"].numpy()
        assert np.abs(ref.state["W"][layer]["w"] - start).max() > 1e-3, f"W{layer} learned"
        np.testing.assert_allclose(got, ref.state["W"][layer]["w"], rtol=0, atol=1e-10)


@pytest.mark.parametrize("rule_name", ["kp", "pal"])
def test_learned_feedback_and_private_noise_agree_on_conv_nets(rule_name):
    """kp (feedback synapses learned by the rule) and pal (private noise, slow(), two
    learning epochs per sample at T = 12), one recorded noise draw replayed on both."""
    rule, config = _rule(rule_name), CONFIGS["if"]
    net = _net(rule, "conv-conv-dense")
    program = lower_rule(rule, config)
    ref = ConvReferenceSimulator(net, program)
    snn = get_target("snntorch").bind(net, program, dtype="float64", batch_size=BATCH)
    spikes, targets = _data(net.sizes[0])
    for k in range(EPOCHS):
        noise = ref.draw_noise(BATCH) if program.noise_sources else None
        ref.run_epoch(spikes[k], targets[k], noise=noise)
        snn.run_epoch(spikes[k], targets[k], noise=noise)
    assert (program.epochs > 1) == (rule_name == "pal")  # pal: fewer than 4 at T = 12
    for proj in ("W", "B"):
        for layer, st in ref.state[proj].items():
            np.testing.assert_allclose(snn.state[proj][layer]["w"].numpy(), st["w"], rtol=0,
                                       atol=1e-10)
    moved = np.abs(ref.state["B"][1]["w"] - net.state["B"][1]["w"]).max()
    assert moved > 1e-4, "the feedback into the first feature map learned"


def _tiny(rule, padding: int = 0, stride: int = 1):
    """1x3x3 input -> conv 1 channel 2x2 -> 2 outputs, strong enough to spike."""
    net = build_cnn((1, 3, 3), [(1, 2, stride, padding)], [], 2, rule, seed=0)
    net.state["W"][1]["w"][:] = [[0.6, 0.3, 0.5, 0.2, 0.1]]
    out = net.state["W"][2]["w"]
    out[:, :-1] = np.linspace(0.4, 1.2, out[:, :-1].size).reshape(out[:, :-1].shape)
    out[:, -1] = 0.05
    net.state["B"][1]["w"][:] = np.linspace(-0.8, 0.9, net.state["B"][1]["w"].size).reshape(
        net.state["B"][1]["w"].shape)
    return net


@pytest.mark.parametrize("padding, stride", [(0, 1), (1, 2)])
def test_a_kernel_entry_moves_by_the_sum_of_its_copies_updates(padding, stride):
    """By hand: dK[i, j] = sum over positions p of the rule's terms for the copy at p
    (pre rate at the input under K[i, j] at p, 0 in the padding; post delta at p), then the
    batch mean; the weight decay term, like every term, once per copy."""
    rule = parse_rule(MIXED.replace("- 0.1 * lr * pre.r + 0.05 * lr * post.delta", "")
                      .replace(" - 0.05 * lr * abs(post.delta - pre.r) * syn.w", "")
                      .replace("pre.x2", "pre.r"))
    lr, wd = 0.3, 0.02
    net = _tiny(rule, padding, stride)
    spec = net.convs[1]
    cfg = SpikingConfig(timesteps=10)
    program = lower_rule(rule, cfg)
    rng = np.random.default_rng(1)
    spikes = (rng.random((10, 2, 9)) < 0.6).astype(np.float64)
    target = np.eye(2)[[0, 1]]
    ref = ConvReferenceSimulator(net, program)
    out = ref.run_epoch(spikes, target, apply=False)
    r_in = out["comps"][0]["r"].reshape(2, 3, 3)
    r_in = np.pad(r_in, ((0, 0), (padding, padding), (padding, padding)))
    delta = out["comps"][1]["delta"].reshape(2, spec.out_height, spec.out_width)
    assert (np.abs(delta) > 0).sum() >= 3, "several copies must carry an error"
    kernel = np.asarray(net.state["W"][1]["w"][0], np.float64)
    want = np.zeros(5)
    for b in range(2):
        for py in range(spec.out_height):
            for px in range(spec.out_width):
                y0, x0 = py * stride, px * stride
                field = np.append(r_in[b, y0:y0 + 2, x0:x0 + 2].ravel(), 1.0)
                want += (-lr * delta[b, py, px] * field - wd * kernel) / 2
    got = out["increments"][("W", 1)]["w"][0]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    snn = get_target("snntorch").bind(net, program, dtype="float64", batch_size=2)
    mine = snn.run_epoch(spikes, target, apply=False)["increments"][("W", 1)]["w"]
    np.testing.assert_allclose(mine.numpy()[0], want, rtol=0, atol=1e-12)


def _unrolled(net):
    """The dense net whose first projection is the conv's tied matrix, unrolled by hand."""
    spec = net.convs[1]
    kernel = net.state["W"][1]["w"][:, :-1].reshape(spec.out_channels, spec.in_channels,
                                                    spec.kernel, spec.kernel)
    p, k, s = spec.padding, spec.kernel, spec.stride
    w = np.zeros((spec.out_size, spec.in_size + 1))
    for o in range(spec.out_channels):
        for py in range(spec.out_height):
            for px in range(spec.out_width):
                row = o * spec.positions + py * spec.out_width + px
                w[row, -1] = net.state["W"][1]["w"][o, -1]
                for c in range(spec.in_channels):
                    for i in range(k):
                        for j in range(k):
                            y, x = py * s + i - p, px * s + j - p
                            if 0 <= y < spec.in_height and 0 <= x < spec.in_width:
                                col = c * spec.in_height * spec.in_width + y * spec.in_width + x
                                w[row, col] = kernel[o, c, i, j]
    dense = build_mlp(net.sizes, net.rule, seed=0)
    dense.state["W"][1]["w"] = w
    for layer in range(2, net.depth + 1):
        dense.state["W"][layer]["w"] = np.array(net.state["W"][layer]["w"], np.float64)
    return dense


def test_the_conv_projection_is_the_dense_projection_with_the_unrolled_matrix():
    net = build_cnn((1, 8, 8), [(2, 3, 2, 1)], [], 10, get_rule("dfa"), seed=5)
    for layer in (1, 2):
        net.state["W"][layer]["w"] *= 4.0
    program = lower_rule(net.rule, CONFIGS["lif"])
    spikes, _ = _data(64)
    dense = ReferenceSimulator(_unrolled(net), program).run_epoch(spikes[0])["layers"]
    conv = ConvReferenceSimulator(net, program).run_epoch(spikes[0])["layers"]
    snn = get_target("snntorch").bind(net, program, dtype="float64").simulate(spikes[0])
    assert dense[1]["tr1"].sum() > 10 and dense[2]["tr1"].sum() > 5
    for layer in (1, 2):
        for raw in ("tr1", "asum"):
            np.testing.assert_allclose(conv[layer][raw], dense[layer][raw], atol=1e-12)
            np.testing.assert_allclose(snn[layer][raw].numpy(), dense[layer][raw], atol=1e-12)


def test_synaptic_events_count_each_pre_spike_times_its_conv_fan_out():
    net = build_cnn((1, 6, 6), [(3, 3, 1, 0)], [], 4, get_rule("dfa"), seed=0)
    snn = get_target("snntorch").bind(net, lower_rule(net.rule, SpikingConfig(timesteps=5)),
                                      dtype="float64")
    spec = net.convs[1]
    # every kernel entry is repeated at every position: the fan-outs sum to the synapses
    assert float(snn.fanout[1].sum()) == spec.out_channels * spec.positions * spec.fan_in
    assert float(snn.fanout[1][0]) == spec.out_channels  # a corner pixel: one position
    spikes = np.zeros((5, 1, 36))
    spikes[0, 0, 0] = 1.0  # one spike of the corner pixel
    snn.simulate(spikes)
    assert snn.events == spec.out_channels  # conv layer; the output layer got no spikes


def test_targets_that_cannot_learn_conv_layers_say_why():
    net = build_cnn((1, 8, 8), [(2, 3, 1, 0)], [], 10, get_rule("dfa"), seed=0)
    program = lower_rule(net.rule, SpikingConfig(timesteps=6))
    with pytest.raises(LoweringError, match=r"layer 1 of this network is a convolution.*"
                                            r"ConvReferenceSimulator"):
        ReferenceSimulator(net, program)
    pytest.importorskip("brian2")
    with pytest.raises(LoweringError, match="not lowered to Brian2 yet"):
        get_target("brian2").bind(net, program, codegen="numpy")
    with pytest.raises(LoweringError, match=r"cannot learn a weight shared by many synapses.*"
                                            r"class Conv\(AbstractProcess\)"):
        get_target("lava").runner(net, SpikingConfig(timesteps=6))


def test_what_a_conv_net_cannot_run_spiking_is_named():
    bp = get_rule("bp")
    net = build_cnn((1, 8, 8), [(2, 3, 1, 0), (2, 3, 1, 0)], [], 10, bp, seed=0)
    with pytest.raises(LoweringError, match=r"feedback .*forward weights of layer 2, a "
                                            "convolution"):
        get_target("snntorch").runner(net, SpikingConfig(timesteps=6), allow_nonlocal=True)
    wm = get_rule("wm")
    net = build_cnn((1, 8, 8), [(2, 3, 1, 0)], [5], 10, wm, seed=0)
    with pytest.raises(LoweringError, match="noise phase"):
        get_target("snntorch").runner(net, SpikingConfig(timesteps=6))


def test_train_cli_learns_mnist_with_a_spiking_conv_net(capsys):
    from neurolocal.app.cli import main

    code = main(["train", "--rule", "sdfa", "--conv", "4:5:2:2", "--hidden", "--spiking",
                 "--target", "snntorch", "--samples", "600", "--test-samples", "300",
                 "--timesteps", "10", "--json"])
    assert code == 0
    res = json.loads(capsys.readouterr().out)
    assert res["mode"] == "spiking" and res["target"] == "snntorch" and res["rule"] == "sdfa"
    assert set(res["update_angles"]) == {"W1", "W2"}
    # measured 51.7 % (600 images once, T = 10, 4 channels, lr 0.2); chance 10 %
    assert res["test_accuracy"] > 30, res["test_accuracy"]


@pytest.mark.parametrize("argv, needle", [
    (["--conv", "4:5:x"], "CHANNELS:KERNEL"),
    (["--conv", "4:40"], "does not fit"),
    (["--conv", "0:5"], "out_channels must be a positive integer"),
    (["--conv", "4:5", "--target", "brian2"], "not lowered to Brian2"),
    (["--conv", "4:5", "--target", "lava"], "learning engine"),
])
def test_hostile_spiking_conv_input_is_a_clear_error(capsys, argv, needle):
    from neurolocal.app.cli import main

    base = ["train", "--rule", "dfa", "--spiking", "--samples", "20", "--test-samples", "20",
            "--timesteps", "4"]
    if "--target" not in argv:
        base += ["--target", "snntorch"]
    assert main(base + argv) == 2
    assert needle in capsys.readouterr().err


def test_the_dense_runner_is_unchanged_for_dense_nets():
    """A dense net still binds the dense runner (no conv path in its way)."""
    from neurolocal.hardware.snntorch.runtime import SnnTorchRunner

    net = build_mlp([8, 5, 3], get_rule("dfa"))
    snn = get_target("snntorch").runner(net, SpikingConfig(timesteps=4))
    assert type(snn) is SnnTorchRunner
    with pytest.raises(NeurolocalError):
        get_target("snntorch").runner(net, SpikingConfig(timesteps=4), batch_size=0)

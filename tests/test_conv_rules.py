"""Rules on conv nets: DFA and sparse DFA for convolutional layers (issue 5).

A conv layer is the same synapse repeated at every position; the rule's update of a kernel
synapse is the sum of its copies' updates. The strongest check: with the feedback into the
conv layer just below the output set to W_out^T, DFA *is* backprop for that layer, so the
generated update must equal autograd's gradient exactly.
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from neurolocal.app.cli import main
from neurolocal.app.metrics import backprop_gradients, update_angles
from neurolocal.checkpoint import load_checkpoint, save_checkpoint
from neurolocal.errors import CheckpointError, LoweringError, NeurolocalError, ShapeError
from neurolocal.hardware.rate import RateRunner
from neurolocal.network import ConvSpec, build_cnn
from neurolocal.rule import FORWARD
from neurolocal.rules import get_rule

CONVS = [(4, 3, 2, 1), (6, 3, 1, 0)]  # 1x12x12 -> 4x6x6 -> 6x4x4 -> 5


def _net(rule: str = "dfa", **globals_):
    return build_cnn((1, 12, 12), CONVS, [], 5, get_rule(rule).with_globals(**globals_),
                     seed=0)


def _batch(n: int = 7):
    x = np.random.default_rng(0).random((n, 144)).astype(np.float32)
    return x, np.arange(n) % 5


def test_conv_shapes_follow_the_spec():
    net = _net()
    assert net.sizes == [144, 4 * 6 * 6, 6 * 4 * 4, 5]
    assert net.state[FORWARD][1]["w"].shape == (4, 1 * 3 * 3 + 1)
    assert net.state[FORWARD][2]["w"].shape == (6, 4 * 3 * 3 + 1)
    assert net.state[FORWARD][3]["w"].shape == (5, 96 + 1)
    assert net.state["B"][1]["w"].shape == (144, 5)  # DFA: output error to every map unit


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_dfa_with_transposed_output_weights_is_backprop_on_a_conv_layer(backend):
    prog = RateRunner(_net(lr=1.0), backend=backend)
    w_out = prog.to_numpy(prog.state[FORWARD][3]["w"])[:, :-1]
    prog.state["B"][2]["w"] = prog.asarray(np.ascontiguousarray(w_out.T))
    x, y = _batch()
    comps = prog.errors(prog.forward(x), prog.asarray(np.eye(5, dtype=np.float32)[y]))
    ups = prog.updates(comps)
    grads = backprop_gradients(prog.sync(), x, y)
    for layer in (2, 3):
        d = prog.to_numpy(ups[(FORWARD, layer)]["w"])
        np.testing.assert_allclose(d, -grads[layer - 1], rtol=0, atol=1e-6)
        assert np.abs(grads[layer - 1]).max() > 1e-3
    # the first conv layer gets the random feedback's update, not the gradient
    angles = update_angles(prog, x, y)
    assert angles["W2"] < 1e-2 and angles["W3"] < 1e-2 and angles["W1"] > 10


def test_numpy_and_torch_conv_programs_agree():
    x, y = _batch()
    target = np.eye(5, dtype=np.float32)[y]
    out = {}
    for backend in ("numpy", "torch"):
        prog = RateRunner(_net("sdfa"), backend=backend)
        comps = prog.errors(prog.forward(x), prog.asarray(target))
        out[backend] = {k: prog.to_numpy(v["w"]) for k, v in prog.updates(comps).items()}
    for key, d in out["numpy"].items():
        np.testing.assert_allclose(d, out["torch"][key], rtol=1e-4, atol=1e-6)
    assert set(out["numpy"]) == {(FORWARD, 1), (FORWARD, 2), (FORWARD, 3)}


def test_tied_feedback_through_a_conv_layer_is_a_named_lowering_error():
    prog = RateRunner(_net("bp"), backend="numpy", allow_nonlocal=True)
    x, y = _batch()
    with pytest.raises(LoweringError, match=r"layer 2 is a convolution.*dfa, sdfa"):
        prog.errors(prog.forward(x), prog.asarray(np.eye(5, dtype=np.float32)[y]))


def test_bad_conv_specs_are_clear_errors():
    with pytest.raises(ShapeError, match="does not fit"):
        ConvSpec(1, 4, 4, 2, kernel=7)
    with pytest.raises(ShapeError, match="kernel must be a positive integer"):
        ConvSpec(1, 4, 4, 2, kernel=0)
    with pytest.raises(ShapeError, match=r"expected \(out_channels, kernel"):
        build_cnn((1, 12, 12), [(4, 3)], [], 5, get_rule("dfa"))
    with pytest.raises(ShapeError, match="dense .* matrix between feature maps"):
        build_cnn((1, 28, 28), [(64, 3, 1, 1), (64, 3, 1, 1)], [], 10, get_rule("fa"))


def test_conv_checkpoint_round_trip_and_corrupt_spec(tmp_path):
    net = _net()
    path = save_checkpoint(tmp_path / "c.h5", net)
    back, _ = load_checkpoint(path)
    assert back.convs == net.convs and back.sizes == net.sizes
    np.testing.assert_array_equal(back.state[FORWARD][2]["w"], net.state[FORWARD][2]["w"])
    with h5py.File(path, "a") as f:
        specs = json.loads(f.attrs["convs"])
        specs["2"]["kernel"] = 5  # the stored kernel no longer matches the weights
        f.attrs["convs"] = json.dumps(specs)
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load_checkpoint(path)
    from support.checkpoints import resign
    resign(path)  # as a buggy tool would write it: consistent checksum, wrong field
    with pytest.raises(CheckpointError, match="layer 2 have shape"):
        load_checkpoint(path)


def test_spiking_targets_refuse_conv_nets_by_name():
    from neurolocal.hardware.reference import ReferenceSimulator
    from neurolocal.hardware.semantics import lower_rule

    net = _net()
    with pytest.raises(LoweringError, match="layer 1 of this network is a convolution.*"
                                            "ConvReferenceSimulator"):
        ReferenceSimulator(net, lower_rule(net.rule))


def test_train_cli_conv_dfa_learns_mnist(capsys):
    code = main(["train", "--rule", "sdfa", "--conv", "8:5:2:2", "--hidden", "--samples",
                 "3000", "--epochs", "1", "--json"])
    assert code == 0
    res = json.loads(capsys.readouterr().out)
    # measured 85.96 % (3,000 images once, 8 channels, sparse feedback 10 %); chance 10 %
    assert res["test_accuracy"] > 80, res["test_accuracy"]
    assert main(["train", "--rule", "dfa", "--conv", "8:5:x"]) == 2
    assert "CHANNELS:KERNEL" in capsys.readouterr().err


def test_conv_net_trained_with_a_rule_converts_to_spiking(tmp_path):
    from neurolocal.app.training import TrainConfig, train
    from neurolocal.converters.api import convert

    ckpt = tmp_path / "conv-dfa.h5"
    res = train(TrainConfig(rule="dfa", conv=[(8, 5, 2, 2)], hidden=[], epochs=1, limit=3000,
                            out=str(ckpt)), progress=False)
    assert res.test_accuracy > 80
    conv = convert(str(ckpt), timesteps=32, target="snntorch", n_eval=300)
    assert conv.ann_accuracy > 0.8
    assert conv.snn_accuracy >= conv.ann_accuracy - 0.03  # conversion keeps the rule's net


def test_conv_flag_is_refused_on_spiking_targets_that_cannot_learn_it(capsys):
    # snntorch learns conv nets spiking (tests/test_conv_spiking.py); Brian2 does not yet
    assert main(["train", "--rule", "dfa", "--spiking", "--target", "brian2", "--conv",
                 "8:5", "--samples", "10", "--test-samples", "10"]) == 2
    assert "cannot learn conv layers" in capsys.readouterr().err
    with pytest.raises(NeurolocalError):
        from neurolocal.app.cli import _parse_conv
        _parse_conv("8")


@pytest.mark.parametrize("conv", [True, False])
def test_a_constant_neuron_equation_broadcasts_to_the_layer(conv):
    """``neuron delta = 0`` (the read-out control): hidden layers keep their weights."""
    from neurolocal.network import build_mlp
    from neurolocal.parser import parse_rule

    rule = parse_rule("rule readout\nglobal lr = 0.1\noutput err = r - target\n"
                      "output delta = err\nneuron delta = 0\n"
                      "on W: dw = -lr * post.delta * pre.r\n")
    net = build_cnn((1, 12, 12), CONVS, [], 5, rule) if conv else \
        build_mlp([144, 20, 5], rule)
    prog = RateRunner(net, backend="torch")
    x, y = _batch()
    ups = prog.updates(prog.errors(prog.forward(x), prog.asarray(np.eye(5, dtype=np.float32)[y])))
    depth = net.depth
    for layer in range(1, depth):
        assert np.abs(prog.to_numpy(ups[(FORWARD, layer)]["w"])).max() == 0
    assert np.abs(prog.to_numpy(ups[(FORWARD, depth)]["w"])).max() > 1e-3


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("text, fast", [
    ("on W: dw = -lr * post.delta * pre.r - lr * 0.01 * syn.w", True),
    ("on W: dw = -lr * post.delta * pre.r * pre.r", True),
    ("on W: dw = -lr * post.delta * (pre.r + 1)", False),  # (r + 1) is 1 in the padding
])
def test_kernel_gradient_convolution_equals_the_unfolded_update(backend, text, fast):
    from neurolocal.hardware.rate import update_function_name
    from neurolocal.parser import parse_rule

    rule = parse_rule("rule t\nglobal lr = 0.1\noutput err = r - target\noutput delta = err\n"
                      "feedback B = output.err -> err via random\nneuron delta = err * dphi\n"
                      + text + "\n")
    prog = RateRunner(build_cnn((1, 12, 12), CONVS, [], 5, rule), backend=backend)
    assert (update_function_name(FORWARD, None, conv=True) in prog.mod) == fast
    x, y = _batch()
    comps = prog.errors(prog.forward(x), prog.asarray(np.eye(5, dtype=np.float32)[y]))
    ups = prog.updates(comps)
    mod, prog.mod = prog.mod, {k: v for k, v in prog.mod.items() if not k.startswith("conv_")}
    unfolded = prog.updates(comps)
    prog.mod = mod
    for layer in (1, 2):
        a = prog.to_numpy(ups[(FORWARD, layer)]["w"])
        b = prog.to_numpy(unfolded[(FORWARD, layer)]["w"])
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
        assert np.abs(b).max() > 1e-4

"""Stage 1 of the converter: torch import, BatchNorm folding, normalisation, snntorch runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from neurolocal.converters.model import (
    ConversionError,
    Neuron,
    Op,
    SNNLayer,
    SNNModel,
    UnsupportedLayerError,
    ann_forward,
    layer_fanout,
    layer_matrix,
)
from neurolocal.converters.normalise import activation_scales, normalise, set_neurons
from neurolocal.converters.torch_import import (
    fold_batchnorm,
    from_layers,
    from_sequential,
    from_state_dict,
    load_torch_file,
)
from neurolocal.errors import NeurolocalError
from neurolocal.hardware.snntorch.inference import run_snntorch, sweep_snntorch

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def trained_mlp(mnist_arrays, train_torch):
    x, y, xt, yt = mnist_arrays(10_000, 1000)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))
    train_torch(net, x, y, epochs=3)
    return net, x, y, xt, yt


def _randomise_bn(bn: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    n = bn.num_features
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(n, generator=g))
        bn.running_var.copy_(torch.rand(n, generator=g) + 0.5)
        bn.weight.copy_(torch.randn(n, generator=g))
        bn.bias.copy_(torch.randn(n, generator=g))


def test_batchnorm_folding_equals_unfolded_module():
    torch.manual_seed(1)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(4 * 4 * 4, 12, bias=False), nn.BatchNorm1d(12), nn.ReLU(),
        nn.Dropout(0.5), nn.Linear(12, 3),
    )
    _randomise_bn(net[1], 2)
    _randomise_bn(net[6], 3)
    net.eval()
    x = torch.rand(16, 1, 8, 8)
    folded = fold_batchnorm(net)
    assert not any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in folded)
    with torch.no_grad():
        ref, got = net(x), folded(x)
    np.testing.assert_allclose(got.numpy(), ref.numpy(), rtol=1e-5, atol=1e-5)
    # and the imported model computes the same (the model's ANN view)
    model = from_sequential(net, (1, 8, 8))
    np.testing.assert_allclose(ann_forward(model, x.numpy()), ref.numpy(), rtol=1e-5, atol=1e-5)
    assert net[1].running_mean is not None  # the original is untouched


def test_batchnorm_that_cannot_be_folded_is_refused():
    net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.BatchNorm1d(4), nn.Linear(4, 2))
    with pytest.raises(ConversionError, match="BatchNorm layer '2' follows ReLU"):
        from_sequential(net.eval())


@pytest.mark.parametrize(
    ("layer", "kind", "hint"),
    [(nn.MaxPool2d(2), "MaxPool2d", "AvgPool2d"), (nn.Sigmoid(), "Sigmoid", "ReLU"),
     (nn.LSTM(4, 4), "LSTM", "")],
)
def test_unsupported_layer_error_names_layer_and_supported_set(layer, kind, hint):
    net = nn.Sequential(nn.Conv2d(1, 2, 3), layer, nn.Flatten(), nn.Linear(2 * 3 * 3, 2))
    with pytest.raises(UnsupportedLayerError) as info:
        from_sequential(net, (1, 8, 8))
    msg = str(info.value)
    assert "'1'" in msg and kind in msg and "supported:" in msg and "Linear" in msg
    assert hint in msg
    assert info.value.layer_name == "1" and info.value.layer_kind == kind


def test_cnn_import_matches_torch_and_layer_matrix_matches_ops():
    torch.manual_seed(3)
    net = nn.Sequential(
        nn.Conv2d(1, 3, 3, stride=2, padding=1), nn.ReLU(), nn.AvgPool2d(2),
        nn.Conv2d(3, 4, 3, padding="same", bias=False), nn.ReLU(), nn.Flatten(),
        nn.Linear(4 * 3 * 3, 5), nn.ReLU(), nn.Linear(5, 3), nn.Softmax(dim=1),
    ).eval()
    x = torch.rand(7, 1, 12, 12)
    model = from_sequential(net, (1, 12, 12))
    assert [len(layer.ops) for layer in model.layers] == [1, 2, 2, 1]
    assert model.readout == "membrane"
    with torch.no_grad():
        logits = net[:-1](x).numpy()
    np.testing.assert_allclose(ann_forward(model, x.numpy()), logits, rtol=1e-5, atol=1e-5)
    # the composed sparse matrix of pool+conv equals running the ops
    layer = model.layers[1]
    mat, bias = layer_matrix(layer)
    h = np.random.default_rng(0).random((4, layer.n_in))
    from neurolocal.converters.model import torch_ops

    seq = torch_ops(layer, dtype=torch.float64)
    with torch.no_grad():
        ref = seq(torch.from_numpy(h).reshape(4, *layer.in_shape)).reshape(4, -1).numpy()
    np.testing.assert_allclose(h @ mat.T.toarray() + bias, ref, rtol=1e-10, atol=1e-12)
    # fan-out of a 2x2 pool into a 3x3 'same' conv on a 3x3 map: the centre cell reaches
    # 4 maps x 9 positions
    fan = layer_fanout(layer)
    assert fan.shape == (layer.n_in,) and fan.max() == 4 * 9
    even = nn.Sequential(nn.Conv2d(1, 2, 2, padding="same"))
    with pytest.raises(ConversionError, match="asymmetric"):
        from_sequential(even, (1, 4, 4))


def test_state_dict_and_files(tmp_path, trained_mlp):
    net, *_ = trained_mlp
    arch = ["Linear(784, 64)", "ReLU", {"type": "Linear", "in_features": 64, "out_features": 10}]
    m1 = from_sequential(net)
    m2 = from_state_dict(arch, net.state_dict())
    x = np.random.default_rng(0).random((5, 784), dtype=np.float32)
    np.testing.assert_array_equal(ann_forward(m1, x), ann_forward(m2, x))
    torch.save(net, tmp_path / "module.pt")
    torch.save({"arch": arch, "state_dict": net.state_dict()}, tmp_path / "dict.pt")
    for name in ("module.pt", "dict.pt"):
        m = load_torch_file(tmp_path / name)
        np.testing.assert_array_equal(ann_forward(m, x), ann_forward(m1, x))
    with pytest.raises(ConversionError, match="does not fit the architecture"):
        from_state_dict(["Linear(784, 32)", "ReLU", "Linear(32, 10)"], net.state_dict())
    with pytest.raises(UnsupportedLayerError, match="MaxPool2d"):
        from_state_dict(["Linear(784, 64)", "MaxPool2d(2)"], {})
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ConversionError, match="junk.pt"):
        load_torch_file(tmp_path / "junk.pt")


def test_from_layers_is_the_checkpoint_seam():
    rng = np.random.default_rng(0)
    w1, b1 = rng.normal(size=(6, 4)).astype(np.float32), rng.normal(size=6).astype(np.float32)
    w2, b2 = rng.normal(size=(3, 6)).astype(np.float32), rng.normal(size=3).astype(np.float32)
    m = from_layers([(w1, b1), (w2, b2)], ["relu", "softmax"])
    x = rng.random((5, 4)).astype(np.float32)
    ref = np.maximum(x @ w1.T + b1, 0) @ w2.T + b2
    np.testing.assert_allclose(ann_forward(m, x), ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(UnsupportedLayerError, match="tanh"):
        from_layers([(w1, b1), (w2, b2)], ["tanh", "softmax"])
    assert from_layers([(w1, b1), (w2, b2)], ["relu", "relu"]).readout == "spikes"


def _reference_dynamics(currents: np.ndarray, theta: float, beta: float, reset: str,
                        v_init: float = 0.0):
    """The equations of converters.model, written out with numpy."""
    v = np.full(currents.shape[1:], v_init * theta)
    s_prev = np.zeros_like(v)
    spikes = []
    for cur in currents:
        if reset == "subtract":
            v = beta * v + cur - theta * s_prev
        else:
            v = beta * v * (1 - s_prev) + cur
        s_prev = (v > theta).astype(float)
        spikes.append(s_prev)
    return np.array(spikes)


@pytest.mark.parametrize(("kind", "beta", "reset", "v_init"),
                         [("IF", 1.0, "subtract", 0.0), ("IF", 1.0, "subtract", 0.5),
                          ("LIF", 0.8, "subtract", 0.3), ("LIF", 0.9, "zero", 0.0)])
def test_snntorch_run_follows_the_documented_equations(kind, beta, reset, v_init):
    rng = np.random.default_rng(4)
    w = rng.normal(0, 0.6, size=(5, 3))
    b = rng.normal(0, 0.1, size=5)
    model = SNNModel((3,), [
        SNNLayer("l1", [Op("linear", "fc1", (3,), (5,), weight=w, bias=b)],
                 Neuron(kind, 0.7, beta, reset, name="lif1", v_init=v_init)),
        SNNLayer("l2", [Op("linear", "fc2", (5,), (2,), weight=np.eye(2, 5), bias=np.zeros(2))]),
    ])
    x = rng.random((4, 3))
    res = run_snntorch(model, x, 40, dtype=torch.float64, return_counts=True)
    ref = _reference_dynamics(np.repeat((x @ w.T + b)[None], 40, 0), 0.7, beta, reset, v_init)
    np.testing.assert_array_equal(res.spike_counts[0], ref.sum(0))
    np.testing.assert_allclose(res.outputs, ref.sum(0)[:, :2])
    # synops into the read-out = hidden spikes x fan-out (eye(2, 5): neurons 0, 1 reach 1 each)
    assert res.layer_stats[1].synops == pytest.approx(ref.sum(0)[:, :2].sum() / 4)
    assert res.layer_stats[0].spikes == pytest.approx(ref.sum() / 4)


def test_normalisation_scales_and_preserves_logits(trained_mlp):
    net, x, *_ = trained_mlp
    model = from_sequential(net)
    calib = x[:500]
    normed = normalise(model, calib, method="max")
    _, acts = ann_forward(normed, calib, activations=True)
    assert acts[0].max() == pytest.approx(1.0, rel=1e-5)  # max activation hits threshold
    np.testing.assert_allclose(ann_forward(normed, calib), ann_forward(model, calib),
                               rtol=1e-4, atol=1e-4)
    lam_max = activation_scales(model, calib, method="max")[0]
    lam_p = activation_scales(model, calib, method="percentile", percentile=99.0)[0]
    assert 0 < lam_p < lam_max
    with pytest.raises(ConversionError, match="already has threshold"):
        normalise(_with_threshold(normed), calib)


def test_set_neurons_switches_to_lif(trained_mlp):
    model = from_sequential(trained_mlp[0])
    lif = set_neurons(model, "LIF", beta=0.95)
    assert lif.layers[0].neuron.kind == "LIF" and lif.layers[0].neuron.beta == 0.95
    assert model.layers[0].neuron.kind == "IF"  # a copy
    with pytest.raises(ConversionError, match="0 < beta < 1"):
        set_neurons(model, "LIF", beta=1.0)


def _with_threshold(model):
    out = model.copy()
    out.layers[0].neuron.threshold = 2.0
    return out


def test_converted_mlp_loses_little_accuracy(trained_mlp):
    """Measured: ANN 91.1 %, SNN 91.0 % (T=16), 91.2 % (T=32) on these 1000 test images."""
    net, x, _, xt, yt = trained_mlp
    model = set_neurons(normalise(from_sequential(net), x[:2000]), "IF", v_init=0.5)
    ann = float(np.mean(ann_forward(model, xt).argmax(1) == yt))
    res = sweep_snntorch(model, xt, [16, 32])
    acc16, acc32 = res[16].accuracy(yt), res[32].accuracy(yt)
    assert ann > 0.90
    assert acc32 >= ann - 0.005
    assert acc16 >= ann - 0.01
    stats = res[32].layer_stats
    assert stats[0].synops == 0 and stats[0].spikes > 0  # constant-current input
    assert stats[1].synops == pytest.approx(stats[0].spikes * 10)
    assert res[32].input_macs > 0


def test_poisson_input_is_deterministic_and_counted(trained_mlp):
    net, x, _, xt, yt = trained_mlp
    model = normalise(from_sequential(net), x[:1000])
    a = run_snntorch(model, xt[:200], 32, input="poisson", seed=7, batch_size=64)
    b = run_snntorch(model, xt[:200], 32, input="poisson", seed=7, batch_size=200)
    np.testing.assert_array_equal(a.outputs, b.outputs)  # independent of batching
    assert a.layer_stats[0].synops > 0 and a.input_macs == 0
    assert a.accuracy(yt[:200]) > 0.85


def test_cuda_request_without_cuda_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    model = from_layers([(np.eye(2), np.zeros(2))], ["linear"])
    with pytest.raises(NeurolocalError, match="no CUDA device"):
        run_snntorch(model, np.zeros((1, 2)), 4, device="cuda")


def test_bad_input_shape_is_explained(trained_mlp):
    model = from_sequential(trained_mlp[0])
    with pytest.raises(ConversionError, match="does not fit the network input"):
        run_snntorch(model, np.zeros((3, 100)), 4)

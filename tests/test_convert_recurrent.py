"""Recurrent spiking layers (snntorch's RLeaky form) for inference on every target, and in NIR.

Every target is held to snntorch's own ``RLeaky``; Lava fixed_pt to the integer emulator.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurolocal.converters.model import (
    ConversionError,
    Neuron,
    Op,
    SNNLayer,
    SNNModel,
    UnsupportedLayerError,
    ann_forward,
)
from neurolocal.converters.nir_import import from_nir
from neurolocal.converters.nir_io import read_nir, to_nir, write_nir
from neurolocal.converters.quantise import dequantise, quantise, simulate_fixed
from neurolocal.hardware.brian2.inference import run_brian2
from neurolocal.hardware.snntorch.inference import run_snntorch

N_IN, N_H, N_OUT, T = 12, 16, 5, 30


def _weights(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"W1": rng.normal(0, 0.6, (N_H, N_IN)), "b1": rng.normal(0, 0.1, N_H),
            "R": rng.normal(0, 0.4, (N_H, N_H)), "W2": rng.normal(0, 0.5, (N_OUT, N_H)),
            "b2": rng.normal(0, 0.1, N_OUT), "x": rng.random((7, N_IN))}


def _model(w: dict[str, np.ndarray], reset: str = "subtract", beta: float = 0.9,
           spiking_out: bool = False) -> SNNModel:
    out = Neuron("LIF", 1.0, 0.95, reset, name="lif2") if spiking_out else None
    return SNNModel((N_IN,), [
        SNNLayer("layer1", [Op("linear", "fc1", (N_IN,), (N_H,), weight=w["W1"], bias=w["b1"])],
                 Neuron("LIF", 1.0, beta, reset, name="lif1"), recurrent=w["R"]),
        SNNLayer("layer2", [Op("linear", "fc2", (N_H,), (N_OUT,), weight=w["W2"],
                               bias=w["b2"])], out)])


def _snntorch_rleaky(w, reset: str, rec_bias: float = 0.0):
    """snntorch's own network: Linear -> RLeaky -> Linear -> Leaky (float32, its default)."""
    import snntorch as snn

    fc1, fc2 = torch.nn.Linear(N_IN, N_H), torch.nn.Linear(N_H, N_OUT)
    lif1 = snn.RLeaky(beta=0.9, linear_features=N_H, reset_mechanism=reset,
                      reset_delay=reset == "subtract", init_hidden=True)
    lif2 = snn.Leaky(beta=torch.full((N_OUT,), 0.95), threshold=torch.ones(N_OUT),
                     init_hidden=True, output=True, reset_mechanism=reset)
    with torch.no_grad():
        for mod, wk, bk in ((fc1, "W1", "b1"), (fc2, "W2", "b2")):
            mod.weight.copy_(torch.from_numpy(w[wk]).float())
            mod.bias.copy_(torch.from_numpy(w[bk]).float())
        lif1.recurrent.weight.copy_(torch.from_numpy(w["R"]).float())
        lif1.recurrent.bias.fill_(rec_bias)
    return torch.nn.Sequential(fc1, lif1, fc2, lif2)


def _run_snntorch_net(net, x: np.ndarray) -> np.ndarray:
    """Output spike counts of snntorch's own network over T steps of a constant current."""
    import snntorch.utils as su

    with torch.no_grad():
        su.reset(net)
        xt, counts = torch.from_numpy(x).float(), 0
        for _ in range(T):
            spk, _ = net(xt)
            counts = counts + spk
    return counts.numpy()


@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_snntorch_target_equals_snntorch_rleaky(reset):
    import snntorch as snn

    w = _weights()
    res = run_snntorch(_model(w, reset), w["x"], T, dtype=torch.float64, return_counts=True)
    fc1, lif = torch.nn.Linear(N_IN, N_H).double(), snn.RLeaky(
        beta=0.9, linear_features=N_H, reset_mechanism=reset,
        reset_delay=reset == "subtract").double()
    with torch.no_grad():
        fc1.weight.copy_(torch.from_numpy(w["W1"]))
        fc1.bias.copy_(torch.from_numpy(w["b1"]))
        lif.recurrent.weight.copy_(torch.from_numpy(w["R"]))
        lif.recurrent.bias.zero_()
        spk, mem = lif.init_rleaky()
        readout, counts = 0.0, 0.0
        for _ in range(T):
            spk, mem = lif(fc1(torch.from_numpy(w["x"])), spk.double(), mem.double())
            spk = spk.double()
            counts = counts + spk
            readout = readout + spk @ torch.from_numpy(w["W2"]).T + torch.from_numpy(w["b2"])
    assert counts.sum() > 100  # the recurrent layer is active
    np.testing.assert_array_equal(res.spike_counts[0], counts.numpy())
    np.testing.assert_allclose(res.outputs, readout.numpy(), atol=1e-10)


@pytest.mark.parametrize("inp", ["current", "poisson"])
def test_brian2_equals_snntorch(inp):
    w = _weights(1)
    model = _model(w)
    ref = run_snntorch(model, w["x"], T, input=inp, seed=3, dtype=torch.float64,
                       return_counts=True)
    got = run_brian2(model, w["x"], T, input=inp, seed=3, return_counts=True)
    np.testing.assert_array_equal(got.spike_counts[0], ref.spike_counts[0])
    np.testing.assert_allclose(got.outputs, ref.outputs, atol=1e-10)


@pytest.fixture(scope="module")
def lava():
    from neurolocal.hardware.lava.inference import run_lava

    return run_lava


@pytest.mark.parametrize("inp", ["current", "poisson"])
def test_lava_equals_snntorch_and_fixed_pt_the_emulator(lava, inp):
    w = _weights(2)
    model = _model(w)
    ref = run_snntorch(model, w["x"], T, input=inp, seed=3, dtype=torch.float64,
                       return_counts=True)
    flt = lava(model, w["x"], T, tag="floating_pt", input=inp, seed=3, record_neurons=True)
    np.testing.assert_array_equal(flt.spike_counts[0], ref.spike_counts[0])
    np.testing.assert_allclose(flt.outputs, ref.outputs, atol=1e-9)
    q = quantise(model, input=inp)
    assert q.layers[0].recurrent is not None and q.layers[1].recurrent is None
    assert np.abs(q.layers[0].recurrent).max() <= 254
    fixed = lava(q, w["x"], T, tag="fixed_pt", seed=3, record_neurons=True)
    emu = simulate_fixed(q, w["x"], T, seed=3, return_counts=True)
    np.testing.assert_array_equal(fixed.spike_counts[0], emu.spike_counts[0])
    np.testing.assert_array_equal(fixed.outputs, emu.outputs)
    # 8-bit weights: the activity pattern stays (recurrence amplifies single moved spikes)
    corr = np.corrcoef(emu.spike_counts[0].ravel(), ref.spike_counts[0].ravel())[0, 1]
    assert corr > 0.95
    if inp == "poisson":  # binary spikes, no floor shifts: exactly the dequantised weights
        deq = run_snntorch(dequantise(q), w["x"], T, input=inp, seed=3, dtype=torch.float64,
                           return_counts=True)
        np.testing.assert_array_equal(emu.spike_counts[0], deq.spike_counts[0])
    # and the dequantised model keeps its recurrent synapses
    back = dequantise(q)
    np.testing.assert_allclose(back.layers[0].recurrent, w["R"],
                               atol=np.abs(w["R"]).max() / 100)


@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_snntorch_export_of_rleaky_imports_and_runs_the_same(tmp_path, reset):
    """snntorch 1.0 writes an RLeaky as a flat loop lif <-> w_rec; it imports as one layer."""
    from snntorch.export_nir import export_to_nir

    w = _weights(3)
    net = _snntorch_rleaky(w, reset, rec_bias=0.05)
    graph = export_to_nir(net, torch.rand(N_IN))
    want = _run_snntorch_net(_snntorch_rleaky(w, reset, rec_bias=0.05), w["x"])
    model = from_nir(graph, reset=reset)
    assert model.layers[0].recurrent is not None
    np.testing.assert_allclose(model.layers[0].recurrent, w["R"], rtol=1e-6)
    got = run_snntorch(model, w["x"].astype(np.float32), T, return_counts=True)
    assert want.sum() > 20
    np.testing.assert_array_equal(got.spike_counts[-1], want)


def test_nir_file_round_trip_keeps_the_loop(tmp_path):
    w = _weights(4)
    model = _model(w, "zero", spiking_out=True)
    graph = to_nir(model)
    assert {("lif1", "lif1_rec"), ("lif1_rec", "lif1")} <= set(graph.edges)
    path = write_nir(model, tmp_path / "rnn.nir")
    back = read_nir(path)
    np.testing.assert_array_equal(back.layers[0].recurrent, w["R"])
    a = run_snntorch(model, w["x"], T, dtype=torch.float64, return_counts=True)
    b = run_snntorch(back, w["x"], T, dtype=torch.float64, return_counts=True)
    np.testing.assert_array_equal(a.spike_counts[0], b.spike_counts[0])
    np.testing.assert_array_equal(a.spike_counts[1], b.spike_counts[1])


def test_nested_subgraph_form_imports_too():
    import nir

    w = _weights(5)
    flat = to_nir(_model(w))
    nodes = dict(flat.nodes)
    sub = nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([N_H])), "lif": nodes.pop("lif1"),
               "w_rec": nodes.pop("lif1_rec"), "output": nir.Output(output_type=np.array([N_H]))},
        edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")],
        type_check=False)
    nodes["lif1"] = sub
    edges = [e for e in flat.edges if "lif1_rec" not in e]
    model = from_nir(nir.NIRGraph(nodes=nodes, edges=edges, metadata=flat.metadata,
                                  type_check=False))
    np.testing.assert_array_equal(model.layers[0].recurrent, w["R"])


def test_bad_recurrent_input_is_named():
    w = _weights()
    with pytest.raises(ConversionError, match="layer1.*recurrent weights of shape"):
        SNNModel((N_IN,), [SNNLayer("layer1", [Op("linear", "fc1", (N_IN,), (N_H,),
                                                  weight=w["W1"])],
                                    Neuron("LIF", 1.0, 0.9), recurrent=np.ones((3, 3)))])
    with pytest.raises(ConversionError, match="read-out has no spikes"):
        SNNModel((N_IN,), [SNNLayer("out", [Op("linear", "fc1", (N_IN,), (N_H,),
                                               weight=w["W1"])], None,
                                    recurrent=np.ones((N_H, N_H)))])
    with pytest.raises(ConversionError, match="finite"):
        bad = dict(w, R=np.full((N_H, N_H), np.nan))
        _model(bad)
    with pytest.raises(ConversionError, match="recurrent layer has no one-pass rate"):
        ann_forward(_model(w), w["x"])


def test_lava_stream_layout_refuses_a_recurrent_net(lava):
    w = _weights()
    q = quantise(_model(w))
    with pytest.raises(ConversionError, match="layout='batched'"):
        lava(q, w["x"], T, tag="fixed_pt", layout="stream")


def test_a_loop_that_is_not_an_rleaky_is_refused():
    import nir

    w = _weights()
    graph = to_nir(_model(w))
    nodes = dict(graph.nodes)
    nodes["lif1"] = nir.NIRGraph(  # a subgraph with an extra node: not the RLeaky form
        nodes={"input": nir.Input(input_type=np.array([N_H])), "lif": nodes.pop("lif1"),
               "w_rec": nodes.pop("lif1_rec"), "w2": nir.Linear(weight=np.eye(N_H)),
               "output": nir.Output(output_type=np.array([N_H]))},
        edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "w2"), ("w2", "lif"),
               ("lif", "output")], type_check=False)
    edges = [e for e in graph.edges if "lif1_rec" not in e]
    with pytest.raises(UnsupportedLayerError, match="'lif1'.*RLeaky form"):
        from_nir(nir.NIRGraph(nodes=nodes, edges=edges, type_check=False))
    # a loop through a node that also feeds elsewhere stays a refused loop
    g2 = to_nir(_model(w))
    edges = list(g2.edges) + [("lif1_rec", "fc2")]
    with pytest.raises(ConversionError, match="loop|successors|inputs"):
        from_nir(nir.NIRGraph(nodes=dict(g2.nodes), edges=edges, type_check=False))


def test_cli_runs_an_rleaky_file_from_snntorch_on_every_target(tmp_path, capsys):
    """`neurolocal run FILE.nir` on a recurrent network another tool wrote: the targets agree."""
    import json

    import nir
    import snntorch as snn
    from snntorch.export_nir import export_to_nir

    from neurolocal.app.cli import main

    torch.manual_seed(0)
    fc1, fc2 = torch.nn.Linear(784, 32), torch.nn.Linear(32, 10)
    with torch.no_grad():
        fc1.weight.mul_(3.0)
    net = torch.nn.Sequential(
        fc1, snn.RLeaky(beta=0.9, linear_features=32, init_hidden=True), fc2,
        snn.Leaky(beta=torch.full((10,), 0.95), threshold=torch.ones(10), init_hidden=True,
                  output=True))
    path = tmp_path / "rnn.nir"
    nir.write(path, export_to_nir(net, torch.rand(784)))
    preds = {}
    for target in ("snntorch", "brian2", "lava:floating_pt"):
        assert main(["run", str(path), "--target", target, "--n-test", "20",
                     "--json"]) == 0
        out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        preds[target] = out
        assert out["layers"][0]["synops"] > 0  # the recurrent synapses' events count
    keys = [k for k in preds["snntorch"] if "accuracy" in k]
    assert keys
    for k in keys:
        assert preds["brian2"][k] == preds["snntorch"][k] == preds["lava:floating_pt"][k]


def test_a_sequence_drives_every_target_alike(lava):
    """Row-by-row input (element s for steps s*hold ...): snntorch, Brian2, Lava agree."""
    w = _weights(6)
    model = _model(w)
    xs = np.random.default_rng(7).random((6, 5, N_IN))
    ref = run_snntorch(model, xs, T, input="sequence", dtype=torch.float64, return_counts=True)
    const = run_snntorch(model, np.repeat(w["x"][:6, None], 5, 1), T, input="sequence",
                         dtype=torch.float64, return_counts=True)
    np.testing.assert_array_equal(  # a sequence of equal elements is the constant current
        const.spike_counts[0], run_snntorch(model, w["x"][:6], T, dtype=torch.float64,
                                            return_counts=True).spike_counts[0])
    got = run_brian2(model, xs, T, input="sequence", return_counts=True, batch_size=4)
    np.testing.assert_array_equal(got.spike_counts[0], ref.spike_counts[0])
    for first in ("host", "lava"):
        flt = lava(model, xs, T, tag="floating_pt", input="sequence", record_neurons=True,
                   first_layer=first)
        np.testing.assert_array_equal(flt.spike_counts[0], ref.spike_counts[0])
    q = quantise(model)
    fixed = lava(q, xs, T, tag="fixed_pt", input="sequence", record_neurons=True)
    emu = simulate_fixed(q, xs, T, return_counts=True, sequence=True)
    np.testing.assert_array_equal(fixed.spike_counts[0], emu.spike_counts[0])
    with pytest.raises(ConversionError, match="not a multiple of the 5 sequence steps"):
        run_snntorch(model, xs, 32, input="sequence")


def test_cli_runs_a_row_by_row_network_on_smnist(tmp_path, capsys):
    import json

    from neurolocal.app.cli import main

    rng = np.random.default_rng(8)
    model = SNNModel((28,), [
        SNNLayer("layer1", [Op("linear", "fc1", (28,), (32,), weight=rng.normal(0, 0.5, (32, 28)),
                               bias=np.zeros(32))], Neuron("LIF", 1.0, 0.9, "zero", name="lif1"),
                 recurrent=rng.normal(0, 0.3, (32, 32))),
        SNNLayer("layer2", [Op("linear", "fc2", (32,), (10,), weight=rng.normal(0, 0.5, (10, 32)),
                               bias=np.zeros(10))], None)])
    path = write_nir(model, tmp_path / "rows.nir")
    outs = {}
    for target in ("snntorch", "brian2"):
        assert main(["run", str(path), "--target", target, "--dataset", "smnist", "-T", "56",
                     "--n-test", "8", "--json"]) == 0
        outs[target] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert outs["snntorch"]["snn_accuracy"] == outs["brian2"]["snn_accuracy"]
    assert main(["run", str(path), "--dataset", "smnist", "-T", "50", "--n-test", "8"]) == 2
    assert "not a multiple of the 28 sequence steps" in capsys.readouterr().err

"""Stage 2 of the converter: NIR export/import, snntorch's importer, the rule sidecar."""

from __future__ import annotations

import json

import h5py
import nir
import numpy as np
import pytest
import snntorch as snn
import torch
from torch import nn

from neurolocal.converters import nir_io
from neurolocal.converters.model import ConversionError, UnsupportedLayerError
from neurolocal.converters.normalise import normalise, set_neurons
from neurolocal.converters.torch_import import from_sequential
from neurolocal.hardware.snntorch.inference import run_snntorch
from neurolocal.hardware.snntorch.nir_import import import_snntorch, run_imported

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def cnn_model():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
        nn.Linear(4 * 5 * 5, 16), nn.ReLU(), nn.Linear(16, 3),
    ).eval()
    x = np.random.default_rng(0).random((60, 1, 12, 12)).astype(np.float32)
    model = normalise(from_sequential(net, (1, 12, 12)), x, method="max")
    return set_neurons(model, "IF", v_init=0.5), x


def _assert_same_model(a, b):
    assert a.input_shape == b.input_shape and len(a.layers) == len(b.layers)
    for la, lb in zip(a.layers, b.layers):
        assert la.name == lb.name and la.scale == lb.scale and la.neuron == lb.neuron
        assert [op.name for op in la.ops] == [op.name for op in lb.ops]
        for oa, ob in zip(la.ops, lb.ops):
            assert oa.kind == ob.kind and oa.in_shape == ob.in_shape
            if oa.weighted:
                assert oa.weight.dtype == ob.weight.dtype
                np.testing.assert_array_equal(oa.weight, ob.weight)
                np.testing.assert_array_equal(oa.bias, ob.bias)


@pytest.mark.parametrize("kind", ["IF", "LIF"])
def test_round_trip_loses_nothing(tmp_path, cnn_model, kind):
    model, x = cnn_model
    if kind == "LIF":
        model = set_neurons(model, "LIF", beta=0.9, v_init=0.25)
    path = nir_io.write_nir(model, tmp_path / "snn.h5")
    back = nir_io.read_nir(path)
    _assert_same_model(model, back)
    assert back.metadata["normalisation"] == "max"
    a = run_snntorch(model, x, 24, return_counts=True)
    b = run_snntorch(back, x, 24, return_counts=True)
    np.testing.assert_array_equal(a.outputs, b.outputs)
    for ca, cb in zip(a.spike_counts, b.spike_counts):
        np.testing.assert_array_equal(ca, cb)
    # the file is plain NIR: nir.read gives LIF nodes carrying the reset in their metadata
    g = nir.read(path)
    assert isinstance(g.nodes["lif1"], nir.LIF)
    assert g.nodes["lif1"].metadata["reset"] == "subtract"
    assert g.nodes["lif1"].metadata["v_init"] == back.layers[0].neuron.v_init > 0


def test_snntorch_importer_runs_it_to_the_same_predictions(tmp_path, cnn_model):
    model, x = cnn_model
    path = nir_io.write_nir(model, tmp_path / "snn.h5")
    ours = run_snntorch(model, x, 24)
    net = import_snntorch(path)  # snntorch's import_from_nir + our metadata
    out = run_imported(net, x, 24)
    np.testing.assert_array_equal(out.argmax(1), ours.predictions)
    np.testing.assert_allclose(out, ours.outputs, rtol=1e-5, atol=1e-4)
    # without the metadata the importer builds reset-to-zero neurons (NIR 1.0's semantics)
    raw = import_snntorch(path, apply_metadata=False, batch_flatten=False)
    resets = {m.reset_mechanism for m in raw.modules() if isinstance(m, snn.Leaky)}
    assert resets == {"zero"}
    fixed = {m.reset_mechanism for m in net.modules() if isinstance(m, snn.Leaky)}
    assert fixed == {"subtract"}
    raw_out = run_imported(raw, x[:5], 24, batched=False)  # its Flatten(0) needs this
    assert raw_out.shape == (5, 3)


def _leaky(shape, beta=0.9, thr=0.5, **kw):
    return snn.Leaky(beta=torch.full(shape, beta), threshold=torch.full(shape, thr),
                     init_hidden=True, reset_mechanism="zero", **kw)


def _run_source(net, x, steps):
    for m in net.modules():
        if isinstance(m, snn.Leaky):
            m.mem = torch.zeros(0)
    counts = 0
    with torch.no_grad():
        for _ in range(steps):
            spk, _mem = net(x)
            counts = counts + spk
    return counts.numpy()


def test_import_of_graphs_snntorch_exported(tmp_path):
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(1)
    mlp = nn.Sequential(nn.Linear(20, 16), _leaky((16,)), nn.Linear(16, 4),
                        _leaky((4,), output=True))
    nir.write(tmp_path / "mlp.nir", export_to_nir(mlp, torch.rand(20)))
    # a CNN: snntorch needs an unbatched sample, hence Flatten(0) while exporting
    cnn = nn.Sequential(nn.Conv2d(1, 4, 3), _leaky((4, 10, 10)), nn.AvgPool2d(2),
                        nn.Flatten(0), nn.Linear(100, 5), _leaky((5,), output=True))
    nir.write(tmp_path / "cnn.nir", export_to_nir(cnn, torch.rand(1, 12, 12)))
    cnn[3] = nn.Flatten(1)  # batched runs of the source network
    for name, src, x in [("mlp.nir", mlp, torch.rand(30, 20) * 2),
                         ("cnn.nir", cnn, torch.rand(10, 1, 12, 12) * 3)]:
        model = nir_io.read_nir(tmp_path / name)
        assert model.readout == "spikes"  # the graph ends in a LIF: decoded by spike count
        assert all(layer.neuron.reset == "zero" and layer.neuron.beta == pytest.approx(0.9)
                   for layer in model.layers)
        expected = _run_source(src, x, 25)
        got = run_snntorch(model, x.numpy(), 25)
        assert expected.sum() > 0
        np.testing.assert_array_equal(got.outputs, expected)


def test_nir_if_node_and_input_scaling_are_folded():
    """nir.IF (r = input scale) imports as beta = 1, reset to zero, r folded into the weights."""
    w, b = np.array([[1.0, -0.5], [0.25, 0.5]]), np.array([0.1, 0.0])
    g = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([2])), "fc": nir.Affine(w, b),
               "if": nir.IF(r=np.full(2, 2.0), v_threshold=np.full(2, 1.5)),
               "out": nir.Affine(np.eye(2), np.zeros(2)), "output": nir.Output(np.array([2]))},
        edges=[("input", "fc"), ("fc", "if"), ("if", "out"), ("out", "output")],
    )
    model = nir_io.from_nir(g)
    layer = model.layers[0]
    assert layer.neuron.kind == "IF" and layer.neuron.beta == 1.0
    assert layer.neuron.reset == "zero" and layer.neuron.threshold == 1.5
    np.testing.assert_allclose(layer.ops[0].weight, 2 * w)
    np.testing.assert_allclose(layer.ops[0].bias, 2 * b)
    assert nir_io.from_nir(g, reset="subtract").layers[0].neuron.reset == "subtract"
    assert model.readout == "membrane"


@pytest.mark.parametrize("node", ["CubaLI", "I", "Threshold"])
def test_unsupported_node_is_named(node):
    n = 4
    extra = {
        "CubaLI": lambda: nir.CubaLI(tau_syn=np.ones(n), tau_mem=np.ones(n), r=np.ones(n),
                                     v_leak=np.zeros(n)),
        "I": lambda: nir.I(r=np.ones(n)),
        "Threshold": lambda: nir.Threshold(threshold=np.ones(n)),
    }[node]()
    g = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([3])), "fc": nir.Affine(np.ones((n, 3)), np.zeros(n)),
               "weird": extra, "output": nir.Output(np.array([n]))},
        edges=[("input", "fc"), ("fc", "weird"), ("weird", "output")],
    )
    with pytest.raises(UnsupportedLayerError) as info:
        nir_io.from_nir(g)
    msg = str(info.value)
    assert "'weird'" in msg and node in msg and "supported:" in msg and "CubaLIF" in msg


def test_branching_graph_is_refused():
    g = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([3])), "a": nir.Affine(np.ones((2, 3)), np.zeros(2)),
               "b": nir.Affine(np.ones((2, 3)), np.zeros(2)), "output": nir.Output(np.array([2]))},
        edges=[("input", "a"), ("input", "b"), ("a", "output"), ("b", "output")],
        type_check=False,
    )
    with pytest.raises(ConversionError, match="'input' has 2 successors"):
        nir_io.from_nir(g)


def test_corrupt_and_wrong_files_are_named(tmp_path):
    bad = tmp_path / "corrupt.h5"
    bad.write_bytes(b"\x89HDF\r\n garbage")
    with pytest.raises(ConversionError, match="corrupt.h5.*not an HDF5 file"):
        nir_io.read_nir(bad)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as fh:
        fh["weights"] = np.ones(3)
    with pytest.raises(ConversionError, match="other.h5.*not a NIR graph"):
        nir_io.read_nir(other)
    with pytest.raises(ConversionError, match="missing.h5.*does not exist"):
        nir_io.read_nir(tmp_path / "missing.h5")
    broken = tmp_path / "broken.h5"
    with h5py.File(broken, "w") as fh:
        fh["version"] = "1.0"
        fh.create_group("node")["type"] = "NIRGraph"
    with pytest.raises(ConversionError, match="broken.h5.*malformed NIR graph"):
        nir_io.read_nir(broken)


def _write_raw(path, nodes, edges):
    """A NIR file written with h5py alone (what a broken exporter might leave)."""
    with h5py.File(path, "w") as fh:
        fh["version"] = "1.0"
        g = fh.create_group("node")
        g["type"] = "NIRGraph"
        grp = g.create_group("nodes")
        for name, fields in nodes.items():
            ng = grp.create_group(name)
            for k, v in fields.items():
                ng[k] = v
        g["edges"] = np.array(edges, dtype="S")


def test_bad_files_name_the_node(tmp_path, cnn_model):
    from neurolocal.app.cli import main

    lif = {"type": "LIF", "tau": np.ones(2), "r": np.ones(2), "v_leak": np.zeros(2),
           "v_threshold": np.ones(2)}
    nodes = {"input": {"type": "Input", "shape": np.array([2])},
             "fc": {"type": "Affine", "weight": np.eye(2), "bias": np.zeros(2)},
             "lif": lif, "output": {"type": "Output", "shape": np.array([2])}}
    _write_raw(tmp_path / "dangling.nir", nodes,
               [("input", "fc"), ("fc", "2_missing"), ("lif", "output")])
    with pytest.raises(ConversionError, match="'fc' -> '2_missing' names node '2_missing'"):
        nir_io.read_nir(tmp_path / "dangling.nir")
    assert main(["run", str(tmp_path / "dangling.nir"), "--n-test", "5"]) == 2
    broken = dict(nodes, lif={k: v for k, v in lif.items() if k != "tau"})  # no tau
    _write_raw(tmp_path / "notau.nir", broken, [("input", "fc"), ("fc", "lif"),
                                               ("lif", "output")])
    with pytest.raises(ConversionError, match=r"NIR node 'lif' \(LIF\) is malformed"):
        nir_io.read_nir(tmp_path / "notau.nir")
    shapes = dict(nodes, fc={"type": "Affine", "weight": np.ones((2, 3)), "bias": np.zeros(2)})
    _write_raw(tmp_path / "shapes.nir", shapes, [("input", "fc"), ("fc", "lif"),
                                                ("lif", "output")])
    with pytest.raises(ConversionError, match="'fc': Affine expects 3 inputs"):
        nir_io.read_nir(tmp_path / "shapes.nir")
    model, _ = cnn_model
    whole = nir_io.write_nir(model, tmp_path / "whole.nir").read_bytes()
    (tmp_path / "cut.nir").write_bytes(whole[: len(whole) // 2])  # a truncated copy
    with pytest.raises(ConversionError, match="cut.nir.*truncated or corrupt"):
        nir_io.read_nir(tmp_path / "cut.nir")
    assert main(["run", str(tmp_path / "cut.nir")]) == 2


def test_outputs_get_the_umask_and_named_temporaries(tmp_path, cnn_model):
    import os

    from neurolocal.fileio import TMP_MARK, atomic_write

    model, _ = cnn_model
    old = os.umask(0o022)
    try:
        path = nir_io.write_nir(model, tmp_path / "snn.nir", rules="fa")
    finally:
        os.umask(old)
    assert (path.stat().st_mode & 0o777) == 0o644
    assert (nir_io.rules_path(path).stat().st_mode & 0o777) == 0o644
    # a temporary file left by a killed writer (pid 2**22 + 1 is not running) goes next time
    stale = tmp_path / f".snn.nir{TMP_MARK}{2**22 + 1}-dead"
    stale.write_bytes(b"half a graph")
    seen = []
    atomic_write(path, lambda tmp: (seen.append(tmp), open(tmp, "wb").write(b"x")))
    assert not stale.exists() and f".snn.nir{TMP_MARK}{os.getpid()}-" in seen[0]
    assert path.read_bytes() == b"x"


def test_rules_live_inside_the_graph_file(tmp_path, cnn_model):
    from snntorch.import_nir import import_from_nir

    model, _ = cnn_model
    path = nir_io.write_nir(model, tmp_path / "net.nir", rules={"fc1": "fa"})
    with h5py.File(path, "r") as fh:
        assert nir_io.RULES_GROUP in fh and "node" in fh
    graph = nir.read(path)  # NIR readers ignore the group
    assert set(graph.nodes) >= {"fc1", "lif1"}
    import_from_nir(graph)  # and so does snntorch's importer
    # a kill between writing the graph and its sidecar: new graph, old sidecar
    old_side = nir_io.rules_path(path).read_text()
    nir_io.write_nir(model, path, rules={"fc2": "dfa"})
    nir_io.rules_path(path).write_text(old_side)
    with pytest.warns(UserWarning, match="earlier version"):
        back = nir_io.read_nir(path)
    assert back.metadata["rules"] == {"fc2": "dfa"}  # the graph's own rules
    # a graph from another tool with a sidecar that belongs to another file: refused
    foreign = tmp_path / "foreign.nir"
    nir.write(foreign, nir_io.to_nir(model))
    nir_io.rules_path(foreign).write_text(old_side)
    with pytest.raises(ConversionError, match="belongs to another version of foreign.nir"):
        nir_io.read_nir(foreign)


def test_rule_sidecar_keyed_by_node_names(tmp_path, cnn_model):
    model, _ = cnn_model
    rules = {"fc1": "dw = lr * pre.x1 * post.err", "conv1": {"rule": "fa", "lr": 0.01}}
    path = nir_io.write_nir(model, tmp_path / "net.h5", rules=rules)
    side = tmp_path / "net.rules.json"
    assert nir_io.rules_path(path) == side and side.exists()
    data = json.loads(side.read_text())
    assert data["graph"] == "net.h5" and data["rules"] == rules and data["graph_sha256"]
    assert nir_io.read_nir(path).metadata["rules"] == rules
    # one string for the whole network: every synaptic node gets it
    nir_io.write_nir(model, path, rules="fa")
    assert nir_io.read_rules(path) == {"conv1": "fa", "fc1": "fa", "fc2": "fa"}
    with pytest.raises(ConversionError, match=r"\['fc9'\].*synaptic nodes are"):
        nir_io.write_nir(model, tmp_path / "x.h5", rules={"fc9": "fa"})
    assert not (tmp_path / "x.h5").exists()  # nothing half-written
    # rewriting without rules removes the now stale sidecar
    nir_io.write_nir(model, path)
    assert not side.exists() and nir_io.read_rules(path) is None
    side.write_text("{not json")
    with pytest.raises(ConversionError, match="net.rules.json.*corrupt"):
        nir_io.read_nir(path)


def test_failed_write_leaves_the_old_file_intact(tmp_path, cnn_model):
    model, _ = cnn_model
    path = nir_io.write_nir(model, tmp_path / "snn.h5")
    before = path.read_bytes()
    graph = nir_io.to_nir(model)
    graph.nodes["fc1"].metadata = {"bad": object()}  # h5py cannot store this
    with pytest.raises(TypeError):
        nir_io.write_nir(graph, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snn.h5"]  # no temp files left

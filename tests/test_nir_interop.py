"""NIR from other tools: CubaLIF, LI read-outs, IF scaling, scalar parameters, dt, refusals."""

from __future__ import annotations

import warnings

import nir
import numpy as np
import pytest
import snntorch as snn
import torch
from torch import nn

from neurolocal.converters import nir_io
from neurolocal.converters.model import ConversionError, UnsupportedLayerError
from neurolocal.converters.nir_import import NIRConventionWarning, implied_dt
from neurolocal.hardware.brian2.inference import run_brian2
from neurolocal.hardware.snntorch.inference import run_snntorch

torch.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings("ignore:.*deprecat.*:DeprecationWarning")


def _synaptic(n: int, output: bool = False) -> snn.Synaptic:
    # per-neuron tensors: snntorch 1.0's exporter fails on scalars with nir 1.0.8
    return snn.Synaptic(alpha=torch.full((n,), 0.8), beta=torch.full((n,), 0.9),
                        threshold=torch.full((n,), 0.5), init_hidden=True,
                        reset_mechanism="zero", reset_delay=False, output=output)


def _count(net: nn.Module, x: torch.Tensor, steps: int) -> np.ndarray:
    for m in net.modules():
        if isinstance(m, snn.Synaptic):
            m.syn, m.mem = torch.zeros(0), torch.zeros(0)
    counts = 0
    with torch.no_grad():
        for _ in range(steps):
            counts = counts + net(x)[0]
    return counts.numpy()


def test_snntorch_synaptic_graph_runs_to_its_spike_counts(tmp_path):
    """snntorch's Synaptic exports CubaLIF (tau = dt/(1-decay), r = tau_mem/dt, w_in =
    tau_syn/dt at dt = 1e-4): imported at that dt it gives the source network's counts."""
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(20, 16), _synaptic(16), nn.Linear(16, 4), _synaptic(4, True))
    nir.write(tmp_path / "syn.nir", export_to_nir(net, torch.rand(20)))
    model = nir_io.read_nir(tmp_path / "syn.nir")
    assert [layer.neuron.kind for layer in model.layers] == ["CubaLIF", "CubaLIF"]
    assert model.layers[0].neuron.alpha == pytest.approx(0.8)
    assert "snntorch's convention" in model.metadata["nir"]["notes"][0]
    x = torch.rand(30, 20) * 2
    expected = _count(net, x, 25)
    assert expected.sum() > 100
    np.testing.assert_array_equal(run_snntorch(model, x.numpy(), 25).outputs, expected)
    np.testing.assert_array_equal(run_brian2(model, x.numpy(), 25).outputs, expected)


def _euler(w1, b1, w2, b2, x, steps, dt, tau, thr, tau_li):
    """NIR's LIF -> LI equations, forward Euler in numpy (reset to 0 in the spike's step)."""
    v = np.zeros((len(x), w1.shape[0]))
    o = np.zeros((len(x), w2.shape[0]))
    counts = np.zeros_like(v)
    for _ in range(steps):
        v = v + dt / tau * (-v + (x @ w1.T + b1))
        s = v > thr
        counts += s
        v[s] = 0.0
        o = o + dt / tau_li * (-o + (s @ w2.T + b2))
    return counts, o


def _norse_style_graph(rng, scalar: bool = False):
    w1, b1 = rng.normal(0, 1.0, (12, 6)), rng.normal(0.2, 0.1, 12)
    w2, b2 = rng.normal(0, 1.0, (3, 12)), np.zeros(3)
    full = (lambda n, v: np.array([v])) if scalar else (lambda n, v: np.full(n, v))
    nodes = {
        "input": nir.Input(np.array([6])),
        "fc1": nir.Affine(w1, b1),
        "lif": nir.LIF(tau=full(12, 0.01), r=full(12, 1.0), v_leak=full(12, 0.0),
                       v_threshold=full(12, 0.3)),
        "fc2": nir.Affine(w2, b2),
        "li": nir.LI(tau=full(3, 0.02), r=full(3, 1.0), v_leak=full(3, 0.0)),
        "output": nir.Output(np.array([3])),
    }
    edges = [("input", "fc1"), ("fc1", "lif"), ("lif", "fc2"), ("fc2", "li"), ("li", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=not scalar), (w1, b1, w2, b2)


@pytest.mark.parametrize("scalar", [False, True])
def test_norse_style_lif_graph_at_its_dt_matches_the_nir_equations(tmp_path, scalar):
    """A Norse-style graph (LIF tau = 0.01 s, r = 1; LI read-out) at dt = 1e-3: spike counts
    and read-out equal a numpy Euler simulation of NIR's equations; one-value parameters
    broadcast over the layer."""
    rng = np.random.default_rng(3)
    graph, (w1, b1, w2, b2) = _norse_style_graph(rng, scalar)
    nir.write(tmp_path / "norse.nir", graph)
    x = rng.random((25, 6))
    model = nir_io.read_nir(tmp_path / "norse.nir", dt=1e-3)
    assert model.layers[0].neuron.beta == pytest.approx(0.9) and model.layers[1].leak == 0.95
    counts, out = _euler(w1, b1, w2, b2, x, 40, 1e-3, 0.01, 0.3, 0.02)
    assert counts.sum() > 200
    for run in (run_snntorch(model, x, 40, dtype=torch.float64, return_counts=True),
                run_brian2(model, x, 40, return_counts=True)):
        np.testing.assert_array_equal(run.spike_counts[0], counts)
        np.testing.assert_allclose(run.outputs, out, rtol=1e-9, atol=1e-12)


def test_dt_is_said_and_other_exporters_conventions_are_warned(tmp_path):
    graph, _ = _norse_style_graph(np.random.default_rng(0))
    nir.write(tmp_path / "norse.nir", graph)
    assert implied_dt(graph) == ("r=1", None)
    with pytest.warns(NIRConventionWarning, match=r"r = 1.*Norse.*--dt 0\.001"):
        model = nir_io.read_nir(tmp_path / "norse.nir")
    notes = model.metadata["nir"]["notes"]
    assert "dt = 0.0001 s (assumed" in notes[0] and model.metadata["nir"]["dt"] == 1e-4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        given = nir_io.read_nir(tmp_path / "norse.nir", dt=1e-3)  # given: no warning
    assert "(given)" in given.metadata["nir"]["notes"][0]
    # r = tau/dt for another dt (snntorch's rule at 1e-3): said, with the flag to use
    for name in ("lif", "li"):
        graph.nodes[name].r = graph.nodes[name].tau / 1e-3
    with pytest.warns(NIRConventionWarning, match=r"dt = 0\.001 s.*--dt 0\.001"):
        nir_io.from_nir(graph)
    # a dt the time constants cannot take is refused by name, with the fix
    with pytest.raises(ConversionError, match=r"'lif'.*shorter than dt = 0\.1 s.*--dt"):
        nir_io.from_nir(graph, dt=0.1)
    with pytest.raises(ConversionError, match="--dt"):
        nir_io.from_nir(graph, dt=-1.0)


def test_if_input_scale_r_and_zero_delays(tmp_path):
    w = np.array([[1.0, -0.5], [0.25, 0.5]])
    g = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([2])), "fc": nir.Affine(w, np.zeros(2)),
               "if": nir.IF(r=np.array([3.0]), v_threshold=np.array([1.5])),
               "d": nir.Delay(np.zeros(2)),
               "out": nir.Linear(np.eye(2)), "output": nir.Output(np.array([2]))},
        edges=[("input", "fc"), ("fc", "if"), ("if", "d"), ("d", "out"), ("out", "output")],
        type_check=False,
    )
    model = nir_io.from_nir(g)
    np.testing.assert_allclose(model.layers[0].ops[0].weight, 3 * w)  # v += r I
    assert model.layers[0].neuron.threshold == 1.5 and model.layers[0].neuron.beta == 1.0
    g.nodes["d"] = nir.Delay(np.full(2, 2e-4))
    with pytest.raises(UnsupportedLayerError, match=r"'d' \(Delay\).*2-2 steps"):
        nir_io.from_nir(g)


def _chain_graph(extra_nodes, edges):
    nodes = {"input": nir.Input(np.array([3])), "fc": nir.Affine(np.ones((4, 3)), np.zeros(4)),
             "output": nir.Output(np.array([4])), **extra_nodes}
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def test_recurrence_and_structures_are_refused_by_name():
    lif = nir.LIF(tau=np.full(4, 0.01), r=np.full(4, 100.0), v_leak=np.zeros(4),
                  v_threshold=np.ones(4))
    sub = nir.NIRGraph(nodes={"input": nir.Input(np.array([4])), "lif": lif,
                              "w_rec": nir.Linear(np.eye(4)), "output": nir.Output(np.array([4]))},
                       edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"),
                              ("lif", "output")], type_check=False)
    g = _chain_graph({"rsnn": sub}, [("input", "fc"), ("fc", "rsnn"), ("rsnn", "output")])
    # a recurrent layer in either of snntorch's forms imports (tests/test_convert_recurrent.py)
    np.testing.assert_array_equal(nir_io.from_nir(g).layers[0].recurrent, np.eye(4))
    loop = _chain_graph({"lif": lif, "w": nir.Linear(np.eye(4))},
                        [("input", "fc"), ("fc", "lif"), ("lif", "w"), ("w", "lif"),
                         ("lif", "output")])
    np.testing.assert_array_equal(nir_io.from_nir(loop).layers[0].recurrent, np.eye(4))
    sub.edges.append(("w_rec", "output"))  # no longer the RLeaky form: refused by name
    with pytest.raises(UnsupportedLayerError, match=r"'rsnn' \(NIRGraph\).*RLeaky form"):
        nir_io.from_nir(g)
    cyc = _chain_graph({"lif": lif, "w": nir.Linear(np.eye(4))},
                       [("input", "fc"), ("fc", "lif"), ("lif", "w"), ("w", "fc")])
    with pytest.raises(ConversionError, match="'w' -> 'fc' closes a loop"):
        nir_io.from_nir(cyc)
    dangling = _chain_graph({}, [("input", "fc"), ("fc", "2_missing"), ("fc", "output")])
    with pytest.raises(ConversionError, match="names node '2_missing'"):
        nir_io.from_nir(dangling)
    li = _chain_graph({"li": nir.LI(np.ones(4), np.ones(4), np.zeros(4)),
                       "fc2": nir.Affine(np.ones((4, 4)), np.zeros(4))},
                      [("input", "fc"), ("fc", "li"), ("li", "fc2"), ("fc2", "output")])
    with pytest.raises(ConversionError, match="'li' .LI. is not the last layer"):
        nir_io.from_nir(li)
    wrong = _chain_graph({"fc2": nir.Affine(np.ones((4, 5)), np.zeros(4))},
                         [("input", "fc"), ("fc", "fc2"), ("fc2", "output")])
    with pytest.raises(ConversionError, match="'fc2': Affine expects 5 inputs"):
        nir_io.from_nir(wrong)


def test_cubalif_and_leaky_readout_round_trip_and_snntorch_reads_them(tmp_path):
    from neurolocal.hardware.snntorch.nir_import import import_snntorch, run_imported

    graph, _ = _norse_style_graph(np.random.default_rng(1))
    x = np.random.default_rng(2).random((10, 6))
    model = nir_io.from_nir(graph, dt=1e-3)
    nir_io.write_nir(model, tmp_path / "li.nir")
    back = nir_io.read_nir(tmp_path / "li.nir")
    assert back.layers[-1].leak == model.layers[-1].leak
    np.testing.assert_allclose(run_snntorch(back, x, 30, dtype=torch.float64).outputs,
                               run_snntorch(model, x, 30, dtype=torch.float64).outputs,
                               rtol=1e-12)
    # a CubaLIF model written here: snntorch's own importer builds Synaptic cells with it
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(20, 16), _synaptic(16), nn.Linear(16, 4), _synaptic(4, True))
    nir.write(tmp_path / "syn.nir", export_to_nir(net, torch.rand(20)))
    ours = nir_io.read_nir(tmp_path / "syn.nir")
    nir_io.write_nir(ours, tmp_path / "ours.nir")
    imported = import_snntorch(tmp_path / "ours.nir")
    assert any(isinstance(m, snn.Synaptic) for m in imported.modules())
    xs = np.random.default_rng(4).random((12, 20)) * 2
    np.testing.assert_array_equal(run_imported(imported, xs, 20),
                                  run_snntorch(ours, xs, 20).outputs)

"""The deployment flow: learn on snntorch, continue on Lava and Brian2, ship as NIR.

One checkpoint travels: spiking training on snntorch -> ``--init`` on Lava floating_pt, Lava
fixed_pt and Brian2 (numpy code generation) -> NIR export -> snntorch's own importer, which
must give exactly the spike counts the learning targets give.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from neurolocal.app.cli import main
from neurolocal.app.training import TrainConfig, train
from neurolocal.checkpoint import load_checkpoint
from neurolocal.rule import FORWARD

pytest.importorskip("snntorch")
pytest.importorskip("brian2")
pytest.importorskip("lava", reason="lava-nc not installed (make install)")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

SMALL = {"limit": 60, "test_limit": 40, "timesteps": 8}


def _weights(path):
    net, meta = load_checkpoint(path)
    return {k: np.asarray(net.state[FORWARD][k]["w"], np.float64) for k in net.state[FORWARD]}, \
        meta


def _continue(init, out, target, lr, **kw):
    return train(TrainConfig(rule=None, target=target, init=str(init), out=str(out),
                             globals={"lr": lr}, **SMALL, **kw), progress=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    path = tmp_path_factory.mktemp("deploy") / "snn.h5"
    res = train(TrainConfig(rule="dfa", target="snntorch", hidden=[24], batch_size=10,
                            out=str(path), globals={"lr": 0.2}, **SMALL), progress=False)
    assert res.checkpoint == str(path)
    return path


def test_a_spiking_checkpoint_says_how_it_was_trained(trained):
    w, meta = _weights(trained)
    assert meta["target"] == "snntorch" and meta["mode"] == "spiking"
    assert meta["spiking"]["timesteps"] == 8 and meta["epoch"] == 1
    net, _ = load_checkpoint(trained)
    assert net.rule.name == "dfa" and net.state["B"][1]["w"].shape == (24, 10)


@pytest.mark.parametrize("target", ["lava:floating_pt", "lava:fixed_pt", "brian2"])
def test_init_continues_from_the_checkpoint_on_another_target(trained, tmp_path, target):
    start, _ = _weights(trained)
    codegen = {"codegen": "numpy"} if target == "brian2" else {}
    res = _continue(trained, tmp_path / "still.h5", target, 0.0, **codegen)  # lr 0: no change
    still, meta = _weights(tmp_path / "still.h5")
    assert meta["target"] == target and meta["spiking"]["timesteps"] == 8
    rounding = res.extra.get("init_rounding", 0.0)
    if target == "lava:fixed_pt":
        assert 0 < rounding < 0.05  # the weights moved onto the fixed-point grid, reported
    else:
        assert rounding == 0.0
    for layer, w in start.items():
        np.testing.assert_allclose(still[layer], w, atol=rounding + 1e-6)
    _continue(trained, tmp_path / "moved.h5", target, 0.05, **codegen)
    moved, _ = _weights(tmp_path / "moved.h5")
    assert max(float(np.abs(moved[k] - start[k]).max()) for k in start) > 1e-3


def test_nir_export_reads_back_in_snntorch_with_the_same_spike_counts(trained, tmp_path):
    import nir

    from neurolocal.hardware.base import get_target
    from neurolocal.hardware.encoding import encode_input
    from neurolocal.hardware.snntorch.nir_import import run_imported_spiking

    out = tmp_path / "snn.nir"
    assert main(["export", str(trained), "--out", str(out)]) == 0
    graph = nir.read(out)
    assert [type(graph.nodes[k]).__name__ for k in ("fc1", "lif1", "fc2", "lif2")] == \
        ["Affine", "CubaLIF", "Affine", "CubaLIF"]
    sidecar = json.loads(out.with_name("snn.rules.json").read_text())
    assert set(sidecar["rules"]) == {"fc1", "fc2"} and "rule dfa" in sidecar["rules"]["fc1"]
    net, meta = load_checkpoint(trained)
    from neurolocal.hardware.semantics import SpikingConfig
    cfg = SpikingConfig(**meta["spiking"])
    x = np.random.default_rng(0).random((16, 784)).astype(np.float32) * 0.6
    spikes = encode_input(x, cfg, seed=1)
    ours = get_target("snntorch").runner(net, cfg, dtype="float64").simulate(spikes)[-1]["tr1"]
    theirs = run_imported_spiking(out, spikes)
    assert float(np.asarray(ours).sum()) > 10  # the output layer spikes: a real comparison
    np.testing.assert_array_equal(theirs, np.asarray(ours))
    assert np.array_equal(theirs.argmax(1), np.asarray(ours).argmax(1))


def test_run_evaluates_a_spiking_checkpoint_on_each_target(trained, capsys):
    for target in ("snntorch", "lava"):
        assert main(["run", str(trained), "--target", target, "--n-test", "20", "--json"]) == 0
        res = json.loads(capsys.readouterr().out)
        assert res["trained_on"] == "snntorch" and res["timesteps"] == 8
        assert 0 <= res["test_accuracy"] <= 100 and res["n_test"] == 20


def test_rate_checkpoints_are_refused_where_a_spiking_one_is_needed(tmp_path, capsys):
    path = tmp_path / "rate.h5"
    train(TrainConfig(rule="fa", target="numpy", hidden=[8], limit=100, test_limit=50,
                      out=str(path)), progress=False)
    assert main(["export", str(path), "--out", str(tmp_path / "x.nir")]) == 2
    assert "trained in rate mode" in capsys.readouterr().err
    assert main(["run", str(path), "--target", "snntorch"]) == 2
    assert "neurolocal convert" in capsys.readouterr().err

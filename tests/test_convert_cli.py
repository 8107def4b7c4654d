"""Stage 5 of the converter: the convert()/run_snn() API and `neurolocal convert` / `run`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from neurolocal.app.cli import main
from neurolocal.converters import nir_io
from neurolocal.converters.api import convert, run_snn
from neurolocal.converters.model import ConversionError, SNNModel

torch.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings("ignore:.*deprecated.*:DeprecationWarning")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from neurolocal.app.data import load_dataset

    tr = load_dataset("mnist", "train", limit=4000, verbose=False)
    x, y = torch.from_numpy(np.array(tr.x)), torch.from_numpy(np.array(tr.y))
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(784, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 10))
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    for _ in range(2):
        for i in range(0, len(x), 64):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x[i:i + 64]), y[i:i + 64]).backward()
            opt.step()
    net.eval()
    folder = tmp_path_factory.mktemp("models")
    torch.save(net, folder / "mlp.pt")
    torch.save({"arch": ["Linear(784, 32)", "ReLU", "Dropout(0.1)", "Linear(32, 10)"],
                "state_dict": net.state_dict()}, folder / "mlp_sd.pt")
    return net, folder


def test_convert_api_evaluates_and_saves(trained, tmp_path):
    net, _ = trained
    res = convert(net, timesteps=16, n_calibration=500, n_eval=300, out=tmp_path / "snn.h5",
                  rules={"fc1": "fa"})
    assert isinstance(res.model, SNNModel) and res.source_kind == "ann"
    assert res.ann_accuracy > 0.85 and abs(res.snn_accuracy - res.ann_accuracy) <= 0.02
    d = res.as_dict()
    for key in ("ann_accuracy", "snn_accuracy", "timesteps", "target", "synops_per_inference"):
        assert d[key] is not None
    assert d["synops_per_inference"] == pytest.approx(d["layers"][0]["spikes"] * 10)
    assert (tmp_path / "snn.h5").exists() and (tmp_path / "snn.rules.json").exists()
    # the saved network runs to the same predictions
    again = run_snn(tmp_path / "snn.h5", "snntorch", timesteps=16, n_eval=300)
    np.testing.assert_array_equal(again.predictions, res.run.predictions)
    assert again.extra["accuracy"] == res.snn_accuracy


def test_convert_with_explicit_data_and_lif(trained):
    from neurolocal.app.data import load_dataset

    net, _ = trained
    tr = load_dataset("mnist", "train", limit=300, verbose=False)
    te = load_dataset("mnist", "test", limit=100, verbose=False)
    res = convert(net, calibration=tr.x, evaluate=(te.x, te.y), timesteps=32, neuron="LIF",
                  beta=0.97, normalisation="max")
    assert res.model.layers[0].neuron.kind == "LIF"
    assert res.model.metadata["normalisation"] == "max"
    assert res.snn_accuracy > 0.8
    with pytest.raises(ConversionError, match="unknown target"):
        convert(net, calibration=tr.x, target="loihi9", dataset=None)


def test_cli_convert_json_and_run(trained, tmp_path, capsys):
    _, folder = trained
    out = tmp_path / "net.h5"
    rc = main(["convert", str(folder / "mlp_sd.pt"), "--timesteps", "16", "--json",
               "--n-test", "200", "--n-calibration", "500", "--out", str(out)])
    assert rc == 0
    d = json.loads(capsys.readouterr().out)
    assert d["target"] == "snntorch" and d["timesteps"] == 16 and d["n_eval"] == 200
    assert 0.8 < d["snn_accuracy"] <= 1 and d["synops_per_inference"] > 0
    assert d["ann_accuracy"] > 0.8
    rc = main(["run", str(out), "--target", "brian2", "-T", "16", "--n-test", "40", "--json",
               "--codegen", "numpy"])
    assert rc == 0
    r = json.loads(capsys.readouterr().out)
    assert r["target"] == "brian2" and r["n_eval"] == 40 and r["snn_accuracy"] > 0.7
    rc = main(["run", str(out), "-T", "16", "--n-test", "40"])
    assert rc == 0 and "accuracy" in capsys.readouterr().out


def test_cli_errors_name_the_input(tmp_path, capsys):
    bad = nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(338, 10))
    torch.save(bad, tmp_path / "maxpool.pt")
    rc = main(["convert", str(tmp_path / "maxpool.pt"), "--input-shape", "1,28,28"])
    err = capsys.readouterr().err
    assert rc == 2 and "'1'" in err and "MaxPool2d" in err and "AvgPool2d" in err
    rc = main(["convert", str(tmp_path / "missing.pt")])
    assert rc == 2 and "missing.pt" in capsys.readouterr().err
    (tmp_path / "junk.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"0" * 64)
    rc = main(["run", str(tmp_path / "junk.h5")])
    assert rc == 2 and "junk.h5" in capsys.readouterr().err


def test_rate_model_is_refused_by_run(trained):
    _, folder = trained
    with pytest.raises(ConversionError, match="convert it first"):
        run_snn(folder / "mlp.pt", "snntorch", n_eval=10)


def test_neurolocal_checkpoint_seam(tmp_path):
    """A neurolocal checkpoint converts; its rule text lands in the sidecar per synapse node."""
    from neurolocal import build_mlp, get_rule
    from neurolocal.checkpoint import save_checkpoint

    net = build_mlp([784, 20, 10], get_rule("fa"), seed=1)
    path = save_checkpoint(tmp_path / "ckpt.h5", net)
    res = convert(path, timesteps=8, n_calibration=200, n_eval=50, out=tmp_path / "snn.h5")
    assert res.source_kind == "ann" and [layer.n_out for layer in res.model.layers] == [20, 10]
    rules = nir_io.read_rules(tmp_path / "snn.h5")
    assert set(rules) == {"fc1", "fc2"} and "rule fa" in rules["fc1"]
    w = net.weights(1)
    lam = res.model.layers[0].scale
    np.testing.assert_allclose(res.model.layers[0].ops[0].weight, w / lam, rtol=1e-5)


@pytest.mark.parametrize(("flags", "named"), [
    (["--n-test", "-1"], "--n-test"), (["-T", "0"], "--timesteps"),
    (["--percentile", "0"], "--percentile"), (["--v-init", "1.5"], "--v-init"),
    (["--neuron", "LIF", "--beta", "1"], "--beta"), (["--dt=-1e-3"], "--dt"),
    (["--n-calibration", "0"], "--n-calibration"), (["--input-shape", "1,x"], "--input-shape"),
])
def test_out_of_range_values_name_their_flag(trained, capsys, flags, named):
    _, folder = trained
    rc = main(["convert", str(folder / "mlp_sd.pt"), *flags])
    err = capsys.readouterr().err
    assert rc == 2 and named in err and "Traceback" not in err


def test_state_dict_with_arch_and_the_data_sets_shape(tmp_path, capsys):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.ReLU(), nn.Linear(16, 10))
    torch.save(net.state_dict(), tmp_path / "sd.pt")
    rc = main(["convert", str(tmp_path / "sd.pt"), "--n-test", "0"])
    err = capsys.readouterr().err
    assert rc == 2 and "--arch FILE.py:FUNCTION" in err and "state_dict" in err
    (tmp_path / "arch.py").write_text(
        "from torch import nn\n\ndef build():\n    return nn.Sequential(nn.Flatten(), "
        "nn.Linear(784, 16), nn.ReLU(), nn.Linear(16, 10))\n")
    rc = main(["convert", str(tmp_path / "sd.pt"), "--arch", f"{tmp_path / 'arch.py'}:build",
               "--n-test", "20", "--n-calibration", "100", "-T", "8", "--json"])
    d = json.loads(capsys.readouterr().out)
    assert rc == 0 and d["n_eval"] == 20  # Flatten first: the data set gave (1, 28, 28)
    rc = main(["convert", str(tmp_path / "sd.pt"), "--arch", f"{tmp_path / 'arch.py'}:nope"])
    assert rc == 2 and "has no function 'nope'" in capsys.readouterr().err
    from neurolocal.converters.torch_import import from_sequential

    with pytest.raises(ConversionError, match="--input-shape 1,28,28"):
        from_sequential(net)  # no data set from Python: the error names the flag too


def test_plots_of_convert_run_and_train(trained, tmp_path, capsys):
    """--plot on convert, run (Lava: fixed point against float) and train write PNGs, and
    `neurolocal plot` redraws each from the --json output."""
    _, folder = trained
    net = tmp_path / "net.nir"
    rc = main(["convert", str(folder / "mlp_sd.pt"), "-T", "8", "--n-test", "40",
               "--n-calibration", "200", "--out", str(net), "--plot", str(tmp_path / "c.png"),
               "--json"])
    conv = capsys.readouterr().out
    assert rc == 0 and json.loads(conv)["sweep"]["T"] == [1, 2, 4, 8, 16]
    rc = main(["run", str(net), "--target", "lava:fixed_pt", "-T", "8", "--n-test", "12",
               "--plot", str(tmp_path / "r.png"), "--json"])
    run = json.loads(capsys.readouterr().out)
    assert rc == 0 and run["raster"]["layer1"]["shape"] == [8, 32]
    assert run["float_reference"]["target"] == "snntorch" and len(run["outputs"]) == 12
    rc = main(["train", "--rule", "fa", "--hidden", "16", "--samples", "300",
               "--test-samples", "100", "--epochs", "2", "--json",
               "--plot", str(tmp_path / "t.png")])
    train = capsys.readouterr().out
    assert rc == 0 and len(json.loads(train)["history"]) == 2
    for name, text in (("c", conv), ("r", json.dumps(run)), ("t", train)):
        (tmp_path / f"{name}.json").write_text(text)
        assert main(["plot", str(tmp_path / f"{name}.json")]) == 0
        for png in (tmp_path / f"{name}.png",):
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    capsys.readouterr()
    (tmp_path / "bad.json").write_text("{}")
    assert main(["plot", str(tmp_path / "bad.json")]) == 2

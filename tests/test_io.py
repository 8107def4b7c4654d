"""Checkpoints: round trip, atomic writes, clear errors for corrupt or foreign files."""

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest

import neurolocal as nl
from neurolocal.checkpoint import load_checkpoint, save_checkpoint
from neurolocal.errors import CheckpointError
from neurolocal.hardware.rate import RateRunner


def test_round_trip_keeps_state_rule_and_predictions(tmp_path):
    rule = nl.get_rule("kp").with_globals(wd=0.5)
    net = nl.build_mlp([12, 8, 3], rule, hidden_activation="tanh", seed=4)
    path = save_checkpoint(tmp_path / "kp.h5", net, meta={"epoch": 3})
    back, meta = load_checkpoint(path)
    assert meta == {"epoch": 3}
    assert back.rule.name == "kp" and back.rule.scalar_globals()["wd"] == 0.5
    assert back.sizes == [12, 8, 3] and back.hidden_activation == "tanh"
    for proj, layers in net.state.items():
        for layer, d in layers.items():
            for var, arr in d.items():
                np.testing.assert_array_equal(arr, back.state[proj][layer][var])
    x = np.random.default_rng(0).random((5, 12), dtype=np.float32)
    np.testing.assert_array_equal(RateRunner(net, backend="numpy").predict(x),
                                  RateRunner(back, backend="numpy").predict(x))


def test_failed_write_leaves_the_previous_checkpoint_and_no_temp_file(tmp_path, monkeypatch):
    net = nl.build_mlp([4, 3, 2], nl.get_rule("fa"))
    path = save_checkpoint(tmp_path / "good.h5", net, meta={"epoch": 1})
    net.state["W"][1]["w"] = object()  # h5py cannot store this
    with pytest.raises(TypeError):
        save_checkpoint(path, net, meta={"epoch": 2})
    assert [p.name for p in tmp_path.iterdir()] == ["good.h5"]
    assert load_checkpoint(path)[1] == {"epoch": 1}


def test_corrupt_and_foreign_files_get_named_errors(tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n garbage")
    with pytest.raises(CheckpointError, match="bad.h5 is corrupt"):
        load_checkpoint(bad)
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(CheckpointError, match="not a neurolocal checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.h5")
    with pytest.raises(CheckpointError, match="folder .* does not exist"):
        save_checkpoint(tmp_path / "no" / "such.h5", nl.build_mlp([2, 2], nl.get_rule("fa")))


def test_wrong_shapes_in_a_checkpoint_are_reported(tmp_path):
    net = nl.build_mlp([4, 3, 2], nl.get_rule("fa"))
    path = save_checkpoint(tmp_path / "c.h5", net)
    with h5py.File(path, "a") as f:
        del f["state/W/2/w"]
        f["state/W/2/w"] = np.zeros((5, 5), np.float32)
    with pytest.raises(CheckpointError, match="layer 2 have shape"):
        load_checkpoint(path)


def test_cli_train_json_and_checkpoint(tmp_path):
    out = tmp_path / "fa.h5"
    proc = subprocess.run(
        [sys.executable, "-m", "neurolocal", "train", "--rule", "fa", "--dataset", "mnist",
         "--hidden", "64", "--epochs", "1", "--samples", "10000", "--json", "--out", str(out)],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    for key in ("rule", "test_accuracy", "epochs", "seconds"):
        assert key in result
    assert result["rule"] == "fa" and result["epochs"] == 1
    assert result["test_accuracy"] > 75.0  # 10,000 images, one epoch, 64 hidden: measured 83.1 %
    net, meta = load_checkpoint(out)
    assert net.sizes == [784, 64, 10] and meta["epoch"] == 1

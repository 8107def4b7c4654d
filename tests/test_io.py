"""Checkpoints: round trip, atomic writes, clear errors for corrupt or foreign files."""

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
from support.checkpoints import resign

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
    net.state["W"][1]["w"] = np.array([object()])  # h5py cannot store this
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
    resign(path)
    with pytest.raises(CheckpointError, match="layer 2 have shape"):
        load_checkpoint(path)


def _edited(tmp_path, name, edit):
    net = nl.build_mlp([6, 4, 3], nl.get_rule("fa"), seed=1)
    path = save_checkpoint(tmp_path / f"{name}.h5", net)
    with h5py.File(path, "a") as f:
        edit(f)
    return path


def _replace(f, field, value):
    del f[field]
    f[field] = value


EDITS = {
    "nan": (lambda f: _replace(f, "state/W/1/w", np.full((4, 7), np.nan, np.float32)),
            "state/W/1/w holds NaN"),
    "int64": (lambda f: _replace(f, "state/W/2/w", np.zeros((3, 5), np.int64)),
              "state/W/2/w has dtype int64"),
    "no-feedback": (lambda f: f.__delitem__("state/B/1/w"), "state/B/1/w is missing"),
    "extra-layer": (lambda f: f.create_dataset("state/W/3/w", data=np.zeros((2, 4))),
                    "state/W/3/w does not belong"),
    "bp-text": (lambda f: f.attrs.__setitem__(
        "rule_text", nl.get_rule("bp").text), "rule_name says 'fa'"),
    "feedback-shape": (lambda f: _replace(f, "state/B/1/w", np.zeros((4, 4), np.float32)),
                       "feedback B into layer 1 have shape"),
}


@pytest.mark.parametrize("name", sorted(EDITS))
def test_edited_checkpoints_are_refused_naming_the_field(tmp_path, name):
    edit, fragment = EDITS[name]
    path = _edited(tmp_path, name, edit)
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load_checkpoint(path)
    resign(path)
    with pytest.raises(CheckpointError, match=fragment):
        load_checkpoint(path)


def test_flipped_bytes_never_load_with_changed_weights(tmp_path):
    net = nl.build_mlp([20, 10, 3], nl.get_rule("kp"), seed=2)
    path = save_checkpoint(tmp_path / "k.h5", net)
    raw = path.read_bytes()
    rng = np.random.default_rng(0)
    loaded_same = refused = 0
    for k in range(40):
        bad = bytearray(raw)
        for pos in rng.integers(0, len(raw), size=3):
            bad[pos] ^= 0xFF
        p = tmp_path / f"flip{k}.h5"
        p.write_bytes(bytes(bad))
        try:
            back, _ = load_checkpoint(p)
        except CheckpointError:
            refused += 1
            continue
        for proj, layers in net.state.items():  # what loads must be exactly what was saved
            for layer, d in layers.items():
                for var, arr in d.items():
                    np.testing.assert_array_equal(back.state[proj][layer][var], arr)
        loaded_same += 1
    assert refused > 0 and refused + loaded_same == 40


def test_outputs_get_the_umask_and_stale_temps_are_removed(tmp_path):
    import os
    net = nl.build_mlp([4, 3, 2], nl.get_rule("fa"))
    stale = tmp_path / ".c.h5.neurolocal-tmp-999999-abcd"  # a killed writer's (no such pid)
    stale.write_bytes(b"half")
    old = os.umask(0o022)
    try:
        path = save_checkpoint(tmp_path / "c.h5", net)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
    assert not stale.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["c.h5"]


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


def test_zeroed_blocks_anywhere_are_refused_before_hdf5_reads_them(tmp_path):
    """HDF5's reader looped forever on some zeroed blocks (the stress run's corrupt case 2):
    the sealed header is checked first, so every damaged file is refused at once."""
    import time

    from neurolocal.checkpoint import HEADER

    net = nl.build_mlp([20, 10, 3], nl.get_rule("dfa"), seed=0)
    path = save_checkpoint(tmp_path / "z.nlck", net)
    raw = path.read_bytes()
    assert raw[HEADER:HEADER + 8] == b"\x89HDF\r\n\x1a\n"  # a real HDF5 file after the header
    outcomes = set()
    for start in range(0, len(raw), 97):
        bad = bytearray(raw)
        bad[start:start + 300] = bytes(len(bad[start:start + 300]))
        p = tmp_path / f"z{start}.nlck"
        p.write_bytes(bytes(bad))
        t0 = time.perf_counter()
        try:
            back, _ = load_checkpoint(p)
            outcomes.add("intact")
            np.testing.assert_array_equal(back.state["W"][1]["w"], net.state["W"][1]["w"])
        except CheckpointError as exc:
            outcomes.add("checksum" if "checksum" in str(exc) or "header" in str(exc)
                         else str(exc))
        assert time.perf_counter() - t0 < 2.0, start
    assert outcomes <= {"intact", "checksum"}, outcomes

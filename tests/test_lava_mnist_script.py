"""benchmarks/lava_mnist.py: the full-scale run checkpoints every block and continues."""

from __future__ import annotations

import pytest

lava_mnist = pytest.importorskip("lava_mnist")
from neurolocal.checkpoint import load_checkpoint  # noqa: E402

FLAGS = ["--target", "snntorch", "--hidden", "12", "--timesteps", "6", "--limit", "30",
         "--test-samples", "20", "--block", "15"]


def test_a_run_checkpoints_each_block_and_continues_where_it_stopped(tmp_path, capsys):
    out = ["--out", str(tmp_path)]
    assert lava_mnist.main(["run", *FLAGS, *out, "--passes", "1"]) == 0
    net, meta = load_checkpoint(tmp_path / "snntorch.nlck")
    progress = meta["progress"]
    assert progress["pass"] == 2 and progress["next"] == 0 and progress["samples"] == 30
    assert [h["pass"] for h in progress["history"]] == [1]
    assert 0 <= progress["history"][0]["test_accuracy"] <= 100
    # asked for a second pass, the same command continues from the checkpoint
    assert lava_mnist.main(["run", *FLAGS, *out, "--passes", "2"]) == 0
    _, meta = load_checkpoint(tmp_path / "snntorch.nlck")
    hist = meta["progress"]["history"]
    assert [h["pass"] for h in hist] == [1, 2] and meta["progress"]["samples"] == 60
    assert hist[1]["lr"] == pytest.approx(hist[0]["lr"] * 0.7)
    assert "continuing" in capsys.readouterr().err


def test_other_flags_refuse_to_continue_a_run(tmp_path):
    out = ["--out", str(tmp_path)]
    assert lava_mnist.main(["run", *FLAGS, *out, "--passes", "1"]) == 0
    flags = [f if f != "12" else "13" for f in FLAGS]
    with pytest.raises(SystemExit, match=r"--hidden \[12\] \(asked \[13\]\)"):
        lava_mnist.main(["run", *flags, *out, "--passes", "1"])

"""Data-parallel training: 2 processes (torchrun, gloo) end where 1 process on the combined
batch ends, in rate mode, on snntorch, and for DDP over a local_rule module."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from neurolocal.app.cli import main
from neurolocal.app.distributed import shard
from neurolocal.checkpoint import load_checkpoint

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "support"))
import dist_worker  # noqa: E402

TORCHRUN = Path(sys.executable).with_name("torchrun")


def _weights_diff(a: Path, b: Path) -> tuple[float, float]:
    (na, _), (nb, _) = load_checkpoint(a), load_checkpoint(b)
    diff = max(float(np.abs(na.state[p][k]["w"] - nb.state[p][k]["w"]).max())
               for p in na.state for k in na.state[p])
    return diff, float(np.abs(na.state["W"][1]["w"]).max())


@pytest.mark.slow
@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun not in the venv")
def test_two_processes_learn_what_one_process_learns_on_the_combined_batch(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RANK", "WORLD_SIZE"))}
    env["OMP_NUM_THREADS"] = "1"
    run = subprocess.run([str(TORCHRUN), "--standalone", "--nproc_per_node", "2",
                          str(HERE / "support" / "dist_worker.py"), str(tmp_path)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    lines = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert [(r["rank"], r["world_size"]) for r in lines] == [(0, 2), (0, 2)]  # rank 0 prints
    # one process, each global batch whole: --batch-size twice the per-process one
    assert main(dist_worker.RATE + ["--batch-size", "20", "--out", str(tmp_path / "r1.h5")]) == 0
    diff, scale = _weights_diff(tmp_path / "rate.h5", tmp_path / "r1.h5")
    assert diff < 1e-5 * max(scale, 1.0), diff
    assert main(dist_worker.SPIKING + ["--batch-size", "10",
                                       "--out", str(tmp_path / "s1.h5")]) == 0
    diff, scale = _weights_diff(tmp_path / "spiking.h5", tmp_path / "s1.h5")
    assert diff < 1e-5 * max(scale, 1.0), diff
    # DDP over local_rule: the same steps on the whole global batch, in one process
    from neurolocal.torch import local_rule

    torch.manual_seed(0)
    model = local_rule(torch.nn.Sequential(torch.nn.Linear(20, 16), torch.nn.ReLU(),
                                           torch.nn.Linear(16, 5)), "kp")
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        x, y = torch.rand(16, 20, generator=g), torch.randint(0, 5, (16,), generator=g)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    two = torch.load(tmp_path / "ddp.pt")
    for k, v in model.state_dict().items():
        torch.testing.assert_close(two[k], v, atol=1e-6, rtol=1e-5)


def test_shards_cover_a_global_batch_once():
    for m in (1, 7, 20, 21):
        parts = [shard(m, 3, r) for r in range(3)]
        assert parts[0][0] == 0 and parts[-1][1] == m
        assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
        assert max(hi - lo for lo, hi in parts) - min(hi - lo for lo, hi in parts) <= 1


def test_distributed_without_torchrun_is_a_clear_error(capsys, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    assert main(["train", "--rule", "fa", "--samples", "20", "--distributed"]) == 2
    assert "torchrun --standalone --nproc_per_node N" in capsys.readouterr().err
    assert main(["train", "--rule", "dfa", "--spiking", "--target", "brian2", "--samples", "2",
                 "--distributed"]) == 2
    assert "learns in one process" in capsys.readouterr().err
    assert shutil.which  # the module imports on a machine without torchrun too

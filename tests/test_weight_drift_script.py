"""benchmarks/weight_drift.py: the changes of two runs from their common initial weights."""

from __future__ import annotations

import numpy as np
import pytest
import weight_drift

from neurolocal.checkpoint import save_checkpoint
from neurolocal.network import build_mlp
from neurolocal.rules import get_rule


def test_a_shared_drift_and_a_scaled_step_are_told_apart(tmp_path):
    start = build_mlp([6, 4, 3], get_rule("fa"), seed=3)
    rng = np.random.default_rng(0)
    step = {p: {k: rng.normal(size=np.shape(d["w"])) for k, d in s.items()}
            for p, s in start.state.items()}
    runs = []
    for scale, shift in ((2.0, -0.5), (1.0, 0.0)):  # run 1: twice the step and a drift
        net = build_mlp([6, 4, 3], get_rule("fa"), seed=3)
        for p, s in net.state.items():
            for k, d in s.items():
                d["w"] = np.asarray(d["w"]) + scale * step[p][k] + shift
        runs.append(save_checkpoint(tmp_path / f"run{len(runs)}.h5", net))
    rows = {r["tensor"]: r for r in weight_drift.drift_rows(str(runs[0]), str(runs[1]), 3)}
    w1 = rows["W1"]
    assert w1["mean_a"] == pytest.approx(-0.5 + 2 * step["W"][1].mean())
    assert w1["mean_b"] == pytest.approx(step["W"][1].mean())
    assert w1["std_a"] == pytest.approx(2 * w1["std_b"])
    assert 0.5 < w1["cosine"] < 1.0  # the same direction, less the shared drift
    assert weight_drift.drift_rows(str(runs[1]), str(runs[1]), 3)[0]["cosine"] == \
        pytest.approx(1.0)

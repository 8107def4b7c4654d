"""Batched Brian2 evaluation in forked workers: Ctrl-C or kill -9 of the parent ends the run
within seconds and leaves no worker behind."""

from __future__ import annotations

import signal
import sys

import pytest

pytest.importorskip("brian2")
pytest.importorskip("torch")

from support.processes import interrupt_when_running  # noqa: E402

# an untrained 784-500-10 net, converted, on 2,000 random images for 400 steps: long enough
# to be interrupted in its workers (numpy code generation: nothing to compile)
SCRIPT = """
import numpy as np, torch
from neurolocal.converters.normalise import normalise, set_neurons
from neurolocal.converters.torch_import import from_sequential
from neurolocal.hardware.brian2.inference import run_brian2
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Linear(784, 500), torch.nn.ReLU(), torch.nn.Linear(500, 10))
x = np.random.default_rng(0).random((2000, 784), dtype=np.float32)
model = set_neurons(normalise(from_sequential(net.eval()), x[:100]), "IF")
run_brian2(model, x, 400, workers=2, batch_size=50)
"""


@pytest.mark.parametrize("sig, group", [
    (signal.SIGINT, True),     # Ctrl-C: the whole foreground process group gets it
    (signal.SIGTERM, False),   # `kill PID`
    (signal.SIGKILL, False),   # `kill -9 PID`: the workers must notice on their own
])
def test_a_sharded_brian2_run_ends_within_seconds_and_leaves_no_process(sig, group):
    res = interrupt_when_running([sys.executable, "-c", SCRIPT], sig, group=group,
                                 min_procs=3, extra_wait=1.0)
    assert res["peak"] >= 3, "the workers never started: " + res["stderr"][-500:]
    assert res["code"] != 0 and res["code"] != "hung", res["stderr"][-800:]
    assert res["seconds"] < 10
    assert res["left"] == 0

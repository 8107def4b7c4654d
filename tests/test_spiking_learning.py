"""Spiking DFA learns: a small MNIST subset on snntorch, a smaller one on Brian2 (numpy).

The floors are measured values minus a margin (see the comments); chance is 10 %.
"""

import numpy as np
import pytest

from neurolocal.app.data import load_dataset
from neurolocal.hardware.base import get_target
from neurolocal.hardware.semantics import SpikingConfig
from neurolocal.network import build_mlp
from neurolocal.rules import get_rule

pytest.importorskip("snntorch")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")


def test_spiking_dfa_learns_mnist_subset_on_snntorch():
    import torch

    from neurolocal.app.training import TrainConfig, train

    torch.set_num_threads(1)
    res = train(TrainConfig(rule="dfa", target="snntorch", globals={"lr": 0.2}, hidden=[200],
                            epochs=2, batch_size=20, limit=3000, test_limit=1000, timesteps=12,
                            seed=0), progress=False).to_dict()
    # measured 87.1 % (seed 0, 2 passes over 3000 images, T = 12)
    assert res["test_accuracy"] >= 80.0
    assert res["synaptic_events"] > 0 and res["mode"] == "spiking"


def test_spiking_dfa_learns_on_brian2_numpy():
    pytest.importorskip("brian2")
    rule = get_rule("dfa").with_globals(lr=0.05)
    cfg = SpikingConfig(timesteps=8)
    tr = load_dataset("mnist", "train", limit=400, verbose=False)
    te = load_dataset("mnist", "test", limit=200, verbose=False)
    runner = get_target("brian2").runner(build_mlp([784, 40, 10], rule, seed=0), cfg,
                                         codegen="numpy", seed=0)
    assert runner.input_mode == "poisson"  # drawn in Brian2
    runner.learn(np.array(tr.x), np.eye(10)[tr.y])
    scores = runner.predict(np.array(te.x))
    acc = 100.0 * float((scores.argmax(1) == te.y).mean())
    # measured 63.5 % (seed 0, 400 images once, batch 1)
    assert acc >= 40.0
    assert runner.events > 0

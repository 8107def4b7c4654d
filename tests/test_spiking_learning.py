"""Spiking DFA learns: a small MNIST subset on snntorch, a smaller one on Brian2 (numpy).

The floors are measured values minus a margin (see the comments); chance is 10 %.
"""

import numpy as np
import pytest

from neurolocal.data import load_dataset
from neurolocal.hardware.spiking import SpikingConfig
from neurolocal.network import build_mlp
from neurolocal.rules import get_rule

pytest.importorskip("snntorch")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")


def test_spiking_dfa_learns_mnist_subset_on_snntorch():
    import torch

    from neurolocal.hardware.snntorch_target import train

    torch.set_num_threads(1)
    res = train(get_rule("dfa").with_globals(lr=0.2), hidden=(200,), epochs=2, batch_size=20,
                samples=3000, test_samples=1000, config=SpikingConfig(timesteps=12), seed=0,
                progress=False)
    # measured 87.1 % (seed 0, 2 passes over 3000 images, T = 12)
    assert res["test_accuracy"] >= 80.0
    assert res["history"][-1]["lr"] == pytest.approx(0.2)
    assert res["synaptic_events"] > 0


def test_spiking_dfa_learns_on_brian2_numpy():
    pytest.importorskip("brian2")
    from neurolocal.hardware.brian2_target import Brian2Runner

    rule = get_rule("dfa").with_globals(lr=0.05)
    cfg = SpikingConfig(timesteps=8)
    tr = load_dataset("mnist", "train", limit=400, verbose=False)
    te = load_dataset("mnist", "test", limit=200, verbose=False)
    runner = Brian2Runner(build_mlp([784, 40, 10], rule, seed=0), cfg, codegen="numpy",
                          input_mode="poisson", seed=0)
    runner.run(np.array(tr.x), np.eye(10)[tr.y], learn=True)
    scores = runner.run(np.array(te.x), learn=False)
    acc = 100.0 * float((scores.argmax(1) == te.y).mean())
    # measured 63.5 % (seed 0, 400 images once, batch 1)
    assert acc >= 40.0
    assert runner.events > 0

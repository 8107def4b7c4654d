"""Helpers shared by several test files, as fixtures (tests/ is no package: lava-nc ships one)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

# tests/support (test-only harnesses) and benchmarks/ (the hand-written baselines) import by
# name: tests/ is no package (lava-nc installs a top-level ``tests``)
ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT / "tests", ROOT / "benchmarks"):
    if str(path) not in sys.path:
        sys.path.append(str(path))  # last: never shadow an installed package


def _mnist(n_train: int, n_test: int):
    from neurolocal.app.data import load_dataset

    tr = load_dataset("mnist", "train", limit=n_train, verbose=False)
    te = load_dataset("mnist", "test", limit=n_test, verbose=False)
    return np.array(tr.x), np.array(tr.y), np.array(te.x), np.array(te.y)


def _train_torch(net, x: np.ndarray, y: np.ndarray, epochs: int, seed: int = 0):
    """Plain autograd + Adam on (x, y): the rate networks the converter tests convert."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    for _ in range(epochs):
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(net(xt[idx]), yt[idx]).backward()
            opt.step()
    return net.eval()


@pytest.fixture(scope="session")
def mnist_arrays():
    """``mnist_arrays(n_train, n_test)`` -> x_train, y_train, x_test, y_test (numpy)."""
    return _mnist


@pytest.fixture(scope="session")
def train_torch():
    """``train_torch(net, x, y, epochs)``: train a torch module with autograd, return it."""
    return _train_torch

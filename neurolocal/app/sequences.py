"""Sequence data sets for recurrent networks: ``x`` is ``(N, steps, features)``, ``y`` a label.

- ``smnist``: row-by-row MNIST, 28 steps of 28 pixels (the image's rows, top first), from the
  same offline MNIST sources as ``mnist`` (:func:`neurolocal.app.data.load_dataset`).
- ``copy-T`` (``copy`` = ``copy-50``): the copy task in its one-symbol form, a long
  dependency generated offline. Step 1 shows one of 8 symbols (one-hot, features 0-7), the
  next ``T - 2`` steps are blank, step ``T`` raises the cue (feature 8), and the answer is the
  symbol of step 1, ``T - 1`` steps back. Chance is 12.5 %; a network that does not carry the
  symbol across the delay stays there. 20,000 training and 2,000 test sequences, drawn from a
  fixed seed per split, so every run sees the same data.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence

import numpy as np

#: sequence data sets (``copy-T`` for any delay T from 2 to MAX_COPY_STEPS)
SEQUENCE_DATASETS = ("smnist", "copy-T")
COPY_SYMBOLS = 8
COPY_DEFAULT_STEPS = 50
MAX_COPY_STEPS = 1000
COPY_SIZES = {"train": 20_000, "test": 2_000}
_COPY = re.compile(r"copy(?:-(\d+))?")


def is_sequence(name: str) -> bool:
    key = str(name).strip().lower()
    return key in ("smnist", "sequential-mnist", "row-mnist") or _COPY.fullmatch(key) is not None


def copy_steps(name: str) -> int:
    """The delay T of ``copy-T`` (``copy``: the default), checked."""
    from .data import DataError

    match = _COPY.fullmatch(str(name).strip().lower())
    steps = int(match.group(1)) if match and match.group(1) else COPY_DEFAULT_STEPS
    if not 2 <= steps <= MAX_COPY_STEPS:
        raise DataError(f"dataset {name!r}: the copy task's delay T must lie in 2..{MAX_COPY_STEPS}"
                        f" (e.g. copy-100), got {steps}")
    return steps


def copy_task(steps: int, n: int, seed: int, draws: int | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` of ``draws`` (default ``n``) copy-task sequences of ``steps`` steps:
    (x float32 (n, steps, 9), y int64 (n,)); the first n are the same whatever ``draws``."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, COPY_SYMBOLS, max(n, draws or n))[:n]
    x = np.zeros((n, steps, COPY_SYMBOLS + 1), np.float32)
    x[np.arange(n), 0, y] = 1.0
    x[:, -1, COPY_SYMBOLS] = 1.0
    return x, y.astype(np.int64)


def load_sequence(name: str, split: str, *, limit: int | None = None, verbose: bool = True,
                  sources: Sequence[str] | None = None, cache_dir=None):
    """A sequence data set as a :class:`~neurolocal.app.data.Dataset` (x: (N, steps, features))."""
    from .data import SPLITS, DataError, Dataset, load_dataset

    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
    key = str(name).strip().lower()
    if key in ("smnist", "sequential-mnist", "row-mnist"):
        images = load_dataset("mnist", split, limit=limit, verbose=False, sources=sources,
                              cache_dir=cache_dir)
        x = images.x.reshape(-1, 28, 28)  # a read-only view: rows are the steps
        out = Dataset(x=x, y=images.y, name="smnist", split=split,
                      source=f"rows of {images.source}")
    else:
        steps = copy_steps(key)
        n = COPY_SIZES[split] if limit is None else min(int(limit), COPY_SIZES[split])
        x, y = copy_task(steps, n, seed=steps * 2 + SPLITS.index(split),
                         draws=COPY_SIZES[split])
        x.setflags(write=False)
        y.setflags(write=False)
        out = Dataset(x=x, y=y, name=f"copy-{steps}", split=split,
                      source=f"generated offline (copy task, T={steps}, seed "
                             f"{steps * 2 + SPLITS.index(split)})")
    if verbose:
        print(f"neurolocal.data: {out.name}/{split}: {len(out)} sequences of {out.x.shape[1]} "
              f"steps from {out.source}", file=sys.stderr)
    return out


def sequence_class_names(name: str) -> tuple[str, ...]:
    if name == "smnist":
        return tuple(str(i) for i in range(10))
    return tuple(f"symbol {i}" for i in range(COPY_SYMBOLS))

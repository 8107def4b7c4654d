"""Lava's trace histories of a learning epoch, computed without its per-step loop.

At the learning phase Lava's ``LearningDense`` models rebuild each trace's history over the
epoch step by step in Python (``_compute_trace_histories``: about 25 numpy calls per step,
most of a learning phase). These functions return the same arrays, bit for bit (tested
against Lava's loop), with a few whole-array operations:

* fixed point: a trace is a 7-bit integer and, within one epoch, decay and impulse addition
  use one random number each, so a step is a lookup table on 0..127; composed tables give
  the value at every step from the start and from the spike;
* float: the decay chain ``h_t = e h_(t-1)`` is ``np.multiply.accumulate`` (the same products
  in the same order), restarted after the impulse at the spike.
"""

from __future__ import annotations

import numpy as np
from lava.magma.core.learning.constants import W_TRACE
from lava.magma.core.model.py.connection import (
    LearningConnectionModelBitApproximate as _Fixed,
)

LEVELS = 2 ** W_TRACE


def _spike_mask(t_epoch: int, t_spike: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(steps (T+1, 1, 1), steps at or after the neuron's spike (T+1, 1, n))."""
    t = np.arange(t_epoch + 1)[:, None, None]
    return t, (t >= t_spike[None, None, :]) & (t_spike[None, None, :] > 0)


def _rows_only(history_of, traces: np.ndarray, rows: np.ndarray | None, t_epoch: int,
               dtype) -> np.ndarray | None:
    """``history_of(row indices)`` for ``rows`` only, the other rows left 0 (never read)."""
    if rows is None:
        return history_of(np.arange(traces.shape[0]))
    out = np.zeros((t_epoch + 1, *traces.shape), dtype=dtype)
    if len(rows):
        part = history_of(np.asarray(rows))
        if part is None:
            return None
        out[:, rows] = part
    return out


def fixed_history(traces: np.ndarray, taus: np.ndarray, t_spike: np.ndarray, random,
                  impulses_int: np.ndarray, impulses_frac: np.ndarray, t_epoch: int,
                  rows: np.ndarray | None = None) -> np.ndarray | None:
    """Lava's bit-approximate history (t_epoch + 1, rows, n) of ``traces`` (rows, n); None
    when a value lies outside the 7-bit range the tables cover. ``rows``: compute only these
    (the others are returned as 0)."""
    if traces.size and (traces.min() < 0 or traces.max() >= LEVELS):
        return None

    def history_of(sel: np.ndarray) -> np.ndarray:
        tr, tau = traces[sel], taus[sel]
        n_rows = len(sel)
        levels = np.broadcast_to(np.arange(LEVELS), (n_rows, LEVELS))
        step = np.zeros((n_rows, LEVELS), dtype=int)  # a row that does not decay is 0 after
        decays = tau != 0                              # a step
        if decays.any():
            step[decays] = _Fixed._decay_trace(levels[decays], 1, tau[decays][:, np.newaxis],
                                               random.random_trace_decay)
        powers = np.empty((t_epoch + 1, n_rows, LEVELS), dtype=int)  # step applied t times
        if np.array_equal(step, levels):  # a slow decay: every value stays this epoch
            powers[:] = levels
        else:
            powers[0] = levels
            for t in range(1, t_epoch + 1):
                powers[t] = np.take_along_axis(step, powers[t - 1], axis=1)
        impulse = _Fixed._add_impulse(levels, random.random_impulse_addition,
                                      impulses_int[sel][:, np.newaxis],
                                      impulses_frac[sel][:, np.newaxis])
        h0 = tr.astype(int)
        r = np.arange(n_rows)[:, None]
        before = powers[:, r, h0]
        at_spike = impulse[r, powers[t_spike[None, :], r, h0]]
        t, after_spike = _spike_mask(t_epoch, t_spike)
        after = powers[np.maximum(t - t_spike[None, None, :], 0), r[None], at_spike[None]]
        return np.where(after_spike, after, before)

    return _rows_only(history_of, traces, rows, t_epoch, int)


def float_history(traces: np.ndarray, taus: np.ndarray, t_spike: np.ndarray,
                  impulses: np.ndarray, t_epoch: int, rows: np.ndarray | None = None
                  ) -> np.ndarray | None:
    """Lava's float history (t_epoch + 1, rows, n) of ``traces``; None when a row does not
    decay (Lava leaves such a row NaN, which its own loop then handles). ``rows``: compute
    only these (the others are returned as 0)."""
    sel_taus = taus if rows is None else taus[np.asarray(rows, dtype=int)]
    if (sel_taus == 0).any():
        return None
    n = traces.shape[1]

    def history_of(sel: np.ndarray) -> np.ndarray:
        decay = np.exp(-1 / taus[sel][:, np.newaxis])  # as Lava: np.exp(-t / taus), t = 1

        def chain(start: np.ndarray) -> np.ndarray:
            out = np.empty((t_epoch + 1, len(sel), n))
            out[0] = start
            out[1:] = decay
            return np.multiply.accumulate(out, axis=0)

        before = chain(np.asarray(traces[sel], dtype=float))
        t, after_spike = _spike_mask(t_epoch, t_spike)
        cols = np.arange(n)
        at_spike = before[t_spike, :, cols].T + impulses[sel][:, np.newaxis]  # (rows, n)
        after = chain(at_spike)[np.maximum(t - t_spike[None, None, :], 0),
                                np.arange(len(sel))[None, :, None], cols[None, None, :]]
        return np.where(after_spike, after, before)

    return _rows_only(history_of, traces, rows, t_epoch, float)

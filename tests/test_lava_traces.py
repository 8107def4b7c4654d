"""The vectorised trace histories equal Lava's own per-step loop, bit for bit."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("lava")
from neurolocal.hardware.lava.session import import_lava  # noqa: E402

import_lava()
from lava.magma.core.learning.random import TraceRandom  # noqa: E402
from lava.magma.core.model.py.connection import (  # noqa: E402
    LearningConnectionModelBitApproximate,
    LearningConnectionModelFloat,
)

from neurolocal.hardware.lava.procs.engine import BlockTraceRandom  # noqa: E402
from neurolocal.hardware.lava.procs.traces import fixed_history, float_history  # noqa: E402

TAUS = st.sampled_from([0.0, 1.0, 2.0, 5.0, 20.0, 2.0 ** 30])


def _model(cls, rng, t_epoch, n_pre, n_post, taus, fixed):
    ns = SimpleNamespace(_learning_rule=SimpleNamespace(t_epoch=t_epoch),
                         _decay_trace=cls._decay_trace)
    if fixed:
        ns._add_impulse = cls._add_impulse
    for side, rows, n in (("x", 2, n_pre), ("y", 3, n_post)):
        traces = rng.integers(0, 128, (rows, n)) if fixed else rng.random((rows, n)) * 100
        setattr(ns, f"_{side}_traces", traces)
        setattr(ns, f"_{side}_taus", np.array(taus[side]))
        setattr(ns, f"t{side}", rng.integers(0, t_epoch + 1, n))
        if fixed:
            setattr(ns, f"_{side}_impulses_int", rng.integers(0, 64, rows))
            setattr(ns, f"_{side}_impulses_frac", rng.random(rows))
            setattr(ns, f"_{side}_random", TraceRandom(int(rng.integers(100)),
                                                       int(rng.integers(100))))
        else:
            setattr(ns, f"_{side}_impulses", rng.random(rows) * 4)
    return ns


@settings(max_examples=60, deadline=2000)
@given(seed=st.integers(0, 2 ** 16), t_epoch=st.integers(1, 40), n_pre=st.integers(1, 30),
       n_post=st.integers(1, 12), xt=st.lists(TAUS, min_size=2, max_size=2),
       yt=st.lists(TAUS, min_size=3, max_size=3))
def test_fixed_history_is_lavas(seed, t_epoch, n_pre, n_post, xt, yt):
    rng = np.random.default_rng(seed)
    m = _model(LearningConnectionModelBitApproximate, rng, t_epoch, n_pre, n_post,
               {"x": xt, "y": yt}, fixed=True)
    x_ref, y_ref = LearningConnectionModelBitApproximate._compute_trace_histories(m)
    for side, ref in (("x", x_ref), ("y", y_ref)):
        args = (getattr(m, f"_{side}_traces"), getattr(m, f"_{side}_taus"),
                getattr(m, f"t{side}"), getattr(m, f"_{side}_random"),
                getattr(m, f"_{side}_impulses_int"), getattr(m, f"_{side}_impulses_frac"),
                t_epoch)
        got = fixed_history(*args)
        assert got.dtype == ref.dtype
        np.testing.assert_array_equal(got, ref)
        rows = np.flatnonzero(rng.random(ref.shape[1]) < 0.5)  # only the rows a rule reads
        np.testing.assert_array_equal(fixed_history(*args, rows)[:, rows], ref[:, rows])


@settings(max_examples=60, deadline=2000)
@given(seed=st.integers(0, 2 ** 16), t_epoch=st.integers(1, 40), n_pre=st.integers(1, 30),
       n_post=st.integers(1, 12),
       xt=st.lists(TAUS.filter(bool), min_size=2, max_size=2),
       yt=st.lists(TAUS.filter(bool), min_size=3, max_size=3))
def test_float_history_is_lavas(seed, t_epoch, n_pre, n_post, xt, yt):
    rng = np.random.default_rng(seed)
    m = _model(LearningConnectionModelFloat, rng, t_epoch, n_pre, n_post,
               {"x": xt, "y": yt}, fixed=False)
    x_ref, y_ref = LearningConnectionModelFloat._compute_trace_histories(m)
    for side, ref in (("x", x_ref), ("y", y_ref)):
        args = (getattr(m, f"_{side}_traces"), getattr(m, f"_{side}_taus"),
                getattr(m, f"t{side}"), getattr(m, f"_{side}_impulses"), t_epoch)
        np.testing.assert_array_equal(float_history(*args), ref)  # the same bits
        rows = np.flatnonzero(rng.random(ref.shape[1]) < 0.5)
        np.testing.assert_array_equal(float_history(*args, rows)[:, rows], ref[:, rows])


def test_out_of_range_and_undecayed_rows_use_lavas_loop():
    rnd = TraceRandom(0, 1)
    assert fixed_history(np.array([[0, 200]]), np.array([5.0]), np.array([1, 0]), rnd,
                         np.array([1]), np.array([0.5]), 4) is None
    assert float_history(np.ones((1, 3)), np.array([0.0]), np.zeros(3, int), np.ones(1),
                         4) is None


def test_block_random_draws_lavas_sequence():
    lava, block = TraceRandom(7, 8), BlockTraceRandom(7, 8)
    for _ in range(2 * BlockTraceRandom.BLOCK + 5):
        assert (lava.random_trace_decay, lava.random_impulse_addition) == \
            (block.random_trace_decay, block.random_impulse_addition)
        lava.advance()
        block.advance()

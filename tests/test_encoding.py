"""The one spike encoder of the project (neurolocal.hardware.encoding)."""

from __future__ import annotations

import numpy as np
import pytest

from neurolocal.hardware.encoding import (
    EncodingError,
    constant_current,
    encode,
    encode_input,
    latency_encode,
    poisson_encode,
    poisson_spikes,
    regular_encode,
)
from neurolocal.hardware.semantics import SpikingConfig


def test_poisson_rate_matches_intensity_and_is_deterministic():
    x = np.linspace(0.0, 1.0, 11, dtype=np.float32).reshape(1, 11)
    s = poisson_encode(x, 2000, seed=0)
    assert s.shape == (2000, 1, 11) and s.dtype == np.float32
    assert set(np.unique(s).tolist()) <= {0.0, 1.0}
    np.testing.assert_allclose(s.mean(axis=0), x, atol=0.05)
    assert s[:, 0, 0].sum() == 0 and s[:, 0, -1].sum() == 2000  # p = 0 and p = 1 exactly
    half = poisson_encode(x, 2000, max_rate=0.5, seed=0)
    np.testing.assert_allclose(half.mean(axis=0), 0.5 * x, atol=0.05)
    assert np.array_equal(poisson_encode(x, 50, seed=7), poisson_encode(x, 50, seed=7))
    assert not np.array_equal(poisson_encode(x, 50, seed=7), poisson_encode(x, 50, seed=8))
    g1, g2 = np.random.default_rng(3), np.random.default_rng(3)
    assert np.array_equal(poisson_encode(x, 20, seed=g1), poisson_encode(x, 20, seed=g2))


def test_encoder_validation_names_argument_and_fix():
    x = np.full((2, 3), 0.5)
    with pytest.raises(EncodingError, match=r"x must lie in \[0, 1\].*x / 255"):
        poisson_encode(x * 255, 10)
    with pytest.raises(ValueError, match="NaN"):
        poisson_encode(np.array([np.nan]), 10)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="timesteps must be an integer >= 1"):
            poisson_encode(x, bad)
    with pytest.raises(ValueError, match="max_rate"):
        poisson_encode(x, 10, max_rate=20.0)
    with pytest.raises(ValueError, match="threshold"):
        latency_encode(x, 10, threshold=1.0)
    with pytest.raises(ValueError, match="timesteps"):
        constant_current(x, 0)


def test_constant_current_repeats_a_copy():
    x = np.random.default_rng(0).random((4, 6)).astype(np.float32)
    c = constant_current(x, 5)
    assert c.shape == (5, 4, 6) and all(np.array_equal(c[t], x) for t in range(5))
    c[0, 0, 0] = 99.0
    assert x[0, 0] != 99.0


@pytest.mark.parametrize("tau", [None, 3.0])
def test_latency_brighter_spikes_earlier_once(tau):
    x = np.array([[1.0, 0.8, 0.5, 0.2, 0.05, 0.005, 0.0]])
    s = latency_encode(x, 20, tau=tau, threshold=0.01)
    assert s.shape == (20, 1, 7) and s.dtype == np.float64
    counts = s.sum(axis=0)[0]
    assert counts[-2:].tolist() == [0.0, 0.0]  # below threshold: no spike
    fired = counts > 0
    assert counts[fired].max() == 1.0  # at most one spike each
    times = s[:, 0, :].argmax(axis=0)[fired]
    assert np.all(np.diff(times) >= 0) and times[0] == 0  # brighter = earlier
    if tau is None:
        assert fired[:5].all() and np.all(np.diff(times) > 0)


def test_encode_dispatch():
    x = np.random.default_rng(1).random((3, 4))
    assert np.array_equal(encode(x, "poisson", 8, seed=5), poisson_encode(x, 8, seed=5))
    assert np.array_equal(encode(x, "latency", 8), latency_encode(x, 8))
    assert encode(x, "constant", 2).shape == (2, 3, 4)
    with pytest.raises(ValueError, match="poisson.*constant.*latency"):
        encode(x, "burst", 8)
    with pytest.raises(TypeError, match="constant_current accepts no options"):
        encode(x, "constant", 8, seed=1)


def test_encoders_accept_torch_and_return_torch():
    torch = pytest.importorskip("torch")
    xn = np.random.default_rng(2).random((3, 5)).astype(np.float32)
    xt = torch.from_numpy(xn)
    s = poisson_encode(xt, 30, seed=4)
    assert isinstance(s, torch.Tensor) and s.shape == (30, 3, 5) and s.dtype == torch.float32
    assert torch.equal(s, poisson_encode(xt, 30, seed=4))
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    assert torch.equal(poisson_encode(xt, 30, seed=g1), poisson_encode(xt, 30, seed=g2))
    for tau in (None, 2.0):
        lt = latency_encode(xt, 12, tau=tau)
        assert isinstance(lt, torch.Tensor)
        np.testing.assert_array_equal(lt.numpy(), latency_encode(xn, 12, tau=tau))
    ct = constant_current(xt, 4)
    assert isinstance(ct, torch.Tensor) and torch.equal(ct[3], xt)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        poisson_encode(xt * 3, 5)


def test_regular_code_counts_the_accumulated_intensity():
    x = np.array([[0.0, 0.25, 0.5, 1.0]], np.float32)
    s = regular_encode(x, 8)
    assert s.shape == (8, 1, 4)
    assert s.sum(0)[0].tolist() == [0.0, 2.0, 4.0, 8.0]
    assert np.array_equal(encode_input(x, SpikingConfig(timesteps=8, encoding="regular")), s)
    torch = pytest.importorskip("torch")
    np.testing.assert_array_equal(regular_encode(torch.from_numpy(x), 8).numpy(), s)


def test_encode_input_follows_the_spiking_config():
    x = np.random.default_rng(0).random((5, 7)).astype(np.float32)
    cfg = SpikingConfig(timesteps=6, input_rate=0.5)
    s = encode_input(x, cfg, seed=3)
    assert s.shape == (6, 5, 7)
    assert np.array_equal(s, poisson_encode(x, 6, max_rate=0.5, seed=3))


def test_poisson_spikes_do_not_depend_on_the_batch():
    x = np.random.default_rng(1).random((6, 4)).astype(np.float32)
    whole = poisson_spikes(x, 10, seed=2)
    parts = np.concatenate([poisson_spikes(x[:2], 10, seed=2),
                            poisson_spikes(x[2:], 10, seed=2, start=2)], axis=1)
    assert np.array_equal(whole, parts)

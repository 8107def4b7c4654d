"""Spike encoders: images (or any intensities in [0, 1]) to spike trains (T, ...).

The one encoder of the project: every target (snntorch, Brian2, Lava), the reference
simulator and converted inference draw their input spikes here. The project keeps its own
instead of ``snntorch.spikegen`` because the same seed must give the same spike trains on
numpy arrays (Brian2, Lava, the reference) and on torch tensors (snntorch, CPU or CUDA), so
that targets can be compared sample by sample. Encoders take numpy arrays or torch tensors and
return the same type; torch is never imported by this module.
"""

from __future__ import annotations

import inspect
import numbers
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from neurolocal.errors import NeurolocalError

__all__ = ["ENCODERS", "EncodingError", "constant_current", "encode", "encode_input",
           "latency_encode", "poisson_encode", "poisson_spikes", "regular_encode"]


class EncodingError(NeurolocalError, ValueError):
    """A bad argument to an encoder (x outside [0, 1], timesteps < 1, ...); names the fix."""


def _torch_module() -> Any:
    """torch if already imported (never import it here: it costs seconds)."""
    return sys.modules.get("torch")


def _is_torch(x: Any) -> bool:
    torch = _torch_module()
    return torch is not None and isinstance(x, torch.Tensor)


def _as_array(x: Any, fn: str) -> Any:
    if _is_torch(x) or isinstance(x, np.ndarray):
        return x
    try:
        return np.asarray(x)
    except Exception as exc:  # pragma: no cover - exotic inputs
        raise TypeError(f"{fn}: x must be a numpy array or torch tensor, got {type(x)}") from exc


def _check_timesteps(timesteps: Any, fn: str) -> int:
    if isinstance(timesteps, bool) or not isinstance(timesteps, numbers.Integral) or timesteps < 1:
        raise EncodingError(
            f"{fn}: timesteps must be an integer >= 1, got {timesteps!r} (e.g. timesteps=100)"
        )
    return int(timesteps)


def _check_unit_interval(x: Any, fn: str) -> None:
    """x must be finite and within [0, 1]: probabilities/intensities, not raw pixel bytes."""
    if _is_torch(x):
        if x.numel() == 0:
            return
        lo, hi = float(x.min()), float(x.max())
        bad_nan = bool(x.isnan().any())
    else:
        if x.size == 0:
            return
        if x.dtype.kind not in "biuf":
            raise TypeError(f"{fn}: x must be numeric, got dtype {x.dtype}")
        lo, hi = float(np.min(x)), float(np.max(x))
        bad_nan = bool(np.isnan(x).any()) if x.dtype.kind == "f" else False
    if bad_nan or lo < 0.0 or hi > 1.0:
        raise EncodingError(
            f"{fn}: x must lie in [0, 1] (got min {lo}, max {hi}{', NaN' if bad_nan else ''}); "
            "scale intensities first, e.g. x / 255 for raw pixels"
        )


def _float_dtype(x: Any) -> Any:
    """Output dtype: x's own float dtype, else float32."""
    if _is_torch(x):
        return x.dtype if x.is_floating_point() else _torch_module().float32
    return x.dtype if x.dtype.kind == "f" else np.dtype(np.float32)


def _uniform(shape: tuple[int, ...], like: Any, seed: Any) -> Any:
    """Uniform [0, 1) samples of ``shape`` of the same kind (numpy/torch, device) as ``like``.

    ``seed`` is None, an int, a numpy Generator/SeedSequence, or a torch.Generator.
    """
    torch = _torch_module()
    is_torch_gen = torch is not None and isinstance(seed, torch.Generator)
    if _is_torch(like):
        dtype = _float_dtype(like)
        if isinstance(seed, np.random.Generator):
            u = seed.random(shape, dtype=np.float64)
            return torch.from_numpy(u).to(device=like.device, dtype=dtype)
        if seed is None or is_torch_gen:
            gen = seed
        else:
            gen = torch.Generator(device=like.device).manual_seed(int(seed))
        return torch.rand(shape, generator=gen, device=like.device, dtype=dtype)
    dtype = np.float32 if _float_dtype(like) == np.float32 else np.float64
    if is_torch_gen:
        return torch.rand(shape, generator=seed, dtype=torch.float64).numpy().astype(dtype)
    return np.random.default_rng(seed).random(shape, dtype=dtype)


def poisson_encode(
    x: Any, timesteps: int, *, max_rate: float = 1.0, seed: Any = None
) -> Any:
    """Rate code: (T, *x.shape) Bernoulli spikes, P(spike at each step) = x * max_rate.

    Why Bernoulli per step: it is the discrete-time Poisson process spiking simulators use, and
    the mean spike count over T steps is an unbiased estimate of the intensity. ``max_rate`` is
    a probability per step (for a rate in Hz use ``rate_hz * dt``). Deterministic given ``seed``
    (int, numpy Generator or torch.Generator); returns the same array type as ``x``.
    """
    x = _as_array(x, "poisson_encode")
    t = _check_timesteps(timesteps, "poisson_encode")
    _check_unit_interval(x, "poisson_encode")
    if not 0.0 <= float(max_rate) <= 1.0:
        raise EncodingError(
            f"poisson_encode: max_rate is a spike probability per step and must be in [0, 1], "
            f"got {max_rate!r} (for a rate in Hz pass rate_hz * dt)"
        )
    u = _uniform((t, *tuple(x.shape)), x, seed)
    dtype = _float_dtype(x)
    p = x * float(max_rate)
    if _is_torch(x):
        return (u < p.unsqueeze(0)).to(dtype)
    return (u < p[None]).astype(dtype)


def constant_current(x: Any, timesteps: int) -> Any:
    """Analog code: x repeated for T steps, (T, *x.shape), to drive neurons with a current.

    Why: rate-to-spike conversion and many SNN papers feed the first layer the raw intensity;
    the result is a copy, so in-place edits cannot alias the input.
    """
    x = _as_array(x, "constant_current")
    t = _check_timesteps(timesteps, "constant_current")
    if _is_torch(x):
        return x.unsqueeze(0).repeat(t, *([1] * x.dim()))
    return np.repeat(x[None], t, axis=0)


def latency_encode(
    x: Any,
    timesteps: int,
    *,
    tau: float | None = None,
    threshold: float = 0.01,
) -> Any:
    """Time-to-first-spike code: one spike per input, brighter = earlier, none if x <= threshold.

    With ``tau=None`` (default) spike times are linear in intensity and fill the window:
    ``t = round((1 - x) / (1 - threshold) * (T - 1))`` (x = 1 fires at step 0). With ``tau``
    (in steps) the time is that of an RC neuron driven by constant current x reaching
    ``threshold``: ``t = floor(tau * ln(x / (x - threshold)))``; inputs whose time falls at or
    after T do not spike. Returns (T, *x.shape), same type as ``x``.
    """
    x = _as_array(x, "latency_encode")
    t_steps = _check_timesteps(timesteps, "latency_encode")
    _check_unit_interval(x, "latency_encode")
    if not 0.0 <= float(threshold) < 1.0:
        raise EncodingError(f"latency_encode: threshold must be in [0, 1), got {threshold!r}")
    if tau is not None and not float(tau) > 0.0:
        raise EncodingError(f"latency_encode: tau must be > 0 (in timesteps) or None, got {tau!r}")
    dtype = _float_dtype(x)
    thr = float(threshold)
    if _is_torch(x):
        torch = _torch_module()
        xf = x.to(torch.float64)
        fires = xf > thr
        if tau is None:
            t = torch.round((1.0 - xf) / (1.0 - thr) * (t_steps - 1))
        else:
            safe = torch.where(fires, xf, torch.ones_like(xf))
            t = torch.floor(float(tau) * torch.log(safe / (safe - thr)))
            fires = fires & (t < t_steps)
        t = torch.where(fires, t, torch.full_like(t, -1.0)).to(torch.int64)
        steps = torch.arange(t_steps, device=x.device).reshape(t_steps, *([1] * x.dim()))
        return (steps == t.unsqueeze(0)).to(dtype)
    xf = x.astype(np.float64)
    fires = xf > thr
    if tau is None:
        t = np.rint((1.0 - xf) / (1.0 - thr) * (t_steps - 1))
    else:
        safe = np.where(fires, xf, 1.0)
        t = np.floor(float(tau) * np.log(safe / (safe - thr)))
        fires &= t < t_steps
    t = np.where(fires, t, -1).astype(np.int64)
    steps = np.arange(t_steps).reshape((t_steps,) + (1,) * x.ndim)
    return (steps == t[None]).astype(dtype)


def regular_encode(x: Any, timesteps: int, *, max_rate: float = 1.0) -> Any:
    """Deterministic rate code: an IF encoder driven by ``max_rate * x``, one spike whenever
    the accumulated intensity crosses an integer. Returns (T, *x.shape), same type as ``x``."""
    x = _as_array(x, "regular_encode")
    t = _check_timesteps(timesteps, "regular_encode")
    _check_unit_interval(x, "regular_encode")
    p = x * float(max_rate)
    if _is_torch(x):
        torch = _torch_module()
        steps = torch.arange(t + 1, dtype=p.dtype, device=p.device).reshape(
            -1, *([1] * x.dim()))
        c = torch.floor(steps * p.unsqueeze(0))
        return c[1:] - c[:-1]
    steps = np.arange(t + 1, dtype=np.float64).reshape((-1,) + (1,) * x.ndim)
    c = np.floor(steps * np.asarray(p, np.float64)[None])
    return (c[1:] - c[:-1]).astype(np.float32)


ENCODERS: dict[str, Callable[..., Any]] = {
    "poisson": poisson_encode,
    "rate": poisson_encode,
    "constant": constant_current,
    "current": constant_current,
    "latency": latency_encode,
    "ttfs": latency_encode,
    "regular": regular_encode,
}


def encode(x: Any, kind: str, timesteps: int, **kw: Any) -> Any:
    """Encode by name (``poisson``/``rate``, ``constant``/``current``, ``latency``/``ttfs``).

    Why: configs and the CLI name the encoder as a string.
    """
    fn = ENCODERS.get(str(kind).lower())
    if fn is None:
        raise EncodingError(f"unknown encoder kind {kind!r}: choose one of {', '.join(ENCODERS)}")
    try:
        inspect.signature(fn).bind(x, timesteps, **kw)
    except TypeError as exc:
        params = [p for p in inspect.signature(fn).parameters if p not in ("x", "timesteps")]
        raise TypeError(
            f"encode(kind={kind!r}): {exc}; {fn.__name__} accepts "
            f"{', '.join(params) or 'no options'}"
        ) from None
    return fn(x, timesteps, **kw)


def encode_input(x: Any, config: Any, *, seed: Any = None) -> Any:
    """Pixels (B, n) -> input spikes (T, B, n) as a spiking configuration says.

    ``config`` has ``timesteps``, ``encoding`` (``"poisson"`` or ``"regular"``) and
    ``input_rate`` (:class:`neurolocal.hardware.semantics.SpikingConfig`).
    """
    if config.encoding == "poisson":
        return poisson_encode(x, config.timesteps, max_rate=config.input_rate, seed=seed)
    return regular_encode(x, config.timesteps, max_rate=config.input_rate)


def poisson_spikes(x: np.ndarray, timesteps: int, *, seed: int = 0, start: int = 0) -> np.ndarray:
    """Bernoulli rate code (T, N, ...) with one generator per sample (seed, start + i).

    Why per sample: the same image gets the same spike train whatever the batch it lands in,
    so snntorch, Brian2 and Lava runs of one converted model see identical input.
    """
    x = np.clip(np.asarray(x, np.float32), 0.0, 1.0)
    out = np.empty((timesteps, *x.shape), np.float32)
    for i in range(len(x)):
        out[:, i] = poisson_encode(x[i], timesteps, seed=np.random.default_rng([seed, start + i]))
    return out

"""Run an :class:`~converters.model.SNNModel` with snntorch ``Leaky`` / ``Synaptic`` neurons.

Why snntorch: batched, fast, CUDA when available, and the reference the other targets are
checked against. Each spiking layer is ``snn.Leaky(beta, threshold, reset_mechanism=
"subtract", reset_delay=True)`` -- IF for beta = 1, LIF below -- or, for a current-based
``CubaLIF`` layer, ``snn.Synaptic(alpha, beta, ...)`` (``reset_delay=False`` for reset to zero,
which then keeps the step's input as :mod:`converters.model` says), exactly the dynamics
written in :mod:`converters.model`. The read-out layer is not a neuron: its input is summed
over the time steps (the membrane of a non-leaky integrator; ``leak < 1``: a leaky one), and
the prediction is the argmax of that membrane at the end; a model with a spiking last layer is
decoded by spike count instead.

Input is a constant current (the image itself, every step; default) or Bernoulli/Poisson
spikes (:func:`neurolocal.hardware.encoding.poisson_spikes`, the same trains for every
target).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from neurolocal.converters.model import (
    ConversionError,
    RunResult,
    SNNModel,
    as_batch,
    as_sequence,
    input_macs,
    make_stats,
    torch_ops,
)

from ..arrayops import torch_device
from ..encoding import poisson_spikes

__all__ = ["INPUTS", "SNNTorchNet", "run_snntorch", "sweep_snntorch"]

INPUTS: tuple[str, ...] = ("current", "poisson", "sequence")


def _leaky(neuron: Any, dtype: torch.dtype, device: Any) -> torch.nn.Module:
    """``snn.Leaky`` for IF/LIF, ``snn.Synaptic`` for a current-based layer (alpha > 0)."""
    import snntorch as snn

    kw = {"beta": torch.tensor(neuron.beta, dtype=dtype), "threshold": float(neuron.threshold),
          "reset_mechanism": neuron.reset, "init_hidden": False}
    if neuron.alpha:
        mod = snn.Synaptic(alpha=torch.tensor(neuron.alpha, dtype=dtype),
                           reset_delay=neuron.reset == "subtract", **kw)
    else:
        mod = snn.Leaky(reset_delay=True, **kw)
    return mod.to(device=device, dtype=dtype)


def _initial_state(neuron: Any, h: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(mem,) or (syn, mem) before the first step: v = v_init * theta, no current."""
    mem = torch.full_like(h, neuron.v_init * neuron.threshold)
    return (torch.zeros_like(h), mem) if neuron.alpha else (mem,)


class SNNTorchNet(torch.nn.Module):
    """The model as torch modules: per layer an ``nn.Sequential`` of ops and a ``Leaky``."""

    def __init__(self, model: SNNModel, *, dtype: torch.dtype = torch.float32,
                 device: Any = "cpu") -> None:
        super().__init__()
        self.model = model
        self.synapses = torch.nn.ModuleList(
            [torch_ops(layer, dtype=dtype, device=device) for layer in model.layers]
        )
        self.neurons = torch.nn.ModuleList(
            [_leaky(layer.neuron, dtype, device) if layer.neuron is not None
             else torch.nn.Identity() for layer in model.layers]
        )
        self.recurrent = [None if layer.recurrent is None else torch.from_numpy(
            np.asarray(layer.recurrent, np.float64)).to(device=device, dtype=dtype)
            for layer in model.layers]
        self.dtype, self.device = dtype, torch.device(device)

    @torch.no_grad()
    def simulate(
        self,
        x: torch.Tensor | None,
        timesteps: int,
        *,
        spikes_in: torch.Tensor | None = None,
        checkpoints: Sequence[int] = (),
        raster: int = 0,
        hold: int = 0,
    ) -> dict[str, Any]:
        """Run one batch for ``timesteps`` steps.

        ``x`` (B, ...) is a constant input current, or with ``hold > 0`` a sequence (B, S, ...)
        whose element ``t // hold`` is the current of step ``t``; or pass ``spikes_in``
        (T, B, ...).
        Returns the read-out (B, n_out) at every checkpoint and per-neuron spike sums;
        ``raster > 0`` also the spikes of the first ``raster`` samples at every step, under
        the key ``"raster"`` (one (T, raster, n) array per spiking layer).
        """
        model = self.model
        n_layers = len(model.layers)
        batch = int((x if x is not None else spikes_in[0]).shape[0])
        states: list[tuple[torch.Tensor, ...] | None] = [None] * n_layers
        last: list[torch.Tensor | None] = [None] * n_layers  # each layer's previous spikes
        counts = [torch.zeros((batch, layer.n_out), dtype=torch.float32, device=self.device)
                  for layer in model.layers if layer.spiking]
        readout = torch.zeros((batch, model.n_outputs), dtype=self.dtype, device=self.device)
        in_sum = None if spikes_in is None else torch.zeros(
            model.layers[0].n_in, dtype=torch.float64, device=self.device)
        const_first = self.synapses[0](x) if x is not None and not hold else None
        seq_first = None
        if hold:  # every element's first-layer current, once: (B, S, ...)
            seq_first = self.synapses[0](x.reshape(-1, *x.shape[2:]))
            seq_first = seq_first.reshape(batch, x.shape[1], *seq_first.shape[1:])
        leak = float(model.layers[-1].leak)
        snaps: dict[Any, Any] = {}
        rasters: list[list[np.ndarray]] = [[] for _ in counts]
        stops = set(int(c) for c in checkpoints) | {int(timesteps)}
        for t in range(int(timesteps)):
            if spikes_in is not None:
                s = spikes_in[t]
                in_sum += s.reshape(batch, -1).sum(0, dtype=torch.float64)
                h = self.synapses[0](s)
            elif hold:
                h = seq_first[:, t // hold]
            else:
                h = const_first
            k = 0
            for i in range(n_layers):
                if i > 0:
                    h = self.synapses[i](h)
                if model.layers[i].spiking:
                    if states[i] is None:
                        states[i] = _initial_state(model.layers[i].neuron, h)
                        last[i] = torch.zeros_like(h.reshape(batch, -1))
                    if self.recurrent[i] is not None:  # its own spikes, one step earlier
                        h = h + (last[i] @ self.recurrent[i].T).reshape(h.shape)
                    h, *state = self.neurons[i](h, *states[i])
                    states[i] = tuple(state)
                    h = h.to(self.dtype)
                    last[i] = h.reshape(batch, -1)
                    counts[k] += h.reshape(batch, -1).float()
                    if raster:
                        rasters[k].append(h[:raster].reshape(min(raster, batch), -1)
                                          .to(torch.uint8).cpu().numpy())
                    k += 1
                else:
                    if leak != 1.0:
                        readout *= leak
                    readout += h.reshape(batch, -1)
            if t + 1 in stops:
                out = counts[-1].clone() if model.layers[-1].spiking else readout.clone()
                snaps[t + 1] = (out, [c.clone() for c in counts],
                                None if in_sum is None else in_sum.clone())
        if raster:
            snaps["raster"] = [np.stack(r) for r in rasters]
        return snaps


def _batch_spikes(model: SNNModel, xb: np.ndarray, t_max: int, start: int, stop: int,
                  spikes: np.ndarray | None, seed: int) -> np.ndarray:
    """Input spikes (T, B, ...) of one batch: the given trains or Poisson draws."""
    if spikes is None:
        return poisson_spikes(xb[start:stop], t_max, seed=seed, start=start)
    sp = np.asarray(spikes[:t_max, start:stop], np.float32)
    if sp.shape[0] < t_max:
        raise ConversionError(f"spikes has {sp.shape[0]} steps, {t_max} needed")
    return sp.reshape((t_max, stop - start, *model.input_shape))


class _Sweep:
    """Per-T accumulators of a sweep: read-outs, spike sums, input sums, per-sample counts."""

    def __init__(self, ts: list[int], return_counts: bool) -> None:
        self.ts, self.return_counts = ts, return_counts
        self.raster: list[np.ndarray] | None = None
        self.outs: dict[int, list[np.ndarray]] = {t: [] for t in ts}
        self.sums: dict[int, list[np.ndarray]] = {t: [] for t in ts}
        self.insums: dict[int, np.ndarray] = {}
        self.per_sample: dict[int, list[list[np.ndarray]]] = {t: [] for t in ts}

    def add(self, snaps: dict[Any, Any]) -> None:
        if "raster" in snaps and self.raster is None:
            self.raster = snaps["raster"]
        for t in self.ts:
            out, counts, in_sum = snaps[t]
            self.outs[t].append(out.double().cpu().numpy())
            if not self.sums[t]:
                self.sums[t] = [np.zeros(c.shape[1]) for c in counts]
            for acc, c in zip(self.sums[t], counts):
                acc += c.double().sum(0).cpu().numpy()
            if in_sum is not None:
                self.insums[t] = self.insums.get(t, 0) + in_sum.cpu().numpy()
            if self.return_counts:
                self.per_sample[t].append([c.cpu().numpy().astype(np.int32) for c in counts])

    def results(self, model: SNNModel, n: int, input: str, macs: float, seconds: float,
                extra: dict[str, Any]) -> dict[int, RunResult]:
        n_spiking = sum(1 for layer in model.layers if layer.spiking)
        results = {}
        for t in self.ts:
            output = np.concatenate(self.outs[t])
            counts = None
            if self.return_counts:
                counts = [np.concatenate([b[k] for b in self.per_sample[t]])
                          for k in range(n_spiking)]
            results[t] = RunResult(
                target="snntorch", timesteps=t, predictions=np.argmax(output, axis=1),
                outputs=output, layer_stats=make_stats(model, self.sums[t], self.insums.get(t),
                                                       n, t),
                input=input, input_macs=macs, seconds=seconds, spike_counts=counts,
                extra=dict(extra))
            if self.raster is not None:  # (T, k, n) -> (k, T, n), the first t steps
                names = [layer.name for layer in model.layers if layer.spiking]
                results[t].extra["raster"] = {name: r[:t].transpose(1, 0, 2)
                                              for name, r in zip(names, self.raster)}
        return results


def sweep_snntorch(
    model: SNNModel,
    x: Any,
    timesteps: Sequence[int],
    *,
    input: str = "current",
    seed: int = 0,
    device: Any = None,
    dtype: torch.dtype = torch.float32,
    batch_size: int = 256,
    return_counts: bool = False,
    spikes: np.ndarray | None = None,
    progress: bool = False,
    raster: int = 0,
) -> dict[int, RunResult]:
    """Run once for ``max(timesteps)`` steps and read the result at every T in ``timesteps``.

    Why one run: the network is causal, so the prediction after T steps of a long run equals
    that of a T-step run. ``spikes`` (T, N, ...) overrides the Poisson input (for cross-backend
    checks). ``raster``: spike rasters (images, T, neurons) of the first ``raster`` images in
    ``extra["raster"]``. Returns ``{T: RunResult}``.
    """
    if input not in INPUTS:
        raise ConversionError(f"input {input!r}: choose one of {INPUTS}")
    ts = sorted({int(t) for t in timesteps})
    if not ts or ts[0] < 1:
        raise ConversionError(f"timesteps must be integers >= 1, got {list(timesteps)}")
    t_max = ts[-1]
    dev = torch_device("cpu" if device is None else str(device))
    hold = 0
    if input == "sequence":
        xb, hold = as_sequence(model, x, t_max)
        if len(ts) > 1:
            raise ConversionError("a sequence input is read at its last step: give one T")
    else:
        xb = as_batch(model, x)
    xb = xb.astype(np.float64 if dtype == torch.float64 else np.float32)
    n = len(xb)
    net = SNNTorchNet(model, dtype=dtype, device=dev)
    t0 = time.perf_counter()
    sweep = _Sweep(ts, return_counts)
    for start in range(0, n, batch_size):
        stop = min(n, start + batch_size)
        if input in ("current", "sequence"):
            xt = torch.from_numpy(xb[start:stop]).to(device=dev, dtype=dtype)
            sweep.add(net.simulate(xt, t_max, checkpoints=ts, raster=raster if not start else 0,
                                   hold=hold))
        else:
            sp = _batch_spikes(model, xb, t_max, start, stop, spikes, seed)
            st = torch.from_numpy(sp).to(device=dev, dtype=dtype)
            sweep.add(net.simulate(None, t_max, spikes_in=st, checkpoints=ts,
                                   raster=raster if not start else 0))
        if progress:
            print(f"snntorch: {stop}/{n} samples, {time.perf_counter() - t0:.1f} s",
                  file=sys.stderr, flush=True)
    macs = input_macs(model, xb.reshape(-1, *model.input_shape)) * (xb.shape[1] if hold else 1) \
        if input != "poisson" else 0.0
    return sweep.results(model, n, input, macs, time.perf_counter() - t0,
                         {"device": str(dev), "dtype": str(dtype).replace("torch.", "")})


def run_snntorch(
    model: SNNModel,
    x: Any,
    timesteps: int,
    *,
    input: str = "current",
    seed: int = 0,
    device: Any = None,
    dtype: torch.dtype = torch.float32,
    batch_size: int = 256,
    return_counts: bool = False,
    spikes: np.ndarray | None = None,
) -> RunResult:
    """Run ``x`` (N, ...) through the spiking model for ``timesteps`` steps on snntorch.

    ``device``: ``"cuda"`` when given (error if absent), CPU otherwise. ``dtype=torch.float64``
    gives the precision used for cross-checks against Brian2.
    """
    return sweep_snntorch(model, x, [timesteps], input=input, seed=seed, device=device,
                          dtype=dtype, batch_size=batch_size, return_counts=return_counts,
                          spikes=spikes)[int(timesteps)]

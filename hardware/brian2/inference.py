"""Run an :class:`~converters.model.SNNModel` on Brian2 (real ``NeuronGroup``/``Synapses``).

Why Brian2: it is an independent, event-driven simulator; equal spike counts here and in
snntorch show that the converted network's dynamics are what :mod:`converters.model` says,
not an artefact of one library. The same per-step equations are written as Brian2 code::

    initial value:              v = v_init * theta, c = 0
    run_regularly (per layer):  c = alpha * c + I
                                v = beta * v + c - theta * int(v > theta)   # reset="subtract"
                                v = beta * v * (1 - int(v > theta)) + c     # reset="zero"
    Synapses on_pre:            v_post += w; c_post += w   (spikes of the layer below, same
                                                      step; c only for alpha > 0)
    threshold:                  v > theta            (the reset is applied next step, as in
                                                      snntorch's Leaky with reset_delay=True)

``I`` is the bias (plus, for a constant-current input, the first layer's input current
``W x + b``, which does not change over time and is computed once, as snntorch does). All
objects share one scheduling slot and are ordered layer by layer, so a spike travels through
every layer within the step it is emitted, exactly as in the snntorch run. The read-out group
integrates without threshold (``v = leak * v + I``, no leak by default); its final ``v`` is
the read-out.

Images are copies of the network side by side: one ``NeuronGroup`` per layer of
``copies x neurons`` and one set of ``Synapses`` per projection with block-diagonal
connections, built once per call and run once per chunk of ``copies`` images (state reset and
new input currents between chunks; a short last chunk is padded with blank images whose
results are dropped). Objects get stable ``name=``s (Brian2's code cache keys on them). Code
generation: ``numpy`` (no compiler), ``cython`` (compiled once into
``~/.cache/neurolocal/brian2``, then several times faster) or ``auto``. Brian2 computes in
float64.
"""

from __future__ import annotations

import gc
import sys
import time
from typing import Any

import numpy as np
import scipy.sparse as sp

from neurolocal.converters.model import (
    ConversionError,
    RunResult,
    SNNModel,
    as_batch,
    as_sequence,
    input_macs,
    layer_matrix,
    make_stats,
)

from ..encoding import poisson_spikes
from .runtime import set_prefs
from .shards import bounds, run_shards, worker_count

__all__ = ["NEURON_BUDGET", "SYNAPSE_BUDGET", "auto_batch_size", "run_brian2"]

#: per-network budgets when the batch size is chosen automatically
NEURON_BUDGET, SYNAPSE_BUDGET = 1_000_000, 20_000_000


def _update_code(neuron: Any) -> str:
    cur = "c" if neuron.alpha else "I"
    head = "c = alpha * c + I\n" if neuron.alpha else ""
    if neuron.reset == "subtract":
        return head + f"v = beta * v + {cur} - theta * int(v > theta)"
    return head + f"v = beta * v * (1 - int(v > theta)) + {cur}"


def _block_diag(mat: Any, copies: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    coo = mat.tocoo()
    n_out, n_in = mat.shape
    offs = np.arange(copies, dtype=np.int64)
    i = (coo.col[None, :] + offs[:, None] * n_in).reshape(-1)
    j = (coo.row[None, :] + offs[:, None] * n_out).reshape(-1)
    w = np.tile(coo.data, copies)
    return i, j, w


def auto_batch_size(model: SNNModel, n: int, *, poisson: bool) -> int:
    """Copies per network: as many as the neuron and synapse budgets allow (at most ``n``)."""
    neurons = sum(layer.n_out for layer in model.layers)
    synapses = sum(layer_matrix(layer)[0].nnz
                   for layer in model.layers[0 if poisson else 1:])
    synapses += sum(int(np.count_nonzero(layer.recurrent)) for layer in model.layers
                    if layer.recurrent is not None)
    m = min(NEURON_BUDGET // max(neurons, 1), SYNAPSE_BUDGET // max(synapses, 1))
    return int(max(1, min(n, m)))


class _Network:
    """The Brian2 objects for ``copies`` copies of ``model`` (built once, run per chunk)."""

    def __init__(self, b2: Any, model: SNNModel, mats: list, copies: int, input: str,
                 raster: int = 0) -> None:
        self.b2, self.model, self.mats, self.copies, self.input = b2, model, mats, copies, input
        self.dt = 1.0 * b2.ms
        # the constant input current as a dense BLAS product, as snntorch computes it
        self.first = mats[0][0].toarray() if input in ("current", "sequence") else None
        self.clock = b2.Clock(dt=self.dt, name="nl_clock")
        self.groups = [self._group(k, layer) for k, layer in enumerate(model.layers)]
        objs: list[Any] = list(self.groups)
        pres: list[Any] = [None] + self.groups[:-1]
        if input == "poisson":
            n_in = model.layers[0].n_in
            self.gen = b2.SpikeGeneratorGroup(n_in * copies, np.zeros(0, int), np.zeros(0) * b2.ms,
                                              clock=self.clock,
                                              when="thresholds", order=1, name="nl_input")
            objs.append(self.gen)
            pres[0] = self.gen
        for k, (pre, post) in enumerate(zip(pres, self.groups)):
            if pre is not None:
                objs.append(self._synapses(k, pre, post))
            if model.layers[k].recurrent is not None:
                objs.append(self._synapses(k, post, post, recurrent=True))
        self.keep = min(int(raster), copies)
        self.monitors = [] if not self.keep else [
            b2.SpikeMonitor(g[:self.keep * layer.n_out], name=f"nl_{layer.name}_raster")
            for layer, g in zip(model.layers, self.groups) if layer.spiking]
        if input == "sequence":
            self._sequence: tuple[np.ndarray, int, int] | None = None
            objs.append(b2.NetworkOperation(self._switch_element, when="start",
                                            clock=self.clock, name="nl_sequence"))
        self.net = b2.Network(objs + self.monitors)

    def _group(self, k: int, layer: Any) -> Any:
        b2 = self.b2
        eqs = ("v : 1\nc : 1\nI : 1 (constant)\ncount : integer\nbeta : 1 (shared, constant)\n"
               "alpha : 1 (shared, constant)\ntheta : 1 (shared, constant)")
        kw: dict[str, Any] = {}
        if layer.spiking:
            kw = {"threshold": "v > theta", "reset": "count += 1"}
        g = b2.NeuronGroup(layer.n_out * self.copies, eqs, clock=self.clock,
                           name=f"nl_{layer.name}", **kw)
        if layer.spiking:
            g.beta, g.alpha = layer.neuron.beta, layer.neuron.alpha
            g.theta = layer.neuron.threshold
            g.set_event_schedule("spike", when="thresholds", order=10 * k + 12)
            g.run_regularly(_update_code(layer.neuron), when="thresholds", order=10 * k + 10,
                            name=f"nl_{layer.name}_update")
        else:
            g.beta = layer.leak
            g.run_regularly("v = v + I" if layer.leak == 1.0 else "v = beta * v + I",
                            when="thresholds", order=10 * k + 10, name=f"nl_{layer.name}_update")
        return g

    def _synapses(self, k: int, pre: Any, post: Any, recurrent: bool = False) -> Any:
        """Layer ``k``'s synapses (``recurrent``: from its own neurons). Both deliver after
        the layer's update and before its threshold; the recurrent ones therefore read the
        spikes its threshold found in the previous step: one step of delay, no queue."""
        layer = self.model.layers[k]
        neuron = layer.neuron
        on_pre = "v_post += w\nc_post += w" if neuron is not None and neuron.alpha else \
            "v_post += w"
        syn = self.b2.Synapses(pre, post, "w : 1", on_pre=on_pre, clock=self.clock,
                               name=f"nl_{layer.name}_{'rec' if recurrent else 'syn'}")
        mat = sp.csr_matrix(np.asarray(layer.recurrent, np.float64)) if recurrent \
            else self.mats[k][0]
        n_out, n_in = mat.shape
        if mat.nnz == n_out * n_in and not recurrent and \
                self.b2.prefs.codegen.target == "cython":
            # a dense block per copy: connected by compiled generated code, pre-major (each
            # pre neuron's n_out synapses in turn), the weights in that order (numpy code
            # generation runs this generator per pre neuron in Python: the arrays instead)
            syn.connect(j="k + (i // n_in) * n_out for k in range(n_out)",
                        namespace={"n_in": n_in, "n_out": n_out})
            syn.w = np.tile(mat.toarray().T.ravel(), self.copies)
        else:
            i, j, w = _block_diag(mat, self.copies)
            syn.connect(i=i, j=j)
            syn.w = w
        syn.pre.when = "thresholds"
        syn.pre.order = 10 * k + 11
        return syn

    def load(self, xb: np.ndarray, spikes: np.ndarray | None) -> None:
        """Reset every neuron and set the chunk's input (current, or spike times from now)."""
        b = self.copies
        for k, (layer, g) in enumerate(zip(self.model.layers, self.groups)):
            bias = self.mats[k][1]
            cur = np.tile(bias, b)
            if k == 0 and self.input == "current":
                cur = (xb.reshape(b, -1) @ self.first.T + bias).reshape(-1)
            g.I = cur
            g.v = layer.neuron.v_init * layer.neuron.threshold if layer.spiking else 0.0
            g.c = 0.0
            g.count = 0
        if spikes is not None:
            tt, bb, ii = np.nonzero(spikes)
            n_in = spikes.shape[2]
            t0 = float(self.net.t / self.b2.ms)
            self.gen.set_spikes(bb * n_in + ii, (t0 + tt) * self.b2.ms)

    def run(self, timesteps: int) -> tuple[list[np.ndarray], np.ndarray]:
        """Run one chunk: per spiking layer (copies, n) counts, and the read-out."""
        self._advance(timesteps)
        return self._read()

    def run_sequence(self, xs: np.ndarray, hold: int) -> tuple[list[np.ndarray], np.ndarray]:
        """Run one chunk of sequences (copies, S, ...): each element's current for ``hold``
        steps, in one run (a run per element would lose the recurrent synapses' spikes of
        the previous run's last step: Brian2 prepares the spike queues anew each run)."""
        bias = self.mats[0][1]
        cur = xs.reshape(self.copies, xs.shape[1], -1) @ self.first.T + bias  # (b, S, n)
        self._sequence = (cur.transpose(1, 0, 2).reshape(xs.shape[1], -1), hold,
                          int(round(float(self.net.t / self.dt))))
        self._advance(hold * xs.shape[1])
        return self._read()

    def _switch_element(self) -> None:
        """network_operation at the start of each step: the element this step shows."""
        cur, hold, t0 = self._sequence
        step = int(round(float(self.net.t / self.dt))) - t0
        if step % hold == 0 and step // hold < len(cur):
            self.groups[0].I = cur[step // hold]

    def _advance(self, timesteps: int) -> None:
        gc.freeze()  # Brian2 calls gc.collect() before each run: skip the long-lived objects
        try:
            self.net.run(timesteps * self.dt, namespace={})
        finally:
            gc.unfreeze()

    def _read(self) -> tuple[list[np.ndarray], np.ndarray]:
        counts = [np.asarray(g.count[:]).reshape(self.copies, layer.n_out).astype(np.int32)
                  for layer, g in zip(self.model.layers, self.groups) if layer.spiking]
        last = self.model.layers[-1]
        out = (counts[-1].astype(np.float64) if last.spiking
               else np.array(self.groups[-1].v[:]).reshape(self.copies, last.n_out))
        return counts, out


    def rasters(self, timesteps: int) -> dict[str, np.ndarray]:
        """Spikes (images, T, n) of the first images of the first chunk, per spiking layer."""
        out = {}
        layers = [layer for layer in self.model.layers if layer.spiking]
        for layer, mon in zip(layers, self.monitors):
            steps = np.rint(np.asarray(mon.t / self.dt)).astype(int)
            idx = np.asarray(mon.i[:])
            first = steps < timesteps
            r = np.zeros((self.keep, timesteps, layer.n_out), np.uint8)
            r[idx[first] // layer.n_out, steps[first], idx[first] % layer.n_out] = 1
            out[layer.name] = r
        return out


def _chunk_spikes(xb: np.ndarray, timesteps: int, spikes: np.ndarray | None, seed: int,
                  start: int, b: int, offset: int = 0) -> np.ndarray:
    """Input spikes (T, b, n_in) of one chunk (blank rows pad a short chunk); ``offset``:
    the index of ``spikes``' first image among all (each image's draw is seeded by it)."""
    m = len(xb)
    sp = spikes[:timesteps, start:start + m] if spikes is not None else poisson_spikes(
        xb.astype(np.float32), timesteps, seed=seed, start=offset + start)
    sp = np.asarray(sp).reshape(timesteps, m, -1)
    if m < b:
        sp = np.concatenate([sp, np.zeros((timesteps, b - m, sp.shape[2]), sp.dtype)], 1)
    return sp


def _simulate(net: _Network, xb: np.ndarray, timesteps: int, *, spikes: np.ndarray | None,
              seed: int, progress: bool, hold: int = 0, offset: int = 0) -> dict[str, Any]:
    """Every chunk of ``xb`` (images ``offset ..`` of the run) through ``net``; counts,
    read-outs, input spike sums."""
    n, b = len(xb), net.copies
    outputs, counts_all = [], []
    in_sum = None if net.input == "current" else np.zeros(net.model.layers[0].n_in)
    t0 = time.perf_counter()
    for start in range(0, n, b):
        chunk = xb[start:start + b]
        m = len(chunk)
        padded = chunk if m == b else np.concatenate(
            [chunk, np.zeros((b - m, *chunk.shape[1:]), chunk.dtype)])
        sp = None
        if net.input == "poisson":
            sp = _chunk_spikes(chunk, timesteps, spikes, seed, start, b, offset)
            in_sum += sp[:, :m].sum((0, 1))
        if hold:
            net.load(padded[:, 0], None)
            counts, out = net.run_sequence(padded, hold)
        else:
            net.load(padded, sp)
            counts, out = net.run(timesteps)
        outputs.append(out[:m])
        counts_all.append([c[:m] for c in counts])
        if progress:
            print(f"brian2: {offset + start + m} (of images {offset}..{offset + n - 1}), "
                  f"{time.perf_counter() - t0:.1f} s",
                  file=sys.stderr, flush=True)
    n_spk = len(counts_all[0])
    return {"outputs": np.concatenate(outputs), "input_sum": in_sum,
            "counts": [np.concatenate([c[k] for c in counts_all]) for k in range(n_spk)]}


def _merge(parts: list[dict]) -> dict[str, Any]:
    """The shards' results in image order."""
    sums = [p["input_sum"] for p in parts]
    return {"outputs": np.concatenate([p["outputs"] for p in parts]),
            "input_sum": None if sums[0] is None else np.sum(sums, 0),
            "counts": [np.concatenate([p["counts"][k] for p in parts])
                       for k in range(len(parts[0]["counts"]))]}


def run_brian2(
    model: SNNModel,
    x: Any,
    timesteps: int,
    *,
    input: str = "current",
    seed: int = 0,
    spikes: np.ndarray | None = None,
    batch_size: int | None = None,
    codegen_target: str = "numpy",
    return_counts: bool = False,
    progress: bool = False,
    raster: int = 0,
    workers: int | None = None,
) -> RunResult:
    """Simulate ``x`` (N, ...) for ``timesteps`` steps with Brian2; same dynamics as snntorch.

    ``input``: ``"current"`` or ``"poisson"`` (the same trains as snntorch for the same
    ``seed``, or the ``spikes`` (T, N, ...) given). ``batch_size``: copies side by side in
    one network (default: as many as :data:`NEURON_BUDGET` and :data:`SYNAPSE_BUDGET` allow,
    shared by the workers). ``workers``: processes, each running a contiguous shard of the
    images (:mod:`.shards`; default: one per core, at least ``MIN_SHARD`` images each; 1
    with ``raster``). ``raster``: spike rasters (images, T, neurons) of the first images in
    ``extra["raster"]``.
    """
    import brian2 as b2

    if input not in ("current", "poisson", "sequence"):
        raise ConversionError(f"input {input!r}: choose 'current', 'poisson' or 'sequence'")
    if not isinstance(timesteps, (int, np.integer)) or timesteps < 1:
        raise ConversionError(f"timesteps must be an integer >= 1, got {timesteps!r}")
    xb, hold = as_sequence(model, x, timesteps) if input == "sequence" else (as_batch(model, x), 0)
    xb = xb.astype(np.float64)
    n = len(xb)
    if n == 0:
        raise ConversionError("no samples to run")
    t0 = time.perf_counter()
    old_target = b2.prefs.codegen.target
    codegen_target = set_prefs(codegen_target)
    try:
        w = worker_count(n, workers)
        w = 1 if raster else w  # the rasters are of the first images: one network
        b = batch_size or max(1, auto_batch_size(model, n, poisson=input == "poisson") // w)
        mats = [layer_matrix(layer) for layer in model.layers]

        def shard(lo: int, hi: int) -> dict[str, Any]:
            net = _Network(b2, model, mats, max(1, min(int(b), hi - lo)), input, raster)
            out = _simulate(net, xb[lo:hi], int(timesteps), seed=seed, progress=progress,
                            spikes=None if spikes is None else spikes[:, lo:hi], hold=hold,
                            offset=lo)
            out["raster"] = net.rasters(int(timesteps)) if raster else None
            return out

        parts = [shard(0, n)] if w == 1 else run_shards(shard, bounds(n, w))
        res = _merge(parts)
        rasters = parts[0]["raster"]
    finally:
        b2.prefs.codegen.target = old_target
    output = res["outputs"]
    sums = [c.sum(0).astype(np.float64) for c in res["counts"]]
    return RunResult(
        target="brian2", timesteps=int(timesteps), predictions=np.argmax(output, axis=1),
        outputs=output, layer_stats=make_stats(model, sums, res["input_sum"], n, timesteps),
        input=input, input_macs=0.0 if input == "poisson" else (
            input_macs(model, xb.reshape(-1, *model.input_shape)) * (xb.shape[1] if hold else 1)),
        seconds=time.perf_counter() - t0,
        spike_counts=res["counts"] if return_counts else None,
        extra={"codegen_target": codegen_target, "dtype": "float64", "batch_size": b,
               "workers": w,
               **({"raster": rasters} if rasters else {})},
    )

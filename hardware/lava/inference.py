"""Run a quantised network on Lava (Loihi 2 simulation, ``Loihi2SimCfg(select_tag="fixed_pt")``).

Why Lava: it is Intel's bit-accurate model of Loihi 2, so a network that runs here maps onto
the chip. The graph is made of real Lava processes::

    RingBuffer source -> Dense -> LIFReset -> Dense -> LIFReset -> ... -> Dense -> RingBuffer sink

* Inputs: 8-bit graded spikes carrying the pixel (``round(255 x)``) every step for a constant
  current (``Dense(num_message_bits=8)``), or binary Poisson spikes.
* Each ``Dense`` adds one step of delay, so layer ``k`` sees sample ``i`` during steps
  ``i*T + 1 + k ... i*T + T + k``. ``LIFReset(reset_interval=T, reset_offset=(1 + k) % T)``
  clears u and v exactly when its window starts, so samples stream back to back without
  pausing the runtime; a blank sample at the end of each chunk flushes the pipeline.
* Lava's stock LIF resets v to 0 after a spike. Reset by subtraction uses
  ``PyLifResetSubtractBitAcc`` (via ``exception_proc_model_map``), a subclass of Lava's own
  bit-accurate ``PyLifResetModelBitAcc`` that changes only the resets: the previous step's
  spikes subtract ``vth << 6`` after the decay, as snntorch's ``Leaky`` does, and the window
  reset sets v to the initial membrane ``v_init * vth`` instead of 0. Models with reset to
  zero and ``v_init = 0`` run on the stock model unchanged.
* The read-out layer's ``Dense`` output goes to a sink; the host sums it (plus the bias) over
  the window: the accumulated membrane of a non-leaky read-out neuron.

Lava is started and stopped by :func:`.runtime.session`, the one lifecycle of the Lava target.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np

from neurolocal.converters.model import (
    ConversionError,
    LayerStats,
    RunResult,
    SNNModel,
    input_macs,
    layer_fanout,
)
from neurolocal.converters.quantise import QuantModel, graded_input, quantise

from ..encoding import poisson_spikes
from ..profiles import LOIHI2
from .session import import_lava, session

__all__ = ["run_lava"]


def _columns(q: QuantModel, xb: np.ndarray, timesteps: int, spikes: np.ndarray | None,
             seed: int, start: int) -> np.ndarray:
    """Source data (n_in, n * T) for samples xb: graded pixels or binary spikes."""
    n = len(xb)
    if q.input == "current":
        g = graded_input(xb).reshape(n, -1)
        return np.repeat(g.T[:, :, None], timesteps, axis=2).reshape(g.shape[1], n * timesteps)
    sp = spikes if spikes is not None else poisson_spikes(np.asarray(xb, np.float32), timesteps,
                                                          seed=seed, start=start)
    sp = np.asarray(sp).reshape(timesteps, n, -1)  # (T, n, n_in)
    return sp.transpose(2, 1, 0).reshape(sp.shape[2], n * timesteps)


def _counter_weights(fanout: np.ndarray | None, n: int) -> np.ndarray:
    """Rows of a counting ``Dense``: row 0 counts spikes; rows 1.. split each neuron's fan-out
    into parts <= 255 (8-bit excitatory weights), so their sum is the synops of the step."""
    rows = [np.ones(n, np.int32)]
    if fanout is not None:
        rest = fanout.astype(np.int64).copy()
        while rest.max(initial=0) > 0:
            part = np.minimum(rest, 255)
            rows.append(part.astype(np.int32))
            rest -= part
    return np.stack(rows)


def run_lava(
    model: SNNModel | QuantModel,
    x: Any,
    timesteps: int,
    *,
    input: str = "current",
    seed: int = 0,
    spikes: np.ndarray | None = None,
    chunk: int = 250,
    record_neurons: bool = False,
    float_model: SNNModel | None = None,
    progress: bool = False,
) -> RunResult:
    """Run ``x`` (N, ...) on Lava fixed_pt for ``timesteps`` steps per sample.

    ``model``: a converted SNNModel (quantised here with :func:`converters.quantise.quantise`)
    or a QuantModel (then pass ``float_model`` for the synops report). Samples stream through
    one network per ``chunk`` (Lava's ``Var.set``/``get`` cost ~20 us per element, so data goes
    in at construction and only small counters come out). Per spiking layer a counting
    ``Dense`` + sink measures spikes and synaptic events per step on Lava itself;
    ``record_neurons`` adds per-neuron spike sinks (slow; small networks only).
    """
    import_lava()
    from lava.proc.dense.process import Dense
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.lif.process import LIFReset

    from .procs.lif_reset import PyLifResetSubtractBitAcc

    if isinstance(model, SNNModel):
        float_model = float_model or model
        q = quantise(model, input=input)
    else:
        q = model
    n_layers = len(q.layers)
    if timesteps < n_layers:
        raise ConversionError(
            f"timesteps={timesteps} is shorter than the pipeline delay of this {n_layers}-layer "
            f"network on Lava ({n_layers} steps); use timesteps >= {n_layers}"
        )
    shift = LOIHI2.lif.activation_shift  # the read-out's a_in is summed in v units
    custom = any(layer.reset == "subtract" or layer.v0 for layer in q.layers
                 if layer.vth is not None)
    xb = np.asarray(x)
    n_in0 = int(np.prod(q.input_shape))
    xb = xb.reshape((len(xb), *q.input_shape)) if xb.size == len(xb) * n_in0 else xb
    n = len(xb)
    if n == 0:
        raise ConversionError("no samples to run")
    # keep the source buffer under ~64 MB of int32
    chunk = max(1, min(chunk, n, (64 << 20) // (4 * n_in0 * timesteps) - 1))
    fanouts = ([layer_fanout(layer) for layer in float_model.layers[1:]] + [None]
               if float_model is not None else [None] * n_layers)
    exceptions = {LIFReset: PyLifResetSubtractBitAcc} if custom else {}
    spiking_idx = [i for i, layer in enumerate(q.layers) if layer.vth is not None]
    outputs = np.zeros((n, q.layers[-1].n_out))
    layer_spikes = {i: np.zeros(n, np.int64) for i in spiking_idx}
    layer_synops = {i: np.zeros(n, np.int64) for i in spiking_idx}
    neuron_counts = {i: np.zeros((n, q.layers[i].n_out), np.int32) for i in spiking_idx}
    bias_out = q.layers[-1].bias_eff.astype(np.float64)
    in_sum = None if q.input == "current" else np.zeros(n_in0)
    t0 = time.perf_counter()
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        m = hi - lo
        cs = (m + 1) * timesteps  # +1 blank sample flushes the Dense delays
        sp = None if spikes is None else np.asarray(spikes[:timesteps, lo:hi])
        cols = _columns(q, xb[lo:hi], timesteps, sp, seed, lo)
        if in_sum is not None:
            in_sum += cols.sum(1)
        data = np.zeros((n_in0, cs), np.int32)
        data[:, :cols.shape[1]] = cols
        src = Source(data=data)
        sinks: list[tuple[str, int, int, Any]] = []  # (what, layer, delay, sink)
        prev_out = src.s_out
        k = 0
        for i, ql in enumerate(q.layers):
            dense = Dense(weights=ql.matrix(), weight_exp=ql.weight_exp,
                                num_message_bits=ql.num_message_bits, name=f"{ql.name}_dense")
            prev_out.connect(dense.s_in)
            if ql.vth is None:
                sink = Sink(shape=(ql.n_out,), buffer=cs)
                dense.a_out.connect(sink.a_in)
                sinks.append(("readout", i, i + 1, sink))
                continue
            k += 1
            lif = LIFReset(
                shape=(ql.n_out,), du=ql.du, dv=ql.dv, vth=ql.vth, bias_mant=ql.bias_mant,
                bias_exp=ql.bias_exp, reset_interval=timesteps,
                reset_offset=(1 + k) % timesteps, name=f"{ql.name}_lif",
            )
            lif.proc_params["neurolocal_reset"] = ql.reset
            lif.proc_params["neurolocal_v0"] = ql.v0
            dense.a_out.connect(lif.a_in)
            counter_w = _counter_weights(fanouts[i], ql.n_out)
            counter = Dense(weights=counter_w, name=f"{ql.name}_count")
            lif.s_out.connect(counter.s_in)
            csink = Sink(shape=(counter_w.shape[0],), buffer=cs)
            counter.a_out.connect(csink.a_in)
            sinks.append(("count", i, k + 1, csink))
            if record_neurons or i == n_layers - 1:
                sink = Sink(shape=(ql.n_out,), buffer=cs)
                lif.s_out.connect(sink.a_in)
                sinks.append(("spikes", i, k, sink))
            prev_out = lif.s_out
        with session(src, "fixed_pt", exceptions=exceptions) as run:
            run(cs)
            for what, i, delay, sink in sinks:
                buf = sink.data.get()  # step t is stored at (t - 1) % cs
                win = buf[:, delay:delay + m * timesteps]
                per = win.reshape(win.shape[0], m, timesteps).sum(axis=2).T  # (m, rows)
                if what == "readout":
                    outputs[lo:hi] = per * 2.0**shift + timesteps * bias_out
                elif what == "count":
                    layer_spikes[i][lo:hi] = np.rint(per[:, 0]).astype(np.int64)
                    layer_synops[i][lo:hi] = np.rint(per[:, 1:].sum(1)).astype(np.int64)
                else:
                    neuron_counts[i][lo:hi] = np.rint(per).astype(np.int32)
                    if i == n_layers - 1:
                        outputs[lo:hi] = per
        if progress:
            print(f"lava: {hi}/{n} samples, {time.perf_counter() - t0:.1f} s", file=sys.stderr,
                  flush=True)
    seconds = time.perf_counter() - t0
    stats = []
    if float_model is not None:
        first_fan = layer_fanout(float_model.layers[0])
        pre_synops = 0.0 if in_sum is None else float(in_sum @ first_fan) / n
        for i, layer in enumerate(q.layers):
            neurons = layer.n_out
            if layer.vth is not None:
                spk = float(layer_spikes[i].mean())
                stats.append(LayerStats(layer.name, neurons, spk, pre_synops,
                                        spk / (neurons * timesteps)))
                pre_synops = float(layer_synops[i].mean())
            else:
                stats.append(LayerStats(layer.name, neurons, 0.0, pre_synops, 0.0))
    return RunResult(
        target="lava", timesteps=timesteps, predictions=np.argmax(outputs, axis=1),
        outputs=outputs, layer_stats=stats, input=q.input, seconds=seconds,
        input_macs=input_macs(float_model, xb) if (float_model is not None
                                                   and q.input == "current") else 0.0,
        spike_counts=[neuron_counts[i] for i in spiking_idx] if record_neurons else None,
        extra={"run_config": "Loihi2SimCfg(select_tag='fixed_pt')",
               "reset_model": "PyLifResetSubtractBitAcc" if exceptions else "stock",
               "layer_spikes_per_sample": {q.layers[i].name: layer_spikes[i]
                                           for i in spiking_idx},
               "quantisation": q.errors()},
    )

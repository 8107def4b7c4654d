"""The first version's converted-network runners, kept verbatim as benchmark baselines.

``benchmarks/evaluation.py`` measures the batched paths against "today's image-by-image
path": the code of commit 13dc4f6 (before batched evaluation), copied here unchanged but for
imports and names -- :func:`run_lava_v1` (one copy of the network on Lava fixed_pt, images
streamed one after another, Lava's model search on every compile, Lava's full LIF arithmetic)
and :func:`run_brian2_v1` (a new Brian2 network per batch of 16 images, numpy code
generation). Not used by the tool.
"""

# ruff: noqa: E501

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
    as_batch,
    input_macs,
    layer_fanout,
    layer_matrix,
    make_stats,
)
from neurolocal.converters.quantise import QuantModel, graded_input, quantise
from neurolocal.hardware.brian2.runtime import set_prefs
from neurolocal.hardware.encoding import poisson_spikes
from neurolocal.hardware.lava.runtime import import_lava, session
from neurolocal.hardware.profiles import LOIHI2


def _old_lif_model() -> type:
    """The first version's reset-by-subtraction LIF model (Lava's full arithmetic)."""
    import_lava()
    from lava.magma.core.decorator import implements, requires, tag
    from lava.magma.core.resources import CPU
    from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
    from lava.proc.lif.models import PyLifResetModelBitAcc
    from lava.proc.lif.process import LIFReset

    @implements(proc=LIFReset, protocol=LoihiProtocol)
    @requires(CPU)
    @tag("bit_accurate_loihi", "fixed_pt")
    class PyLifResetSubtractBitAcc(PyLifResetModelBitAcc):
        """Identical to ``PyLifResetModelBitAcc`` except (a) after a spike, instead of ``v = 0``,
        the next step subtracts the scaled threshold after the decay and input,
        ``v[t] = decay(v[t-1]) + u[t] + bias - (vth << 6) * s[t-1]``
        (``proc_params["neurolocal_reset"] == "zero"`` keeps Lava's zeroing), and (b) the
        periodic reset sets ``v`` to ``proc_params["neurolocal_v0"]`` instead of 0.
        """

        def __init__(self, proc_params: dict) -> None:
            super().__init__(proc_params)
            self.prev_spikes: np.ndarray | None = None
            self.subtract = proc_params.get("neurolocal_reset", "subtract") == "subtract"
            self.v0 = int(proc_params.get("neurolocal_v0", 0))

        def run_spk(self) -> None:
            a_in_data = self.a_in.recv()
            if (self.time_step % self.reset_interval) == self.reset_offset:
                self.u *= 0
                self.v[:] = self.v0
                self.prev_spikes = None
            self.scale_bias()
            if not self.isthrscaled:
                self.scale_threshold()
            self.subthr_dynamics(activation_in=a_in_data)
            if self.subtract and self.prev_spikes is not None:
                self.v[self.prev_spikes] -= self.effective_vth
            s_out = self.spiking_activation()
            if not self.subtract:
                self.reset_voltage(spike_vector=s_out)
            self.prev_spikes = s_out.copy()
            self.s_out.send(s_out)

    return PyLifResetSubtractBitAcc


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


def run_lava_v1(
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

    PyLifResetSubtractBitAcc = _old_lif_model()

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


def _update_code(neuron: Any) -> str:
    if neuron.reset == "subtract":
        return "v = beta * v + I - theta * int(v > theta)"
    return "v = beta * v * (1 - int(v > theta)) + I"


def _block_diag(mat: Any, copies: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    coo = mat.tocoo()
    n_out, n_in = mat.shape
    offs = np.arange(copies)
    i = (coo.col[None, :] + offs[:, None] * n_in).reshape(-1)
    j = (coo.row[None, :] + offs[:, None] * n_out).reshape(-1)
    w = np.tile(coo.data, copies)
    return i, j, w


def run_brian2_v1(
    model: SNNModel,
    x: Any,
    timesteps: int,
    *,
    input: str = "current",
    seed: int = 0,
    spikes: np.ndarray | None = None,
    batch_size: int = 16,
    codegen_target: str = "numpy",
    return_counts: bool = False,
) -> RunResult:
    """Simulate ``x`` (N, ...) for ``timesteps`` steps with Brian2; same dynamics as snntorch.

    ``input``: ``"current"`` or ``"poisson"`` (the same trains as snntorch for the same
    ``seed``, or the ``spikes`` (T, N, ...) given).
    """
    import brian2 as b2

    if input not in ("current", "poisson"):
        raise ConversionError(f"input {input!r}: choose 'current' or 'poisson'")
    xb = as_batch(model, x).astype(np.float64)
    n = len(xb)
    t0 = time.perf_counter()
    old_target = b2.prefs.codegen.target
    codegen_target = set_prefs(codegen_target)
    mats = [layer_matrix(layer) for layer in model.layers]
    spiking = [i for i, layer in enumerate(model.layers) if layer.spiking]
    outputs, counts_all = [], []
    sums = [np.zeros(model.layers[i].n_out) for i in spiking]
    in_sum = None if input == "current" else np.zeros(model.layers[0].n_in)
    dt = 1.0 * b2.ms
    try:
        for start in range(0, n, batch_size):
            stop = min(n, start + batch_size)
            b = stop - start
            clock = b2.Clock(dt=dt, name="nl_clock")
            objs: list[Any] = []
            groups = []
            for k, (layer, (mat, bias)) in enumerate(zip(model.layers, mats)):
                size = layer.n_out * b
                eqs = "v : 1\nI : 1 (constant)\ncount : integer\n"
                eqs += "beta : 1 (shared, constant)\ntheta : 1 (shared, constant)"
                kw: dict[str, Any] = {}
                if layer.spiking:
                    kw = {"threshold": "v > theta", "reset": "count += 1"}
                g = b2.NeuronGroup(size, eqs, clock=clock, name=f"nl_{layer.name}", **kw)
                cur = np.tile(bias, b)
                if k == 0 and input == "current":
                    cur = (xb[start:stop].reshape(b, -1) @ mat.T.toarray() + bias).reshape(-1)
                g.I = cur
                if layer.spiking:
                    g.beta = layer.neuron.beta
                    g.theta = layer.neuron.threshold
                    g.v = layer.neuron.v_init * layer.neuron.threshold
                    g.set_event_schedule("spike", when="thresholds", order=10 * k + 12)
                    g.run_regularly(_update_code(layer.neuron), when="thresholds",
                                    order=10 * k + 10, name=f"nl_{layer.name}_update")
                else:
                    g.run_regularly("v = v + I", when="thresholds", order=10 * k + 10,
                                    name=f"nl_{layer.name}_update")
                groups.append(g)
                objs.append(g)
            # synapses: input spikes -> layer 1 (Poisson), layer k -> layer k + 1
            if input == "poisson":
                sp = spikes[:timesteps, start:stop] if spikes is not None else poisson_spikes(
                    xb[start:stop].astype(np.float32), timesteps, seed=seed, start=start)
                sp = np.asarray(sp).reshape(timesteps, b, -1)
                in_sum += sp.sum((0, 1))
                tt, bb, ii = np.nonzero(sp)
                n_in = sp.shape[2]
                gen = b2.SpikeGeneratorGroup(n_in * b, bb * n_in + ii, tt * dt, clock=clock,
                                             when="thresholds", order=1, name="nl_input")
                objs.append(gen)
                pres = [gen] + groups[:-1]
            else:
                pres = [None] + groups[:-1]
            for k, (pre, post, (mat, _)) in enumerate(zip(pres, groups, mats)):
                if pre is None:
                    continue
                syn = b2.Synapses(pre, post, "w : 1", on_pre="v_post += w", clock=clock,
                                  name=f"nl_{model.layers[k].name}_syn")
                i, j, w = _block_diag(mat, b)
                syn.connect(i=i, j=j)
                syn.w = w
                syn.pre.when = "thresholds"
                syn.pre.order = 10 * k + 11
                objs.append(syn)
            net = b2.Network(objs)
            net.run(timesteps * dt, namespace={})
            k = 0
            batch_counts = []
            for i, g in zip(range(len(groups)), groups):
                layer = model.layers[i]
                if layer.spiking:
                    c = np.asarray(g.count[:]).reshape(b, layer.n_out)
                    sums[k] += c.sum(0)
                    batch_counts.append(c.astype(np.int32))
                    k += 1
            last = model.layers[-1]
            if last.spiking:
                outputs.append(batch_counts[-1].astype(np.float64))
            else:
                outputs.append(np.asarray(groups[-1].v[:]).reshape(b, last.n_out))
            if return_counts:
                counts_all.append(batch_counts)
            del net, objs, groups
    finally:
        b2.prefs.codegen.target = old_target
    output = np.concatenate(outputs)
    counts = None
    if return_counts:
        counts = [np.concatenate([c[k] for c in counts_all]) for k in range(len(spiking))]
    return RunResult(
        target="brian2", timesteps=timesteps, predictions=np.argmax(output, axis=1),
        outputs=output, layer_stats=make_stats(model, sums, in_sum, n, timesteps),
        input=input, input_macs=input_macs(model, xb) if input == "current" else 0.0,
        seconds=time.perf_counter() - t0, spike_counts=counts,
        extra={"codegen_target": codegen_target, "dtype": "float64"},
    )

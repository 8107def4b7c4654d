"""Run a converted network on Lava: bit-accurate Loihi 2 (``fixed_pt``) or ``floating_pt``.

Why Lava: it is Intel's bit-accurate model of Loihi 2, so a network that runs here maps onto
the chip. Two layouts of real Lava process graphs, one result:

**batched** (default). The images of a chunk are copies of the network side by side in one
graph, run once for ``T + depth`` steps::

    RingBuffer -> LIFReset (copies x n1) -> Sparse (block-diagonal) -> LIFReset -> ...
                                                     ... -> Sparse -> WindowProbe (read-out)
    every LIFReset -> WindowProbe (its spike counts)

* Each projection is one Lava ``Sparse`` whose weights are the layer's matrix once per copy
  on the diagonal, so copies never touch. Lava's ``Sparse`` models run with
  :mod:`.procs.sparse_dot` (the binary-spike sum as a matrix-vector product: the same
  integers / floats, faster for thousands of copies). A layer whose ops compose into a
  denser matrix than they are apart (a pool then a conv) is one
  :class:`.procs.factored_sparse.FactoredSparse`: the ops' block-diagonal matrices in turn.
* A constant input current is the same every step: the first layer's synaptic input is
  computed once on the host -- in ``fixed_pt`` with Lava's ``Dense`` integer arithmetic on the
  8-bit graded pixels, ``shift(W round(255 x), weight_exp)`` (the emulator's program, tested
  bit-exact against Lava) -- and a ``RingBuffer`` replays it into the first ``LIFReset``
  every step, as snntorch and Brian2 also compute that current once. ``first_layer="lava"``
  sends the graded pixels through a block-diagonal ``Sparse`` instead; Poisson input always
  goes through one (binary spikes).
* ``Sparse`` delays by one step: layer ``k`` (0-based) integrates steps ``k+1 .. k+T``
  (one more with the first layer on Lava); its ``LIFReset`` restarts u and v (v to the initial
  membrane) exactly at its window's first step, and spikes outside a window never reach the
  next layer's window.
* :class:`.procs.probes.WindowProbe` sums each population's spikes (and the read-out
  ``Sparse``'s output) over its window on Lava and sends the sums to the host once: reading a
  Lava ``Var`` costs ~20 us per element. Chunks are sized to keep neurons, synapses and the
  source buffer inside fixed budgets.

**stream** (``fixed_pt``; the layout of the first version, kept as the image-by-image
reference). One copy of the network; images one after another in time::

    RingBuffer -> Dense -> LIFReset -> Dense -> LIFReset -> ... -> Dense -> RingBuffer sink

* Inputs: 8-bit graded spikes carrying the pixel every step (``Dense(num_message_bits=8)``),
  or binary Poisson spikes. Layer ``k`` sees sample ``i`` during steps ``i*T + 1 + k ...
  i*T + T + k``; ``LIFReset(reset_interval=T, reset_offset=(1 + k) % T)`` clears u and v
  exactly when its window starts, and a blank sample per chunk flushes the pipeline.
* Per spiking layer a counting ``Dense`` + sink measures spikes and synaptic events per step.

Both layouts: Lava's stock LIF resets v to 0 after a spike. Reset by subtraction and the
initial membrane use :mod:`.procs.lif_reset` (subclasses of Lava's own ``LIFReset`` models
that change only the resets, via ``exception_proc_model_map``); reset to zero with
``v_init = 0`` runs on the stock models. ``fixed_pt`` weights, thresholds and biases come from
:func:`neurolocal.converters.quantise.quantise`; ``floating_pt`` runs the float model's own
weights (float64). Lava is started and stopped by :func:`.runtime.session`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from neurolocal.converters.model import (
    ConversionError,
    LayerStats,
    RunResult,
    SNNModel,
    as_sequence,
    input_macs,
    layer_fanout,
    layer_matrix,
    make_stats,
    op_matrices,
)
from neurolocal.converters.quantise import (
    QuantModel,
    check_current_bias,
    graded_input,
    input_current,
    quantise,
)

from ..encoding import poisson_spikes
from ..profiles import LOIHI2
from .session import import_lava, session

__all__ = ["LAYOUTS", "TAGS", "block_diagonal", "batch_size", "run_lava"]

TAGS: tuple[str, ...] = ("fixed_pt", "floating_pt")
LAYOUTS: tuple[str, ...] = ("batched", "stream")
#: per-chunk budgets of the batched layout: neurons, synapses, source buffer entries (4.5M
#: neurons: the conv net of benchmarks/conversion.py, 1,000 images in one chunk, takes 3.4 GB
#: of memory in all, 2.2 GB in its largest Lava process)
NEURON_BUDGET, SYNAPSE_BUDGET, SOURCE_BUDGET = 4_500_000, 30_000_000, 16_000_000


# --------------------------------------------------------------------------------------------
# The network as Lava parameters (fixed_pt or floating_pt)
# --------------------------------------------------------------------------------------------


@dataclass
class _Layer:
    """One layer in the units of the run's tag; ``lif`` are ``LIFReset`` arguments."""

    name: str
    n_in: int
    n_out: int
    matrix: Any  # scipy CSR (n_out, n_in): integer LSBs (fixed_pt) or floats
    weight_exp: int
    message_bits: int  # of the messages this layer receives from the layer below
    lif: dict[str, Any] | None  # None: the non-spiking read-out
    reset: str
    v0: float
    out_scale: float  # read-out: Sparse output units -> output units
    bias: np.ndarray  # read-out: added T times on the host (leaky: sum_k leak^k times)
    leak: float = 1.0  # read-out membrane decay
    unit: float = 1.0  # Sparse output units per float unit (fixed_pt: the quantiser's scale)
    factors: list[Any] | None = None  # the ops' matrices in turn (product: ``matrix``)
    recurrent: Any = None  # CSR (n_out, n_out) from the layer's own spikes, or None
    recurrent_exp: int = 0

    @property
    def synapse_matrices(self) -> list[Any]:
        """What the graph stores: the factors where they are fewer weights than the product."""
        if self.factors and len(self.factors) > 1 and (
                sum(f.nnz for f in self.factors) < self.matrix.nnz):
            return self.factors
        return [self.matrix]


def _bias_steps(leak: float, timesteps: int) -> float:
    """How often a read-out's bias counts in its final membrane: ``sum_k leak**k``."""
    return float(timesteps) if leak == 1.0 else float(sum(leak**k for k in range(timesteps)))


@dataclass
class _Plan:
    tag: str
    input: str
    input_shape: tuple[int, ...]
    layers: list[_Layer]
    current: Callable[[np.ndarray], np.ndarray]  # (m, ...) -> first layer's a_in (m, n_out)
    graded: Callable[[np.ndarray], np.ndarray]  # (m, ...) -> graded input messages (m, n_in)
    custom_reset: bool
    extra: dict[str, Any] = field(default_factory=dict)

    def models(self, procs: list[Any]) -> dict[Any, type]:
        """The process model of every process of a graph, chosen here by process *instance*.

        ``exception_proc_model_map`` keyed by instances: Lava then skips its search for models
        (it imports every module beside each process class on every compile, ~0.3 s). The
        choice is Lava's own for the tag, except our reset and Sparse models.
        """
        from lava.proc.dense.models import PyDenseModelBitAcc
        from lava.proc.dense.process import Dense
        from lava.proc.io.sink import PyReceiveModelFixed
        from lava.proc.io.sink import RingBuffer as Sink
        from lava.proc.io.source import PySendModelFixed, PySendModelFloat
        from lava.proc.io.source import RingBuffer as Source
        from lava.proc.lif.models import PyLifResetModelBitAcc, PyLifResetModelFloat
        from lava.proc.lif.process import LIFReset
        from lava.proc.sparse.process import Sparse

        from .procs.factored_sparse import (
            FactoredSparse,
            PyFactoredSparseFixed,
            PyFactoredSparseFloat,
        )
        from .procs.lif_reset import PyLifResetSubtractBitAcc, PyLifResetSubtractFloat
        from .procs.probes import PyWindowProbe, WindowProbe
        from .procs.sparse_dot import PySparseDotBitAcc, PySparseDotFloat

        fixed = self.tag == "fixed_pt"
        lif = ((PyLifResetSubtractBitAcc if fixed else PyLifResetSubtractFloat)
               if self.custom_reset else
               (PyLifResetModelBitAcc if fixed else PyLifResetModelFloat))
        table = {Source: PySendModelFixed if fixed else PySendModelFloat,
                 Sink: PyReceiveModelFixed, Dense: PyDenseModelBitAcc, LIFReset: lif,
                 Sparse: PySparseDotBitAcc if fixed else PySparseDotFloat,
                 FactoredSparse: PyFactoredSparseFixed if fixed else PyFactoredSparseFloat,
                 WindowProbe: PyWindowProbe}
        return {p: table[type(p)] for p in procs}

    @property
    def reset_model(self) -> str:
        if not self.custom_reset:
            return "stock"
        return "PyLifResetSubtractBitAcc" if self.tag == "fixed_pt" else "PyLifResetSubtractFloat"


def _csr(mat: Any, dtype: Any) -> Any:
    import scipy.sparse as sp

    out = sp.csr_matrix(mat, dtype=dtype)
    out.eliminate_zeros()
    out.sort_indices()
    return out


def _fixed_plan(q: QuantModel) -> _Plan:
    """Loihi 2 integers of a quantised model (the stream layout's values, as Sparse)."""
    layers = []
    for ql in q.layers:
        lif = None
        if ql.vth is not None:
            lif = {"du": ql.du, "dv": ql.dv, "vth": ql.vth, "bias_mant": ql.bias_mant,
                   "bias_exp": ql.bias_exp}
        layers.append(_Layer(ql.name, ql.n_in, ql.n_out, _csr(ql.matrix(), np.int32),
                             ql.weight_exp, ql.num_message_bits, lif, ql.reset, ql.v0,
                             2.0**LOIHI2.lif.activation_shift, ql.bias_eff.astype(np.float64),
                             ql.leak, ql.scale, [_csr(f, np.int32) for f in ql.factors()],
                             None if ql.recurrent is None else _csr(ql.recurrent, np.int32),
                             ql.recurrent_exp))
    custom = any(layer.reset == "subtract" or layer.v0 for layer in q.layers
                 if layer.vth is not None)
    return _Plan("fixed_pt", q.input, q.input_shape, layers,
                 current=lambda xb: input_current(q, xb),
                 graded=lambda xb: graded_input(xb).reshape(len(xb), -1),
                 custom_reset=custom, extra={"quantisation": q.errors()})


def _float_decay(beta: float) -> float:
    """``d`` with ``1 - d == beta`` exactly in float64 (Lava computes ``v * (1 - dv)``)."""
    dv = 1.0 - beta
    for _ in range(8):
        if 1.0 - dv == beta:
            break
        dv = float(np.nextafter(dv, 1.0 if 1.0 - dv > beta else 0.0))
    return dv


def _float_plan(model: SNNModel, input: str) -> _Plan:
    """The float model's own weights and thresholds (float64) for ``floating_pt``."""
    layers = []
    mats = [layer_matrix(layer) for layer in model.layers]
    for i, (layer, (mat, bias)) in enumerate(zip(model.layers, mats)):
        check_current_bias(layer)
        n, lif = layer.neuron, None
        if n is not None:  # Lava: u = u * (1 - du) + a_in, v = v * (1 - dv) + u + bias
            lif = {"du": _float_decay(n.alpha), "dv": _float_decay(n.beta), "vth": n.threshold,
                   "bias_mant": np.asarray(bias, np.float64)}
        bits = 8 if (i == 0 and input in ("current", "sequence")) else 0
        layers.append(_Layer(layer.name, layer.n_in, layer.n_out, _csr(mat, np.float64), 0,
                             bits, lif, n.reset if n else "subtract",
                             n.v_init * n.threshold if n else 0.0, 1.0,
                             np.asarray(bias, np.float64), float(layer.leak), 1.0,
                             [_csr(f, np.float64) for f in op_matrices(layer)],
                             None if layer.recurrent is None
                             else _csr(np.asarray(layer.recurrent, np.float64), np.float64)))
    first = mats[0][0]
    custom = any(layer.neuron.reset == "subtract" or layer.neuron.v_init
                 for layer in model.layers if layer.neuron is not None)
    return _Plan("floating_pt", input, model.input_shape, layers,
                 current=lambda xb: np.asarray((first @ xb.reshape(len(xb), -1).T).T),
                 graded=lambda xb: np.asarray(xb, np.float64).reshape(len(xb), -1),
                 custom_reset=custom)


def block_diagonal(mat: Any, copies: int) -> Any:
    """``copies`` copies of a CSR matrix on the diagonal (built from its arrays directly)."""
    import scipy.sparse as sp

    n_out, n_in = mat.shape
    nnz = mat.nnz
    offs = np.arange(copies, dtype=np.int64)
    indptr = np.empty(copies * n_out + 1, np.int64)
    indptr[:-1] = (mat.indptr[None, :-1] + nnz * offs[:, None]).reshape(-1)
    indptr[-1] = nnz * copies
    indices = (mat.indices[None, :] + n_in * offs[:, None]).reshape(-1)
    data = np.tile(mat.data, copies)
    return sp.csr_matrix((data, indices, indptr), shape=(copies * n_out, copies * n_in))


def batch_size(plan: _Plan, timesteps: int, n: int, *, first_on_lava: bool) -> int:
    """Images per batched run: as many as the neuron, synapse and source budgets allow."""
    neurons = sum(layer.n_out for layer in plan.layers)
    # factored layers keep one image's factors whatever the copies (FactoredSparse(copies=))
    synapses = sum(layer.synapse_matrices[0].nnz for layer in plan.layers[
        0 if first_on_lava else 1:] if len(layer.synapse_matrices) == 1)
    synapses += sum(layer.recurrent.nnz for layer in plan.layers if layer.recurrent is not None)
    first = plan.layers[0]
    source = (first.n_in if first_on_lava else first.n_out) * (
        timesteps if plan.input in ("poisson", "sequence") else 1)
    m = min(NEURON_BUDGET // max(neurons, 1), SYNAPSE_BUDGET // max(synapses, 1),
            SOURCE_BUDGET // max(source, 1))
    return int(max(1, min(n, m)))


# --------------------------------------------------------------------------------------------
# The batched layout
# --------------------------------------------------------------------------------------------


def _tiled(lif: dict[str, Any], copies: int) -> dict[str, Any]:
    """``LIFReset`` arguments for ``copies`` side by side (per-neuron arrays repeated)."""
    return {k: np.tile(np.asarray(v), copies) if np.ndim(v) else v for k, v in lif.items()}


def _source_data(plan: _Plan, xb: np.ndarray, timesteps: int, spikes: np.ndarray | None,
                 seed: int, start: int, first_on_lava: bool) -> np.ndarray:
    """The RingBuffer's data for one chunk: first-layer current, graded pixels or spikes."""
    dtype = np.int32 if plan.tag == "fixed_pt" else np.float64
    m = len(xb)
    if plan.input == "sequence":  # (m, S, ...): element s fills steps s * hold ...
        hold = timesteps // xb.shape[1]
        cols = [plan.graded(xb[:, s]) if first_on_lava else plan.current(xb[:, s])
                for s in range(xb.shape[1])]
        arr = np.repeat(np.stack([np.asarray(c).reshape(m, -1) for c in cols], 2), hold, 2)
        return arr.reshape(-1, timesteps).astype(dtype)
    if plan.input == "current":
        vals = plan.graded(xb) if first_on_lava else plan.current(xb)
        return np.asarray(vals, dtype).reshape(-1, 1)
    sp = spikes if spikes is not None else poisson_spikes(np.asarray(xb, np.float32),
                                                          timesteps, seed=seed, start=start)
    sp = np.asarray(sp).reshape(timesteps, m, -1)  # (T, m, n_in)
    return sp.transpose(1, 2, 0).reshape(-1, timesteps).astype(dtype)


def _build_batched(plan: _Plan, m: int, timesteps: int, data: np.ndarray, keep: int,
                   first_on_lava: bool) -> tuple[list[Any], list[tuple[str, int, Any]], int]:
    """The graph of ``m`` copies: (processes, probes [(kind, layer, probe)], steps to run)."""
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.lif.process import LIFReset
    from lava.proc.sparse.process import Sparse

    from .procs.factored_sparse import FactoredSparse
    from .procs.probes import WindowProbe

    d0 = 1 if first_on_lava else 0
    steps = len(plan.layers) - 1 + timesteps + d0
    src = Source(data=data)
    prev, probes, procs = src.s_out, [], [src]
    for k, layer in enumerate(plan.layers):
        start = k + 1 + d0
        if k > 0 or first_on_lava:
            mats = layer.synapse_matrices
            kw = {"weight_exp": layer.weight_exp, "num_message_bits": layer.message_bits,
                  "name": f"nl_{layer.name}_syn"}
            syn = (Sparse(weights=block_diagonal(mats[0], m), **kw) if len(mats) == 1
                   else FactoredSparse(factors=mats, copies=m, **kw))
            prev.connect(syn.s_in)
            prev = syn.a_out
            procs.append(syn)
        size = m * layer.n_out
        if layer.lif is None:
            probe = WindowProbe(shape=(size,), start=start, stop=start + timesteps - 1,
                                decay=layer.leak)
            prev.connect(probe.a_in)
            probes.append(("readout", k, probe))
            procs.append(probe)
            continue
        lif = LIFReset(shape=(size,), **_tiled(layer.lif, m), reset_interval=steps + 1,
                       reset_offset=start, name=f"nl_{layer.name}_lif")
        lif.proc_params["neurolocal_reset"] = layer.reset
        lif.proc_params["neurolocal_v0"] = layer.v0
        prev.connect(lif.a_in)
        if layer.recurrent is not None:  # Sparse delays one step: the previous step's spikes
            rec = Sparse(weights=block_diagonal(layer.recurrent, m),
                         weight_exp=layer.recurrent_exp, num_message_bits=0,
                         name=f"nl_{layer.name}_rec")
            lif.s_out.connect(rec.s_in)
            rec.a_out.connect(lif.a_in)
            procs.append(rec)
        probe = WindowProbe(shape=(size,), start=start, stop=start + timesteps - 1,
                            keep=keep * layer.n_out)
        lif.s_out.connect(probe.a_in)
        probes.append(("spikes", k, probe))
        procs += [lif, probe]
        prev = lif.s_out
    return procs, probes, steps


def _run_chunk(plan: _Plan, xb: np.ndarray, timesteps: int, data: np.ndarray, keep: int,
               first_on_lava: bool) -> dict[str, Any]:
    """One batched run: per-layer (m, n) spike counts, the read-out, the first rasters."""
    m = len(xb)
    procs, probes, steps = _build_batched(plan, m, timesteps, data, keep, first_on_lava)
    out: dict[str, Any] = {"counts": {}, "raster": {}}
    with session(procs[0], plan.tag, exceptions=plan.models(procs)) as run:
        run(steps)
        for kind, k, probe in probes:
            total, raster = probe.receive()
            layer = plan.layers[k]
            per = total.reshape(m, layer.n_out)
            if kind == "readout":
                out["readout"] = (per * layer.out_scale
                                  + _bias_steps(layer.leak, timesteps) * layer.bias)
            else:
                out["counts"][k] = np.rint(per).astype(np.int32)
                if raster is not None:  # (T, keep * n) -> (keep, T, n)
                    out["raster"][k] = np.rint(raster).astype(np.uint8).reshape(
                        timesteps, -1, layer.n_out).transpose(1, 0, 2)
    return out


def _run_batched(plan: _Plan, xb: np.ndarray, timesteps: int, *, spikes: np.ndarray | None,
                 seed: int, chunk: int | None, keep: int, first_on_lava: bool,
                 progress: bool) -> dict[str, Any]:
    """Every chunk of ``xb`` as copies side by side; results concatenated in input order."""
    n = len(xb)
    first_on_lava = first_on_lava or plan.input == "poisson"
    m_max = chunk
    if not m_max:  # chunks of equal size: 10,000 images at most 6,000 a chunk are 2 x 5,000
        m_max = batch_size(plan, timesteps, n, first_on_lava=first_on_lava)
        m_max = -(-n // -(-n // m_max))
    parts: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for lo in range(0, n, m_max):
        hi = min(n, lo + m_max)
        sp = None if spikes is None else np.asarray(spikes[:timesteps, lo:hi])
        data = _source_data(plan, xb[lo:hi], timesteps, sp, seed, lo, first_on_lava)
        parts.append(_run_chunk(plan, xb[lo:hi], timesteps, data,
                                keep if lo == 0 else 0, first_on_lava))
        if plan.input == "poisson":
            parts[-1]["input_sum"] = data.sum(1).reshape(hi - lo, -1).sum(0)
        if progress:
            print(f"lava {plan.tag}: {hi}/{n} samples, {time.perf_counter() - t0:.1f} s",
                  file=sys.stderr, flush=True)
    spiking = [k for k, layer in enumerate(plan.layers) if layer.lif is not None]
    out = {"counts": {k: np.concatenate([p["counts"][k] for p in parts]) for k in spiking},
           "raster": parts[0]["raster"], "chunk": m_max, "seconds": time.perf_counter() - t0}
    if plan.layers[-1].lif is None:
        out["outputs"] = np.concatenate([p["readout"] for p in parts])
    else:
        out["outputs"] = out["counts"][spiking[-1]].astype(np.float64)
    out["input_sum"] = (sum(p["input_sum"] for p in parts) if plan.input == "poisson"
                        else None)
    return out


# --------------------------------------------------------------------------------------------
# The stream layout (fixed_pt, one copy, images one after another)
# --------------------------------------------------------------------------------------------


def _stream_columns(q: QuantModel, xb: np.ndarray, timesteps: int, spikes: np.ndarray | None,
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


def _build_stream(q: QuantModel, data: np.ndarray, timesteps: int, fanouts: list,
                  record_neurons: bool) -> tuple[list[Any], list[tuple[str, int, int, Any]]]:
    """One copy of the network fed ``data``: (processes, sinks as (what, layer, delay, sink))."""
    from lava.proc.dense.process import Dense
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.lif.process import LIFReset

    cs = data.shape[1]
    src = Source(data=data)
    sinks: list[tuple[str, int, int, Any]] = []
    prev_out, k, procs = src.s_out, 0, [src]
    for i, ql in enumerate(q.layers):
        dense = Dense(weights=ql.matrix(), weight_exp=ql.weight_exp,
                      num_message_bits=ql.num_message_bits, name=f"{ql.name}_dense")
        prev_out.connect(dense.s_in)
        if ql.vth is None:
            sink = Sink(shape=(ql.n_out,), buffer=cs)
            dense.a_out.connect(sink.a_in)
            sinks.append(("readout", i, i + 1, sink))
            procs += [dense, sink]
            continue
        k += 1
        lif = LIFReset(shape=(ql.n_out,), du=ql.du, dv=ql.dv, vth=ql.vth, bias_mant=ql.bias_mant,
                       bias_exp=ql.bias_exp, reset_interval=timesteps,
                       reset_offset=(1 + k) % timesteps, name=f"{ql.name}_lif")
        lif.proc_params["neurolocal_reset"] = ql.reset
        lif.proc_params["neurolocal_v0"] = ql.v0
        dense.a_out.connect(lif.a_in)
        counter_w = _counter_weights(fanouts[i], ql.n_out)
        counter = Dense(weights=counter_w, name=f"{ql.name}_count")
        lif.s_out.connect(counter.s_in)
        csink = Sink(shape=(counter_w.shape[0],), buffer=cs)
        counter.a_out.connect(csink.a_in)
        sinks.append(("count", i, k + 1, csink))
        procs += [dense, lif, counter, csink]
        if record_neurons or i == len(q.layers) - 1:
            sink = Sink(shape=(ql.n_out,), buffer=cs)
            lif.s_out.connect(sink.a_in)
            sinks.append(("spikes", i, k, sink))
            procs.append(sink)
        prev_out = lif.s_out
    return procs, sinks


def _run_stream(plan: _Plan, q: QuantModel, xb: np.ndarray, timesteps: int, *,
                spikes: np.ndarray | None, seed: int, chunk: int | None, fanouts: list,
                record_neurons: bool, progress: bool) -> dict[str, Any]:
    """Chunks of up to ``chunk`` images through one copy, back to back in time."""
    n, n_in0 = len(xb), int(np.prod(q.input_shape))
    shift = LOIHI2.lif.activation_shift
    chunk = max(1, min(chunk or 250, n, (64 << 20) // (4 * n_in0 * timesteps) - 1))
    spiking = [i for i, layer in enumerate(q.layers) if layer.vth is not None]
    out: dict[str, Any] = {"outputs": np.zeros((n, q.layers[-1].n_out)), "raster": {},
                           "spikes": {i: np.zeros(n, np.int64) for i in spiking},
                           "synops": {i: np.zeros(n, np.int64) for i in spiking},
                           "counts": {i: np.zeros((n, q.layers[i].n_out), np.int32)
                                      for i in spiking},
                           "input_sum": None if q.input == "current" else np.zeros(n_in0),
                           "chunk": chunk}
    t0 = time.perf_counter()
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        m, cs = hi - lo, (hi - lo + 1) * timesteps  # +1 blank sample flushes the delays
        sp = None if spikes is None else np.asarray(spikes[:timesteps, lo:hi])
        cols = _stream_columns(q, xb[lo:hi], timesteps, sp, seed, lo)
        if out["input_sum"] is not None:
            out["input_sum"] += cols.sum(1)
        data = np.zeros((n_in0, cs), np.int32)
        data[:, :cols.shape[1]] = cols
        procs, sinks = _build_stream(q, data, timesteps, fanouts, record_neurons)
        with session(procs[0], "fixed_pt", exceptions=plan.models(procs)) as run:
            run(cs)
            for what, i, delay, sink in sinks:
                buf = sink.data.get()  # step t is stored at (t - 1) % cs
                win = buf[:, delay:delay + m * timesteps].reshape(-1, m, timesteps)
                layer = plan.layers[i]
                if what == "readout" and layer.leak != 1.0:  # a leaky read-out's membrane
                    win = win * layer.leak ** np.arange(timesteps - 1, -1, -1.0)
                per = win.sum(axis=2).T  # (m, rows)
                if what == "readout":
                    out["outputs"][lo:hi] = (per * 2.0**shift
                                             + _bias_steps(layer.leak, timesteps) * layer.bias)
                elif what == "count":
                    out["spikes"][i][lo:hi] = np.rint(per[:, 0]).astype(np.int64)
                    out["synops"][i][lo:hi] = np.rint(per[:, 1:].sum(1)).astype(np.int64)
                else:
                    out["counts"][i][lo:hi] = np.rint(per).astype(np.int32)
                    if i == len(q.layers) - 1:
                        out["outputs"][lo:hi] = per
        if progress:
            print(f"lava fixed_pt (stream): {hi}/{n} samples, {time.perf_counter() - t0:.1f} s",
                  file=sys.stderr, flush=True)
    out["seconds"] = time.perf_counter() - t0
    return out


# --------------------------------------------------------------------------------------------
# The entry point and the result
# --------------------------------------------------------------------------------------------


def _stream_stats(q: QuantModel, res: dict[str, Any], n: int, timesteps: int,
                  first_fan: np.ndarray) -> list[LayerStats]:
    """Layer stats from the stream layout's counting Dense (spikes and synops on Lava)."""
    stats = []
    pre = 0.0 if res["input_sum"] is None else float(res["input_sum"] @ first_fan) / n
    for i, layer in enumerate(q.layers):
        if layer.vth is None:
            stats.append(LayerStats(layer.name, layer.n_out, 0.0, pre, 0.0))
            continue
        spk = float(res["spikes"][i].mean())
        stats.append(LayerStats(layer.name, layer.n_out, spk, pre,
                                spk / (layer.n_out * timesteps)))
        pre = float(res["synops"][i].mean())
    return stats


def _macs(model: SNNModel | None, xb: np.ndarray, input: str) -> float:
    """Host MACs per inference of the first layer's current (per element for a sequence)."""
    if model is None or input == "poisson":
        return 0.0
    if input == "sequence":
        return input_macs(model, xb.reshape(-1, *model.input_shape)) * xb.shape[1]
    return input_macs(model, xb)


def _check(model: Any, tag: str, layout: str, timesteps: int, n_layers: int) -> None:
    if tag not in TAGS:
        raise ConversionError(f"Lava tag {tag!r}: choose one of {', '.join(TAGS)}")
    if layout not in LAYOUTS:
        raise ConversionError(f"layout {layout!r}: choose one of {', '.join(LAYOUTS)}")
    if tag == "floating_pt" and not isinstance(model, SNNModel):
        raise ConversionError("floating_pt runs the float model: pass the SNNModel, not a "
                              "QuantModel")
    if layout == "stream" and tag != "fixed_pt":
        raise ConversionError("the stream layout runs fixed_pt only; use layout='batched'")
    if layout == "stream" and any(getattr(layer, "recurrent", None) is not None
                                  for layer in model.layers):
        raise ConversionError("the stream layout runs feed-forward layers only; a recurrent "
                              "network runs in layout='batched'")
    if not isinstance(timesteps, (int, np.integer)) or timesteps < max(1, n_layers):
        raise ConversionError(
            f"timesteps={timesteps} is shorter than the pipeline delay of this {n_layers}-layer "
            f"network on Lava ({n_layers} steps); use timesteps >= {n_layers}")


def run_lava(
    model: SNNModel | QuantModel,
    x: Any,
    timesteps: int,
    *,
    tag: str = "fixed_pt",
    input: str = "current",
    seed: int = 0,
    spikes: np.ndarray | None = None,
    layout: str = "batched",
    chunk: int | None = None,
    first_layer: str = "host",
    record_neurons: bool = False,
    raster: int = 0,
    float_model: SNNModel | None = None,
    progress: bool = False,
) -> RunResult:
    """Run ``x`` (N, ...) on Lava (``tag`` fixed_pt or floating_pt) for ``timesteps`` steps.

    ``model``: a converted SNNModel (quantised here for fixed_pt) or a QuantModel (fixed_pt;
    pass ``float_model`` for the synops report). ``layout``: ``"batched"`` (copies side by
    side, ``chunk`` images per run, default: as many as the budgets allow) or ``"stream"``
    (one copy, images back to back; fixed_pt). ``first_layer="lava"`` runs a constant
    current's first layer on Lava too (batched). ``record_neurons``: per-neuron spike counts in
    ``spike_counts``; ``raster``: spike rasters of the first ``raster`` images in
    ``extra["raster"]`` (batched).
    """
    import_lava()
    q = model if isinstance(model, QuantModel) else None
    float_model = float_model or (model if isinstance(model, SNNModel) else None)
    n_layers = len(model.layers)
    _check(model, tag, layout, timesteps, n_layers)
    if input not in ("current", "poisson", "sequence"):
        raise ConversionError(f"input {input!r}: choose 'current', 'poisson' or 'sequence'")
    if tag == "fixed_pt" and q is None:  # a sequence is a current that changes: 8-bit graded
        q = quantise(model, input="poisson" if input == "poisson" else "current")
    if q is not None and q.input != input and isinstance(model, QuantModel) and not (
            input == "sequence" and q.input == "current"):
        input = q.input
    plan = _fixed_plan(q) if tag == "fixed_pt" else _float_plan(model, input)
    plan.input = input
    xb = np.asarray(x)
    n_in0 = int(np.prod(plan.input_shape))
    if input == "sequence":
        if layout == "stream":
            raise ConversionError("the stream layout takes constant inputs or spikes; a "
                                  "sequence runs in layout='batched'")
        xb = as_sequence(model, xb, timesteps)[0]  # a QuantModel has the input shape too
    else:
        xb = xb.reshape((len(xb), *plan.input_shape)) if xb.size == len(xb) * n_in0 else xb
    if len(xb) == 0:
        raise ConversionError("no samples to run")
    if layout == "stream":
        fans = ([layer_fanout(layer) for layer in float_model.layers[1:]] + [None]
                if float_model is not None else [None] * n_layers)
        res = _run_stream(plan, q, xb, int(timesteps), spikes=spikes, seed=seed, chunk=chunk,
                          fanouts=fans, record_neurons=record_neurons, progress=progress)
        stats = (_stream_stats(q, res, len(xb), int(timesteps),
                               layer_fanout(float_model.layers[0]))
                 if float_model is not None else [])
    else:
        if first_layer not in ("host", "lava"):
            raise ConversionError(f"first_layer {first_layer!r}: choose 'host' or 'lava'")
        res = _run_batched(plan, xb, int(timesteps), spikes=spikes, seed=seed, chunk=chunk,
                           keep=int(raster), first_on_lava=first_layer == "lava",
                           progress=progress)
        stats = None
    return _result(plan, res, xb, int(timesteps), layout, float_model, record_neurons, stats)


def _result(plan: _Plan, res: dict[str, Any], xb: np.ndarray, timesteps: int, layout: str,
            float_model: SNNModel | None, record_neurons: bool,
            stats: list[LayerStats] | None) -> RunResult:
    n = len(xb)
    spiking = [k for k, layer in enumerate(plan.layers) if layer.lif is not None]
    if layout == "stream":
        per_sample = {plan.layers[k].name: res["spikes"][k] for k in spiking}
    else:
        per_sample = {plan.layers[k].name: res["counts"][k].sum(1).astype(np.int64)
                      for k in spiking}
    if stats is None:
        stats = []
        if float_model is not None:
            sums = [res["counts"][k].sum(0).astype(np.float64) for k in spiking]
            stats = make_stats(float_model, sums, res["input_sum"], n, timesteps)
    extra = {"run_config": f"Loihi2SimCfg(select_tag='{plan.tag}')",
             "reset_model": plan.reset_model, "layout": layout, "chunk": res["chunk"],
             "layer_spikes_per_sample": per_sample, **plan.extra}
    if plan.layers[-1].lif is None:  # outputs / output_scale = the float model's units
        extra["output_scale"] = plan.layers[-1].out_scale * plan.layers[-1].unit
    if res["raster"]:
        extra["raster"] = {plan.layers[k].name: r for k, r in res["raster"].items()}
    counts = [res["counts"][k] for k in spiking] if record_neurons else None
    return RunResult(
        target=f"lava:{plan.tag}", timesteps=timesteps,
        predictions=np.argmax(res["outputs"], axis=1), outputs=res["outputs"],
        layer_stats=stats, input=plan.input, seconds=res["seconds"],
        input_macs=_macs(float_model, xb, plan.input),
        spike_counts=counts, extra=extra)

"""A converter-neutral description of a (rate or spiking) feed-forward network.

Why a separate description: the same converted network is run by snntorch, Brian2 and Lava and
written to NIR. Each of those reads this one structure instead of a torch module, so a backend
never re-derives weights, thresholds or shapes on its own.

A model is a list of :class:`SNNLayer`. A layer is a chain of linear *ops* (``linear``,
``conv2d``, ``avgpool2d``, ``flatten``) followed by one population of neurons, or by nothing
(the read-out layer). Per time step ``t`` a spiking layer computes::

    I[t] = ops(s_prev[t])                    # synaptic input, biases included
    c[t] = alpha * c[t-1] + I[t]             # current; alpha = 0 (IF, LIF): c = I
    v[0] = v_init * theta                    # before the first step (c[0] = 0)
    v[t] = beta * v[t-1] + c[t] - theta * s[t-1]    (reset="subtract")
    v[t] = beta * v[t-1] * (1 - s[t-1]) + c[t]      (reset="zero")
    s[t] = v[t] > theta

which is snntorch's ``Leaky`` with its default ``reset_delay=True``: the reset of a spike at
``t`` is applied at ``t + 1`` (for IF, beta = 1, this is exactly "subtract right after the
spike"). ``alpha > 0`` (kind ``CubaLIF``) is NIR's current-based LIF (snntorch's ``Synaptic``,
Norse's ``LIFCell``). ``v_init = 0.5`` (the converter's default) starts each neuron half-way
to threshold, so an IF neuron's spike count over T steps rounds ``T * rate`` instead of
flooring it (Bu et al., ICLR 2022): first spikes come earlier and deep networks need far fewer
steps. A read-out layer (``neuron is None``) integrates its input without spikes,
``v[t] = leak * v[t-1] + I[t]`` (``leak = 1``, the converter's read-out: no leak; ``leak < 1``:
a NIR ``LI`` read-out); the prediction is ``argmax(v[T])``, for ``leak = 1`` the argmax of
``sum_t I[t]``. A model whose last layer spikes is decoded by spike count (ties go to the
lowest index).

Everything here is numpy (plus torch for shape inference and the composed matrices), with
no snntorch, Brian2 or Lava import.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from neurolocal.errors import NeurolocalError

__all__ = [
    "ConversionError",
    "LayerStats",
    "NEURON_KINDS",
    "Neuron",
    "OP_KINDS",
    "Op",
    "RESETS",
    "RunResult",
    "SNNLayer",
    "SNNModel",
    "UnsupportedLayerError",
    "ann_forward",
    "as_batch",
    "as_sequence",
    "layer_fanout",
    "layer_matrix",
    "torch_ops",
]

OP_KINDS: tuple[str, ...] = ("linear", "conv2d", "avgpool2d", "flatten")
WEIGHTED_OPS: tuple[str, ...] = ("linear", "conv2d")
NEURON_KINDS: tuple[str, ...] = ("IF", "LIF", "CubaLIF")
RESETS: tuple[str, ...] = ("subtract", "zero")


class ConversionError(NeurolocalError, ValueError):
    """Input that cannot be converted or run; the message names the input and the fix."""


class UnsupportedLayerError(ConversionError):
    """A layer or NIR node the converter does not handle; names it and the supported set."""

    def __init__(self, what: str, name: str, kind: str, supported: Sequence[str], hint: str = ""):
        self.layer_name, self.layer_kind = name, kind
        self.supported = tuple(supported)
        msg = (
            f"unsupported {what} {name!r} ({kind}); supported: {', '.join(self.supported)}"
            + (f". {hint}" if hint else "")
            + ". Nothing was converted."
        )
        super().__init__(msg)


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    arr = np.asarray(v).reshape(-1)
    if arr.size == 1:
        return int(arr[0]), int(arr[0])
    return int(arr[0]), int(arr[1])


@dataclass
class Op:
    """One linear operation of a layer; shapes exclude the batch dimension.

    ``flatten`` uses unbatched dims (NIR's convention): ``start_dim=0`` flattens a (C, H, W)
    sample into a vector.
    """

    kind: str
    name: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    kernel_size: tuple[int, int] = (1, 1)
    start_dim: int = 0
    end_dim: int = -1

    def __post_init__(self) -> None:
        if self.kind not in OP_KINDS:
            raise UnsupportedLayerError("op", self.name, self.kind, OP_KINDS)
        self.in_shape = tuple(int(s) for s in self.in_shape)
        self.out_shape = tuple(int(s) for s in self.out_shape)
        self.stride, self.padding = _pair(self.stride), _pair(self.padding)
        self.dilation, self.kernel_size = _pair(self.dilation), _pair(self.kernel_size)
        if self.kind in WEIGHTED_OPS:
            if self.weight is None:
                raise ConversionError(f"op {self.name!r} ({self.kind}) has no weight")
            self.weight = np.asarray(self.weight)
            if self.bias is None:
                self.bias = np.zeros(self.weight.shape[0], self.weight.dtype)
            self.bias = np.asarray(self.bias)
            if self.bias.shape != (self.weight.shape[0],):
                raise ConversionError(
                    f"op {self.name!r}: bias shape {self.bias.shape} does not match "
                    f"weight shape {self.weight.shape}"
                )

    @property
    def weighted(self) -> bool:
        return self.kind in WEIGHTED_OPS


@dataclass
class Neuron:
    """Spiking neurons after a layer's ops: IF (beta = 1), LIF (beta < 1) or CubaLIF (a
    current with decay ``alpha``), one threshold per layer.

    ``v_init``: initial membrane potential as a fraction of the threshold, in [0, 1).
    """

    kind: str = "IF"
    threshold: float = 1.0
    beta: float = 1.0
    reset: str = "subtract"
    name: str = ""
    v_init: float = 0.0
    alpha: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in NEURON_KINDS:
            raise ConversionError(f"neuron kind {self.kind!r}: choose one of {NEURON_KINDS}")
        if self.reset not in RESETS:
            raise ConversionError(f"reset {self.reset!r}: choose one of {RESETS}")
        self.threshold, self.beta = float(self.threshold), float(self.beta)
        if not (math.isfinite(self.threshold) and self.threshold > 0):
            raise ConversionError(f"neuron {self.name!r}: threshold must be > 0, "
                                  f"got {self.threshold}")
        if not 0.0 <= self.beta <= 1.0:
            raise ConversionError(f"neuron {self.name!r}: beta must be in [0, 1], got {self.beta}")
        self.v_init = float(self.v_init)
        if not 0.0 <= self.v_init < 1.0:
            raise ConversionError(f"neuron {self.name!r}: v_init is a fraction of the threshold "
                                  f"in [0, 1), got {self.v_init}")
        if self.kind == "IF" and self.beta != 1.0:
            raise ConversionError(f"neuron {self.name!r}: IF neurons have beta = 1 "
                                  f"(got {self.beta}); use kind='LIF' for a leak")
        self.alpha = float(self.alpha)
        if not 0.0 <= self.alpha <= 1.0:
            raise ConversionError(f"neuron {self.name!r}: alpha must be in [0, 1], got "
                                  f"{self.alpha}")
        if self.alpha and self.kind != "CubaLIF":
            raise ConversionError(f"neuron {self.name!r}: a current decay alpha = "
                                  f"{self.alpha} needs kind='CubaLIF'")


@dataclass
class SNNLayer:
    """Linear ops then a neuron population (``neuron=None``: a non-spiking read-out)."""

    name: str
    ops: list[Op]
    neuron: Neuron | None = None
    #: normalisation factor: the ANN activation that maps to one spike per step (1 = none)
    scale: float = 1.0
    #: read-out only: membrane decay per step (1 = no leak, the accumulated input)
    leak: float = 1.0
    #: recurrent synapses (n_out, n_out): the layer's own spikes of the previous step, weighted
    #: into this step's input beside ``ops`` (snntorch's RLeaky with ``all_to_all=True``)
    recurrent: np.ndarray | None = None

    @property
    def in_shape(self) -> tuple[int, ...]:
        return self.ops[0].in_shape

    @property
    def out_shape(self) -> tuple[int, ...]:
        return self.ops[-1].out_shape

    @property
    def n_in(self) -> int:
        return int(np.prod(self.in_shape))

    @property
    def n_out(self) -> int:
        return int(np.prod(self.out_shape))

    @property
    def spiking(self) -> bool:
        return self.neuron is not None

    def weighted_ops(self) -> list[Op]:
        return [op for op in self.ops if op.weighted]


def _check_recurrent(layer: SNNLayer) -> None:
    """Recurrent synapses: a finite (n_out, n_out) matrix on a spiking layer."""
    if layer.recurrent is None:
        return
    rec = np.asarray(layer.recurrent)
    if layer.neuron is None:
        raise ConversionError(f"layer {layer.name!r}: the read-out has no spikes to feed back; "
                              "recurrent synapses belong to a spiking layer")
    if rec.shape != (layer.n_out, layer.n_out):
        raise ConversionError(f"layer {layer.name!r}: recurrent weights of shape {rec.shape}, "
                              f"expected ({layer.n_out}, {layer.n_out}) (from its own neurons "
                              "to its own neurons)")
    if not np.issubdtype(rec.dtype, np.number) or not np.all(np.isfinite(rec)):
        raise ConversionError(f"layer {layer.name!r}: recurrent weights must be finite numbers")
    layer.recurrent = rec


@dataclass
class SNNModel:
    """The whole network: input shape (unbatched), layers, free-form metadata."""

    input_shape: tuple[int, ...]
    layers: list[SNNLayer]
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.input_shape = tuple(int(s) for s in self.input_shape)
        self.validate()

    def validate(self) -> None:
        """Check that shapes chain and names are unique; raise ConversionError otherwise."""
        if not self.layers:
            raise ConversionError("the network has no layers (nothing to convert)")
        shape = self.input_shape
        names: set[str] = set()
        for i, layer in enumerate(self.layers):
            if not layer.ops:
                raise ConversionError(f"layer {layer.name!r} has no ops")
            for op in layer.ops:
                if op.in_shape != shape:
                    raise ConversionError(
                        f"layer {layer.name!r}, op {op.name!r}: expects input {op.in_shape}, "
                        f"gets {shape}"
                    )
                shape = op.out_shape
                if op.name in names:
                    raise ConversionError(f"duplicate op name {op.name!r}")
                names.add(op.name)
            if layer.neuron is None and i != len(self.layers) - 1:
                raise ConversionError(
                    f"layer {layer.name!r} has no neurons but is not the last layer; only the "
                    "read-out layer may be non-spiking"
                )
            _check_recurrent(layer)
            if not 0.0 <= float(layer.leak) <= 1.0 or (layer.neuron is not None
                                                       and layer.leak != 1.0):
                raise ConversionError(f"layer {layer.name!r}: leak {layer.leak} (a read-out's "
                                      "membrane decay, in [0, 1]; spiking layers use beta)")

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.layers[-1].out_shape

    @property
    def recurrent(self) -> bool:
        """Whether any layer has recurrent synapses."""
        return any(layer.recurrent is not None for layer in self.layers)

    @property
    def n_outputs(self) -> int:
        return int(np.prod(self.output_shape))

    @property
    def readout(self) -> str:
        """``"membrane"`` (non-spiking last layer) or ``"spikes"`` (spike-count decoding)."""
        return "spikes" if self.layers[-1].spiking else "membrane"

    def copy(self) -> SNNModel:
        return copy.deepcopy(self)

    def summary(self) -> str:
        """One line per layer: name, ops, shape, neuron and threshold (print it)."""
        rows = [f"input {self.input_shape}"]
        for layer in self.layers:
            ops = "+".join(op.kind for op in layer.ops)
            if layer.neuron is None:
                neu = ("read-out (accumulated membrane)" if layer.leak == 1.0 else
                       f"read-out (leaky membrane, leak={layer.leak:.4g})")
            else:
                n = layer.neuron
                neu = (f"{n.kind} theta={n.threshold:.4g} beta={n.beta:.4g} reset={n.reset}"
                       + (f" alpha={n.alpha:.4g}" if n.alpha else "")
                       + (f" v_init={n.v_init:g}" if n.v_init else ""))
            if layer.recurrent is not None:
                ops += "+recurrent"
            rows.append(f"{layer.name:>8}: {ops:<28} -> {layer.out_shape}  {neu}")
        return "\n".join(rows)


# --------------------------------------------------------------------------------------------
# torch views of the ops (shared by snntorch, the ANN reference and matrix composition)
# --------------------------------------------------------------------------------------------


def _torch():
    import torch

    return torch


def torch_ops(layer: SNNLayer, *, dtype: Any = None, device: Any = "cpu") -> Any:
    """The layer's ops as a ``torch.nn.Sequential`` acting on batched tensors."""
    torch = _torch()
    nn = torch.nn
    dtype = dtype or torch.float32
    mods: list[Any] = []
    for op in layer.ops:  # built in ``dtype``: float64 weights are not rounded to float32
        if op.kind == "linear":
            m = nn.Linear(op.weight.shape[1], op.weight.shape[0], dtype=dtype)
        elif op.kind == "conv2d":
            m = nn.Conv2d(
                op.weight.shape[1] * op.groups, op.weight.shape[0], op.weight.shape[2:],
                stride=op.stride, padding=op.padding, dilation=op.dilation, groups=op.groups,
                dtype=dtype,
            )
        elif op.kind == "avgpool2d":
            m = nn.AvgPool2d(op.kernel_size, stride=op.stride, padding=op.padding)
        else:  # flatten: unbatched dims -> batched dims
            end = op.end_dim if op.end_dim < 0 else op.end_dim + 1
            m = nn.Flatten(op.start_dim + 1, end)
        if op.weighted:
            with torch.no_grad():
                m.weight.copy_(torch.from_numpy(np.asarray(op.weight, np.float64)))
                m.bias.copy_(torch.from_numpy(np.asarray(op.bias, np.float64)))
            m.requires_grad_(False)
        mods.append(m)
    return nn.Sequential(*mods).to(device=device, dtype=dtype).eval()


def as_batch(model: SNNModel, x: Any) -> np.ndarray:
    """Reshape ``x`` (N, ...) to (N, *model.input_shape) when the sizes agree, else explain."""
    arr = np.asarray(x)
    n_in = int(np.prod(model.input_shape))
    if arr.ndim >= 1 and arr.ndim == len(model.input_shape) and arr.size == n_in:
        arr = arr[None]  # a single sample
    if arr.ndim < 1 or arr.size != arr.shape[0] * n_in:
        raise ConversionError(
            f"input of shape {arr.shape} does not fit the network input {model.input_shape} "
            f"(expected (N, {', '.join(map(str, model.input_shape))}) or (N, {n_in}))"
        )
    return arr.reshape((arr.shape[0], *model.input_shape))


def as_sequence(model: Any, x: Any, timesteps: int) -> tuple[np.ndarray, int]:
    """``x`` (N, S, ...) as (N, S, *input_shape) and the steps each element is shown for.

    A sequence input is a current that changes: element ``s`` drives the first layer during
    steps ``s * hold .. (s + 1) * hold - 1`` with ``hold = T / S`` (row-by-row MNIST: 28 rows).
    """
    arr = np.asarray(x)
    n_in = int(np.prod(model.input_shape))
    if arr.ndim < 2 or arr.size != arr.shape[0] * arr.shape[1] * n_in:
        raise ConversionError(
            f"sequence input of shape {arr.shape} does not fit the network input "
            f"{model.input_shape}: expected (N, steps, {', '.join(map(str, model.input_shape))})")
    steps = int(arr.shape[1])
    if steps < 1 or int(timesteps) % steps:
        raise ConversionError(f"timesteps={timesteps} is not a multiple of the {steps} sequence "
                              f"steps: each element is shown for T / steps steps; use e.g. "
                              f"-T {steps * max(1, round(int(timesteps) / max(steps, 1)))}")
    return arr.reshape((arr.shape[0], steps, *model.input_shape)), int(timesteps) // steps


def ann_forward(
    model: SNNModel, x: Any, *, batch_size: int = 512, activations: bool = False
) -> Any:
    """Rate (ReLU) reference of the model: logits (N, n_out), optionally every layer's output.

    Spiking layers act as ReLU units divided by their threshold, the read-out is linear, so a
    normalised model returns the same logits as the ANN it came from.
    """
    torch = _torch()
    if model.recurrent:
        raise ConversionError("ann_forward: a recurrent layer has no one-pass rate (ReLU) "
                              "counterpart; run the spiking model (run_snntorch) instead")
    xb = as_batch(model, x).astype(np.float32)
    seqs = [torch_ops(layer) for layer in model.layers]
    outs: list[list[np.ndarray]] = [[] for _ in model.layers]
    with torch.no_grad():
        for start in range(0, len(xb), batch_size):
            h = torch.from_numpy(xb[start:start + batch_size])
            for i, (layer, seq) in enumerate(zip(model.layers, seqs)):
                h = seq(h)
                if layer.neuron is not None:
                    h = torch.relu(h) / layer.neuron.threshold
                if activations or i == len(model.layers) - 1:
                    outs[i].append(h.numpy())
    stacked = [np.concatenate(o) if o else None for o in outs]
    logits = stacked[-1].reshape(len(xb), -1)
    return (logits, stacked) if activations else logits


def layer_matrix(layer: SNNLayer) -> tuple[Any, np.ndarray]:
    """The layer's ops as one affine map: (scipy CSR matrix (n_out, n_in), bias (n_out,)).

    Why: Brian2 synapses and Lava ``Dense`` need one weight per (pre, post) pair; pooling and
    flattening are linear, so a pool followed by a conv is one sparse matrix. Computed in
    float64 by pushing basis vectors through the ops, cached on the layer.
    """
    import scipy.sparse as sp

    cached = getattr(layer, "_matrix_cache", None)
    # the cache holds the arrays it was computed from: replaced arrays invalidate it
    key = tuple(a for op in layer.ops for a in (op.weight, op.bias))
    if cached is not None and len(cached[0]) == len(key) and all(
        a is b for a, b in zip(cached[0], key)
    ):
        return cached[1], cached[2]
    if len(layer.ops) == 1 and layer.ops[0].kind == "linear":
        op = layer.ops[0]
        mat = sp.csr_matrix(np.asarray(op.weight, np.float64))
        bias = np.asarray(op.bias, np.float64).copy()
    else:
        torch = _torch()
        seq = torch_ops(layer, dtype=torch.float64)
        n_in = layer.n_in
        with torch.no_grad():
            bias = seq(torch.zeros((1, *layer.in_shape), dtype=torch.float64)).reshape(-1)
            cols = []
            chunk = max(1, min(n_in, 4_000_000 // max(layer.n_out, 1)))
            for start in range(0, n_in, chunk):
                stop = min(n_in, start + chunk)
                basis = torch.zeros((stop - start, n_in), dtype=torch.float64)
                basis[torch.arange(stop - start), torch.arange(start, stop)] = 1.0
                out = seq(basis.reshape((stop - start, *layer.in_shape))).reshape(stop - start, -1)
                block = (out - bias).numpy().T  # (n_out, chunk)
                block[np.abs(block) < 1e-12 * max(1.0, float(np.abs(block).max()))] = 0.0
                cols.append(sp.csc_matrix(block))
        mat = sp.hstack(cols).tocsr()
        bias = bias.numpy().copy()
    mat.eliminate_zeros()
    layer._matrix_cache = (key, mat, bias)  # type: ignore[attr-defined]
    return mat, bias


def op_matrices(layer: SNNLayer) -> list[Any]:
    """The layer's ops as one sparse matrix each (flatten is none), in the order applied:
    their product is :func:`layer_matrix` without the biases. A pool then a conv costs the
    pool's and the conv's weights this way, instead of k^2 times the conv's."""
    import scipy.sparse as sp

    out = []
    for op in layer.ops:
        if op.kind != "flatten":
            out.append(layer_matrix(SNNLayer(f"{layer.name}.{op.name}", [dataclasses.replace(
                op, bias=None if op.weighted else op.bias)]))[0])
    return out or [sp.identity(layer.n_in, format="csr")]


def layer_fanout(layer: SNNLayer) -> np.ndarray:
    """Number of post-synaptic targets of each pre-synaptic neuron (synaptic ops per spike)."""
    mat, _ = layer_matrix(layer)
    return np.diff(mat.tocsc().indptr).astype(np.int64)


# --------------------------------------------------------------------------------------------
# Results shared by every backend
# --------------------------------------------------------------------------------------------


@dataclass
class LayerStats:
    """Per-inference activity of one layer (means over the samples run)."""

    name: str
    neurons: int
    spikes: float  # spikes emitted by this layer's neurons (0 for the read-out)
    synops: float  # synaptic events into this layer: pre-synaptic spikes x fan-out (recurrent
    # synapses included: the layer's own spikes x their recurrent fan-out)
    rate: float  # spikes per neuron per time step

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class RunResult:
    """What a backend returns: predictions, read-out values, per-layer spikes and synops."""

    target: str
    timesteps: int
    predictions: np.ndarray
    outputs: np.ndarray
    layer_stats: list[LayerStats]
    input: str = "current"
    #: multiply-accumulates per inference to compute a constant input current once (0 for spikes)
    input_macs: float = 0.0
    seconds: float = 0.0
    #: per spiking layer, (N, neurons) spike counts when requested
    spike_counts: list[np.ndarray] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def synops_per_inference(self) -> float:
        return float(sum(s.synops for s in self.layer_stats))

    @property
    def spikes_per_inference(self) -> float:
        return float(sum(s.spikes for s in self.layer_stats))

    def accuracy(self, labels: Any) -> float:
        """Fraction of predictions equal to ``labels`` (0..1)."""
        labels = np.asarray(labels).reshape(-1)
        if labels.shape != self.predictions.shape:
            raise ConversionError(
                f"{len(labels)} labels for {len(self.predictions)} predictions"
            )
        return float(np.mean(self.predictions == labels))

    def table(self) -> str:
        """Per-layer spikes and synaptic operations per inference, as text."""
        lines = [f"{'layer':>10} {'neurons':>8} {'spikes':>10} {'rate':>7} {'synops':>12}"]
        for s in self.layer_stats:
            lines.append(f"{s.name:>10} {s.neurons:>8d} {s.spikes:>10.1f} {s.rate:>7.4f} "
                         f"{s.synops:>12.0f}")
        lines.append(f"{'total':>10} {'':>8} {self.spikes_per_inference:>10.1f} {'':>7} "
                     f"{self.synops_per_inference:>12.0f}")
        if self.input_macs:
            lines.append(f"input current: {self.input_macs:.0f} MACs per inference (once)")
        return "\n".join(lines)


def make_stats(
    model: SNNModel,
    spike_sums: list[np.ndarray],
    input_spike_sum: np.ndarray | None,
    n_samples: int,
    timesteps: int,
) -> list[LayerStats]:
    """Layer stats from per-neuron spike sums over all samples (one array per spiking layer).

    ``input_spike_sum`` is the per-input-neuron spike sum for spike input (None for current).
    """
    stats = []
    spiking_iter = iter(spike_sums)
    pre = input_spike_sum
    for layer in model.layers:
        fan = layer_fanout(layer)
        synops = 0.0 if pre is None else float(np.dot(pre.reshape(-1), fan)) / n_samples
        if layer.spiking:
            own = next(spiking_iter).reshape(-1)
            spikes = float(own.sum()) / n_samples
            if layer.recurrent is not None:  # its own spikes, to the recurrent synapses
                rec_fan = np.count_nonzero(np.asarray(layer.recurrent), axis=0)
                synops += float(np.dot(own, rec_fan)) / n_samples
            stats.append(LayerStats(layer.name, layer.n_out, spikes, synops,
                                    spikes / (layer.n_out * timesteps)))
            pre = own
        else:
            stats.append(LayerStats(layer.name, layer.n_out, 0.0, synops, 0.0))
    return stats


def input_macs(model: SNNModel, x: np.ndarray) -> float:
    """MACs per inference for a constant current input: non-zero inputs x fan-out, once."""
    fan = layer_fanout(model.layers[0])
    nz = (np.asarray(x).reshape(len(x), -1) != 0).astype(np.float64)
    return float((nz @ fan).mean()) if len(x) else 0.0

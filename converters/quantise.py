"""Loihi 2 fixed-point quantisation of a converted network, with an error report per layer.

Why: Loihi 2 (and Lava's bit-accurate ``fixed_pt`` models) store 8-bit weights with one shift
per synapse group, a 17-bit threshold and 24-bit neuron state. This module maps each layer onto
those formats and says how much each mapping costs, and :func:`simulate_fixed` reproduces
Lava's integer arithmetic bit for bit (checked against Lava in the tests), batched, so the
effect of quantisation can be measured on a whole test set in seconds.

The mapping of layer ``l`` (composed float matrix ``M``, bias ``b``, threshold ``theta``)::

    S        = K / max|M|               K = 254 (mixed signs: Lava drops the LSB), 255 otherwise
    w        = round(M * S)             8-bit weights (even for mixed-sign layers)
    e        = weight_exp               a_in = (sum_j w_ij s_j) * 2**e   (a floor shift if e < 0)
    vth      = round(theta * S * c * 2**e)      threshold, c = 255 for an 8-bit graded input
    bias     = round(b * S * c * 2**e * 64)     = bias_mant * 2**bias_exp   (v is a_in << 6)
    dv       = round((1 - beta) * 4096)         voltage decay
    du       = 4095 - round(alpha * 4096)      current decay: 4095 (u = a_in exactly) for IF/LIF
    v0       = round(v_init * vth * 64)         initial membrane, set at every window start

``e`` is chosen so that ``vth`` lands in (vth_target / 2, vth_target] (default 2**12): large
enough for a fine threshold and bias, small enough that ``a_in`` stays inside 16 bits for
neurons driven up to ~8x their threshold per step. Limits come from
``neurolocal.hardware.profiles.LOIHI2``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from neurolocal.hardware.encoding import poisson_spikes
from neurolocal.hardware.lava.fixed_point import loadable_weights

from .model import (
    ConversionError,
    Neuron,
    Op,
    RunResult,
    SNNLayer,
    SNNModel,
    as_sequence,
    input_macs,
    layer_matrix,
    make_stats,
)

__all__ = [
    "QuantLayer",
    "QuantModel",
    "check_current_bias",
    "dequantise",
    "graded_input",
    "input_current",
    "quantise",
    "simulate_fixed",
    "sweep_fixed",
]

INPUT_BITS = 8  #: graded spikes carrying the input current (MNIST pixels are 8-bit)


def _profile():
    from neurolocal.hardware.profiles import LOIHI2

    return LOIHI2


@dataclass
class QuantLayer:
    """One layer in Loihi 2's formats. ``program`` is the integer synaptic map (no biases):
    ``("sumpool", kernel, stride, padding)``, ``("flatten",)``, ``("linear", W)``,
    ``("conv2d", K, stride, padding, dilation, groups)`` with integer-valued weights."""

    name: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    program: list[tuple[Any, ...]]
    weight_exp: int
    bias_mant: np.ndarray
    bias_exp: np.ndarray
    vth: int | None  # None: the non-spiking read-out
    dv: int
    du: int
    reset: str
    sign_mode: str
    scale: float  # S * c * 2**e: float units -> a_in units
    num_message_bits: int  # 0: binary spikes in; INPUT_BITS: graded input current
    v0: int = 0  # initial membrane in v units (v_init * vth << 6)
    leak: float = 1.0  # read-out: membrane decay per step, applied on the host
    errors: dict[str, float] = field(default_factory=dict)
    _matrix: np.ndarray | None = field(default=None, repr=False)
    #: recurrent synapses: integer weights (n_out, n_out) on binary spikes, and their shift
    recurrent: np.ndarray | None = None
    recurrent_exp: int = 0

    @property
    def n_in(self) -> int:
        return int(np.prod(self.in_shape))

    @property
    def n_out(self) -> int:
        return int(np.prod(self.out_shape))

    @property
    def bias_eff(self) -> np.ndarray:
        """Bias in v units (``bias_mant << bias_exp``), as Lava's ``scale_bias`` computes it."""
        return np.left_shift(self.bias_mant.astype(np.int64), self.bias_exp.astype(np.int64))

    def matrix(self) -> np.ndarray:
        """The integer weight matrix (n_out, n_in) that Lava's ``Dense`` receives."""
        if self._matrix is None:
            import torch

            eye = torch.eye(self.n_in, dtype=torch.float64)
            cols = []
            for start in range(0, self.n_in, 2048):
                basis = eye[start:start + 2048].reshape((-1, *self.in_shape))
                cols.append(_run_program(self.program, basis, self.out_shape).reshape(
                    len(basis), -1).numpy().T)
            mat = np.concatenate(cols, axis=1)
            self._matrix = np.rint(mat).astype(np.int32)
        return self._matrix

    def factors(self) -> list[Any]:
        """The integer map as one sparse matrix per program step (sum-pool, conv, linear;
        flatten is no matrix), in the order applied; their product is :meth:`matrix`
        exactly (checked). Why: a pool followed by a conv composes into a matrix with k^2
        times the conv's weights; applied as factors the same integers cost far less."""
        import scipy.sparse as sp
        import torch

        out, shape = [], self.in_shape
        for step in self.program:
            probe = _run_program([step], torch.zeros((1, *shape), dtype=torch.float64), None)
            nxt = tuple(probe.shape[1:])
            if step[0] != "flatten":
                n_in = int(np.prod(shape))
                eye = torch.eye(n_in, dtype=torch.float64).reshape((n_in, *shape))
                m = _run_program([step], eye, None).reshape(n_in, -1).numpy().T
                out.append(sp.csr_matrix(np.rint(m).astype(np.int32)))
            shape = nxt
        prod = out[0]
        for f in out[1:]:
            prod = f @ prod
        if (prod != sp.csr_matrix(self.matrix())).nnz:
            return [sp.csr_matrix(self.matrix())]
        return out


@dataclass
class QuantModel:
    """A network in Loihi 2 formats plus how its input is delivered."""

    input_shape: tuple[int, ...]
    layers: list[QuantLayer]
    input: str  # "current" (8-bit graded spikes) or "poisson" (binary spikes)
    readout: str
    metadata: dict[str, Any] = field(default_factory=dict)

    def error_table(self) -> str:
        """Per-layer quantisation report (print it)."""
        head = (f"{'layer':>8} {'sign':>6} {'w_exp':>5} {'vth':>7} {'dv':>5} "
                f"{'w_rel_rms':>9} {'w_max_abs':>9} {'zeroed':>7} {'thr_rel':>9} "
                f"{'bias_max':>9} {'beta_err':>9}")
        rows = [head]
        for q in self.layers:
            e = q.errors
            rows.append(
                f"{q.name:>8} {q.sign_mode[:6]:>6} {q.weight_exp:>5d} "
                f"{q.vth if q.vth is not None else '-':>7} {q.dv:>5d} "
                f"{e['weight_rel_rms']:>9.2e} {e['weight_max_abs_rel']:>9.2e} "
                f"{e['weights_zeroed']:>7.3f} {e.get('threshold_rel', 0.0):>9.2e} "
                f"{e['bias_max_abs_rel']:>9.2e} {e.get('beta_abs', 0.0):>9.2e}"
            )
        rows.append("w_rel_rms: ||W_q - W|| / ||W||; w_max_abs: max|W_q - W| / max|W|; zeroed: "
                    "fraction of non-zero weights rounded to 0; thr_rel: |theta_q / theta - 1|; "
                    "bias_max: max|b_q - b| / theta; beta_err: |beta_q - beta|")
        return "\n".join(rows)

    def errors(self) -> list[dict[str, Any]]:
        """The report as data: one dict per layer."""
        return [{"layer": q.name, "weight_exp": q.weight_exp, "vth": q.vth, "dv": q.dv,
                 "sign_mode": q.sign_mode, **q.errors} for q in self.layers]


def _sign_mode(mat_abs_max: float, mn: float, mx: float) -> str:
    if mat_abs_max == 0 or mn >= 0:
        return "excitatory"
    if mx <= 0:
        return "inhibitory"
    return "mixed"


def _float_program(layer: SNNLayer) -> list[tuple[Any, ...]] | None:
    """The layer's ops with avg-pools as sum-pools and their 1/k^2 moved into the one weighted
    op (exact: pooling is linear). None when the layer has several weighted ops."""
    weighted = layer.weighted_ops()
    if len(weighted) != 1:
        return None
    factor = 1.0
    for op in layer.ops:
        if op.kind == "avgpool2d":
            factor /= op.kernel_size[0] * op.kernel_size[1]
    prog: list[tuple[Any, ...]] = []
    for op in layer.ops:
        if op.kind == "avgpool2d":
            prog.append(("sumpool", op.kernel_size, op.stride, op.padding))
        elif op.kind == "flatten":
            prog.append(("flatten",))
        elif op.kind == "linear":
            prog.append(("linear", np.asarray(op.weight, np.float64) * factor))
        else:
            prog.append(("conv2d", np.asarray(op.weight, np.float64) * factor, op.stride,
                         op.padding, op.dilation, op.groups))
    return prog


def _run_program(program: list[tuple[Any, ...]], x: Any, out_shape: tuple[int, ...] | None
                 ) -> Any:
    """Apply an integer program to a float64 batch (exact for integer data); ``out_shape``
    None keeps the last step's own shape."""
    import torch
    import torch.nn.functional as F

    h = x
    for step in program:
        kind = step[0]
        if kind == "sumpool":
            k, s, p = step[1], step[2], step[3]
            c = h.shape[1]
            ones = torch.ones((c, 1, *k), dtype=h.dtype, device=h.device)
            h = F.conv2d(h, ones, stride=s, padding=p, groups=c)
        elif kind == "flatten":
            h = h.reshape(h.shape[0], -1)
        elif kind == "linear":
            w = torch.as_tensor(step[1], dtype=h.dtype, device=h.device)
            h = h.reshape(h.shape[0], -1) @ w.T
        else:
            w = torch.as_tensor(step[1], dtype=h.dtype, device=h.device)
            h = F.conv2d(h, w, stride=step[2], padding=step[3], dilation=step[4],
                         groups=step[5])
    return h if out_shape is None else h.reshape((h.shape[0], *out_shape))


def _choose_exp(a: float, target: float, lo: int, hi: int) -> int:
    if a <= 0 or not math.isfinite(a):
        return 0
    return int(min(hi, max(lo, math.floor(math.log2(target / a)))))


def _weight_range(mode: str) -> tuple[int, int, int]:
    """(lo, hi, k_max) of a sign mode's integer weights; ``k_max`` maps to ``max|M|``."""
    wf = _profile().weights
    if mode == "mixed":
        step = 2 ** wf.mixed_sign_dropped_lsbs
        hi = (wf.range_mixed[1] // step) * step
        return -hi, hi, hi
    if mode == "excitatory":
        lo, hi = wf.range_excitatory
        return lo, hi, hi
    lo, hi = wf.range_inhibitory
    return lo, hi, -lo


def _fixed_bias(bias: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-neuron ``(mantissa, exponent)`` of a bias in v units (``a_in << 6``)."""
    lif = _profile().lif
    b_lo, b_hi = lif.bias_mant_range
    be_hi = lif.bias_exp_range[1]
    b_v = bias * scale * 2.0**lif.activation_shift
    b_exp = np.zeros(len(b_v), np.int64)
    mag = np.abs(np.rint(b_v))
    while True:
        over = (mag / 2.0**b_exp > max(b_hi, -b_lo)) & (b_exp < be_hi)
        if not over.any():
            break
        b_exp[over] += 1
    b_mant = np.clip(np.rint(b_v / 2.0**b_exp), b_lo, b_hi)
    return b_mant.astype(np.int32), b_exp.astype(np.int32)


def _layer_errors(q: QuantLayer, layer: SNNLayer, dense: np.ndarray, bias: np.ndarray,
                  s_w: float, c: float) -> dict[str, float]:
    """The error report of one layer, in float units of the original layer."""
    lif = _profile().lif
    w_int = q.matrix()
    amax = float(np.abs(dense).max()) if dense.size else 0.0
    theta = layer.neuron.threshold if layer.neuron is not None else 1.0
    w_back = w_int / s_w
    nz = dense != 0
    err = {
        "weight_rel_rms": float(np.linalg.norm(w_back - dense) / max(np.linalg.norm(dense),
                                                                      1e-300)),
        "weight_max_abs_rel": float(np.abs(w_back - dense).max() / max(amax, 1e-300)),
        "weights_zeroed": float(np.mean(w_int[nz] == 0)) if nz.any() else 0.0,
        "bias_max_abs_rel": float(np.abs(q.bias_eff / (q.scale * 2.0**lif.activation_shift)
                                         - bias).max() / theta) if layer.n_out else 0.0,
        "weight_scale": float(s_w),
    }
    if layer.neuron is not None:
        err["threshold_rel"] = abs(q.vth / q.scale / theta - 1.0)
        beta_q = 1.0 - q.dv / 2**lif.decay_bits
        err["beta_abs"] = abs(beta_q - layer.neuron.beta)
        err["alpha_abs"] = abs((2**lif.decay_bits - 1 - q.du) / 2**lif.decay_bits
                               - layer.neuron.alpha)
        err["v_init_abs"] = abs(q.v0 / (q.vth * 2.0**lif.vth_shift) - layer.neuron.v_init)
    # worst case per-step input if every pre-synaptic neuron fired (and inputs at 255)
    err["a_in_worst"] = float(np.abs(w_int).sum(axis=1).max(initial=0) * c * 2.0**q.weight_exp)
    return err


def _quantise_layer(layer: SNNLayer, graded: bool, vth_target: int) -> QuantLayer:
    """One layer in Loihi 2's formats (see the module docstring for the mapping)."""
    prof = _profile()
    lif = prof.lif
    e_lo, e_hi = prof.weights.weight_exp_range or (-8, 7)
    mat, bias = layer_matrix(layer)
    dense = mat.toarray()
    amax = float(np.abs(dense).max()) if dense.size else 0.0
    mode = _sign_mode(amax, float(dense.min(initial=0.0)), float(dense.max(initial=0.0)))
    lo, hi, k_max = _weight_range(mode)
    s_w = k_max / amax if amax > 0 else 1.0
    c = float(2**INPUT_BITS - 1) if graded else 1.0
    theta = layer.neuron.threshold if layer.neuron is not None else 1.0
    # the read-out is summed on the host: no threshold to resolve, keep a_in small
    e = (_choose_exp(theta * s_w * c, vth_target, e_lo, e_hi) if layer.neuron is not None
         else min(0, _choose_exp(s_w * c, vth_target, e_lo, e_hi)))
    vth = int(round(theta * s_w * c * 2.0**e)) if layer.neuron is not None else None
    if vth is not None and not 1 <= vth <= lif.vth_range[1]:
        raise ConversionError(
            f"layer {layer.name!r}: threshold {vth} does not fit Loihi's {lif.vth_range[1]} "
            f"even with weight_exp={e}; the weights span too wide a range")
    # integer program: the op chain when it maps one-to-one, else the composed matrix
    prog = _float_program(layer)
    if prog is not None:
        prog = [(s[0], loadable_weights(s[1] * s_w, mode), *s[2:])
                if s[0] in ("linear", "conv2d") else s for s in prog]
    q = QuantLayer(
        name=layer.name, in_shape=layer.in_shape, out_shape=layer.out_shape,
        program=prog or [("linear", loadable_weights(dense * s_w, mode))],
        weight_exp=e, bias_mant=np.zeros(layer.n_out, np.int32),
        bias_exp=np.zeros(layer.n_out, np.int32), vth=vth, dv=0,
        du=2**lif.decay_bits - 1, reset=layer.neuron.reset if layer.neuron else "subtract",
        sign_mode=mode, scale=s_w * c * 2.0**e, num_message_bits=INPUT_BITS if graded else 0,
    )
    w_int = q.matrix()
    if prog is not None and (w_int.max(initial=0) > hi or w_int.min(initial=0) < lo):
        # overlapping pools summed several weights: quantise the composed matrix instead
        q.program = [("linear", loadable_weights(dense * s_w, mode))]
        q._matrix = None
    q.bias_mant, q.bias_exp = _fixed_bias(bias, q.scale)
    unity = 2**lif.decay_bits
    if layer.neuron is not None:
        q.dv = int(np.clip(round((1.0 - layer.neuron.beta) * unity), 0, unity - 1))
        q.du = int(np.clip(unity - 1 - round(layer.neuron.alpha * unity), 0, unity - 1))
        q.v0 = int(round(layer.neuron.v_init * vth * 2.0**lif.vth_shift))
    q.leak = float(layer.leak)
    q.errors = _layer_errors(q, layer, dense, bias, s_w, c)
    if layer.recurrent is not None:
        _quantise_recurrent(q, np.asarray(layer.recurrent, np.float64))
    return q


def _quantise_recurrent(q: QuantLayer, rec: np.ndarray) -> None:
    """Recurrent weights in the layer's a_in units with their own shift: a second synapse
    group into the same neurons, ``a_in += shift(R s_prev, e_r)``, ``R = round(rec * S_r)``
    with ``S_r * 2**e_r = q.scale``; ``e_r`` the smallest exponent that keeps ``R`` in 8 bits."""
    e_lo, e_hi = _profile().weights.weight_exp_range or (-8, 7)
    amax = float(np.abs(rec).max(initial=0.0))
    mode = _sign_mode(amax, float(rec.min(initial=0.0)), float(rec.max(initial=0.0)))
    lo, hi, k_max = _weight_range(mode)
    e_r = e_lo if amax == 0 else max(e_lo, math.ceil(math.log2(amax * q.scale / k_max)))
    if e_r > e_hi:
        raise ConversionError(
            f"layer {q.name!r}: recurrent weights up to {amax:g} need weight_exp {e_r} in the "
            f"layer's units, beyond Loihi's {e_hi}; the recurrent weights are too large "
            "beside the forward ones")
    s_r = q.scale / 2.0**e_r
    q.recurrent = loadable_weights(rec * s_r, mode).astype(np.int32)
    q.recurrent_exp = int(e_r)
    back = q.recurrent / s_r
    q.errors["recurrent_weight_rel_rms"] = float(np.linalg.norm(back - rec)
                                                 / max(np.linalg.norm(rec), 1e-300))
    q.errors["recurrent_weight_exp"] = float(e_r)


def check_current_bias(layer: SNNLayer) -> None:
    """A current-based layer's bias is filtered through its current (NIR's CubaLIF);
    Loihi's LIF adds biases to v: the two agree only without biases."""
    if layer.neuron is not None and layer.neuron.alpha:
        bias = layer_matrix(layer)[1]
        if np.any(bias != 0):
            raise ConversionError(
                f"layer {layer.name!r} is current-based (CubaLIF, alpha={layer.neuron.alpha:g})"
                " with a bias: Lava's LIF adds biases to v, not to the filtered current, so it "
                "cannot run this layer; use a network without biases in CubaLIF layers")


def quantise(
    model: SNNModel,
    *,
    input: str = "current",
    vth_target: int = 2**12,
) -> QuantModel:
    """Map a converted model onto Loihi 2's fixed-point formats; errors land in each layer.

    ``input="current"`` delivers the input as 8-bit graded spikes (``round(x * 255)``) every
    step, ``"poisson"`` as binary spikes. Raises ConversionError when a value cannot be
    represented (threshold beyond 17 bits even at the smallest weight exponent, say).
    """
    if input not in ("current", "poisson"):
        raise ConversionError(f"input {input!r}: choose 'current' or 'poisson'")
    for layer in model.layers:
        check_current_bias(layer)
    layers = [_quantise_layer(layer, idx == 0 and input == "current", vth_target)
              for idx, layer in enumerate(model.layers)]
    return QuantModel(model.input_shape, layers, input, model.readout,
                      {"vth_target": vth_target, "profile": _profile().name})


def graded_input(x: np.ndarray) -> np.ndarray:
    """The 8-bit graded spike values that carry an input current in [0, 1]: round(255 x)."""
    x = np.asarray(x, np.float64)
    if x.size and (x.min() < 0 or x.max() > 1):
        raise ConversionError(f"inputs must lie in [0, 1] for 8-bit graded spikes "
                              f"(got {x.min()}..{x.max()}); scale them first")
    return np.rint(x * (2**INPUT_BITS - 1)).astype(np.int64)


def input_current(q: QuantModel, x: Any) -> np.ndarray:
    """The first layer's synaptic input ``a_in`` (N, n_out) for a constant current, as Lava's
    fixed-point ``Dense`` computes it from the 8-bit graded pixels every step:
    ``shift(W round(255 x), weight_exp)`` (floor shift for a negative exponent), int64."""
    import torch

    layer = q.layers[0]
    xb = np.asarray(x)
    g = torch.from_numpy(graded_input(xb).astype(np.float64)).reshape((len(xb), *q.input_shape))
    a = _shift(_run_program(layer.program, g, layer.out_shape).reshape(len(xb), -1),
               layer.weight_exp)
    return a.numpy().astype(np.int64)


def _shift(a: Any, e: int) -> Any:
    import torch

    if e >= 0:
        return a * float(2**e)
    return torch.floor(a / float(2 ** (-e)))  # numpy right_shift floors, as Lava's Dense


def simulate_fixed(
    q: QuantModel,
    x: Any,
    timesteps: int,
    *,
    seed: int = 0,
    spikes: np.ndarray | None = None,
    batch_size: int = 256,
    return_counts: bool = False,
    model: SNNModel | None = None,
    sequence: bool = False,
) -> RunResult:
    """Lava ``fixed_pt`` arithmetic (Dense + our LIF reset) in batched integer-exact float64.

    Per step and layer: ``a_in = shift(W s)``; ``u = wrap24(a_in << 6)``;
    ``v = clip24(trunc(v * (4096 - dv) / 4096) + u + bias)``; the previous step's spikes then
    subtract ``vth << 6`` (reset="zero": v was zeroed before the decay instead); spike if
    ``v > vth << 6``. The read-out sums ``(a_in << 6) + bias`` over the steps. ``model`` (the
    float model) gives per-layer fan-outs for the synops report. ``extra`` counts 24-bit
    wraps of u and clips of v (low clips are strongly inhibited neurons, harmless for
    constant input) and the largest ``|a_in|`` per layer (Loihi's a_in is 16-bit).
    """
    return sweep_fixed(q, x, [timesteps], seed=seed, spikes=spikes, batch_size=batch_size,
                       return_counts=return_counts, model=model,
                       sequence=sequence)[int(timesteps)]


def _fixed_neurons(layer: QuantLayer, a: Any, u_old: Any, v: Any, prev: Any, bias: Any,
                   stats: dict[str, Any]) -> tuple[Any, Any, Any]:
    """One step of a LIF population in Lava's integers: (new u, new v, spikes)."""
    import torch

    lif = _profile().lif
    half = float(2 ** (lif.u_bits - 1))
    vmax = float(2 ** (lif.v_bits - 1) - 1)
    unity = float(2**lif.decay_bits)
    u = a * float(2**lif.activation_shift)
    if layer.du != unity - 1:  # a current that decays: u = trunc(u * (4095 - du) / 4096) + ...
        ud = u_old * (unity - 1 - layer.du)
        u = u + torch.sign(ud) * torch.floor(ud.abs() / unity)
    wrapped = torch.where(u > half, u - 2 * half, u)
    wrapped = torch.where(wrapped <= -half, u + 2 * half, wrapped)
    stats["u_wraps"] += int((wrapped != u).sum())
    v_old = v if layer.reset == "subtract" else v * (1.0 - prev)
    vt = v_old * (unity - layer.dv)
    vt = torch.sign(vt) * torch.floor(vt.abs() / unity)
    vt = vt + wrapped + bias
    stats["v_clips_high"] += int((vt > vmax).sum())
    stats["v_clips_low"] += int((vt < -vmax).sum())
    vt = vt.clamp(-vmax, vmax)
    vth_eff = float(layer.vth) * float(2**lif.vth_shift)
    if layer.reset == "subtract":
        vt = vt - prev * vth_eff
    return wrapped, vt, (vt > vth_eff).to(torch.float64)


def _fixed_batch(q: QuantModel, g: Any, sp_in: Any, b: int, ts: list[int],
                 stats: dict[str, Any], keep_counts: bool, hold: int = 0) -> dict[int, tuple]:
    """One batch for max(ts) steps: {T: (read-out, per-layer spike sums over the batch,
    per-layer counts (b, n) or None, input spike sum or None)}."""
    import torch

    sh = float(2**_profile().lif.activation_shift)
    biases = [torch.from_numpy(layer.bias_eff.astype(np.float64)) for layer in q.layers]
    recs = [None if layer.recurrent is None else torch.from_numpy(
        layer.recurrent.astype(np.float64)) for layer in q.layers]
    v = [torch.full((b, layer.n_out), float(layer.v0), dtype=torch.float64) for layer in q.layers]
    u = [torch.zeros((b, layer.n_out), dtype=torch.float64) for layer in q.layers]
    prev = [torch.zeros((b, layer.n_out), dtype=torch.float64) for layer in q.layers]
    cnt = [torch.zeros((b, layer.n_out), dtype=torch.float64)
           for layer in q.layers if layer.vth is not None]
    acc = torch.zeros((b, q.layers[-1].n_out), dtype=torch.float64)
    in_acc = None if sp_in is None else np.zeros(int(np.prod(q.input_shape)))
    const_a, snaps = None, {}
    for t in range(ts[-1]):
        h, k = None, 0
        if sp_in is not None:
            in_acc += sp_in[t].reshape(b, -1).sum(0).numpy()
        for i, layer in enumerate(q.layers):
            if i == 0 and sp_in is None:
                if const_a is None:  # a sequence (b, S, ...): every element's a_in, once
                    flat = g.reshape(-1, *g.shape[2:]) if hold else g
                    const_a = _shift(_run_program(layer.program, flat, layer.out_shape)
                                     .reshape(len(flat), -1), layer.weight_exp)
                    const_a = const_a.reshape(b, -1, const_a.shape[1]) if hold else const_a
                a = const_a[:, t // hold] if hold else const_a
            else:
                src = sp_in[t] if i == 0 else h.reshape((b, *layer.in_shape))
                a = _shift(_run_program(layer.program, src, layer.out_shape).reshape(b, -1),
                           layer.weight_exp)
            if layer.recurrent is not None:  # its own spikes of the previous step
                a = a + _shift(prev[i] @ recs[i].T, layer.recurrent_exp)
            if a.numel():
                stats["max_abs_a_in"][i] = max(stats["max_abs_a_in"][i], float(a.abs().max()))
            if layer.vth is None:  # the read-out sums on the host: no 24-bit wrap
                acc = (acc if layer.leak == 1.0 else acc * layer.leak) + (a * sh + biases[i])
                continue
            u[i], v[i], prev[i] = _fixed_neurons(layer, a, u[i], v[i], prev[i], biases[i],
                                                 stats)
            cnt[k] += prev[i]
            k, h = k + 1, prev[i]
        if t + 1 in ts:
            out = cnt[-1] if q.layers[-1].vth is not None else acc
            snaps[t + 1] = (out.numpy().copy(), [c.sum(0).numpy() for c in cnt],
                            [c.numpy().astype(np.int32) for c in cnt] if keep_counts else None,
                            None if in_acc is None else in_acc.copy())
    return snaps


def sweep_fixed(
    q: QuantModel,
    x: Any,
    timesteps: Any,
    *,
    seed: int = 0,
    spikes: np.ndarray | None = None,
    batch_size: int = 256,
    return_counts: bool = False,
    model: SNNModel | None = None,
    sequence: bool = False,
) -> dict[int, RunResult]:
    """:func:`simulate_fixed` read at every T in ``timesteps`` from one run of max(T) steps.

    ``sequence``: ``x`` is (N, S, ...), element ``s`` the current of steps ``s * T/S ...``."""
    import torch

    ts = sorted({int(t) for t in timesteps})
    if not ts or ts[0] < 1:
        raise ConversionError(f"timesteps must be integers >= 1, got {timesteps}")
    xb = np.asarray(x)
    n_in0 = int(np.prod(q.input_shape))
    hold = 0
    if sequence:
        if q.input != "current" or len(ts) > 1:
            raise ConversionError("a sequence runs as an 8-bit graded current (quantise with "
                                  "input='current'), read at one T")
        xb, hold = as_sequence(q, xb, ts[-1])
    else:
        xb = xb.reshape((len(xb), *q.input_shape)) if xb.size == len(xb) * n_in0 else xb
    n = len(xb)
    t0 = time.perf_counter()
    stats = {"u_wraps": 0, "v_clips_high": 0, "v_clips_low": 0,
             "max_abs_a_in": [0.0] * len(q.layers)}
    parts: list[dict[int, Any]] = []
    for start in range(0, n, batch_size):
        stop = min(n, start + batch_size)
        g = sp_in = None
        if q.input == "current":
            g = torch.from_numpy(graded_input(xb[start:stop]).astype(np.float64))
        else:
            sp = spikes[:ts[-1], start:stop] if spikes is not None else poisson_spikes(
                np.asarray(xb[start:stop], np.float32), ts[-1], seed=seed, start=start)
            sp_in = torch.from_numpy(np.asarray(sp, np.float64).reshape(
                (ts[-1], stop - start, *q.input_shape)))
        parts.append(_fixed_batch(q, g, sp_in, stop - start, ts, stats, return_counts, hold))
    seconds = time.perf_counter() - t0
    results = {}
    for t in ts:
        output = np.concatenate([p[t][0] for p in parts])
        n_spk = len(parts[0][t][1])
        sums = [sum(p[t][1][k] for p in parts) for k in range(n_spk)]
        counts = ([np.concatenate([p[t][2][k] for p in parts]) for k in range(n_spk)]
                  if return_counts else None)
        in_sum = None if q.input == "current" else sum(p[t][3] for p in parts)
        results[t] = RunResult(
            target="fixed-point emulation", timesteps=t,
            predictions=np.argmax(output, axis=1), outputs=output,
            layer_stats=make_stats(model, sums, in_sum, n, t) if model else [],
            input=q.input,
            input_macs=0.0 if not model or q.input != "current" else (
                input_macs(model, xb.reshape(-1, *q.input_shape)) * (xb.shape[1] if hold else 1)),
            seconds=seconds, spike_counts=counts, extra=dict(stats))
    return results


def dequantise(q: QuantModel) -> SNNModel:
    """The quantised network back in float units of the original model (one linear op per
    layer): run it on snntorch to see the quantisation effect without Lava's shift floors."""
    layers = []
    for i, ql in enumerate(q.layers):
        w = ql.matrix().astype(np.float64) * 2.0**ql.weight_exp / ql.scale
        if ql.num_message_bits:
            w = w * (2**INPUT_BITS - 1)  # graded input: pixel 255 carries x = 1
        b = ql.bias_eff / (ql.scale * 64.0)
        ops: list[Op] = []
        n_in_shape = q.input_shape if i == 0 else (ql.n_in,)
        if len(n_in_shape) > 1:
            ops.append(Op("flatten", f"flat_q{i + 1}", n_in_shape, (ql.n_in,)))
        ops.append(Op("linear", f"fc_q{i + 1}", (ql.n_in,), (ql.n_out,), weight=w, bias=b))
        neuron = None
        if ql.vth is not None:
            beta = 1.0 - ql.dv / 4096.0
            neuron = Neuron("IF" if ql.dv == 0 else "LIF", ql.vth / ql.scale, beta, ql.reset,
                            name=f"lif{i + 1}", v_init=ql.v0 / (ql.vth * 64.0))
        rec = None if ql.recurrent is None else (
            ql.recurrent.astype(np.float64) * 2.0**ql.recurrent_exp / ql.scale)
        layers.append(SNNLayer(ql.name, ops, neuron, recurrent=rec))
    return SNNModel(q.input_shape, layers, {"dequantised": True})

"""Test harness: run one plastic synapse group (``LearningDense``) in Lava's Loihi 2 simulator.

This is the smallest real Lava graph a lowered learning rule needs::

    io.source.RingBuffer (pre spikes) --s_in--> LearningDense --a_out--> LIF  (or io.sink)
    post spikes: io.source.RingBuffer or the LIF's s_out  --s_in_bap--> LearningDense

run with ``Loihi2SimCfg(select_tag=tag)``. It knows nothing about neurolocal's rule language:
it takes Loihi rule strings, validates them with
:func:`~neurolocal.hardware.lava.loihi_rule.validate_loihi_rule` and hands Lava the validated
canonical strings, never the raw input.

What ``tag="fixed_pt"`` does (lava-nc 0.10.0, ``PyLearningDenseModelBitApproximate``):

* **Weights** are integers. With the default ``SignMode.MIXED``, the weights are truncated once
  at the first time step, dropping ``8 - num_weight_bits + 1`` LSBs (so with
  ``num_weight_bits=8`` only even weights in [-256, 254] survive loading; an odd weight loses
  1). ``EXCITATORY``/``INHIBITORY`` keep all 8 bits ([0, 255] / [-255, 0]). The post-synaptic
  input is ``sum(w[:, spiking]) << weight_exp`` (arithmetic right shift for a negative
  ``weight_exp``). Learned weights are *not* truncated again; they are clipped to [-256, 255]
  (mixed) after every learning epoch, so they may become odd.
* **Learning** accumulates each product ``m * 2^e * dep * factors`` in a 16-bit accumulator in
  which one weight LSB is ``2^7``: the product of the integer factors times ``m`` is shifted
  right by ``max(0, sum(factor widths) + 4 - 15)`` (traces 7 bits, w/d/t 9, x0/y0 1) and left by
  ``e + 7``. So ``2^-2*x1*y0`` changes ``w`` by exactly ``x1/4`` LSBs before rounding, but a
  product of two traces is scaled by an extra ``2^-3``. The new weight is then stochastically
  rounded to an integer (seeded numpy generator) and clipped.
* **Traces** are 7-bit integers in [0, 127]. Each time step a trace becomes
  ``SR(trace * exp(-1/tau))`` (stochastic rounding) plus its impulse on a spike (clipped to
  127). The impulse's integer part is added exactly and its 8-bit fraction by stochastic
  rounding. ``tau = 0`` means "no memory" (the trace is reset every step).

``tag="floating_pt"`` runs the same equations in float64 without any rounding or clipping
(weights are not limited to [-256, 255] and a two-trace product is *not* scaled by 2^-3, so the
two tags differ by more than rounding for such rules). ``tau = 0`` makes a trace NaN there (and
hence every weight, if the rule reads it); this runner refuses that, while unused traces with
``tau = 0`` simply read back as NaN.

Timing (``t_epoch = 1``): at step ``t`` the pre/post spikes of step ``t`` are registered, the
traces are decayed and the impulses of step ``t`` added, then each term whose dependency fired
at ``t`` is applied with those trace values. A post LIF sees the weighted pre spikes one step
later (Dense buffers its output by one step).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from neurolocal.errors import ShapeError
from neurolocal.hardware.lava.compat import ensure_lava_importable
from neurolocal.hardware.lava.loihi_rule import RuleSet, rule_set_from_mapping
from neurolocal.hardware.profiles import LOIHI2

__all__ = ["PostLIF", "TraceParams", "run_learning_dense"]

TRACE_NAMES = ("x1", "x2", "y1", "y2", "y3")
Tag = Literal["fixed_pt", "floating_pt"]


@dataclass(frozen=True)
class TraceParams:
    """Trace impulses/time constants and learning-epoch settings of ``Loihi2FLearningRule``.

    Impulses are in trace units (fixed_pt: integer part exact, fraction with 8 bits by
    stochastic rounding; traces saturate at 127). ``tau`` is the e-folding time in steps.
    ``rng_seed`` seeds Lava's stochastic rounding (None = a fresh random seed every run).
    """

    x1_impulse: float = 0.0
    x1_tau: float = 0.0
    x2_impulse: float = 0.0
    x2_tau: float = 0.0
    y1_impulse: float = 0.0
    y1_tau: float = 0.0
    y2_impulse: float = 0.0
    y2_tau: float = 0.0
    y3_impulse: float = 0.0
    y3_tau: float = 0.0
    t_epoch: int = 1
    rng_seed: int | None = 0


@dataclass(frozen=True)
class PostLIF:
    """Parameters of a post-synaptic ``lava.proc.lif.process.LIF`` population.

    Passed to Lava unchanged, so they are in the units of the chosen tag: floating_pt takes
    ``du``/``dv`` as fractions in [0, 1]; fixed_pt takes 12-bit integers (0..4095, decay factor
    ``(4096 - du - 1) / 4096`` for u and ``(4096 - dv) / 4096`` for v) and a 17-bit ``vth``
    that is compared with ``v`` after a left shift by 6 bits.
    """

    du: float = 0.0
    dv: float = 0.0
    vth: float = 10.0
    bias_mant: float = 0.0
    bias_exp: int = 0


def _as_spikes(name: str, spikes: Any, n: int) -> np.ndarray:
    arr = np.asarray(spikes)
    if arr.ndim != 2 or arr.shape[1] != n:
        raise ShapeError(
            f"{name} must have shape (T, {n}) (time first, one column per neuron), "
            f"got {arr.shape}"
        )
    if arr.size and not np.isin(arr, (0, 1)).all():
        raise ValueError(f"{name} must be boolean or 0/1 spikes")
    return arr.astype(bool)


def _check_weights(weights: Any, tag: str, sign_mode: Any) -> np.ndarray:
    w = np.asarray(weights, dtype=float)
    if w.ndim != 2 or 0 in w.shape:
        raise ShapeError(f"weights must be a non-empty (n_post, n_pre) matrix, got {w.shape}")
    if not np.isfinite(w).all():
        raise ValueError("weights contain NaN or inf")
    if tag == "fixed_pt":
        from lava.utils.weightutils import SignMode

        fmt = LOIHI2.weights
        assert fmt is not None
        lo, hi = {
            SignMode.MIXED: fmt.range_mixed,
            SignMode.EXCITATORY: fmt.range_excitatory,
            SignMode.INHIBITORY: fmt.range_inhibitory,
        }[sign_mode]
        if not np.array_equal(w, np.round(w)):
            raise ValueError(
                "fixed_pt weights must be integers (Loihi stores an 8-bit mantissa + sign); "
                "scale them and put the shared factor in weight_exp"
            )
        if w.min() < lo or w.max() > hi:
            raise ValueError(
                f"fixed_pt weights must lie in [{lo}, {hi}] for {sign_mode}, got "
                f"[{w.min():g}, {w.max():g}]"
            )
    return w


def _sign_mode(sign_mode: Any) -> Any:
    from lava.utils.weightutils import SignMode

    if isinstance(sign_mode, SignMode):
        return sign_mode
    try:
        return SignMode[str(sign_mode).upper()]
    except KeyError:
        raise ValueError(
            f"sign_mode must be 'mixed', 'excitatory' or 'inhibitory', got {sign_mode!r}"
        ) from None


def run_learning_dense(
    weights: np.ndarray,
    pre_spikes: np.ndarray,
    post: np.ndarray | PostLIF,
    rule: Mapping[str, str | None] | RuleSet,
    traces: TraceParams | None = None,
    num_steps: int | None = None,
    tag: Tag = "fixed_pt",
    *,
    record_every: int | None = None,
    weight_exp: int = 0,
    num_weight_bits: int = 8,
    sign_mode: str = "mixed",
) -> dict[str, Any]:
    """Build and run ``pre RingBuffer -> LearningDense -> (LIF | post RingBuffer)`` in Lava.

    ``weights``: (n_post, n_pre), Lava's orientation. ``pre_spikes``: (T, n_pre) bool.
    ``post``: either (T, n_post) post spikes fed to the synapse's back-propagating-spike port, or
    a :class:`PostLIF` whose own spikes are used. ``rule``: ``{"dw": ..., "dd": ..., "dt": ...}``
    strings or a :class:`RuleSet`. ``num_steps`` defaults to T; longer runs see no spikes after T
    (the spike trains are zero-padded, not repeated as a bare RingBuffer would).
    ``record_every``: also read the weights every that many steps (each read is a separate
    ``run`` call, ~tens of ms); None reads them only at the end.

    Returns a dict: ``final_weights`` (n_post, n_pre); ``weights_history``
    (n_records, n_post, n_pre) starting with the weights as loaded (after fixed_pt truncation)
    at step 0; ``record_steps``; ``post_spikes`` (num_steps, n_post) bool; ``traces`` (final
    x1..y3); ``tag_1``/``tag_2`` (final t/d synaptic variables); ``rule_strings`` (what Lava got);
    ``tag``; ``num_steps``.
    """
    if tag not in ("fixed_pt", "floating_pt"):
        raise ValueError(f"tag must be 'fixed_pt' or 'floating_pt', got {tag!r}")
    ensure_lava_importable()
    from lava.magma.core.learning.learning_rule import Loihi2FLearningRule
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.dense.process import LearningDense
    from lava.proc.io.sink import RingBuffer as SinkRingBuffer
    from lava.proc.io.source import RingBuffer as SourceRingBuffer
    from lava.proc.lif.process import LIF
    from lava.utils.weightutils import truncate_weights

    traces = traces or TraceParams()
    mode = _sign_mode(sign_mode)
    w = _check_weights(weights, tag, mode)
    n_post, n_pre = w.shape
    pre = _as_spikes("pre_spikes", pre_spikes, n_pre)
    lif_params = post if isinstance(post, PostLIF) else None
    post_arr = None if lif_params is not None else _as_spikes("post spikes", post, n_post)
    steps = pre.shape[0] if num_steps is None else int(num_steps)
    if steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if post_arr is not None and post_arr.shape[0] != pre.shape[0]:
        raise ShapeError(
            f"pre_spikes has {pre.shape[0]} steps but post spikes have {post_arr.shape[0]}"
        )
    if record_every is not None and record_every < 1:
        raise ValueError(f"record_every must be >= 1 or None, got {record_every}")
    if not 1 <= num_weight_bits <= 8:
        raise ValueError(f"num_weight_bits must be in [1, 8], got {num_weight_bits}")

    rules = rule_set_from_mapping(rule)
    strings = rules.to_lava_strings()
    used = {f.var for _, terms in rules.items() for t in terms for f in t.factors}
    if tag == "floating_pt":
        zero_tau = [n for n in TRACE_NAMES if n in used and getattr(traces, f"{n}_tau") == 0]
        if zero_tau:
            raise ValueError(
                f"trace(s) {', '.join(zero_tau)} are used by the rule but have tau=0: Lava's "
                f"floating_pt model turns such traces (and every weight) into NaN; give them a "
                f"positive tau"
            )

    def pad(a: np.ndarray) -> np.ndarray:  # (T, n) -> (n, steps), zero beyond T
        out = np.zeros((a.shape[1], steps), dtype=np.int32 if tag == "fixed_pt" else float)
        k = min(steps, a.shape[0])
        out[:, :k] = a[:k].T
        return out

    learning_rule = Loihi2FLearningRule(**strings, **asdict(traces))
    dense_kwargs: dict[str, Any] = {"sign_mode": mode, "num_weight_bits": num_weight_bits,
                                    "weight_exp": weight_exp}
    dense = LearningDense(weights=w.copy(), learning_rule=learning_rule,
                          name="nl_learning_dense", **dense_kwargs)
    src = SourceRingBuffer(data=pad(pre))
    src.s_out.connect(dense.s_in)
    sink = None
    if lif_params is not None:
        lif = LIF(shape=(n_post,), name="nl_post_lif", **asdict(lif_params))
        dense.a_out.connect(lif.a_in)
        lif.s_out.connect(dense.s_in_bap)
        sink = SinkRingBuffer(shape=(n_post,), buffer=steps)
        lif.s_out.connect(sink.a_in)
    else:
        assert post_arr is not None
        bap = SourceRingBuffer(data=pad(post_arr))
        bap.s_out.connect(dense.s_in_bap)

    if tag == "fixed_pt":
        loaded = truncate_weights(w, sign_mode=mode, num_weight_bits=num_weight_bits)
    else:
        loaded = w
    history = [np.asarray(loaded, dtype=float)]
    record_steps = [0]
    chunk = steps if record_every is None else record_every
    run_cfg = Loihi2SimCfg(select_tag=tag)
    try:
        done = 0
        while done < steps:
            n = min(chunk, steps - done)
            dense.run(condition=RunSteps(num_steps=n), run_cfg=run_cfg)
            done += n
            history.append(np.asarray(dense.weights.get(), dtype=float).copy())
            record_steps.append(done)
        final_traces = {n: np.asarray(getattr(dense, n).get(), dtype=float) for n in TRACE_NAMES}
        tag_1 = np.asarray(dense.tag_1.get(), dtype=float)
        tag_2 = np.asarray(dense.tag_2.get(), dtype=float)
        if sink is not None:
            post_spikes = np.asarray(sink.data.get()).T.astype(bool)
        else:
            assert post_arr is not None
            post_spikes = pad(post_arr).T.astype(bool)
    finally:
        dense.stop()

    return {
        "final_weights": history[-1],
        "weights_history": np.stack(history),
        "record_steps": np.asarray(record_steps),
        "post_spikes": post_spikes,
        "traces": final_traces,
        "tag_1": tag_1,
        "tag_2": tag_2,
        "rule_strings": strings,
        "tag": tag,
        "num_steps": steps,
    }

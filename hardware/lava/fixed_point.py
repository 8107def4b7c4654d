"""Loihi 2 fixed point for the learning graph: the weight grid, LIF decays, error bounds."""

from __future__ import annotations

import numpy as np

from neurolocal.network import Network

from ..profiles import LOIHI2, Profile
from .program import TRACE_NAMES, LoihiProgram


def fixed_point_network(net: Network, lp: LoihiProgram) -> Network:
    """A copy of ``net`` whose forward and feedback weights lie on the fixed_pt grids.

    Forward weights: even multiples of the layer's weight step in [-256, 254] (Lava's
    mixed-sign Dense drops the LSB on load); fixed feedback weights: likewise with their own
    step. Running the reference on this network isolates the learning-path quantisation.
    """
    out = Network(list(net.sizes), net.rule, net.hidden_activation, net.output_activation,
                  {p: {layer: {k: np.array(v, dtype=np.float64) for k, v in d.items()}
                       for layer, d in s.items()} for p, s in net.state.items()})
    for g in lp.groups:
        st = out.state[g.projection][g.layer]
        st["w"] = loadable_weights(st["w"] / g.weight_step) * g.weight_step
    for fb in lp.feedback:
        st = out.state[fb.plan.name][fb.layer]
        st["w"] = loadable_weights(st["w"] / fb.weight_step) * fb.weight_step
    return out


def loadable_weights(w_lsb: np.ndarray, sign_mode: str = "mixed",
                     profile: Profile = LOIHI2) -> np.ndarray:
    """Integer weights (in LSBs) as Lava's fixed-point ``Dense`` holds them after loading.

    Mixed-sign weights lose ``mixed_sign_dropped_lsbs`` LSBs on load (even values only, with
    8 weight bits), excitatory / inhibitory ones keep all 8 bits; then they are clipped to
    the mode's range. The one weight grid of the project: the learning graph and the
    converter's quantiser both round through it.
    """
    wf = profile.weights
    w = np.asarray(w_lsb, dtype=np.float64)
    if sign_mode == "mixed":
        step = 2 ** wf.mixed_sign_dropped_lsbs
        lo, hi = wf.range_mixed[0], (wf.range_mixed[1] // step) * step
    else:
        step = 1
        lo, hi = wf.range_excitatory if sign_mode == "excitatory" else wf.range_inhibitory
    return np.clip(step * np.rint(w / step), lo, hi)


def lif_decays(du: float, dv: float, profile: Profile = LOIHI2) -> tuple[int, int]:
    """Lava's fixed-point ``du``/``dv`` integers for decay fractions (12-bit on Loihi 2).

    Lava's u decays by ``(2^bits - du - 1) / 2^bits``, v by ``(2^bits - dv) / 2^bits``.
    """
    unity = 2 ** profile.lif.decay_bits
    return max(0, round(du * unity) - 1), round(dv * unity)


def epoch_error_bound(lp: LoihiProgram, layer: int, pre_counts: np.ndarray,
                      fb_abs_sum: np.ndarray | None = None) -> np.ndarray:
    """Largest |fixed_pt - exact| weight change of one epoch for the synapses of ``layer``.

    Given the same start weights and spike trains, per synapse (in float weight units)::

        sum over products  |m 2^e| x prod(pre traces) x (1/2 + Q dv)    post-factor rounding
                         + 2^e_fixed                                     Lava's truncating shift
        + 1                                                              stochastic rounding

    times the weight step, where ``dv`` bounds the post factor's error from the graded
    feedback payload (half a payload quantum per feedback synapse: ``fb_abs_sum`` = sum_j
    |B_ij| per hidden neuron) and Q is the channel gain. ``pre_counts``: spikes per pre neuron
    (bias unit last, T). Values in weight units, shape (n_post, n_pre + 1).
    """
    g = lp.group(layer)
    n_post = g.shape[0]
    imp = g.x_impulse
    bound = np.ones(g.shape)
    dv = np.zeros(n_post)
    if fb_abs_sum is not None:
        fbg = next((f for f in lp.feedback if f.layer == layer), None)
        if fbg is not None:
            quantum = fbg.x_quantum if fbg.learned else lp.payload_quantum
            dv = 0.5 * quantum * np.asarray(fb_abs_sum, dtype=float)
    for pm in g.products:
        p = pm.products["floating_pt"]
        pf = p.scale_mantissa * 2.0**p.scale_exp
        pre = np.ones(g.shape[1])
        for tr in pm.term.pre:
            pre = pre * np.asarray(pre_counts, dtype=float) * imp[tr]
        post = np.ones(n_post)
        trace = next((f.var for f in p.factors if f.var in TRACE_NAMES), None)
        if trace is not None:
            q = g.channel_gain[trace]
            post = 0.5 + q * dv
        fx = pm.products["fixed_pt"]
        bound = bound + abs(pf) * np.outer(post, pre) + 2.0**fx.scale_exp
    return bound * g.weight_step


def feedback_epoch_error_bound(lp: LoihiProgram, fb, source: np.ndarray,
                               post: dict[str, np.ndarray]) -> np.ndarray:
    """Largest |fixed_pt - exact| change of one epoch of a learned feedback group's synapses.

    Given the same start weights and spikes, per synapse (in float weight units)::

        sum over products |m 2^e| (|X| dY + dX |Y| + dX dY) + 2^e_fixed  +  1

    times the weight step, where ``X`` is the graded pre trace (``source / x_quantum``, the
    value the source sent, rounded: ``dX = 1/2``) and ``Y`` the post trace (``Q`` times the
    post factor, rounded: ``dY = 1/2``), both exact apart from that rounding (sources and
    post factors computed from spike counts and noise on the grid). ``source``: the carried
    values (n_pre,); ``post``: trace name -> |post factor| per post neuron (n_post,).
    """
    g = fb.learning
    ones_post, ones_pre = np.ones(g.shape[0]), np.ones(g.shape[1])
    x = np.abs(np.asarray(source, dtype=float)) / fb.x_quantum
    bound = np.ones(g.shape)
    for pm in g.products:
        p, fx = pm.products["floating_pt"], pm.products["fixed_pt"]
        scale = abs(p.scale_mantissa * 2.0**p.scale_exp)
        trace = next((f.var for f in p.factors if f.var in TRACE_NAMES), None)
        y = g.channel_gain[trace] * np.abs(np.asarray(post[trace], dtype=float)) \
            if trace is not None else None
        if pm.term.pre and y is not None:  # |XY - X'Y'| <= |X| dY + dX |Y| + dX dY
            err = 0.5 * np.outer(ones_post, x) + 0.5 * np.outer(y, ones_pre) + 0.25
        elif pm.term.pre or y is not None:
            err = 0.5 * np.outer(ones_post, ones_pre)
        else:
            err = 0.0
        bound = bound + scale * err + 2.0**fx.scale_exp
    return bound * g.weight_step

"""Scales of the Loihi 2 product terms for one synapse group, and their fixed-point forms.

For terms with a graded post factor the post neuron's channel gain absorbs the rounding of
``coef * normalisations`` to ``m * 2^e``, so the scale is exact; fixed-point Lava drops
``sum(widths) + 4 - 15`` LSBs of a product (2^-3 for two traces), which the fixed_pt strings
compensate in the exponent. Every string is validated against the hardware profile with
:func:`.loihi_rule.validate_loihi_rule` before it reaches Lava.
"""

from __future__ import annotations

import math

from neurolocal.errors import LoweringError
from neurolocal.network import Network
from neurolocal.rule import FORWARD

from ..profiles import Profile
from ..semantics import SpikingProgram
from .loihi_rule import (
    Factor,
    LoihiRuleError,
    ProductTerm,
    RuleSet,
    float_to_mantissa_exp,
    validate_loihi_rule,
)
from .program import (
    GRADED_ZERO,
    TAGS,
    LavaOptions,
    LoihiTermMap,
    PostFactor,
    ProductMap,
    SynapseGroup,
)


def pow2_at_least(x: float) -> float:
    return 2.0 ** math.ceil(math.log2(x)) if x > 0 else 1.0


def _scale_up(value: float, profile: Profile) -> tuple[int, int]:
    """The smallest representable ``m * 2^e >= value > 0`` (m in 1..7), saturating."""
    eng = profile.learning
    (_, mhi), (elo, ehi) = eng.scale_mantissa_range, eng.scale_exp_range
    best: tuple[float, int, int] | None = None
    for e in range(elo, ehi + 1):
        for m in range(1, mhi + 1):
            v = m * 2.0**e
            if v >= value * (1 - 1e-12) and (best is None or v < best[0]):
                best = (v, m, e)
    return (best[1], best[2]) if best else (mhi, ehi)


def _fixed_product(m: int, e: int, shift: int, where: str, profile: Profile) -> tuple[int, int]:
    """Exponent (and mantissa) compensating the LSBs Lava's fixed model drops."""
    eng = profile.learning
    ehi = eng.scale_exp_range[1]
    mlo, mhi = eng.scale_mantissa_range
    e_f, m_f = e + shift, m
    while e_f > ehi and mlo <= m_f * 2 <= mhi:
        m_f, e_f = m_f * 2, e_f - 1
    if e_f > ehi:
        raise LoweringError(
            f"{where}: in fixed point Lava drops {shift} LSBs of this product, and "
            f"compensating needs the scale {m}*2^{e + shift}, beyond the largest Loihi 2 scale "
            f"{mhi}*2^{ehi} (limit: scale exponent in [{eng.scale_exp_range[0]}, {ehi}]); "
            "nearest expressible form: a larger weight step (--set a smaller lr) or fewer "
            "trace factors in the term")
    return m_f, e_f


def _trace_max(profile: Profile) -> int:
    return profile.traces.range[1] if profile.traces else 127


def choose_impulse(program: SpikingProgram, maps: list[LoihiTermMap], layer: int, step: float,
                   options: LavaOptions, profile: Profile, base: float) -> float:
    """The largest integer pre-trace impulse (x1 <= trace max over T spikes) that keeps every
    pre-trace term's scale representable with the post channels at full gain.

    A larger impulse makes the engine's products larger, so Lava's truncating shift (2^-3
    for two traces in fixed point) costs relatively less, and the scale smaller.
    """
    eng = profile.learning
    tmax, t = _trace_max(profile), program.config.timesteps
    smallest = 2.0 ** eng.scale_exp_range[0]
    q0 = tmax / options.third_factor_range
    for ix in range(max(1, tmax // t), 1, -1):
        ok = True
        for tm in maps:
            if not tm.pre:
                continue
            syn_unit = 1.0 if tm.syn_var is not None else 1.0 / step
            value = abs(tm.coef) * tm.pre_gain(program.config, layer) * syn_unit / \
                ix ** len(tm.pre)
            if tm.channel is not None:
                ok = ok and value / q0 >= smallest * (1 - 1e-12)
            else:
                ok = ok and float_to_mantissa_exp(value, profile)[2] <= options.max_scale_error
        if ok:
            return float(ix)
    return base


def _scale_error(where: str, tm: LoihiTermMap, wanted: float, m: int, e: int, rel: float,
                 profile: Profile) -> LoweringError:
    """The error for a scale Loihi 2 cannot represent well enough, with the nearest form."""
    eng = profile.learning
    lo, (elo, ehi) = eng.scale_mantissa_range, eng.scale_exp_range
    smallest = 2.0 ** elo
    what = (f"underflows: below the smallest Loihi 2 scale 1*2^{elo} = {smallest:g}"
            if rel >= 1 else f"can only be approximated with {100 * rel:.0f}% error")
    nearest = (f"{m}*2^{e} = {m * 2.0**e:.4g} ({100 * rel:.0f}% off)" if rel < 1 else
               f"drop the term, or raise its coefficient {tm.text.split('*syn')[0]!r} "
               f"(= {tm.coef:.4g} per epoch) to >= {smallest / abs(wanted / tm.coef):.4g}")
    return LoweringError(
        f"{where}: its scale {wanted:.4g} (weight LSBs per product unit) {what} (limit: "
        f"mantissa in [{lo[0]}, {lo[1]}] x 2^[{elo}, {ehi}], one u<k> per rule set so no "
        f"decimation). Nearest expressible form: {nearest}; --set the rule's globals so that "
        f"|scale| >= {smallest:g}")


def _channel_gain(where: str, base: float, pf: PostFactor, options: LavaOptions,
                  profile: Profile) -> float:
    """The channel gain Q (trace units per factor unit) that makes the scale exactly m * 2^e."""
    q0 = (_trace_max(profile) - pf.offset) / options.third_factor_range
    m, e = _scale_up(abs(base) / q0, profile)
    gain = abs(base) / (m * 2.0**e)
    if gain * options.third_factor_range < 1:
        eng = profile.learning
        raise LoweringError(
            f"{where}: the scale {base:.4g} weight LSBs per unit of {pf.text} needs more than "
            f"{m}*2^{e} per {profile.traces.bits}-bit trace step (limit: scale mantissa in "
            f"{list(eng.scale_mantissa_range)} x 2^{list(eng.scale_exp_range)}), so the post "
            "factor would round to 0. Nearest expressible form: a smaller lr or a finer weight "
            "step (smaller weight_headroom)")
    return gain


def decay_tick(maps: list[LoihiTermMap], profile: Profile) -> int:
    """Epochs between the applications of decays too small for one epoch's product scale.

    A term ``c * syn.w`` (no pre, no post factor) with ``|c|`` below the smallest scale
    ``1*2^e_min`` cannot be a product of every epoch; applied every ``K = round(2^e_min/|c|)``
    epochs as ``K * c * w`` (dependency y0, the post neuron's bap sent in those epochs) it
    removes the same fraction of the weight over K epochs. 0 when no term needs it.
    """
    smallest = 2.0 ** profile.learning.scale_exp_range[0]
    small = [abs(tm.coef) for tm in maps
             if not tm.pre and tm.channel is None and tm.syn_var is not None
             and 0 < abs(tm.coef) < smallest * (1 - 1e-12)]
    return max(1, round(smallest / min(small))) if small else 0


def _products(program: SpikingProgram, tm: LoihiTermMap, factors: list[PostFactor],
              layer: int, step: float, x_impulse: dict, gain: dict, options: LavaOptions,
              profile: Profile, tick: int = 0) -> list[ProductMap]:
    """The one or two Loihi product terms of one rule term for this synapse group
    (``tick``: see :func:`decay_tick`)."""
    pre_gain = tm.pre_gain(program.config, layer)
    for tr in tm.pre if not tm.graded else ():
        pre_gain /= x_impulse[tr]
    # weight LSBs per unit of the product: a syn factor in LSBs cancels the weight step
    base = tm.coef * pre_gain * (1.0 if tm.syn_var is not None else 1.0 / step)
    if base == 0:
        return []  # a term scaled by 0 (e.g. --set lr=0) changes nothing: no product term
    parts: list[tuple[str, str | None, int]] = [("", None, 1)]
    offset = 0
    if tm.channel is not None:
        pf = factors[tm.channel]
        offset = pf.offset
        parts = [("+", pf.traces[0], 1), ("-", pf.traces[1], -1)] if pf.signed and \
            not pf.offset else [("", pf.traces[0], 1)]
    where = f"rule {program.rule.name}: {tm.where}"
    out = []
    for part, trace, sign in parts:
        if trace is not None and trace not in gain:
            gain[trace] = _channel_gain(where, base, factors[tm.channel], options, profile)
        wanted = base * sign / gain[trace] if trace is not None else base * sign
        if wanted == 0:
            continue
        m, e, rel = float_to_mantissa_exp(wanted, profile)
        dependency, every = tm.dependency, 1
        if rel > options.max_scale_error and tick and trace is None and not tm.pre and \
                abs(wanted) < 2.0 ** profile.learning.scale_exp_range[0]:
            dependency, every = "y0", tick  # a decimated decay (decay_tick)
            m, e, rel = float_to_mantissa_exp(wanted * tick, profile)
        if rel > options.max_scale_error:
            raise _scale_error(where, tm, wanted, m, e, rel, profile)
        factor_list = [Factor(tr, const=-GRADED_ZERO if tm.graded else None) for tr in tm.pre]
        factor_list += [Factor(trace, const=-offset if offset else None)] if trace else []
        factor_list += list(tm.syn)
        shift = profile.learning.fixed_point_shift([f.var for f in factor_list])
        m_f, e_f = _fixed_product(m, e, shift, where, profile)
        prods = {"floating_pt": ProductTerm(m, e, dependency, tuple(factor_list)),
                 "fixed_pt": ProductTerm(m_f, e_f, dependency, tuple(factor_list))}
        out.append(ProductMap(tm, part, wanted * every, prods, rel, shift, tick=every))
    return out


def _rule_sets(program: SpikingProgram, products: list[ProductMap], layer: int,
               profile: Profile) -> dict:
    """The validated rule strings of each tag."""
    out = {}
    for tag in TAGS:
        by_target: dict[str, list[ProductTerm]] = {}
        for pm in products:
            by_target.setdefault(pm.term.target, []).append(pm.products[tag])
        strings = {k: RuleSet(**{k: tuple(v)}).to_lava_string(k) for k, v in by_target.items()}
        strings = strings or {"dw": "0*2^0*u0"}
        try:
            out[tag] = validate_loihi_rule(strings.get("dw"), strings.get("dd"),
                                           strings.get("dt"), profile=profile)
        except LoihiRuleError as exc:  # pragma: no cover - a lowering bug, not user input
            raise LoweringError(f"rule {program.rule.name}: layer {layer} ({tag}): the "
                                f"generated Loihi string is invalid: {exc}") from exc
    return out


def synapse_group(program: SpikingProgram, maps: list[LoihiTermMap], factors: list[PostFactor],
                  layer: int, net: Network, step: float, options: LavaOptions,
                  profile: Profile, x_impulse: dict, *, projection: str = FORWARD,
                  shape: tuple[int, int] | None = None, tick: int = 0) -> SynapseGroup:
    """Scales of every term of ``projection`` for the synapse group into ``layer`` with weight
    step ``step``; strings validated per tag. A learned feedback group (``shape`` given) reads
    a graded pre trace: its impulse is Lava's (0: the payload sets x1)."""
    maps = [tm for tm in maps if tm.projection == projection]
    if projection == FORWARD:
        ix = choose_impulse(program, maps, layer, step, options, profile, x_impulse["x1"])
        x_impulse = {"x1": ix, "x2": ix}
    gain: dict[str, float] = {}
    products: list[ProductMap] = []
    for tm in maps:
        products += _products(program, tm, factors, layer, step, x_impulse, gain, options,
                              profile, tick)
    uses_bap = any(pm.products["floating_pt"].dependency == "y0" and pm.tick == 1
                   for pm in products)
    shape = shape or tuple(net.state[FORWARD][layer]["w"].shape)
    return SynapseGroup(projection, layer, tuple(shape), step, gain, tuple(products),
                        _rule_sets(program, products, layer, profile), uses_bap, x_impulse)

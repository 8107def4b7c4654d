"""Printing a lowered Loihi 2 program: rule strings, graph, neuron programs, resources."""

from __future__ import annotations

import math

import numpy as np

from ..semantics import describe_program
from .program import TAGS, TRACE_NAMES, LoihiProgram, SynapseGroup


def _used_traces(g: SynapseGroup, tag: str) -> list[str]:
    return sorted({f.var for pm in g.products for f in pm.products[tag].factors
                   if f.var in TRACE_NAMES})


def _graph_lines(lp: LoihiProgram, tag: str) -> list[str]:
    sizes, depth = lp.sizes, lp.depth
    lines = [f"process graph (Loihi2SimCfg(select_tag={tag!r}), t_epoch = {lp.epoch_len}):",
             f"  source  EpochSource         s_out ({sizes[0]}+1 bias)  t_out ({sizes[-1]})"]
    for layer in range(1, depth + 1):
        g = lp.group(layer)
        pre = "source.s_out" if layer == 1 else f"L{layer - 1}.s_out"
        ys = _used_traces(g, tag)
        lines.append(f"  W{layer:<6} EpochLearningDense  weights {g.shape}  s_in <- {pre}; "
                     f"a_out -> L{layer}.a_in"
                     + "".join(f"; s_in_{y} <- L{layer}.s_out_{y}" for y in ys)
                     + (f"; s_in_bap <- L{layer}.s_out_bap" if g.uses_bap else ""))
        spec = lp.neurons[layer - 1]
        extra = "; target_in <- source.t_out" if spec.role == "output" else ""
        lines.append(f"  L{layer:<6} NeuroLIF ({spec.role:<6})   ({spec.n},) s_out ({spec.n}+1 "
                     f"bias){extra}; program at step {spec.eq_step}")
    for fb in lp.feedback:
        kind = "EpochLearningDense (graded, OVERWRITE x1)" if fb.learned else \
            "Dense (graded)     "
        ys = "".join(f"; s_in_{y} <- L{fb.layer}.s_out_{y}"
                     for y in _used_traces(fb.learning, tag)) if fb.learned else ""
        lines.append(f"  {fb.plan.name}{fb.layer:<5} {kind} weights {fb.shape}  "
                     f"s_in <- L{fb.source_layer}.s_fb_out ({fb.plan.source}); a_out -> "
                     f"L{fb.layer}.a_third_factor_in ({fb.plan.target}, arrives step "
                     f"{fb.arrives}){ys}")
    if lp.noise_cycle > 1 or lp.epochs > 1:
        lines.append(f"  schedule: {lp.epochs} learning epoch(s) per sample"
                     + (f", each sample epoch followed by {lp.noise_cycle - 1} noise epoch"
                        if lp.noise_cycle > 1 else "")
                     + "; ScheduleSource and EpochNeuroLIF (the extended neuron program)")
    return lines


def _report_lines(lp: LoihiProgram) -> list[str]:
    prof, cfg, opts = lp.profile, lp.config, lp.options
    res, eng, wf = prof.resources, prof.learning, prof.weights
    tmax, tbits = prof.traces.range[1], prof.traces.bits
    lines = [f"resource report against profile {prof.name!r} ({prof.description}):"]
    neurons = sum(lp.sizes[1:]) + (lp.depth - 1)  # + bias units of hidden layers
    syn_fwd = sum(int(np.prod(g.shape)) for g in lp.groups)
    syn_fb = sum(int(np.prod(f.shape)) for f in lp.feedback if not f.learned)
    syn_lfb = sum(int(np.prod(f.shape)) for f in lp.feedback if f.learned)
    cores = 0
    for layer in range(1, lp.depth + 1):
        n = lp.sizes[layer]
        syn_in = int(np.prod(lp.group(layer).shape)) + sum(
            int(np.prod(f.shape)) for f in lp.feedback if f.layer == layer)
        cores += max(math.ceil(n / res.neurons_per_core),
                     math.ceil(syn_in / res.synapses_per_core))
    lines += [
        f"  neurons   {neurons} (+{lp.sizes[0]} input axons) of {res.neurons_per_chip} per chip",
        f"  synapses  {syn_fwd} learned (forward incl. bias) + {syn_fb} fixed feedback"
        + (f" + {syn_lfb} learned feedback" if syn_lfb else ""),
        f"  cores     >= {cores} of {res.neuro_cores_per_chip} (one population per core at "
        f"least; {res.neurons_per_core} neurons, ~{res.synapses_per_core} synapses per core "
        "[estimate])",
        f"  epoch     t_epoch = {lp.epoch_len} = 1 lead + "
        f"{'T' if lp.epochs == 1 else 'E'}={lp.epoch_steps} forward + "
        f"{lp.epoch_len - lp.epoch_steps - 1} error step(s) "
        f"(limit {2 ** eng.epoch_time_bits - 1})",
        "precision report:",
    ]
    for g in lp.groups:
        e2 = int(math.log2(g.weight_step))
        lines.append(f"  W{g.layer}: weight LSB = {g.weight_step:.6g} (2^{e2}); "
                     f"{wf.magnitude_bits}-bit + sign: |w| <= "
                     f"{-wf.range_mixed[0] * g.weight_step:.4g}; vth = "
                     f"{cfg.vth / g.weight_step:.6g} LSB")
        for tr, q in sorted(g.channel_gain.items()):
            lines.append(f"      {tr}: {q:.6g} trace units per unit of post factor -> range "
                         f"{tmax / q:.4g}, resolution {1 / q:.3g}")
        for pm in g.products:
            p, pf = pm.products["floating_pt"], pm.products["fixed_pt"]
            lines.append(f"      term[{pm.term.index}]{pm.part or ' '} {pm.term.text}: wanted "
                         f"{pm.wanted:.6g}, Loihi {p.scale_mantissa}*2^{p.scale_exp} "
                         f"(rel. error {100 * pm.rel_error:.3g}%); fixed_pt drops {pm.shift} "
                         f"LSBs -> {pf.scale_mantissa}*2^{pf.scale_exp}")
    for fb in lp.feedback:
        if fb.learned:
            lines.append(f"  {fb.plan.name}{fb.layer}: learned; weight LSB = "
                         f"{fb.weight_step:.6g}; graded pre trace x1 = value/{fb.x_quantum:g} "
                         f"+ 64 (range ±{63 * fb.x_quantum:g}), after a calibration spike")
            for tr, q in sorted(fb.learning.channel_gain.items()):
                lines.append(f"      {tr}: {q:.6g} trace units per unit of post factor")
            continue
        lines.append(f"  {fb.plan.name}{fb.layer}: weight LSB = {fb.weight_step:.6g}; payload "
                     f"quantum {lp.payload_quantum:g} ({opts.payload_bits}-bit signed, range "
                     f"±{opts.payload_max * lp.payload_quantum:g})")
    imps = ", ".join(f"W{g.layer} {g.x_impulse['x1']:g}" for g in lp.groups)
    lines += [
        f"  x1: impulse per pre spike {imps} (the largest that keeps the scales "
        f"representable), no decay (tau1 = {cfg.tau1:g}), {tbits}-bit: <= impulse x "
        f"{lp.timesteps} of {tmax}",
        f"  fixed_pt learning: {eng.accumulator_bits + 1}-bit accumulator (weight LSB = "
        f"2^{eng.scale_exp_range[0] * -1}), products truncated (floor), new weights "
        "stochastically rounded (Lava's seeded generator) and clipped to "
        f"[{wf.range_mixed[0]}, {wf.range_mixed[1]}]; y channels rounded to {tbits}-bit "
        f"unsigned; payloads to {opts.payload_bits}-bit signed",
        "  bound per epoch and synapse (fixed_pt vs exact, same spikes): see "
        "neurolocal.hardware.lava.fixed_point.epoch_error_bound",
    ]
    for w in lp.warnings:
        lines.append(f"  warning: {w}")
    for n in lp.notes:
        lines.append(f"  note: {n}")
    return lines


def render(lp: LoihiProgram, tag: str = "fixed_pt") -> str:
    """What ``neurolocal compile --target lava`` prints for a lowered program."""
    out = [f"# Lava target (Loihi 2), rule {lp.rule.name!r}, network "
           f"{'-'.join(map(str, lp.sizes))}"]
    out += [f"# {line}" for line in describe_program(lp.spiking)]
    out += ["", "Loihi 2 learning rules (Loihi3FLearningRule; validated against the profile):"]
    for g in lp.groups:
        for t in TAGS:
            for target, s in g.strings(t).items():
                out.append(f"  W{g.layer} {t:<11} {target} = {s}")
    for fb in lp.learned_feedback:
        for t in TAGS:
            for target, s in fb.learning.strings(t).items():
                out.append(f"  {fb.plan.name}{fb.layer} {t:<11} {target} = {s}")
    out.append("  where:")
    for tm in lp.terms:
        pf = lp.post_factors[tm.channel] if tm.channel is not None else None
        via = f", post factor {pf.text} in {'/'.join(pf.traces)}" if pf else ""
        out.append(f"    {tm.where}: dependency {tm.dependency}"
                   + (f", pre {'*'.join(tm.pre)}" if tm.pre else "")
                   + via + (", syn " + "*".join(f.to_lava_string() for f in tm.syn)
                            if tm.syn else ""))
    out.append("trace parameters (Lava units):")
    for g in lp.groups:
        for t in TAGS:
            tp = lp.trace_params(t, g.layer)
            out.append(f"  W{g.layer} {t:<11} " + ", ".join(
                f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in tp.items()))
    out.append("  y1..y3 hold the post neuron's factors (3F rule): no impulse, no decay")
    out += _graph_lines(lp, tag)
    out += _neuron_lines(lp)
    out += _report_lines(lp)
    return "\n".join(out) + "\n"


def _neuron_lines(lp: LoihiProgram) -> list[str]:
    out = ["neuron program (NeuroLIF, generated from the rule):"]
    for spec in (lp.neurons[0], lp.neurons[-1]) if lp.depth > 1 else lp.neurons:
        out.append(f"  [{spec.role}] at step {spec.eq_step}"
                   + (f": {spec.fb_target} += a_third_factor_in x {spec.fb_unit:g}"
                      if spec.fb_target else "")
                   + (f"; sends {spec.src} on s_fb_out" if spec.src else ""))
        out += ["    " + line for line in spec.code.splitlines() if line.strip()]
    return out

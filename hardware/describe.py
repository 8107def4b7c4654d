"""The target-neutral spiking program as the comment every target's printout starts with."""

from __future__ import annotations

import sympy

from .noise import NOISE_DRIVE, NOISE_VALUE, SLOW_PREFIX
from .relax import describe_relax
from .semantics import SYMBOLS, SpikingProgram


def _meaning(program: SpikingProgram, name: str) -> str:
    if name in SYMBOLS:
        return SYMBOLS[name].meaning
    return "private noise: this learning epoch's draw (0 at the output)"


def describe(program: SpikingProgram) -> list[str]:
    """Target-neutral description of the program as comment lines (without '# ')."""
    cfg, rule = program.config, program.rule
    c = cfg.constants()
    epoch = (f"learning epoch = one sample = T = {cfg.timesteps} steps" if program.epochs == 1
             else f"{program.epochs} learning epochs of {program.epoch_steps} steps per sample "
                  f"(T = {cfg.timesteps}); the neurons run on through the sample")
    lines = [
        f"rule {rule.name}: {rule.description}",
        f"{epoch}; state reset between samples",
        ("neuron (Lava LIF): u = (1-du)*u + I; v = (1-dv)*v + u; spike if v > vth; v = 0  "
         if cfg.reset == "zero" else
         "neuron (LIF, subtractive reset): u = (1-du)*u + I; v = (1-dv)*v + u - vth*s_prev; "
         "spike s if v > vth  ") + f"[du={cfg.du:g}, dv={cfg.dv:g}, vth={cfg.vth:g}]",
        "I = weighted spikes of the layer below from the previous step (1 step delay per "
        "layer) + bias (an always-on synapse)",
        f"traces: tr_k = d_k*tr_k + spike  [d1={c['d1']:.6g}, d2={c['d2']:.6g}, "
        f"d3={c['d3']:.6g}]; read as rates over layer l's window of T_l = T - l steps: "
        "k_k = (1-d_k)/(1-d_k**T_l) (1/T_l for tau = inf); in expressions T means T_l",
        "symbols at the end of the epoch:",
    ]
    for n in program.measured:
        lines.append(f"  {n:<6} = {sympy.sstr(program.symbols[n]):<24} # {_meaning(program, n)}")
    lines.append("  err    = 0, then + feedback (below)")
    lines.append("epoch program (in this order):")
    lines.append("  1. output neurons: target = one-hot label; "
                 + "; ".join(f"{e.target} = {e.text}" + (" (last learning epoch only)"
                                                          if e.last else "")
                             for e in program.output_eqs))
    for fb in program.feedback:
        if fb.scope == "prev":
            lines.append(f"  2. (while settling, bottom-up from layer 2: {fb.target} = "
                         f"{fb.name} . prev.{fb.source}   [the forward synapses W])")
            continue
        lines.append(f"  2. hidden neurons, top layer first: {fb.target} += {fb.name} . "
                     f"{fb.scope}.{fb.source}   [{fb.mode}: {fb.text}]")
    if program.hidden_eqs:
        lines.append("     then " + "; ".join(f"{e.target} = {e.text}" + (
            " (last learning epoch only)" if e.last else "") for e in program.hidden_eqs))
    if program.slow:
        lines.append(f"     slow(X) = low-pass of X over the sample's learning epochs (decay "
                     f"{program.slow_decay:.4g} per epoch): "
                     + ", ".join(f"{SLOW_PREFIX}{n}" for n in program.slow))
    lines += describe_relax(program)
    lines.append(f"  3. updates, averaged over the batch, then applied ({cfg.optimiser}):")
    for up in program.updates:
        terms = "  +  ".join(f"[{t.text}]" for t in up.terms)
        lines.append(f"     on {up.projection}: d{up.var} = {terms}")
    lines.append("  4. reset traces, spk, asum (u, v at the end of the sample)")
    lines += _describe_timed(program)
    lines += _describe_noise(program)
    for note in program.notes:
        lines.append(f"note: {note}")
    return lines


def _describe_timed(program: SpikingProgram) -> list[str]:
    """A recurrent rule's sequence semantics (hardware/timed.py), as comment lines."""
    if not program.timed:
        return []
    from .timed import trace_vars

    traces = sorted({f"syn.{v}" for p in program.learned_projections
                     for v in trace_vars(program, p)})
    return [
        "sequence: one sample; each sequence step is one learning epoch (set learning_epochs "
        "= steps, T = steps * E); the output is read in the last learning epoch",
        "R: a recurrent layer's own spikes reach its current one step later (I += R . s); "
        "on R, pre.* is the layer's own compartments",
        f"eligibility traces {', '.join(traces) or '(none)'}: one per sequence (per sample), "
        "0 at its start; in step 3 they are updated first, then the w updates read them",
    ]


def _describe_noise(program: SpikingProgram) -> list[str]:
    """Private noise sources and noise epochs, as comment lines."""
    lines = []
    for nz in program.noise_sources:
        where = "voltage" if nz.into == "r" else "current"
        lines.append(f"private noise {nz.name}: every hidden neuron draws N(0, {nz.sigma:g}^2) "
                     f"per learning epoch into its {where} at every step (learning only); "
                     f"{nz.name} = this epoch's draw")
    for ph in program.noise_phases:
        lines.append(f"noise epoch {ph.name} ({ph.epochs} after every sample epoch): each hidden "
                     f"neuron driven by its own constant current N(0, {ph.sigma:g}^2) instead of "
                     f"the sample for T steps; {NOISE_DRIVE} = epoch-mean forward input from the "
                     f"layer below (no bias, steps 1..T-1); post: r = a = ... = {NOISE_VALUE}, "
                     "dphi = 1, err = B . noise_drive of the layer above")
        for up in ph.updates:
            terms = "  +  ".join(f"[{t.text}]" for t in up.terms)
            lines.append(f"     on {up.projection} during {ph.name}: d{up.var} = {terms}")
    return lines

"""The learning graph of a program beyond one learning epoch per sample with fixed feedback.

Learned feedback synapses (graded ``EpochLearningDense`` groups), noise epochs, learning
epochs within a sample, private noise, slow(X) and decimated decays need the schedule laid
out on the host (:class:`~.procs.epochs.ScheduleSource`) and the extended neuron
(:class:`~.procs.epochs.EpochNeuroLIF`). :func:`build` is what
:meth:`.runtime.LavaRunner.build` calls for such a program; everything else of the runner
(the one Lava lifecycle, reading the weights back) is shared.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .program import TRACE_NAMES, LoihiProgram


def needs_extended(lp: LoihiProgram) -> bool:
    """Does the learning graph of ``lp`` need the extended processes?"""
    return bool(lp.learned_feedback) or any(n.extended for n in lp.neurons)


def epochs_per_sample(lp: LoihiProgram) -> int:
    """Learning epochs per sample: its learning epochs, or a sample epoch + its noise epoch."""
    return lp.noise_cycle if lp.noise_cycle > 1 else lp.epochs


def schedule(lp: LoihiProgram, spikes: np.ndarray, targets: np.ndarray, dtype
             ) -> tuple[np.ndarray, np.ndarray]:
    """Every step's input (n0 + 1 with the bias unit) and target for samples ``spikes``
    (K, T, n0), one-hot ``targets`` (K, n_out)."""
    k, _, n0 = spikes.shape
    per, length, e = epochs_per_sample(lp), lp.epoch_len, lp.epoch_steps
    steps = np.zeros((k, per, length, n0 + 1), dtype=np.int8)
    tg = np.zeros((k, per, length, targets.shape[1]), dtype=dtype)
    for j in range(per):
        if lp.noise_cycle > 1 and j > 0:
            continue  # a noise epoch: the input is silent
        sub = j if lp.epochs > 1 else 0
        steps[:, j, 1:e + 1, :n0] = spikes[:, sub * e:(sub + 1) * e]  # steps s = 2 .. E+1
        steps[:, j, 0:e, n0] = 1  # the bias unit at s = 1 .. E
        tg[:, j, e] = targets  # s = E + 1
    return (steps.reshape(-1, n0 + 1).T.copy(),
            tg.reshape(-1, targets.shape[1]).T.copy())


def build(runner: Any, spikes: np.ndarray, targets: np.ndarray) -> tuple[dict, int]:
    """The Lava processes of a learning run and the steps per sample."""
    from .procs.epochs import ScheduleSource

    lp, tag = runner.lp, runner.tag
    dtype = np.int32 if tag == "fixed_pt" else float
    steps, tg = schedule(lp, spikes, targets.astype(dtype), dtype)
    src = ScheduleSource(steps=steps, targets=tg, name="nl_source")
    procs: dict[str, Any] = {"source": src}
    prev_out, neurons = src.s_out, []
    for layer in range(1, lp.depth + 1):
        neuron = _neuron(runner, layer, spikes.shape[0])
        dense = runner._synapses(layer, neuron, True)
        if lp.neurons[layer - 1].tick and not lp.group(layer).uses_bap:
            neuron.s_out_bap.connect(dense.s_in_bap)
        prev_out.connect(dense.s_in)
        dense.a_out.connect(neuron.a_in)
        prev_out = neuron.s_out
        procs[f"W{layer}"], procs[f"L{layer}"] = dense, neuron
        neurons.append(neuron)
    src.t_out.connect(neurons[-1].target_in)
    _feedback(runner, neurons, procs)
    return procs, epochs_per_sample(lp) * lp.epoch_len


def _neuron(runner: Any, layer: int, k: int) -> Any:
    from .procs.epochs import EpochNeuroLIF

    lp = runner.lp
    g, spec = lp.group(layer), lp.neurons[layer - 1]
    u_unit, du, dv, vth = runner.neuron_units(layer)
    replay = (runner.replay or {}).get(layer)
    program = spec.running(epoch_len=lp.epoch_len, learn=True, u_unit=u_unit, v_unit=u_unit,
                           a_unit=g.weight_step, epoch_offset=runner.epochs_done,
                           replay=replay)
    return EpochNeuroLIF(shape=(spec.n,), du=du, dv=dv, vth=vth, program=program, n_samples=k,
                         name=f"nl_L{layer}")


def _feedback(runner: Any, neurons: list, procs: dict) -> None:
    """Feedback groups: fixed ones as the runner builds them, learned ones as graded
    ``EpochLearningDense`` groups whose pre trace x1 is overwritten by the value."""
    from lava.magma.core.learning.constants import GradedSpikeCfg
    from lava.utils.weightutils import SignMode

    from .procs.procs import EpochLearningDense
    from .runtime import learning_rule

    lp = runner.lp
    fixed = [fb for fb in lp.feedback if not fb.learned]
    if fixed:
        runner._feedback(neurons, procs, groups=fixed)
    for fb in lp.learned_feedback:
        w = runner.feedback_lsb(fb)
        dense = EpochLearningDense(
            weights=w, learning_rule=learning_rule(lp, fb.layer, runner.tag, fb.plan.name),
            name=f"nl_{fb.plan.name}{fb.layer}", sign_mode=SignMode.MIXED,
            num_message_bits=lp.options.payload_bits + 1,
            graded_spike_cfg=GradedSpikeCfg.OVERWRITE)
        target = neurons[fb.layer - 1]
        neurons[fb.source_layer - 1].s_fb_out.connect(dense.s_in)
        dense.a_out.connect(target.a_third_factor_in)
        g = fb.learning
        for y in sorted({f.var for pm in g.products for f in pm.products[runner.tag].factors
                         if f.var in TRACE_NAMES}):
            getattr(target, f"s_out_{y}").connect(getattr(dense, f"s_in_{y}"))
        if g.uses_bap or lp.neurons[fb.layer - 1].tick:
            target.s_out_bap.connect(dense.s_in_bap)
        procs[f"{fb.plan.name}{fb.layer}"] = dense


def replay_tables(lp: LoihiProgram, noise: list | None, phase_noise: list | None
                  ) -> dict | None:
    """Recorded draws (the reference's layout, batch 1 per sample) as per-layer tables the
    neurons replay: ``{layer: {"private": (K, epochs, sources, n), "phase": (K, n)}}``."""
    if noise is None and phase_noise is None:
        return None
    sources = [n.name for n in lp.spiking.noise_sources]
    out: dict = {}
    for layer in range(1, lp.depth):
        d: dict = {}
        if noise is not None and sources:
            d["private"] = np.stack([
                np.stack([np.asarray(sample[name][layer])[:, 0] for name in sources], 1)
                for sample in noise])
        if phase_noise is not None and lp.spiking.noise_phases:
            d["phase"] = np.stack([np.asarray(sample[0][layer])[0] for sample in phase_noise])
        out[layer] = d
    return out

"""Hand-written Lava learning graphs for Kolen-Pollack and PAL (one hidden layer): the
throughput baselines of the generated graph.

RingBuffers for the input (with its bias unit) and the targets, ``EpochLearningDense`` forward
groups, the hand-coded :class:`.lava_procs.feedback_neuron.HandFeedbackNeuron`, and a graded
``EpochLearningDense`` feedback group whose pre trace x1 the output's payload overwrites. The
rule strings and scales are the lowered program's (as in ``lava_dfa``), so both graphs run
the same learning engine; ``tests/test_handwritten_baselines.py`` checks they learn the same.
"""

from __future__ import annotations

import numpy as np

from neurolocal.hardware.lava.fixed_point import lif_decays
from neurolocal.hardware.lava.runtime import import_lava, learning_rule

import_lava()


def _layout(lp, spikes: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Input rows (with the bias unit) and target rows for every step, by hand."""
    k, e, m, length = spikes.shape[1], lp.epoch_steps, lp.epochs, lp.epoch_len
    data = np.zeros((lp.sizes[0] + 1, k * m * length))
    tdata = np.zeros((lp.sizes[-1], k * m * length))
    for i in range(k):
        for sub in range(m):
            base = (i * m + sub) * length
            data[:-1, base + 1:base + 1 + e] = spikes[sub * e:(sub + 1) * e, i].T
            data[-1, base:base + e] = 1
            tdata[:, base + e] = targets[i]
    return data, tdata


def handwritten_feedback_graph(runner, spikes: np.ndarray, targets: np.ndarray, tag: str,
                               rule: str, replay: np.ndarray | None = None) -> list:
    """KP or PAL (``rule``) on Lava written by hand for a 784-H-10 network (see the module
    docstring). ``spikes`` (T, K, n0); ``replay``: PAL's hidden noise (K, epochs, H)."""
    from lava.magma.core.learning.constants import GradedSpikeCfg
    from lava.proc.io.source import RingBuffer
    from lava.utils.weightutils import SignMode

    from neurolocal.hardware.lava.procs.procs import EpochLearningDense

    from .lava_procs.feedback_neuron import HandFeedbackNeuron

    lp, cfg = runner.lp, runner.cfg
    fixed = tag == "fixed_pt"
    data, tdata = _layout(lp, np.asarray(spikes), targets)
    src, tsrc = RingBuffer(data=data), RingBuffer(data=tdata)
    procs, prev, neurons = [src, tsrc], src.s_out, []
    fb = lp.learned_feedback[0]
    sigma = lp.spiking.noise_sources[0].sigma if lp.spiking.noise_sources else 0.0
    for layer in (1, 2):
        g, spec = lp.group(layer), lp.neurons[layer - 1]
        u_unit = g.weight_step / 2 ** lp.profile.lif.activation_shift if fixed else g.weight_step
        params = {"rule": rule, "E": lp.epoch_steps, "L": lp.epoch_len, "M": lp.epochs,
                  "n": lp.sizes[layer], "output": layer == 2, "layer": layer,
                  "q": g.channel_gain["y2"], "qb": fb.learning.channel_gain.get("y1", 0.0),
                  "x_quantum": fb.x_quantum, "fb_unit": fb.weight_step * fb.x_quantum / 2,
                  "u_unit": u_unit, "v_unit": u_unit, "vth_float": cfg.vth, "sigma": sigma,
                  "seed": lp.options.rng_seed + 1000 * layer, "dec": lp.spiking.slow_decay,
                  "first_ratio": spec.first_ratio, "tick": spec.tick,
                  "replay": replay if layer == 1 else None}
        vth = round(cfg.vth / g.weight_step) if fixed else cfg.vth / g.weight_step
        du = lif_decays(1.0, 0.0)[0] if fixed else 1.0
        neuron = HandFeedbackNeuron(shape=(lp.sizes[layer],), du=du, dv=0, vth=vth,
                                    params=params)
        dense = EpochLearningDense(weights=runner.weights_lsb(layer), sign_mode=SignMode.MIXED,
                                   learning_rule=learning_rule(lp, layer, tag))
        prev.connect(dense.s_in)
        dense.a_out.connect(neuron.a_in)
        neuron.s_out_y2.connect(dense.s_in_y2)
        neuron.s_out_y3.connect(dense.s_in_y3)
        if spec.tick:
            neuron.s_out_bap.connect(dense.s_in_bap)
        prev = neuron.s_out
        procs += [dense, neuron]
        neurons.append(neuron)
    tsrc.s_out.connect(neurons[-1].target_in)
    hidden, output = neurons
    b = EpochLearningDense(weights=runner.feedback_lsb(fb), sign_mode=SignMode.MIXED,
                           learning_rule=learning_rule(lp, 1, tag, fb.plan.name),
                           num_message_bits=lp.options.payload_bits + 1,
                           graded_spike_cfg=GradedSpikeCfg.OVERWRITE)
    output.s_fb_out.connect(b.s_in)
    b.a_out.connect(hidden.a_third_factor_in)
    hidden.s_out_y1.connect(b.s_in_y1)
    if lp.neurons[0].tick:
        hidden.s_out_bap.connect(b.s_in_bap)
    procs.append(b)
    return procs

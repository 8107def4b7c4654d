"""Hand-written Lava graphs: the throughput baselines of the generated learning graph.

``handwritten_graph``: ``RingBuffer -> (Dense | LearningDense) -> LIF`` from stock processes;
``handwritten_dfa_graph``: DFA with on-graph errors written by hand (RingBuffers,
``EpochLearningDense``, the hand-coded :class:`.lava_procs.dfa_neuron.HandDFANeuron`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from neurolocal.hardware.lava.fixed_point import lif_decays, loadable_weights
from neurolocal.hardware.lava.session import import_lava
from neurolocal.hardware.semantics import feedback_matrix

import_lava()


def handwritten_graph(weights: list[np.ndarray], biases: list[np.ndarray | None],
                       data: np.ndarray, vth: list[float], tag: str, rules: list | None = None):
    """A plain Lava graph for the same network, written by hand from stock processes.

    ``RingBuffer -> (Dense | LearningDense) -> LIF`` per layer; the first layer's bias is an
    always-on input row, deeper layers' biases are ``bias_mant`` (<< 6 in fixed point, as the
    LIF adds it to v after the input's shift). ``rules``: one Lava learning rule per layer
    (then ``LearningDense``; stock LIFs send no post traces, so the engine sees y = 0).
    """
    from lava.proc.dense.process import Dense, LearningDense
    from lava.proc.io.source import RingBuffer
    from lava.proc.lif.process import LIF
    from lava.utils.weightutils import SignMode

    src = RingBuffer(data=data)
    prev, procs = src.s_out, [src]
    for layer, w in enumerate(weights, start=1):
        if rules is None:
            dense = Dense(weights=w, sign_mode=SignMode.MIXED)
        else:
            dense = LearningDense(weights=w, sign_mode=SignMode.MIXED,
                                  learning_rule=rules[layer - 1])
        bias = biases[layer - 1]
        kw: dict[str, Any] = {}
        if bias is not None:
            kw = {"bias_mant": bias, "bias_exp": 6} if tag == "fixed_pt" else {"bias_mant": bias}
        du = lif_decays(1.0, 0.0)[0] if tag == "fixed_pt" else 1.0
        lif = LIF(shape=(w.shape[0],), du=du, dv=0, vth=vth[layer - 1], **kw)
        prev.connect(dense.s_in)
        dense.a_out.connect(lif.a_in)
        prev = lif.s_out
        procs += [dense, lif]
    return procs


def handwritten_dfa_graph(runner, spikes: np.ndarray, targets: np.ndarray,
                           rules: list, tag: str) -> list:
    """DFA on Lava written by hand: RingBuffers, LearningDense, HandDFANeuron.

    The LearningDense is :class:`.lava_procs.procs.EpochLearningDense` (Lava's, plus the
    per-epoch pre-trace reset that one-sample learning epochs need and Lava's stock class
    lacks: without it x1 would count spikes across samples), so both graphs learn the same.
    """
    from lava.proc.dense.process import Dense
    from lava.proc.io.source import RingBuffer
    from lava.utils.weightutils import SignMode

    from neurolocal.hardware.lava.procs.procs import EpochLearningDense

    from .lava_procs.dfa_neuron import HandDFANeuron

    lp, cfg = runner.lp, runner.cfg
    spikes = np.moveaxis(np.asarray(spikes), 0, 1)  # (T, K, n0) -> (K, T, n0)
    k, t, steps = spikes.shape[0], lp.timesteps, lp.epoch_len
    data = np.zeros((lp.sizes[0] + 1, k * steps))
    tdata = np.zeros((lp.sizes[-1], k * steps))
    for i in range(k):
        data[:-1, i * steps + 1:i * steps + 1 + t] = spikes[i].T
        data[-1, i * steps:i * steps + t] = 1
        tdata[:, i * steps + t] = targets[i]
    src, tsrc = RingBuffer(data=data), RingBuffer(data=tdata)
    procs, prev, neurons = [src, tsrc], src.s_out, []
    fixed = tag == "fixed_pt"
    for layer in range(1, lp.depth + 1):
        g = lp.group(layer)
        fbg = next((f for f in lp.feedback if f.layer == layer), None)
        u_unit = g.weight_step / 2 ** lp.profile.lif.activation_shift if fixed else g.weight_step
        params = {"T": t, "L": steps, "n": lp.sizes[layer], "output": layer == lp.depth,
                  "layer": layer,
                  "q": g.channel_gain["y2"], "quantum": lp.payload_quantum,
                  "fb_unit": fbg.weight_step * lp.payload_quantum if fbg else 0.0,
                  "u_unit": u_unit, "vth_float": cfg.vth}
        vth = round(cfg.vth / g.weight_step) if fixed else cfg.vth / g.weight_step
        du = lif_decays(1.0, 0.0)[0] if fixed else 1.0
        neuron = HandDFANeuron(shape=(lp.sizes[layer],), du=du, dv=0, vth=vth, params=params)
        dense = EpochLearningDense(weights=runner.weights_lsb(layer),
                                   sign_mode=SignMode.MIXED, learning_rule=rules[layer - 1])
        prev.connect(dense.s_in)
        dense.a_out.connect(neuron.a_in)
        neuron.s_out_y2.connect(dense.s_in_y2)
        neuron.s_out_y3.connect(dense.s_in_y3)
        prev = neuron.s_out
        procs += [dense, neuron]
        neurons.append(neuron)
    tsrc.s_out.connect(neurons[-1].target_in)
    for fb in lp.feedback:
        b = feedback_matrix(fb.plan, np.asarray(runner.net.state[fb.plan.name][fb.layer]["w"],
                                                dtype=np.float64))
        b = loadable_weights(b / fb.weight_step) if fixed else b / fb.weight_step
        dense = Dense(weights=b, num_message_bits=lp.options.payload_bits,
                      sign_mode=SignMode.MIXED)
        neurons[fb.source_layer - 1].s_fb_out.connect(dense.s_in)
        dense.a_out.connect(neurons[fb.layer - 1].a_third_factor_in)
        procs.append(dense)
    return procs


def time_graph(procs: list, steps: int, tag: str, *, then=None) -> float:
    """Seconds ``steps`` steps of the graph take (compile excluded); ``then(run)`` runs more
    inside the same session (e.g. to read weights back before Lava stops)."""
    from neurolocal.hardware.lava.session import session

    with session(procs[0], tag) as run:
        seconds = run(steps) if steps else 0.0
        if then is not None:
            then(run)
        return seconds

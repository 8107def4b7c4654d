"""DFA on Brian2 written by hand: the throughput baseline of the generated Brian2 model.

A plain Brian2 script with the same semantics as the generated one; the baseline tests check
that it ends with the reference simulator's weights.
"""

from __future__ import annotations

import numpy as np


def handwritten_brian2(w1, w2, bfb, cfg, lr, codegen):
    """A plain Brian2 script for 784-H-10 DFA with the same semantics, written by hand."""
    from brian2 import (
        Network,
        NetworkOperation,
        NeuronGroup,
        SpikeMonitor,
        Synapses,
        ms,
        prefs,
    )

    from neurolocal.hardware.brian2.runtime import set_prefs
    set_prefs(codegen)
    del prefs
    t_ep = cfg.timesteps * ms
    # T0, T1, T2: the windows of the input, hidden and output layers (T - layer steps)
    ns = {"T0": float(cfg.timesteps), "T1": float(cfg.timesteps - 1),
          "T2": float(cfg.timesteps - 2), "lr": float(lr)}
    h, o = w1.shape[0], w2.shape[0]
    inp = NeuronGroup(784, "p : 1\ncnt : 1", threshold="rand() < p", reset="cnt += 1",
                      name="hw_in", dt=1 * ms, namespace=ns)
    hid = NeuronGroup(h, "v : 1\nI : 1\nb : 1\ncnt : 1\nasum : 1\nerr : 1\nage : 1 (shared)",
                      threshold="v > 1", reset="v = 0\ncnt += 1", name="hw_hid", dt=1 * ms,
                      namespace=ns)
    out = NeuronGroup(o, "v : 1\nI : 1\nb : 1\ncnt : 1\ntarget : 1\nage : 1 (shared)",
                      threshold="v > 1",
                      reset="v = 0\ncnt += 1", name="hw_out", dt=1 * ms, namespace=ns)
    # age = sample step + 1; the output's bias neuron (in the hidden layer) fires from step 1,
    # the hidden drive is averaged over its window (steps 1 .. T-1)
    hid.run_regularly("age += 1\nv = v + I + b\nasum += (I + b)*int(age > 1)\nI = 0",
                      when="groups", name="hw_hid_step")
    out.run_regularly("age += 1\nv = v + I + b*int(age >= 2)\nI = 0", when="groups",
                      name="hw_out_step")
    s1 = Synapses(inp, hid, "w : 1", on_pre="I_post += w", name="hw_w1", dt=1 * ms,
                  namespace=ns)
    s2 = Synapses(hid, out, "w : 1", on_pre="I_post += w", name="hw_w2", dt=1 * ms,
                  namespace=ns)
    fb = Synapses(out, hid, "w : 1\nerr_post = w*(cnt_pre/T2 - target_pre) : 1 (summed)",
                  name="hw_b", dt=1 * ms, namespace=ns)
    for s in (s1, s2, fb):
        s.connect()
    s1.w = w1[s1.j[:], s1.i[:]]
    s2.w = w2[s2.j[:], s2.i[:]]
    fb.w = bfb[fb.j[:], fb.i[:]]
    hid.b, out.b = w1[:, -1], w2[:, -1]
    upd = fb.summed_updaters["err_post"]
    upd.when, upd.order = "end", 1
    s2.run_regularly("w += -lr*(cnt_post/T2 - target_post)*cnt_pre/T1", dt=t_ep, when="end",
                     order=2, name="hw_w2_upd")
    out.run_regularly("b += -lr*(cnt/T2 - target)", dt=t_ep, when="end", order=2,
                      name="hw_out_upd")
    s1.run_regularly("w += -lr*err_post*int(cnt_post > 0)*int(asum_post < T1)*cnt_pre/T0",
                     dt=t_ep, when="end", order=2, name="hw_w1_upd")
    hid.run_regularly("b += -lr*err*int(cnt > 0)*int(asum < T1)", dt=t_ep, when="end",
                      order=2, name="hw_hid_upd")
    for g in (inp, hid, out):
        code = ("" if g is inp else "age = 0\nv = 0\nI = 0\n") + "cnt = 0" + \
            ("\nasum = 0" if g is hid else "")
        g.run_regularly(code, dt=t_ep, when="end", order=3, name=f"{g.name}_reset")
    counters = [SpikeMonitor(inp, record=False, name="hw_c0"),
                SpikeMonitor(hid, record=False, name="hw_c1")]
    feed = {"x": None, "y": None, "k": 0}

    def next_sample():
        feed["k"] += 1
        if feed["k"] < len(feed["x"]):
            inp.p = feed["x"][feed["k"]]
            out.target = feed["y"][feed["k"]]

    net = Network(inp, hid, out, s1, s2, fb, *counters,
                  NetworkOperation(next_sample, dt=t_ep, when="end", order=4, name="hw_next"))
    net.t_ = float(1 * ms)

    def run(x, y):
        feed.update(x=x, y=y, k=0)
        inp.p, out.target = x[0], y[0]
        net.run(len(x) * t_ep, namespace={})

    def events():
        return float(counters[0].count[:].sum()) * h + float(counters[1].count[:].sum()) * o

    def weights():
        """(W1, W2) with the bias as last column, as the network IR stores them."""
        found = []
        for syn, grp, shape in ((s1, hid, w1.shape), (s2, out, w2.shape)):
            w = np.zeros(shape)
            w[syn.j[:], syn.i[:]] = syn.w[:]
            w[:, -1] = grp.b[:]
            found.append(w)
        return tuple(found)

    return run, events, weights

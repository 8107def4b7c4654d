"""Converted-network evaluation written by hand: many images as copies side by side.

The baselines of ``benchmarks/evaluation.py``: what an expert would write to check a
784-H-10 network on many images at once, from stock processes and plain scripts.

* :func:`handwritten_lava` -- Lava (floating_pt): ``RingBuffer`` (the first layer's constant
  current, computed once) -> stock ``LIF`` (copies x H, reset to zero) -> ``Sparse``
  (block-diagonal) -> stock ``LIF`` that never spikes, whose ``v`` is the read-out
  (one ``Var.get`` at the end). Reset to zero and v(0) = 0: the stock neuron's semantics, so
  it is compared with the tool on a model with those settings.
* :func:`handwritten_brian2` -- Brian2: one ``NeuronGroup`` of copies x H IF neurons with
  reset by subtraction, one ``Synapses`` with block-diagonal connections, a read-out group;
  the textbook schedule (input, threshold, synapses, reset) in one step.

``tests/test_handwritten_baselines.py`` checks that both give the tool's predictions.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def handwritten_lava(w1: np.ndarray, b1: np.ndarray, w2: np.ndarray, b2: np.ndarray,
                     x: np.ndarray, timesteps: int, theta: float) -> np.ndarray:
    """Read-out (N, classes) of a 784-H-10 IF network (reset to zero), floating_pt."""
    import scipy.sparse as sp

    from neurolocal.hardware.lava.runtime import import_lava

    import_lava()
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.source import RingBuffer
    from lava.proc.lif.process import LIF
    from lava.proc.sparse.process import Sparse

    n, h, o = len(x), w1.shape[0], w2.shape[0]
    current = x.reshape(n, -1) @ w1.T  # the constant input current, once
    src = RingBuffer(data=current.reshape(-1, 1))
    hidden = LIF(shape=(n * h,), du=1.0, dv=0.0, vth=theta, bias_mant=np.tile(b1, n))
    syn = Sparse(weights=sp.block_diag([sp.csr_matrix(w2)] * n, format="csr"))
    readout = LIF(shape=(n * o,), du=1.0, dv=0.0, vth=1e300, bias_mant=np.tile(b2, n))
    src.s_out.connect(hidden.a_in)
    hidden.s_out.connect(syn.s_in)
    syn.a_out.connect(readout.a_in)
    try:  # Sparse delays one step: the read-out's window is steps 2..T+1
        src.run(condition=RunSteps(num_steps=timesteps + 1),
                run_cfg=Loihi2SimCfg(select_tag="floating_pt"))
        v = readout.v.get().reshape(n, o)
    finally:
        src.stop()
    return v - b2  # its bias also counted in step 1, before the window


def handwritten_brian2(w1: np.ndarray, b1: np.ndarray, w2: np.ndarray, b2: np.ndarray,
                       x: np.ndarray, timesteps: int, theta: float, v_init: float,
                       codegen: str = "cython") -> tuple[np.ndarray, np.ndarray]:
    """(read-out (N, classes), hidden spike counts (N, H)) of a 784-H-10 IF network."""
    import brian2 as b2_

    from neurolocal.hardware.brian2.runtime import set_prefs

    set_prefs(codegen)
    n, h, o = len(x), w1.shape[0], w2.shape[0]
    ms = b2_.ms
    hid = b2_.NeuronGroup(n * h, "v : 1\nI : 1\ncount : integer", threshold="v > theta",
                          reset="v -= theta\ncount += 1", dt=1 * ms, name="hw_hidden",
                          namespace={"theta": theta})
    out = b2_.NeuronGroup(n * o, "v : 1\nI : 1", dt=1 * ms, name="hw_readout")
    hid.I = (x.reshape(n, -1) @ w1.T + b1).reshape(-1)
    hid.v = v_init * theta
    out.I = np.tile(b2, n)
    hid.run_regularly("v += I", when="start", name="hw_hidden_input")
    out.run_regularly("v += I", when="start", name="hw_readout_input")
    syn = b2_.Synapses(hid, out, "w : 1", on_pre="v_post += w", dt=1 * ms, name="hw_syn")
    rows, cols = np.nonzero(np.ones_like(w2, dtype=bool))
    offs = np.arange(n)[:, None]
    syn.connect(i=(cols[None, :] + offs * h).reshape(-1), j=(rows[None, :] + offs * o).reshape(-1))
    syn.w = np.tile(w2[rows, cols], n)
    net = b2_.Network(hid, out, syn)
    net.run(timesteps * ms, namespace={})
    return np.array(out.v[:]).reshape(n, o), np.array(hid.count[:]).reshape(n, h)


def mlp_arrays(model: Any) -> tuple[np.ndarray, ...]:
    """(W1, b1, W2, b2, theta, v_init) of a converted 784-H-10 SNNModel (float64)."""
    l1, l2 = model.layers
    w1, b1 = (np.asarray(a, np.float64) for a in (l1.ops[-1].weight, l1.ops[-1].bias))
    w2, b2 = (np.asarray(a, np.float64) for a in (l2.ops[-1].weight, l2.ops[-1].bias))
    return w1, b1, w2, b2, float(l1.neuron.threshold), float(l1.neuron.v_init)

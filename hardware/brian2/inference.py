"""Run an :class:`~converters.model.SNNModel` on Brian2 (real ``NeuronGroup``/``Synapses``).

Why Brian2: it is an independent, event-driven simulator; equal spike counts here and in
snntorch show that the converted network's dynamics are what :mod:`converters.model` says,
not an artefact of one library. The same per-step equations are written as Brian2 code::

    initial value:              v = v_init * theta
    run_regularly (per layer):  v = beta * v + I - theta * int(v > theta)   # reset="subtract"
                                v = beta * v * (1 - int(v > theta)) + I     # reset="zero"
    Synapses on_pre:            v_post += w          (spikes of the layer below, same step)
    threshold:                  v > theta            (the reset is applied next step, as in
                                                      snntorch's Leaky with reset_delay=True)

``I`` is the bias (plus, for a constant-current input, the first layer's input current
``W x + b``, which does not change over time and is computed once, as snntorch does). All
objects share one scheduling slot and are ordered layer by layer, so a spike travels through
every layer within the step it is emitted, exactly as in the snntorch run. The read-out group
integrates without leak or threshold; its final ``v`` is the accumulated read-out.

Samples in a batch are copies of the network side by side in one group (block-diagonal
synapses). Objects get stable ``name=``s (Brian2's code cache keys on them); the default code
generation target is ``numpy`` (no compilation); pass ``codegen_target="cython"`` for speed on
long runs. Brian2 computes in float64.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from neurolocal.converters.model import (
    ConversionError,
    RunResult,
    SNNModel,
    as_batch,
    input_macs,
    layer_matrix,
    make_stats,
)

from ..encoding import poisson_spikes
from .runtime import set_prefs

__all__ = ["run_brian2"]


def _update_code(neuron: Any) -> str:
    if neuron.reset == "subtract":
        return "v = beta * v + I - theta * int(v > theta)"
    return "v = beta * v * (1 - int(v > theta)) + I"


def _block_diag(mat: Any, copies: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    coo = mat.tocoo()
    n_out, n_in = mat.shape
    offs = np.arange(copies)
    i = (coo.col[None, :] + offs[:, None] * n_in).reshape(-1)
    j = (coo.row[None, :] + offs[:, None] * n_out).reshape(-1)
    w = np.tile(coo.data, copies)
    return i, j, w


def run_brian2(
    model: SNNModel,
    x: Any,
    timesteps: int,
    *,
    input: str = "current",
    seed: int = 0,
    spikes: np.ndarray | None = None,
    batch_size: int = 16,
    codegen_target: str = "numpy",
    return_counts: bool = False,
) -> RunResult:
    """Simulate ``x`` (N, ...) for ``timesteps`` steps with Brian2; same dynamics as snntorch.

    ``input``: ``"current"`` or ``"poisson"`` (the same trains as snntorch for the same
    ``seed``, or the ``spikes`` (T, N, ...) given).
    """
    import brian2 as b2

    if input not in ("current", "poisson"):
        raise ConversionError(f"input {input!r}: choose 'current' or 'poisson'")
    xb = as_batch(model, x).astype(np.float64)
    n = len(xb)
    t0 = time.perf_counter()
    old_target = b2.prefs.codegen.target
    codegen_target = set_prefs(codegen_target)
    mats = [layer_matrix(layer) for layer in model.layers]
    spiking = [i for i, layer in enumerate(model.layers) if layer.spiking]
    outputs, counts_all = [], []
    sums = [np.zeros(model.layers[i].n_out) for i in spiking]
    in_sum = None if input == "current" else np.zeros(model.layers[0].n_in)
    dt = 1.0 * b2.ms
    try:
        for start in range(0, n, batch_size):
            stop = min(n, start + batch_size)
            b = stop - start
            clock = b2.Clock(dt=dt, name="nl_clock")
            objs: list[Any] = []
            groups = []
            for k, (layer, (mat, bias)) in enumerate(zip(model.layers, mats)):
                size = layer.n_out * b
                eqs = "v : 1\nI : 1 (constant)\ncount : integer\n"
                eqs += "beta : 1 (shared, constant)\ntheta : 1 (shared, constant)"
                kw: dict[str, Any] = {}
                if layer.spiking:
                    kw = {"threshold": "v > theta", "reset": "count += 1"}
                g = b2.NeuronGroup(size, eqs, clock=clock, name=f"nl_{layer.name}", **kw)
                cur = np.tile(bias, b)
                if k == 0 and input == "current":
                    cur = (xb[start:stop].reshape(b, -1) @ mat.T.toarray() + bias).reshape(-1)
                g.I = cur
                if layer.spiking:
                    g.beta = layer.neuron.beta
                    g.theta = layer.neuron.threshold
                    g.v = layer.neuron.v_init * layer.neuron.threshold
                    g.set_event_schedule("spike", when="thresholds", order=10 * k + 12)
                    g.run_regularly(_update_code(layer.neuron), when="thresholds",
                                    order=10 * k + 10, name=f"nl_{layer.name}_update")
                else:
                    g.run_regularly("v = v + I", when="thresholds", order=10 * k + 10,
                                    name=f"nl_{layer.name}_update")
                groups.append(g)
                objs.append(g)
            # synapses: input spikes -> layer 1 (Poisson), layer k -> layer k + 1
            if input == "poisson":
                sp = spikes[:timesteps, start:stop] if spikes is not None else poisson_spikes(
                    xb[start:stop].astype(np.float32), timesteps, seed=seed, start=start)
                sp = np.asarray(sp).reshape(timesteps, b, -1)
                in_sum += sp.sum((0, 1))
                tt, bb, ii = np.nonzero(sp)
                n_in = sp.shape[2]
                gen = b2.SpikeGeneratorGroup(n_in * b, bb * n_in + ii, tt * dt, clock=clock,
                                             when="thresholds", order=1, name="nl_input")
                objs.append(gen)
                pres = [gen] + groups[:-1]
            else:
                pres = [None] + groups[:-1]
            for k, (pre, post, (mat, _)) in enumerate(zip(pres, groups, mats)):
                if pre is None:
                    continue
                syn = b2.Synapses(pre, post, "w : 1", on_pre="v_post += w", clock=clock,
                                  name=f"nl_{model.layers[k].name}_syn")
                i, j, w = _block_diag(mat, b)
                syn.connect(i=i, j=j)
                syn.w = w
                syn.pre.when = "thresholds"
                syn.pre.order = 10 * k + 11
                objs.append(syn)
            net = b2.Network(objs)
            net.run(timesteps * dt, namespace={})
            k = 0
            batch_counts = []
            for i, g in zip(range(len(groups)), groups):
                layer = model.layers[i]
                if layer.spiking:
                    c = np.asarray(g.count[:]).reshape(b, layer.n_out)
                    sums[k] += c.sum(0)
                    batch_counts.append(c.astype(np.int32))
                    k += 1
            last = model.layers[-1]
            if last.spiking:
                outputs.append(batch_counts[-1].astype(np.float64))
            else:
                outputs.append(np.asarray(groups[-1].v[:]).reshape(b, last.n_out))
            if return_counts:
                counts_all.append(batch_counts)
            del net, objs, groups
    finally:
        b2.prefs.codegen.target = old_target
    output = np.concatenate(outputs)
    counts = None
    if return_counts:
        counts = [np.concatenate([c[k] for c in counts_all]) for k in range(len(spiking))]
    return RunResult(
        target="brian2", timesteps=timesteps, predictions=np.argmax(output, axis=1),
        outputs=output, layer_stats=make_stats(model, sums, in_sum, n, timesteps),
        input=input, input_macs=input_macs(model, xb) if input == "current" else 0.0,
        seconds=time.perf_counter() - t0, spike_counts=counts,
        extra={"codegen_target": codegen_target, "dtype": "float64"},
    )

"""A network trained on a spiking target, exported as NIR with its learning rule.

The learning targets' neuron is Lava's current-based LIF (``u = (1-du) u + I``,
``v = (1-dv) v + u``, spike if ``v > vth``, reset to zero in the same step): that is NIR's
``CubaLIF`` discretised with snntorch's convention (``dt = 1e-4``; ``alpha = 1 - dt/tau_syn``,
``beta = 1 - dt/tau_mem``, ``r = tau_mem/dt``, ``w_in = tau_syn/dt``), so ``tau_syn = dt/du``
and ``tau_mem = dt/dv`` (infinite for the default integrate-and-fire ``dv = 0``), and
snntorch's importer builds ``snn.Synaptic`` cells with exactly the learning neuron's
dynamics. Each layer is ``Affine`` (weights and bias) -> ``CubaLIF``.

NIR edges carry no delay, while the learning targets (like Lava's ``Dense`` and Loihi) delay
every projection by one step; the graph's metadata says so (``synaptic_delay: 1``), and a
delay-free simulator reproduces the learning targets' spike counts by running
:func:`delay_free_steps` steps on the input shifted by one step (:func:`delay_free_input`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from neurolocal.network import Network
from neurolocal.rule import FORWARD

from .model import ConversionError
from .nir_io import DT, write_nir

FORMAT = "neurolocal.spiking/1"


def _cuba(n: int, config: Any, dt: float) -> Any:
    import nir

    tau_syn = dt / config.du if config.du > 0 else np.inf
    tau_mem = dt / config.dv if config.dv > 0 else np.inf
    full = lambda v: np.full(n, v, dtype=np.float64)  # noqa: E731
    return nir.CubaLIF(tau_syn=full(tau_syn), tau_mem=full(tau_mem), r=full(tau_mem / dt),
                       v_leak=full(0.0), v_threshold=full(config.vth), v_reset=full(0.0),
                       w_in=full(tau_syn / dt),
                       metadata={"du": config.du, "dv": config.dv, "reset": "zero",
                                 "synaptic_delay": 1})


def spiking_graph(net: Network, config: Any, *, dt: float = DT) -> Any:
    """``net`` (dense layers) as a NIR graph of ``Affine -> CubaLIF`` per layer."""
    import nir

    if net.convs:
        raise ConversionError("spiking-trained networks are dense; this one has conv layers "
                              "(export it with `neurolocal convert` instead)")
    if net.recurrent:
        raise ConversionError(
            f"layer {min(net.recurrent)} of this spiking-trained network is recurrent (R): its "
            "export is not written yet, and a graph without R would be another network; "
            "recurrent layers do travel in NIR for inference (write_nir of an SNNModel with "
            "SNNLayer.recurrent, snntorch's RLeaky form)")
    if config.reset != "zero":
        raise ConversionError(f"reset {config.reset!r}: NIR's CubaLIF resets to v_reset in the "
                              "step it spikes; only the learning targets' reset='zero' exports")
    nodes: dict[str, Any] = {"input": nir.Input(input_type=np.array([net.sizes[0]]))}
    order = ["input"]
    for layer in range(1, net.depth + 1):
        w = np.asarray(net.state[FORWARD][layer]["w"], dtype=np.float64)
        nodes[f"fc{layer}"] = nir.Affine(weight=w[:, :-1], bias=w[:, -1])
        nodes[f"lif{layer}"] = _cuba(net.sizes[layer], config, dt)
        order += [f"fc{layer}", f"lif{layer}"]
    nodes["output"] = nir.Output(output_type=np.array([net.sizes[-1]]))
    order.append("output")
    meta = {"format": FORMAT, "dt": dt, "synaptic_delay": 1, "sizes": list(net.sizes),
            "rule": net.rule.name, "spiking": dataclasses.asdict(config),
            "readout": "spike count of the output layer over the epoch"}
    return nir.NIRGraph(nodes=nodes, edges=list(zip(order[:-1], order[1:])),
                        metadata={"neurolocal": json.dumps(meta)}, type_check=True)


def export_spiking(net: Network, config: Any, path: str | os.PathLike, *,
                   dt: float = DT) -> Path:
    """Write ``net`` as NIR with its rule (the forward synapses ``fc*`` learn with it)."""
    graph = spiking_graph(net, config, dt=dt)
    rules = {f"fc{layer}": net.rule.text for layer in range(1, net.depth + 1)}
    return write_nir(graph, path, rules=rules)


def delay_free_steps(timesteps: int, depth: int) -> int:
    """Steps a delay-free simulator runs to see what the output layer counts in ``timesteps``.

    Layer ``l`` of the learning targets runs ``l - 1`` steps behind a delay-free layer ``l``
    (one step of synaptic delay per projection after the first), so the output counts of
    ``T`` steps are the delay-free output's first ``T - (L - 1)``.
    """
    return timesteps - (depth - 1)


def delay_free_input(spikes: np.ndarray) -> np.ndarray:
    """Input spikes (T, N, n) delayed by one step, the first projection's delay."""
    out = np.zeros_like(spikes)
    out[1:] = spikes[:-1]
    return out

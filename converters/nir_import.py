"""A NIR graph (any tool's) as an :class:`~converters.model.SNNModel`.

Why its own module: NIR describes neurons as differential equations and stores no time step,
so importing is a choice of discretisation, and graphs from other tools come with their own
conventions. The discretisation is forward Euler at ``dt`` -- the one snntorch's importer and
Norse's ``from_nir`` use::

    LIF      tau dv/dt = (v_leak - v) + r I     beta = 1 - dt/tau,  input scale r dt/tau
    CubaLIF  tau_syn dI/dt = -I + w_in S        alpha = 1 - dt/tau_syn
             tau_mem dv/dt = (v_leak - v) + r I beta = 1 - dt/tau_mem,
                                                input scale (dt/tau_syn) w_in (dt/tau_mem) r
    LI       (read-out only)                    leak = 1 - dt/tau,  input scale r dt/tau
    IF       dv/dt = r I                        v += r I (no dt: snntorch and Norse step it so)

Input scales are folded into the weights and biases of the layer's first weighted node; the
neurons reset to ``v_reset`` (0) unless the node's metadata says ``"reset": "subtract"``
(neurolocal's own files). Which dt: the ``dt`` given; else the one a neurolocal file records;
else snntorch's convention, 1e-4 s -- and a warning where the parameters say otherwise
(``r = tau/dt`` for another dt, or Norse's ``r = 1``). Every refusal names the node: dangling
edges, branches, loops outside a recurrent layer, shapes that do not chain, unsupported nodes,
per-neuron parameters that differ, delays. A recurrent layer is a subgraph in the form
snntorch writes RLeaky/RSynaptic (neuron -> Linear/Affine -> the same neuron); its weights get
the neuron's input scale like the forward ones.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import warnings
from typing import Any

import numpy as np

from .model import ConversionError, Neuron, Op, SNNLayer, SNNModel, UnsupportedLayerError

__all__ = ["DT", "SUPPORTED_NODES", "NIRConventionWarning", "from_nir", "implied_dt",
           "node_metadata"]

DT = 1e-4  #: snntorch's NIR time step (export_nir.py / import_nir.py): the default
SUPPORTED_NODES: tuple[str, ...] = (
    "Input", "Output", "Affine", "Linear", "Conv2d", "AvgPool2d", "Flatten", "IF", "LIF",
    "CubaLIF", "LI (read-out)", "Delay (zero delays only)",
    "NIRGraph (a recurrent layer in snntorch's RLeaky form)",
)
NORSE_DT = 1e-3  #: Norse's default simulation step (norse.torch.from_nir(..., dt=1e-3))


class NIRConventionWarning(UserWarning):
    """The graph's parameters look like another exporter's time step than the one used."""


def _nir() -> Any:
    import nir

    return nir


def node_metadata(node: Any) -> dict[str, Any]:
    """A node's metadata with bytes and 0-d arrays as plain Python values."""
    meta = getattr(node, "metadata", None) or {}
    out = {}
    for k, v in meta.items():
        if isinstance(v, bytes):
            v = v.decode()
        elif isinstance(v, np.ndarray) and v.shape == ():
            v = v.item()
        elif isinstance(v, np.generic):
            v = v.item()
        out[k] = v
    return out


# --------------------------------------------------------------------------------------------
# Structure: one chain from Input to Output
# --------------------------------------------------------------------------------------------


def _check_nodes(graph: Any) -> None:
    nir = _nir()
    supported = (nir.Input, nir.Output, nir.Affine, nir.Linear, nir.Conv2d, nir.AvgPool2d,
                 nir.Flatten, nir.IF, nir.LIF, nir.CubaLIF, nir.LI, nir.Delay)
    for name, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            _recurrent_parts(name, node)  # a recurrent layer, or refused by name
            continue
        if not isinstance(node, supported):
            raise UnsupportedLayerError("NIR node", name, type(node).__name__, SUPPORTED_NODES)


def _recurrent_parts(name: str, sub: Any) -> tuple[str, Any, Any]:
    """(neuron key, neuron node, recurrent weight node) of a recurrent-layer subgraph.

    The form snntorch's exporter writes for RLeaky / RSynaptic (``all_to_all``):
    ``input -> lif``, ``lif -> w_rec``, ``w_rec -> lif``, ``lif -> output``, with one neuron
    node and one Linear/Affine from the neurons back to themselves. Anything else is refused.
    """
    nir = _nir()
    kinds = {k: type(n).__name__ for k, n in sub.nodes.items()}
    neurons = [k for k, n in sub.nodes.items() if isinstance(n, (nir.IF, nir.LIF, nir.CubaLIF))]
    weights = [k for k, n in sub.nodes.items() if isinstance(n, (nir.Linear, nir.Affine))]
    ins = [k for k, n in sub.nodes.items() if isinstance(n, nir.Input)]
    outs = [k for k, n in sub.nodes.items() if isinstance(n, nir.Output)]
    shape_ok = len(sub.nodes) == 4 and all(len(x) == 1 for x in (neurons, weights, ins, outs))
    if shape_ok:
        lif, w = neurons[0], weights[0]
        want = {(ins[0], lif), (lif, w), (w, lif), (lif, outs[0])}
        edges = {tuple(str(e) for e in edge) for edge in sub.edges}
        shape_ok = edges == want and len(sub.edges) == 4
    if not shape_ok:
        raise UnsupportedLayerError(
            "NIR node", name, "NIRGraph", SUPPORTED_NODES,
            f"a subgraph is read as a recurrent layer only in snntorch's RLeaky form (input -> "
            f"neuron -> Linear/Affine -> the same neuron, neuron -> output); this one has "
            f"nodes {kinds} and edges {[tuple(e) for e in sub.edges]}")
    n = int(np.asarray(sub.nodes[w].weight).shape[0])
    if np.asarray(sub.nodes[w].weight).shape != (n, n):
        raise ConversionError(f"NIR node {name!r}: recurrent weights {w!r} of shape "
                              f"{np.asarray(sub.nodes[w].weight).shape} are not square")
    return lif, sub.nodes[lif], sub.nodes[w]


def fold_recurrent(graph: Any) -> Any:
    """The graph with each flat recurrent loop folded into a subgraph node.

    snntorch 1.0 (with nirtorch 2) writes an RLeaky as two top-level nodes in a loop,
    ``lif -> w_rec -> lif``, where ``w_rec`` (Linear/Affine) has no other edge; the subgraph
    keeps the neuron's key, so rules and layer names still find it.
    """
    nir = _nir()
    edges = [tuple(str(e) for e in edge) for edge in graph.edges]
    loops = []
    for a, b in set(edges):
        na, nb = graph.nodes.get(a), graph.nodes.get(b)
        if (b, a) in edges and isinstance(na, (nir.IF, nir.LIF, nir.CubaLIF)) and \
                isinstance(nb, (nir.Linear, nir.Affine)) and \
                [e for e in edges if b in e] in ([(a, b), (b, a)], [(b, a), (a, b)]):
            loops.append((a, b))
    if not loops:
        return graph
    nodes, drop = dict(graph.nodes), set()
    for lif, w in loops:
        n = np.asarray(nodes[w].weight).shape[0]
        nodes[lif] = nir.NIRGraph(
            nodes={"input": nir.Input(input_type=np.array([n])), "lif": nodes[lif],
                   "w_rec": nodes.pop(w), "output": nir.Output(output_type=np.array([n]))},
            edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")],
            type_check=False)
        drop |= {(lif, w), (w, lif)}
    return nir.NIRGraph(nodes=nodes, edges=[e for e in edges if e not in drop],
                        metadata=getattr(graph, "metadata", None) or {}, type_check=False)


def _check_edges(graph: Any) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    succ: dict[str, list[str]] = {}
    pred: dict[str, list[str]] = {}
    for edge in graph.edges:
        if len(edge) != 2:
            raise ConversionError(f"NIR edge {edge!r} does not join two nodes")
        a, b = (str(e) for e in edge)
        for end in (a, b):
            if end not in graph.nodes:
                raise ConversionError(
                    f"NIR edge {a!r} -> {b!r} names node {end!r}, which the graph does not "
                    f"have (nodes: {', '.join(sorted(graph.nodes))}); the file is damaged or "
                    "was written by a broken exporter")
        succ.setdefault(a, []).append(b)
        pred.setdefault(b, []).append(a)
    return succ, pred


def _check_acyclic(succ: dict[str, list[str]], nodes: Any) -> None:
    """Refuse the first edge that closes a loop (a recurrent connection), naming it."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in nodes:
        if root in state:
            continue
        stack = [(root, iter(succ.get(root, [])))]
        state[root] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                raise ConversionError(f"NIR edge {node!r} -> {nxt!r} closes a loop "
                                      "(recurrence); recurrent networks are not supported yet")
            elif nxt not in state:
                state[nxt] = 1
                stack.append((nxt, iter(succ.get(nxt, []))))


def _chain(graph: Any) -> list[str]:
    """Node names from Input to Output; every other structure is refused by name."""
    nir = _nir()
    succ, pred = _check_edges(graph)
    _check_acyclic(succ, graph.nodes)
    inputs = [k for k, n in graph.nodes.items() if isinstance(n, nir.Input)]
    if len(inputs) != 1:
        raise ConversionError(f"the NIR graph has {len(inputs)} Input nodes ({inputs}); "
                              "exactly one (a feed-forward chain) is supported")
    order, seen = [inputs[0]], {inputs[0]}
    while not isinstance(graph.nodes[order[-1]], nir.Output):
        cur = order[-1]
        nxt = succ.get(cur, [])
        if len(nxt) != 1:
            raise ConversionError(
                f"NIR node {cur!r} has {len(nxt)} successors ({nxt}); only feed-forward "
                "chains (no branches, merges or recurrence) are supported" if nxt else
                f"NIR node {cur!r} leads nowhere: no edge joins it to the Output node")
        n = nxt[0]
        if n in seen:
            raise ConversionError(f"NIR edge {cur!r} -> {n!r} closes a loop (recurrence); "
                                  "recurrent networks are not supported yet")
        if len(pred.get(n, [])) != 1:
            raise ConversionError(f"NIR node {n!r} has {len(pred[n])} inputs ({pred[n]}); "
                                  "only feed-forward chains are supported")
        order.append(n)
        seen.add(n)
    extra = sorted(set(graph.nodes) - seen)
    if extra:
        raise ConversionError(f"NIR nodes {extra} are not on the input -> output chain")
    return order


# --------------------------------------------------------------------------------------------
# Time step
# --------------------------------------------------------------------------------------------


def _uniform(arr: Any, what: str, node: str) -> float:
    a = np.asarray(arr, dtype=np.float64).reshape(-1)
    if a.size == 0:
        raise ConversionError(f"NIR node {node!r}: {what} is empty")
    if not np.allclose(a, a[0], rtol=1e-6, atol=0) and not (np.isinf(a).all()):
        raise ConversionError(
            f"NIR node {node!r}: {what} differs between neurons (min {a.min()}, max {a.max()}); "
            "only one value per layer is supported")
    return float(a[0])


def _tau_r(node: Any) -> tuple[float, float] | None:
    nir = _nir()
    if isinstance(node, (nir.LIF, nir.LI)):
        return float(np.mean(node.tau)), float(np.mean(node.r))
    if isinstance(node, nir.CubaLIF):
        return float(np.mean(node.tau_mem)), float(np.mean(node.r))
    return None


def implied_dt(graph: Any) -> tuple[str, float | None]:
    """What the neuron parameters say about the exporter's dt.

    ``("r=tau/dt", dt)`` when every leaky node has ``r = tau / dt`` for one dt (snntorch's and
    neurolocal's exporters); ``("r=1", None)`` when every one has ``r = 1`` (Norse's);
    ``("none", None)`` without leaky nodes or when they disagree.
    """
    nir = _nir()
    nodes = [n if not isinstance(n, nir.NIRGraph) else _recurrent_parts(k, n)[1]
             for k, n in graph.nodes.items()]
    pairs = [p for p in (_tau_r(n) for n in nodes) if p is not None]
    pairs = [(tau, r) for tau, r in pairs if math.isfinite(tau) and math.isfinite(r)]
    if not pairs:
        return "none", None
    if all(abs(r - 1.0) < 1e-6 for _, r in pairs):
        return "r=1", None
    dts = [tau / r for tau, r in pairs if r > 0]
    if len(dts) == len(pairs) and np.allclose(dts, dts[0], rtol=1e-4):
        return "r=tau/dt", float(dts[0])
    return "none", None


def _choose_dt(graph: Any, dt: float | None, info: dict[str, Any]) -> tuple[float, list[str]]:
    """The dt to discretise with and the notes that say why (warnings where it looks off)."""
    kind, guess = implied_dt(graph)
    if dt is not None:
        if isinstance(dt, bool) or not isinstance(dt, (int, float)) or not (
                math.isfinite(dt) and dt > 0):
            raise ConversionError(f"--dt {dt!r}: the time step must be a number > 0 (seconds)")
        dt, source = float(dt), "given"
    elif "dt" in info:
        dt, source = float(info["dt"]), "recorded in the file by neurolocal"
    else:
        dt, source = DT, ("assumed: NIR stores no time step; 1e-4 s is snntorch's convention, "
                          "its exporter writes r = tau/dt; give --dt (dt= from Python) for "
                          "another")
    notes = [f"NIR time step dt = {dt:g} s ({source})"]
    if kind == "r=tau/dt" and not np.isclose(guess, dt, rtol=1e-4):
        _warn(notes, f"the graph's neurons have r = tau/dt for dt = {guess:g} s, not the "
                     f"{dt:g} s used: if it was exported at that step, pass --dt {guess:g}")
    elif kind == "r=1" and source != "given":
        _warn(notes, "the graph's leaky neurons have r = 1, as Norse's to_nir writes them "
                     "(snntorch's exporter writes r = tau/dt): Norse simulates at dt = "
                     f"{NORSE_DT:g} s by default; pass --dt {NORSE_DT:g} (or the step it was "
                     "trained at) to run it as Norse does")
    return dt, notes


def _warn(notes: list[str], msg: str) -> None:
    notes.append("warning: " + msg)
    warnings.warn(msg, NIRConventionWarning, stacklevel=4)


# --------------------------------------------------------------------------------------------
# Nodes
# --------------------------------------------------------------------------------------------


def _same_padding(pad: Any, kernel: tuple[int, int], dilation: tuple[int, int], node: str) -> Any:
    if isinstance(pad, bytes):
        pad = pad.decode()
    if isinstance(pad, np.ndarray) and pad.dtype.kind in "SUO":
        pad = str(pad.astype(str).reshape(-1)[0])
    if isinstance(pad, str):
        if pad == "valid":
            return (0, 0)
        if pad == "same":
            if any((d * (k - 1)) % 2 for d, k in zip(dilation, kernel)):
                raise ConversionError(f"NIR node {node!r}: padding 'same' with an even kernel")
            return tuple(d * (k - 1) // 2 for d, k in zip(dilation, kernel))
        raise ConversionError(f"NIR node {node!r}: unknown padding {pad!r}")
    return pad


def _out_shape(op_kind: str, shape: tuple[int, ...], name: str, **kw: Any) -> tuple[int, ...]:
    import torch

    from .model import torch_ops

    try:
        layer = SNNLayer("tmp", [Op(op_kind, "tmp", shape, shape, **kw)])
        with torch.no_grad():
            y = torch_ops(layer)(torch.zeros((1, *shape)))
    except (RuntimeError, ValueError, TypeError) as exc:
        raise ConversionError(f"NIR node {name!r} ({op_kind}) does not fit its input of shape "
                              f"{shape}: {exc}") from None
    return tuple(y.shape[1:])


def _op(name: str, node: Any, shape: tuple[int, ...]) -> Op:
    """A linear NIR node as an Op, checked against the shape it receives."""
    nir = _nir()
    if isinstance(node, (nir.Affine, nir.Linear)):
        w = np.asarray(node.weight)
        if w.ndim != 2:
            raise ConversionError(f"NIR node {name!r}: weight of shape {w.shape} is not 2-D")
        if len(shape) != 1 or w.shape[1] != shape[0]:
            raise ConversionError(
                f"NIR node {name!r}: {type(node).__name__} expects {w.shape[1]} inputs but gets "
                f"shape {shape}" + (" (add a Flatten node)" if len(shape) > 1 else ""))
        bias = np.asarray(node.bias) if isinstance(node, nir.Affine) else None
        if bias is not None and bias.size == 1 and w.shape[0] != 1:
            bias = np.full(w.shape[0], bias.reshape(-1)[0], bias.dtype)  # a scalar bias
        if bias is not None and bias.shape != (w.shape[0],):
            raise ConversionError(f"NIR node {name!r}: bias of shape {bias.shape} for "
                                  f"{w.shape[0]} outputs")
        return Op("linear", name, shape, (w.shape[0],), weight=w, bias=bias)
    if isinstance(node, nir.Conv2d):
        w = np.asarray(node.weight)
        if len(shape) != 3 or w.ndim != 4:
            raise ConversionError(f"NIR node {name!r}: Conv2d needs (C, H, W) input and a 4-D "
                                  f"weight, gets {shape} and {w.shape}")
        kw = dict(weight=w, bias=np.asarray(node.bias), stride=node.stride,
                  dilation=node.dilation, groups=int(np.asarray(node.groups)))
        dil = tuple(np.broadcast_to(np.asarray(node.dilation), (2,)).astype(int))
        kw["padding"] = _same_padding(node.padding, tuple(w.shape[2:]), dil, name)
        return Op("conv2d", name, shape, _out_shape("conv2d", shape, name, **kw), **kw)
    if isinstance(node, nir.AvgPool2d):
        kw = dict(kernel_size=node.kernel_size, stride=node.stride, padding=node.padding)
        return Op("avgpool2d", name, shape, _out_shape("avgpool2d", shape, name, **kw), **kw)
    kw = dict(start_dim=int(node.start_dim), end_dim=int(node.end_dim))
    return Op("flatten", name, shape, _out_shape("flatten", shape, name, **kw), **kw)


def _decay(tau: float, dt: float, name: str, what: str) -> float:
    """``1 - dt/tau`` (1 for an infinite tau), refused where it leaves [0, 1]."""
    if math.isinf(tau):
        return 1.0
    if not tau > 0:
        raise ConversionError(f"NIR node {name!r}: {what} = {tau} must be > 0 (seconds)")
    d = 1.0 - dt / tau
    if d < 0:
        raise ConversionError(
            f"NIR node {name!r}: {what} = {tau:g} s is shorter than dt = {dt:g} s (decay "
            f"1 - dt/{what} = {d:.3g} < 0): the file's time constants belong to another dt "
            "(give the one it was trained at with --dt), or are wrong (Norse 1.1's to_nir "
            "writes tau = dt * tau_mem: export with dt=1, norse#411)")
    return d


def _gain(r: float, tau: float, dt: float) -> float:
    """The Euler input scale ``r * dt / tau`` (1 for r = tau = inf, the r = tau/dt rule)."""
    if math.isinf(tau):
        return 1.0 if math.isinf(r) else 0.0
    return r * dt / tau


def _neuron(name: str, node: Any, n_out: int, dt: float, reset: str | None
            ) -> tuple[Neuron | None, float, float]:
    """(Neuron or None for an LI read-out, input scale, read-out leak) of a neuron node."""
    nir = _nir()
    meta = node_metadata(node)
    for attr in ("v_threshold", "tau", "tau_mem", "tau_syn", "r", "w_in", "v_leak", "v_reset"):
        arr = getattr(node, attr, None)
        if arr is not None and np.asarray(arr).size not in (1, n_out):
            raise ConversionError(f"NIR node {name!r}: {attr} has {np.asarray(arr).size} values "
                                  f"for a layer of {n_out} neurons")
    v_leak = getattr(node, "v_leak", None)
    if v_leak is not None and not np.allclose(np.asarray(v_leak, np.float64), 0.0):
        raise ConversionError(f"NIR node {name!r}: v_leak != 0 is not supported")
    if isinstance(node, nir.LI):
        tau = _uniform(node.tau, "tau", name)
        return None, _gain(_uniform(node.r, "r", name), tau, dt), _decay(tau, dt, name, "tau")
    alpha = 0.0
    if isinstance(node, nir.IF):
        beta, scale = 1.0, _uniform(node.r, "r", name)
    elif isinstance(node, nir.LIF):
        tau = _uniform(node.tau, "tau", name)
        beta = float(meta["beta"]) if "beta" in meta else _decay(tau, dt, name, "tau")
        scale = 1.0 if "beta" in meta else _gain(_uniform(node.r, "r", name), tau, dt)
    else:  # CubaLIF
        tau_s, tau_m = (_uniform(node.tau_syn, "tau_syn", name),
                        _uniform(node.tau_mem, "tau_mem", name))
        alpha, beta = _decay(tau_s, dt, name, "tau_syn"), _decay(tau_m, dt, name, "tau_mem")
        scale = (_gain(_uniform(node.w_in, "w_in", name), tau_s, dt)
                 * _gain(_uniform(node.r, "r", name), tau_m, dt))
    mode = reset or meta.get("reset")
    if mode is None:
        v_reset = _uniform(node.v_reset, "v_reset", name)
        if v_reset != 0.0:
            raise ConversionError(f"NIR node {name!r}: v_reset={v_reset} (only 0 is supported)")
        mode = "zero"
    kind = "CubaLIF" if isinstance(node, nir.CubaLIF) else str(
        meta.get("neuron", "IF" if beta == 1.0 else "LIF"))
    thr = _uniform(node.v_threshold, "v_threshold", name)
    return (Neuron(kind, thr, beta, mode, name=name, v_init=float(meta.get("v_init", 0.0)),
                   alpha=alpha), scale, 1.0)


def _scale_layer(ops: list[Op], factor: float, node: str) -> None:
    """Multiply a layer's output by ``factor`` (the NIR input scale folded in)."""
    weighted = [op for op in ops if op.weighted]
    if not weighted:
        raise ConversionError(f"NIR node {node!r} scales its input by {factor:g}, but no "
                              "weighted node precedes it to fold that into")
    weighted[0].weight = np.asarray(weighted[0].weight * factor, weighted[0].weight.dtype)
    for op in weighted:
        op.bias = np.asarray(op.bias * factor, op.bias.dtype)


def _check_delay(name: str, node: Any, dt: float) -> None:
    delay = np.asarray(node.delay, np.float64)
    if np.any(delay != 0):
        steps = np.rint(delay / dt)
        raise UnsupportedLayerError(
            "NIR node", name, "Delay", SUPPORTED_NODES,
            f"delays of {steps.min():.0f}-{steps.max():.0f} steps at dt = {dt:g} s are not "
            "supported yet (only zero delays)")


# --------------------------------------------------------------------------------------------
# The graph
# --------------------------------------------------------------------------------------------


def _graph_info(graph: Any) -> dict[str, Any]:
    info: dict[str, Any] = {}
    gmeta = node_metadata(graph)
    if "neurolocal" in gmeta:
        with contextlib.suppress(ValueError, TypeError):
            info = json.loads(gmeta["neurolocal"])
    return info


def _input_shape(graph: Any, order: list[str], given: tuple[int, ...] | None
                 ) -> tuple[int, ...]:
    nir = _nir()
    if given is not None:
        return tuple(int(s) for s in given)
    first = graph.nodes[order[0]]
    arr = first.input_type.get("input") if first.input_type else None
    nxt = graph.nodes[order[1]] if len(order) > 1 else None
    dense = isinstance(nxt, (nir.Affine, nir.Linear))
    if arr is not None and np.asarray(arr).size:
        shape = tuple(int(s) for s in np.asarray(arr).reshape(-1))
        if dense and len(shape) > 1 and shape[0] == 1 and np.prod(shape[1:]) == np.asarray(
                nxt.weight).shape[1]:
            shape = shape[1:]  # Norse's exporter writes the sample's batch dimension
        return shape
    if dense:
        return (int(np.asarray(nxt.weight).shape[1]),)  # an unshaped Input before an Affine
    raise ConversionError(f"the NIR Input node {order[0]!r} has no shape; give it: "
                          "--input-shape 1,28,28 (input_shape=(1, 28, 28) from Python)")


def _layers(graph: Any, order: list[str], shape: tuple[int, ...], dt: float,
            reset: str | None, layer_info: dict[str, Any]) -> list[SNNLayer]:
    nir = _nir()
    layers: list[SNNLayer] = []
    ops: list[Op] = []
    for name in order[1:]:
        node = graph.nodes[name]
        if isinstance(node, nir.Output):
            break
        if isinstance(node, nir.Delay):
            _check_delay(name, node, dt)
            continue
        rec_node = None
        if isinstance(node, nir.NIRGraph):
            _, node, rec_node = _recurrent_parts(name, node)
        elif not isinstance(node, (nir.IF, nir.LIF, nir.CubaLIF, nir.LI)):
            ops.append(_op(name, node, shape))
            shape = ops[-1].out_shape
            continue
        if not ops:
            raise ConversionError(f"NIR neuron node {name!r} follows no synaptic node")
        neuron, scale, leak = _neuron(name, node, int(np.prod(shape)), dt, reset)
        rec = None if rec_node is None else _recurrent_weights(name, rec_node, ops, shape)
        if not np.isclose(scale, 1.0, rtol=1e-9, atol=0):
            _scale_layer(ops, scale, name)
            rec = None if rec is None else rec * scale
        li = layer_info.get(name, {})
        layers.append(SNNLayer(li.get("name", f"layer{len(layers) + 1}"), ops, neuron,
                               scale=float(li.get("scale", 1.0)), leak=leak, recurrent=rec))
        ops = []
        if neuron is None and name != _last_before_output(graph, order):
            raise ConversionError(f"NIR node {name!r} (LI) is not the last layer: a leaky "
                                  "integrator has no spikes, so it can only be the read-out")
    if ops:
        li = layer_info.get("__readout", {})
        layers.append(SNNLayer(li.get("name", f"layer{len(layers) + 1}"), ops, None,
                               scale=float(li.get("scale", 1.0))))
    return layers


def _recurrent_weights(name: str, node: Any, ops: list[Op], shape: tuple[int, ...]
                       ) -> np.ndarray:
    """The recurrent matrix of a subgraph; an Affine's bias joins the layer's own bias (both
    enter the neurons every step), which needs a layer that ends in a linear map."""
    w = np.asarray(node.weight, np.float64)
    if w.shape[0] != int(np.prod(shape)):
        raise ConversionError(f"NIR node {name!r}: {w.shape[0]} recurrent weights rows for a "
                              f"layer of {int(np.prod(shape))} neurons")
    bias = np.asarray(getattr(node, "bias", np.zeros(len(w))), np.float64).reshape(-1)
    if np.any(bias != 0):
        if ops[-1].kind != "linear":
            raise ConversionError(f"NIR node {name!r}: a recurrent bias needs the layer to "
                                  f"end in a Linear/Affine node, not {ops[-1].kind}")
        ops[-1].bias = np.asarray(ops[-1].bias + bias, np.asarray(ops[-1].bias).dtype)
    return w


def _last_before_output(graph: Any, order: list[str]) -> str:
    nir = _nir()
    names = [n for n in order if not isinstance(graph.nodes[n], (nir.Output, nir.Delay))]
    return names[-1]


def _check_output(graph: Any, order: list[str], model: SNNModel) -> None:
    out = graph.nodes[order[-1]]
    arr = out.output_type.get("output") if getattr(out, "output_type", None) else None
    if arr is not None and np.asarray(arr).size:
        n = int(np.prod(np.asarray(arr).reshape(-1)))
        if n != model.n_outputs:
            raise ConversionError(f"NIR Output node {order[-1]!r} says {n} outputs, but the "
                                  f"graph computes {model.n_outputs}")


def from_nir(
    graph: Any,
    *,
    dt: float | None = None,
    input_shape: tuple[int, ...] | None = None,
    reset: str | None = None,
) -> SNNModel:
    """Turn a NIR graph (a feed-forward chain) into an SNNModel (see the module docstring).

    ``dt``: the time step in seconds (default: the file's own if neurolocal wrote it, else
    snntorch's 1e-4 with a note); ``reset`` forces the reset of every neuron (``"subtract"``
    for graphs from tools that reset by subtraction but do not say so). The notes on dt land
    in ``model.metadata["nir"]["notes"]``; suspicious conventions also raise a
    :class:`NIRConventionWarning`.
    """
    nir = _nir()
    if isinstance(graph, (str, os.PathLike)):
        from .nir_io import read_nir

        return read_nir(graph, dt=dt, input_shape=input_shape, reset=reset)
    if not isinstance(graph, nir.NIRGraph):
        raise ConversionError(f"expected a nir.NIRGraph or a path, got {type(graph).__name__}")
    if reset not in (None, "subtract", "zero"):
        raise ConversionError(f"reset {reset!r}: choose 'subtract' or 'zero'")
    graph = fold_recurrent(graph)
    _check_nodes(graph)
    order = _chain(graph)
    info = _graph_info(graph)
    dt, notes = _choose_dt(graph, dt, info)
    shape = _input_shape(graph, order, input_shape)
    layer_info = {li.get("neuron") or "__readout": li for li in info.get("layers", [])}
    layers = _layers(graph, order, shape, dt, reset, layer_info)
    if not layers:
        raise ConversionError("the NIR graph has no synaptic or neuron nodes")
    meta_model = dict(info.get("model", {}))
    meta_model["nir"] = {"dt": dt, "format": info.get("format", "foreign"), "notes": notes}
    model = SNNModel(shape, layers, meta_model)
    _check_output(graph, order, model)
    return model

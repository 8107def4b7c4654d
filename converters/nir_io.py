"""NIR export/import of converted networks, and the learning-rule sidecar.

Why NIR: it is the exchange format snntorch, Norse, Sinabs, Rockpool and Lava-dl read, so a
network converted here runs elsewhere, and graphs exported elsewhere run on every target here.

What NIR cannot say, and what we do about it (all written down in the file, nothing lost):

* NIR 1.0's IF/LIF nodes reset *to* ``v_reset``; our converted neurons reset *by
  subtraction*. Each neuron node carries ``metadata = {"reset": "subtract", "beta": ...,
  "neuron": "IF"|"LIF"}``; readers that ignore metadata see reset-to-zero neurons.
* IF layers are written as NIR ``LIF`` nodes with ``tau = 2**60 * dt`` (a leak below float64
  resolution: snntorch imports them with beta = 1.0 exactly), because snntorch 1.0's importer
  turns ``nir.IF`` into ``Leaky(beta=0.9)`` that returns a tuple and breaks the graph.
* The read-out layer ends with an ``Affine`` node: the graph's output is the read-out current
  per step, and the prediction is the argmax of its sum over time.

* NIR has no initial state: the initial membrane ``v_init`` (fraction of the threshold) is in
  the same metadata.

:mod:`neurolocal.hardware.snntorch.nir_import` reads a file with snntorch's own
``import_from_nir`` and applies that metadata (reset by subtraction, delayed as in ``Leaky``'s
default; the initial membrane), so a file written here runs natively in snntorch too.

Import (:func:`from_nir`) follows NIR's semantics (reset to ``v_reset``, LIF discretised with
snntorch's ``dt = 1e-4``: ``beta = 1 - dt / tau``, input scale ``r * dt / tau``) unless the
node's metadata says otherwise. Files are written atomically (temporary file + ``os.replace``).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .model import ConversionError, Neuron, Op, SNNLayer, SNNModel, UnsupportedLayerError

__all__ = [
    "DT",
    "IF_TAU_STEPS",
    "SUPPORTED_NODES",
    "from_nir",
    "read_nir",
    "read_rules",
    "rules_path",
    "to_nir",
    "write_nir",
]

DT = 1e-4  #: snntorch's NIR time step (export_nir.py / import_nir.py)
IF_TAU_STEPS = 2.0**60  #: tau / dt of an IF neuron written as a NIR LIF node
FORMAT = "neurolocal.snn/1"
RULES_FORMAT = "neurolocal.rules/1"
SUPPORTED_NODES: tuple[str, ...] = (
    "Input", "Output", "Affine", "Linear", "Conv2d", "AvgPool2d", "Flatten", "IF", "LIF",
)


def _nir():
    import nir

    return nir


# --------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------


def _op_node(op: Op) -> Any:
    nir = _nir()
    if op.kind == "linear":
        return nir.Affine(weight=np.asarray(op.weight), bias=np.asarray(op.bias))
    if op.kind == "conv2d":
        return nir.Conv2d(
            input_shape=tuple(op.in_shape[1:]), weight=np.asarray(op.weight),
            stride=op.stride, padding=op.padding, dilation=op.dilation, groups=op.groups,
            bias=np.asarray(op.bias),
        )
    if op.kind == "avgpool2d":
        return nir.AvgPool2d(kernel_size=np.array(op.kernel_size), stride=np.array(op.stride),
                             padding=np.array(op.padding))
    return nir.Flatten(input_type={"input": np.array(op.in_shape)}, start_dim=op.start_dim,
                       end_dim=op.end_dim)


def _neuron_node(neuron: Neuron, shape: tuple[int, ...], layer: str, dt: float) -> Any:
    nir = _nir()
    tau_steps = IF_TAU_STEPS if neuron.beta == 1.0 else 1.0 / (1.0 - neuron.beta)
    tau = np.full(shape, tau_steps * dt)
    return nir.LIF(
        tau=tau,
        r=np.full(shape, tau_steps),  # r * dt / tau == 1: unit input scaling
        v_leak=np.zeros(shape),
        v_threshold=np.full(shape, neuron.threshold, dtype=np.float64),
        v_reset=np.zeros(shape),
        metadata={"reset": neuron.reset, "beta": float(neuron.beta), "neuron": neuron.kind,
                  "layer": layer, "v_init": float(neuron.v_init)},
    )


def to_nir(model: SNNModel, *, dt: float = DT) -> Any:
    """The model as a ``nir.NIRGraph``: a chain Input -> ops -> LIF -> ... -> Output.

    Node names are the op and neuron names of the model (``fc1``, ``conv1``, ``lif1``...);
    they are the keys of the learning-rule sidecar.
    """
    nir = _nir()
    nodes: dict[str, Any] = {"input": nir.Input(input_type=np.array(model.input_shape))}
    order = ["input"]
    for layer in model.layers:
        for op in layer.ops:
            nodes[op.name] = _op_node(op)
            order.append(op.name)
        if layer.neuron is not None:
            name = layer.neuron.name or f"lif_{layer.name}"
            if name in nodes:
                raise ConversionError(f"duplicate NIR node name {name!r}")
            nodes[name] = _neuron_node(layer.neuron, layer.out_shape, layer.name, dt)
            order.append(name)
    nodes["output"] = nir.Output(output_type=np.array(model.output_shape))
    order.append("output")
    edges = list(zip(order[:-1], order[1:]))
    meta = {
        "format": FORMAT,
        "readout": model.readout,
        "dt": dt,
        "layers": [{"name": layer.name, "scale": layer.scale,
                    "ops": [op.name for op in layer.ops],
                    "neuron": layer.neuron.name if layer.neuron else None}
                   for layer in model.layers],
        "model": _jsonable(model.metadata),
    }
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"neurolocal": json.dumps(meta)},
                        type_check=True)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return str(obj)


def rules_path(path: str | os.PathLike[str]) -> Path:
    """The sidecar next to a graph: ``snn.h5`` -> ``snn.rules.json``."""
    p = Path(path)
    return p.with_name(p.stem + ".rules.json") if p.suffix else p.with_name(p.name + ".rules.json")


def _atomic_write(path: Path, write: Callable[[str], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _synaptic_nodes(graph: Any) -> list[str]:
    nir = _nir()
    kinds = (nir.Affine, nir.Linear, nir.Conv2d)
    return [name for name, node in graph.nodes.items() if isinstance(node, kinds)]


def _normalise_rules(rules: Mapping[str, Any] | str, graph: Any) -> dict[str, Any]:
    synaptic = _synaptic_nodes(graph)
    if isinstance(rules, str):
        return {name: rules for name in synaptic}
    if not isinstance(rules, Mapping):
        raise ConversionError(f"rules must be a dict {{node name: rule}} or a string, "
                              f"got {type(rules).__name__}")
    unknown = sorted(set(rules) - set(graph.nodes))
    if unknown:
        raise ConversionError(
            f"learning rules given for {unknown}, which are not nodes of the NIR graph; "
            f"synaptic nodes are {synaptic}"
        )
    out = {}
    for k, v in rules.items():
        if hasattr(v, "text") and not isinstance(v, (str, Mapping)):
            v = v.text  # a neurolocal Rule object: store its text
        try:
            json.dumps(v)
        except TypeError:
            raise ConversionError(f"rule for node {k!r} is not JSON-serialisable "
                                  f"({type(v).__name__}); pass its text") from None
        out[str(k)] = v
    return out


def write_nir(
    model_or_graph: SNNModel | Any,
    path: str | os.PathLike[str],
    *,
    rules: Mapping[str, Any] | str | None = None,
    dt: float = DT,
) -> Path:
    """Write the graph to ``path`` (HDF5, via ``nir.write``) atomically; return the path.

    ``rules`` (node name -> rule description, or one string for every synaptic node) go to
    the sidecar ``<name>.rules.json`` beside the graph. Writing without rules removes a stale
    sidecar, so a graph and its sidecar always belong together.
    """
    nir = _nir()
    graph = to_nir(model_or_graph, dt=dt) if isinstance(model_or_graph, SNNModel) \
        else model_or_graph
    path = Path(path)
    side = rules_path(path)
    payload = None
    if rules is not None:
        payload = {
            "format": RULES_FORMAT,
            "graph": path.name,
            "note": "learning rules keyed by NIR node names (NIR has no plasticity node)",
            "rules": _normalise_rules(rules, graph),
        }
    _atomic_write(path, lambda tmp: nir.write(tmp, graph))
    if payload is not None:
        def dump(tmp: str) -> None:
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(payload, fh, indent=2, sort_keys=True)
                fh.write("\n")

        _atomic_write(side, dump)
    elif side.exists():
        side.unlink()
    return path


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def read_graph(path: Path) -> Any:
    import h5py

    nir = _nir()
    if not path.is_file():
        raise ConversionError(f"NIR file {str(path)!r} does not exist")
    try:
        with h5py.File(path, "r") as fh:
            if "node" not in fh:
                raise ConversionError(
                    f"{str(path)!r} is an HDF5 file but not a NIR graph (no 'node' group); "
                    "is it a neurolocal checkpoint?"
                )
    except OSError as exc:
        raise ConversionError(
            f"cannot read {str(path)!r}: not an HDF5 file or corrupt ({exc}); "
            "re-export the graph with nir.write"
        ) from None
    try:
        return nir.read(path, type_check=False)
    except ConversionError:
        raise
    except Exception as exc:  # noqa: BLE001 - nir raises many kinds on malformed content
        raise ConversionError(
            f"{str(path)!r} holds a malformed NIR graph ({type(exc).__name__}: {exc})"
        ) from None


def read_rules(path: str | os.PathLike[str], graph: Any = None) -> dict[str, Any] | None:
    """The sidecar rules of the graph at ``path`` (None when there is no sidecar)."""
    side = rules_path(path)
    if not side.exists():
        return None
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
        rules = data["rules"]
        if data.get("format") != RULES_FORMAT or not isinstance(rules, dict):
            raise ValueError(f"format {data.get('format')!r}, expected {RULES_FORMAT!r}")
    except (ValueError, KeyError, TypeError) as exc:
        raise ConversionError(f"learning-rule sidecar {str(side)!r} is corrupt ({exc}); "
                              "rewrite it with write_nir(..., rules=...)") from None
    if graph is not None:
        unknown = sorted(set(rules) - set(graph.nodes))
        if unknown:
            raise ConversionError(
                f"sidecar {str(side)!r} names nodes {unknown} that the graph does not have "
                "(a stale sidecar?)"
            )
    return rules


def read_nir(path: str | os.PathLike[str], **kw: Any) -> SNNModel:
    """Read a NIR file into an SNNModel; sidecar rules land in ``model.metadata["rules"]``."""
    path = Path(path)
    graph = read_graph(path)
    model = from_nir(graph, **kw)
    rules = read_rules(path, graph)
    if rules is not None:
        model.metadata["rules"] = rules
    model.metadata.setdefault("source", path.name)
    return model


def _uniform(arr: Any, what: str, node: str) -> float:
    a = np.asarray(arr, dtype=np.float64).reshape(-1)
    if a.size == 0:
        raise ConversionError(f"NIR node {node!r}: {what} is empty")
    if not np.allclose(a, a[0], rtol=1e-9, atol=0):
        raise ConversionError(
            f"NIR node {node!r}: {what} differs between neurons (min {a.min()}, max {a.max()}); "
            "only one value per layer is supported"
        )
    return float(a[0])


def node_metadata(node: Any) -> dict[str, Any]:
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


def _chain(graph: Any) -> list[str]:
    nir = _nir()
    inputs = [k for k, n in graph.nodes.items() if isinstance(n, nir.Input)]
    if len(inputs) != 1:
        raise ConversionError(f"the NIR graph has {len(inputs)} Input nodes; exactly one "
                              "(a feed-forward chain) is supported")
    succ: dict[str, list[str]] = {}
    pred: dict[str, list[str]] = {}
    for a, b in graph.edges:
        succ.setdefault(a, []).append(b)
        pred.setdefault(b, []).append(a)
    order = [inputs[0]]
    seen = {inputs[0]}
    while True:
        cur = order[-1]
        nxt = succ.get(cur, [])
        if isinstance(graph.nodes[cur], nir.Output):
            break
        if len(nxt) != 1:
            raise ConversionError(
                f"NIR node {cur!r} has {len(nxt)} successors; only feed-forward chains "
                "(no branches, merges or recurrence) are supported"
            )
        n = nxt[0]
        if n in seen or len(pred.get(n, [])) != 1:
            raise ConversionError(
                f"NIR node {n!r} has several inputs or closes a loop; only feed-forward chains "
                "are supported (recurrent subgraphs are not)"
            )
        order.append(n)
        seen.add(n)
    extra = sorted(set(graph.nodes) - seen)
    if extra:
        raise ConversionError(f"NIR nodes {extra} are not on the input->output chain")
    return order


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


def _out_shape(op_kind: str, shape: tuple[int, ...], **kw: Any) -> tuple[int, ...]:
    import torch

    from .model import torch_ops

    layer = SNNLayer("tmp", [Op(op_kind, "tmp", shape, shape, **kw)])
    with torch.no_grad():
        y = torch_ops(layer)(torch.zeros((1, *shape)))
    return tuple(y.shape[1:])


def _scale_layer(ops: list[Op], factor: float, node: str) -> None:
    """Multiply a layer's output by ``factor`` (NIR input scaling r*dt/tau folded in)."""
    weighted = [op for op in ops if op.weighted]
    if not weighted:
        raise ConversionError(f"NIR node {node!r} scales its input by {factor}, but no "
                              "weighted node precedes it to fold that into")
    weighted[0].weight = np.asarray(weighted[0].weight * factor, weighted[0].weight.dtype)
    for op in weighted:
        op.bias = np.asarray(op.bias * factor, op.bias.dtype)


def from_nir(
    graph: Any,
    *,
    dt: float = DT,
    input_shape: tuple[int, ...] | None = None,
    reset: str | None = None,
) -> SNNModel:
    """Turn a NIR graph (a feed-forward chain) into an SNNModel.

    ``reset`` forces the reset of every neuron (``"subtract"`` for graphs from tools that
    reset by subtraction but do not say so); by default it is the node's ``metadata["reset"]``
    or NIR's own semantics, reset to zero. Unsupported nodes raise an error naming the node
    and :data:`SUPPORTED_NODES`.
    """
    nir = _nir()
    if isinstance(graph, (str, os.PathLike)):
        return read_nir(graph, dt=dt, input_shape=input_shape, reset=reset)
    if not isinstance(graph, nir.NIRGraph):
        raise ConversionError(f"expected a nir.NIRGraph or a path, got {type(graph).__name__}")
    supported = (nir.Input, nir.Output, nir.Affine, nir.Linear, nir.Conv2d, nir.AvgPool2d,
                 nir.Flatten, nir.IF, nir.LIF)
    for name, node in graph.nodes.items():
        if not isinstance(node, supported):
            hint = ("recurrent subgraphs are not supported" if isinstance(node, nir.NIRGraph)
                    else "")
            raise UnsupportedLayerError("NIR node", name, type(node).__name__, SUPPORTED_NODES,
                                        hint)
    gmeta = node_metadata(graph)
    info: dict[str, Any] = {}
    if "neurolocal" in gmeta:
        with contextlib.suppress(ValueError, TypeError):
            info = json.loads(gmeta["neurolocal"])
    layer_info = {li.get("neuron") or "__readout": li for li in info.get("layers", [])}
    order = _chain(graph)
    first = graph.nodes[order[0]]
    shape_arr = first.input_type.get("input") if first.input_type else None
    if input_shape is None:
        if shape_arr is None or np.asarray(shape_arr).size == 0:
            raise ConversionError("the NIR Input node has no shape; pass input_shape=(...)")
        input_shape = tuple(int(s) for s in np.asarray(shape_arr).reshape(-1))
    shape = tuple(int(s) for s in input_shape)
    layers: list[SNNLayer] = []
    ops: list[Op] = []
    for name in order[1:]:
        node = graph.nodes[name]
        if isinstance(node, nir.Output):
            break
        if isinstance(node, (nir.Affine, nir.Linear)):
            w = np.asarray(node.weight)
            if w.ndim != 2:
                raise ConversionError(f"NIR node {name!r}: weight of shape {w.shape} is not 2-D")
            if len(shape) != 1 or w.shape[1] != shape[0]:
                raise ConversionError(
                    f"NIR node {name!r}: {type(node).__name__} expects {w.shape[1]} inputs but "
                    f"gets shape {shape}" + (" (add a Flatten node)" if len(shape) > 1 else "")
                )
            bias = np.asarray(node.bias) if isinstance(node, nir.Affine) else None
            ops.append(Op("linear", name, shape, (w.shape[0],), weight=w, bias=bias))
        elif isinstance(node, nir.Conv2d):
            w = np.asarray(node.weight)
            if len(shape) != 3:
                raise ConversionError(f"NIR node {name!r}: Conv2d needs (C, H, W) input, "
                                      f"gets {shape}")
            kw = dict(weight=w, bias=np.asarray(node.bias), stride=node.stride,
                      dilation=node.dilation, groups=int(np.asarray(node.groups)))
            dil = tuple(np.broadcast_to(np.asarray(node.dilation), (2,)).astype(int))
            kw["padding"] = _same_padding(node.padding, tuple(w.shape[2:]), dil, name)
            ops.append(Op("conv2d", name, shape, _out_shape("conv2d", shape, **kw), **kw))
        elif isinstance(node, nir.AvgPool2d):
            kw = dict(kernel_size=node.kernel_size, stride=node.stride, padding=node.padding)
            ops.append(Op("avgpool2d", name, shape, _out_shape("avgpool2d", shape, **kw), **kw))
        elif isinstance(node, nir.Flatten):
            kw = dict(start_dim=int(node.start_dim), end_dim=int(node.end_dim))
            ops.append(Op("flatten", name, shape, _out_shape("flatten", shape, **kw), **kw))
        else:  # IF / LIF
            meta = node_metadata(node)
            n_neurons = int(np.prod(shape))
            if np.asarray(node.v_threshold).size not in (1, n_neurons):
                raise ConversionError(
                    f"NIR node {name!r}: {np.asarray(node.v_threshold).size} neurons after a "
                    f"layer of {n_neurons} outputs"
                )
            if not ops:
                raise ConversionError(f"NIR neuron node {name!r} follows no synaptic node")
            thr = _uniform(node.v_threshold, "v_threshold", name)
            if isinstance(node, nir.LIF):
                if not np.allclose(np.asarray(node.v_leak, dtype=np.float64), 0.0):
                    raise ConversionError(f"NIR node {name!r}: v_leak != 0 is not supported")
                tau = _uniform(node.tau, "tau", name)
                beta = float(meta["beta"]) if "beta" in meta else 1.0 - dt / tau
                scale = _uniform(node.r, "r", name) * dt / tau
            else:
                beta = 1.0
                scale = _uniform(node.r, "r", name)
            if not np.isclose(scale, 1.0, rtol=1e-9, atol=0):
                _scale_layer(ops, scale, name)
            mode = reset or meta.get("reset")
            if mode is None:
                v_reset = _uniform(node.v_reset, "v_reset", name)
                if v_reset != 0.0:
                    raise ConversionError(f"NIR node {name!r}: v_reset={v_reset} (only 0)")
                mode = "zero"
            kind = str(meta.get("neuron", "IF" if beta == 1.0 else "LIF"))
            li = layer_info.get(name, {})
            idx = len(layers) + 1
            layers.append(SNNLayer(
                li.get("name", f"layer{idx}"), ops,
                Neuron(kind, thr, beta, mode, name=name, v_init=float(meta.get("v_init", 0.0))),
                scale=float(li.get("scale", 1.0)),
            ))
            ops = []
            continue
        shape = ops[-1].out_shape
    if ops:
        li = layer_info.get("__readout", {})
        layers.append(SNNLayer(li.get("name", f"layer{len(layers) + 1}"), ops, None,
                               scale=float(li.get("scale", 1.0))))
    if not layers:
        raise ConversionError("the NIR graph has no synaptic or neuron nodes")
    meta_model = dict(info.get("model", {}))
    meta_model["nir"] = {"dt": dt, "format": info.get("format", "foreign")}
    return SNNModel(tuple(int(s) for s in input_shape), layers, meta_model)

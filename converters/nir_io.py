"""NIR export/import of converted networks, and the learning rules that travel with them.

Why NIR: it is the exchange format snntorch, Norse, Sinabs, Rockpool and Lava-dl read, so a
network converted here runs elsewhere, and graphs exported elsewhere run on every target here
(:mod:`.nir_import` says how the equations are discretised and which dt is used).

What NIR cannot say, and what we do about it (all written down in the file, nothing lost):

* NIR 1.0's IF/LIF nodes reset *to* ``v_reset``; our converted neurons reset *by
  subtraction*. Each neuron node carries ``metadata = {"reset": "subtract", "beta": ...,
  "neuron": "IF"|"LIF"|"CubaLIF"}``; readers that ignore metadata see reset-to-zero neurons.
* IF layers are written as NIR ``LIF`` nodes with ``tau = 2**60 * dt`` (a leak below float64
  resolution: snntorch imports them with beta = 1.0 exactly), because snntorch 1.0's importer
  turns ``nir.IF`` into ``Leaky(beta=0.9)`` that returns a tuple and breaks the graph.
  Current-based layers are ``CubaLIF`` nodes; every node follows snntorch's convention
  (``tau = dt / (1 - decay)``, ``r = tau / dt``, ``w_in = tau_syn / dt``, dt = 1e-4).
* The read-out layer ends with an ``Affine`` node (``LI`` for a leaky read-out): the graph's
  output is the read-out current per step, and the prediction is the argmax of its sum.
* NIR has no initial state: the initial membrane ``v_init`` is in the same metadata.
* NIR has no plasticity node: the learning rules (node name -> rule) live in the group
  :data:`RULES_GROUP` of the same HDF5 file, which NIR readers ignore (``nir.read`` reads only
  ``/node``), so graph and rules are written -- and replaced -- together. ``<name>.rules.json``
  beside it is a copy for people and other tools, bound to the graph file by its SHA-256;
  reading refuses a sidecar whose hash does not match and ignores a stale one where the graph
  carries its own rules.

:mod:`neurolocal.hardware.snntorch.nir_import` reads a file with snntorch's own
``import_from_nir`` and applies that metadata, so a file written here runs natively in
snntorch too. Files are written by :func:`neurolocal.fileio.atomic_write` (a recognisable
temporary file, the user's umask, one rename).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from neurolocal.fileio import atomic_write

from .model import ConversionError, Neuron, Op, SNNModel
from .nir_import import DT, SUPPORTED_NODES, NIRConventionWarning, from_nir, node_metadata

__all__ = [
    "DT",
    "IF_TAU_STEPS",
    "CONVENTIONS",
    "RULES_GROUP",
    "SUPPORTED_NODES",
    "NIRConventionWarning",
    "from_nir",
    "node_metadata",
    "read_graph",
    "read_nir",
    "read_rules",
    "rules_path",
    "to_nir",
    "write_nir",
]

IF_TAU_STEPS = 2.0**60  #: tau / dt of an IF neuron written as a NIR LIF node
FORMAT = "neurolocal.snn/1"
RULES_FORMAT = "neurolocal.rules/2"
RULES_GROUP = "neurolocal_rules"  #: the HDF5 group (beside NIR's ``/node``) holding the rules


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


def _steps(decay: float) -> float:
    """tau / dt of a per-step decay (snntorch's convention: decay = 1 - dt / tau)."""
    return IF_TAU_STEPS if decay == 1.0 else 1.0 / (1.0 - decay)


def _neuron_node(neuron: Neuron, shape: tuple[int, ...], layer: str, dt: float) -> Any:
    nir = _nir()
    tau_steps = _steps(neuron.beta)
    tau = np.full(shape, tau_steps * dt)
    meta = {"reset": neuron.reset, "beta": float(neuron.beta), "neuron": neuron.kind,
            "layer": layer, "v_init": float(neuron.v_init)}
    if neuron.kind == "CubaLIF":
        syn_steps = _steps(neuron.alpha) if neuron.alpha else 1.0
        return nir.CubaLIF(
            tau_syn=np.full(shape, syn_steps * dt), tau_mem=tau, r=np.full(shape, tau_steps),
            v_leak=np.zeros(shape), v_threshold=np.full(shape, neuron.threshold, np.float64),
            v_reset=np.zeros(shape), w_in=np.full(shape, syn_steps),
            metadata={**meta, "alpha": float(neuron.alpha)})
    return nir.LIF(
        tau=tau,
        r=np.full(shape, tau_steps),  # r * dt / tau == 1: unit input scaling
        v_leak=np.zeros(shape),
        v_threshold=np.full(shape, neuron.threshold, dtype=np.float64),
        v_reset=np.zeros(shape),
        metadata=meta,
    )


CONVENTIONS: tuple[str, ...] = ("snntorch", "norse")


def _gain(layer: Any) -> float:
    """A layer's Euler input scale with r = 1 (the Norse convention): (1 - beta) etc."""
    n = layer.neuron
    if n is None:
        return 1.0 - layer.leak if layer.leak != 1.0 else 1.0
    if n.kind == "CubaLIF":
        if n.alpha == 1.0 or n.beta == 1.0:
            raise ConversionError(f"layer {layer.name!r}: a CubaLIF without leak (alpha or "
                                  "beta = 1) cannot be written with r = 1 (Norse's convention)")
        return (1.0 - n.alpha) * (1.0 - n.beta)
    return 1.0 if n.beta == 1.0 else 1.0 - n.beta


def _norse_nodes(model: SNNModel, dt: float) -> dict[str, Any]:
    """Neuron nodes in Norse's convention: r = w_in = 1, tau in seconds at ``dt``, IF as
    ``nir.IF``; the input scales go into the weights (the same equations)."""
    nir = _nir()
    nodes: dict[str, Any] = {}
    for layer in model.layers:
        n, shape = layer.neuron, layer.out_shape
        if n is not None and (n.reset != "zero" or n.v_init):
            raise ConversionError(
                f"layer {layer.name!r} resets by {n.reset} from v(0) = {n.v_init:g} theta: "
                "Norse's importer resets to zero and starts from 0; convert with reset='zero' "
                "and v_init=0 for a Norse file")
        ones = np.ones(shape)
        meta = {"layer": layer.name, "reset": "zero", "neuron": n.kind if n else "LI"}
        if n is None:
            if layer.leak != 1.0:
                nodes[f"li_{layer.name}"] = nir.LI(tau=ones * dt / (1 - layer.leak), r=ones,
                                                   v_leak=0 * ones, metadata=meta)
        elif n.kind == "IF":
            nodes[n.name] = nir.IF(r=ones, v_threshold=ones * n.threshold, metadata=meta)
        elif n.kind == "LIF":
            nodes[n.name] = nir.LIF(tau=ones * dt / (1 - n.beta), r=ones, v_leak=0 * ones,
                                    v_threshold=ones * n.threshold, metadata=meta)
        else:
            nodes[n.name] = nir.CubaLIF(tau_syn=ones * dt / (1 - n.alpha),
                                        tau_mem=ones * dt / (1 - n.beta), r=ones,
                                        v_leak=0 * ones, v_threshold=ones * n.threshold,
                                        w_in=ones, metadata=meta)
    return nodes


def _rescaled(model: SNNModel) -> SNNModel:
    """A copy whose layers' weights and biases are divided by their input scale."""
    out = model.copy()
    for layer in out.layers:
        g = _gain(layer)
        weighted = layer.weighted_ops()
        if g != 1.0 and layer.recurrent is not None:
            layer.recurrent = np.asarray(layer.recurrent / g, np.float64)
        if g != 1.0 and weighted:
            weighted[0].weight = np.asarray(weighted[0].weight / g, np.float64)
            for op in weighted:
                op.bias = np.asarray(op.bias / g, np.float64)
    return out


def to_nir(model: SNNModel, *, dt: float = DT, convention: str = "snntorch") -> Any:
    """The model as a ``nir.NIRGraph``: a chain Input -> ops -> LIF -> ... -> Output.

    Node names are the op and neuron names of the model (``fc1``, ``conv1``, ``lif1``...);
    they are the keys of the learning rules. ``convention``: ``"snntorch"`` (``r = tau/dt``,
    dt = 1e-4; what snntorch's importer asserts) or ``"norse"`` (``r = 1`` with the input
    scale in the weights, tau in seconds at ``dt``, IF as ``nir.IF``; what Norse's
    ``from_nir(..., dt=dt)`` reads -- it ignores r -- for networks that reset to zero).
    """
    nir = _nir()
    if convention not in CONVENTIONS:
        raise ConversionError(f"NIR convention {convention!r}: choose one of "
                              f"{', '.join(CONVENTIONS)}")
    norse = convention == "norse"
    neurons = _norse_nodes(model, dt) if norse else {}
    model = _rescaled(model) if norse else model
    nodes: dict[str, Any] = {"input": nir.Input(input_type=np.array(model.input_shape))}
    order, loops = ["input"], []
    for layer in model.layers:
        for op in layer.ops:
            nodes[op.name] = _op_node(op)
            order.append(op.name)
        if layer.neuron is not None:
            name = layer.neuron.name or f"lif_{layer.name}"
            if name in nodes:
                raise ConversionError(f"duplicate NIR node name {name!r}")
            nodes[name] = neurons.get(name) or _neuron_node(layer.neuron, layer.out_shape,
                                                            layer.name, dt)
            order.append(name)
            if layer.recurrent is not None:  # snntorch's RLeaky form: neuron <-> w_rec
                nodes[f"{name}_rec"] = nir.Linear(weight=np.asarray(layer.recurrent,
                                                                    np.float64))
                loops += [(name, f"{name}_rec"), (f"{name}_rec", name)]
        elif layer.leak != 1.0:  # a leaky read-out: NIR's LI
            steps, shape = _steps(layer.leak), layer.out_shape
            nodes[f"li_{layer.name}"] = neurons.get(f"li_{layer.name}") or nir.LI(
                tau=np.full(shape, steps * dt), r=np.full(shape, steps),
                v_leak=np.zeros(shape), metadata={"leak": float(layer.leak)})
            order.append(f"li_{layer.name}")
    nodes["output"] = nir.Output(output_type=np.array(model.output_shape))
    order.append("output")
    meta = {
        "format": FORMAT, "readout": model.readout, "dt": dt, "convention": convention,
        "layers": [{"name": layer.name, "scale": layer.scale,
                    "ops": [op.name for op in layer.ops],
                    "neuron": layer.neuron.name if layer.neuron else
                    (f"li_{layer.name}" if layer.leak != 1.0 else None)}
                   for layer in model.layers],
        "model": _jsonable(model.metadata),
    }
    return nir.NIRGraph(nodes=nodes, edges=list(zip(order[:-1], order[1:])) + loops,
                        metadata={"neurolocal": json.dumps(meta)}, type_check=not loops)


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


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_nir(
    model_or_graph: SNNModel | Any,
    path: str | os.PathLike[str],
    *,
    rules: Mapping[str, Any] | str | None = None,
    dt: float = DT,
    convention: str = "snntorch",
) -> Path:
    """Write the graph and its learning rules to ``path`` (HDF5) atomically; return the path.

    ``rules`` (node name -> rule description, or one string for every synaptic node) go into
    the file's :data:`RULES_GROUP` (an empty one without rules) and are copied to the sidecar
    ``<name>.rules.json``, which records the file's SHA-256; writing without rules removes a
    stale sidecar. ``dt``/``convention``: see :func:`to_nir`.
    """
    import h5py

    nir = _nir()
    graph = (to_nir(model_or_graph, dt=dt, convention=convention)
             if isinstance(model_or_graph, SNNModel) else model_or_graph)
    path = Path(path)
    normalised = None if rules is None else _normalise_rules(rules, graph)
    payload = {"format": RULES_FORMAT, "rules": normalised,
               "note": "learning rules keyed by NIR node names (NIR has no plasticity node)"}

    def write(tmp: str) -> None:
        nir.write(tmp, graph)
        with h5py.File(tmp, "a") as fh:
            fh.create_group(RULES_GROUP).attrs["json"] = json.dumps(payload, sort_keys=True)

    atomic_write(path, write)
    side = rules_path(path)
    if normalised is None:
        if side.exists():
            side.unlink()
        return path
    copy = {**payload, "graph": path.name, "graph_sha256": _sha256(path),
            "note": f"a copy of the '{RULES_GROUP}' group inside {path.name}, which is what "
                    "neurolocal reads; graph_sha256 binds it to that file"}

    def dump(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(copy, fh, indent=2, sort_keys=True)
            fh.write("\n")

    atomic_write(side, dump)
    return path


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def _graph_dict(path: Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The raw ``/node`` tree and the embedded rules payload (None: no rules group)."""
    import h5py
    from nir.serialization import hdf2dict

    if not path.is_file():
        raise ConversionError(f"NIR file {str(path)!r} does not exist")
    try:
        with h5py.File(path, "r") as fh:
            if "node" not in fh:
                raise ConversionError(
                    f"{str(path)!r} is an HDF5 file but not a NIR graph (no 'node' group); "
                    "is it a neurolocal checkpoint?")
            data = hdf2dict(fh["node"])
            embedded = None
            if RULES_GROUP in fh:
                embedded = json.loads(fh[RULES_GROUP].attrs["json"])
    except ConversionError:
        raise
    except (OSError, KeyError, ValueError) as exc:
        raise ConversionError(
            f"cannot read {str(path)!r}: not an HDF5 file, or truncated or corrupt ({exc}); "
            "re-export the graph") from None
    return data, embedded


def _build_graph(data: dict[str, Any], path: Path) -> Any:
    """A NIRGraph from the raw tree, each node built alone so a bad one is named."""
    nir = _nir()
    if not isinstance(data, dict) or data.get("type") != "NIRGraph" or "nodes" not in data:
        raise ConversionError(f"{str(path)!r} holds a malformed NIR graph (its root is not a "
                              "NIRGraph with nodes)")
    nodes = {}
    for name, nd in data["nodes"].items():
        kind = nd.get("type", "?") if isinstance(nd, dict) else "?"
        try:
            nodes[name] = nir.dict2NIRNode(dict(nd))
        except Exception as exc:  # noqa: BLE001 - nir raises many kinds on malformed content
            raise ConversionError(
                f"{str(path)!r}: NIR node {name!r} ({kind}) is malformed or unknown to nir "
                f"{getattr(nir, '__version__', '')} ({type(exc).__name__}: {exc})") from None
    try:
        edges = [tuple(e.decode() if isinstance(e, bytes) else str(e) for e in edge)
                 for edge in np.asarray(data.get("edges", []), dtype=object).reshape(-1, 2)]
    except ValueError as exc:
        raise ConversionError(f"{str(path)!r}: the NIR edge list is malformed ({exc})") from None
    meta = {k: v for k, v in (data.get("metadata") or {}).items()}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta, type_check=False)


def read_graph(path: str | os.PathLike[str]) -> Any:
    """The ``nir.NIRGraph`` in ``path``; every kind of bad file is a ConversionError."""
    path = Path(path)
    data, _ = _graph_dict(path)
    return _build_graph(data, path)


def _sidecar(path: Path) -> dict[str, Any] | None:
    side = rules_path(path)
    if not side.exists():
        return None
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
        if not isinstance(data.get("rules"), dict):
            raise ValueError("no 'rules' object")
        if data.get("format") not in (RULES_FORMAT, "neurolocal.rules/1"):
            raise ValueError(f"format {data.get('format')!r}, expected {RULES_FORMAT!r}")
    except (ValueError, AttributeError, TypeError) as exc:
        raise ConversionError(f"learning-rule sidecar {str(side)!r} is corrupt ({exc}); "
                              "rewrite it with write_nir(..., rules=...)") from None
    return data


def read_rules(path: str | os.PathLike[str], graph: Any = None, *,
               notes: list[str] | None = None) -> dict[str, Any] | None:
    """The learning rules of the graph at ``path`` (None when it has none).

    The file's own :data:`RULES_GROUP` wins; a sidecar is used for files without one (other
    tools' graphs) only when its ``graph_sha256`` matches the file. ``notes`` collects what
    was ignored and why.
    """
    path = Path(path)
    notes = [] if notes is None else notes
    _, embedded = _graph_dict(path)
    side = _sidecar(path)
    digest = _sha256(path) if side is not None else None
    stale = side is not None and side.get("graph_sha256") not in (None, digest)
    if embedded is not None:
        if stale:
            notes.append(f"warning: ignored {rules_path(path).name}: it belongs to an earlier "
                         f"version of {path.name} (content hash differs); the graph's own "
                         "rules are used")
            warnings.warn(notes[-1][9:], UserWarning, stacklevel=2)
        return embedded.get("rules")
    if side is None:
        return None
    if stale:
        raise ConversionError(
            f"learning-rule sidecar {str(rules_path(path))!r} belongs to another version of "
            f"{path.name} (its graph_sha256 does not match the file): the graph was rewritten "
            "after it. Rewrite both with write_nir(..., rules=...) or delete the sidecar")
    rules = side["rules"]
    if "graph_sha256" not in side:
        notes.append(f"warning: {rules_path(path).name} records no hash of the graph (an old "
                     "sidecar): it cannot be checked against it")
    if graph is not None:
        unknown = sorted(set(rules) - set(graph.nodes))
        if unknown:
            raise ConversionError(
                f"sidecar {str(rules_path(path))!r} names nodes {unknown} that the graph does "
                "not have (a stale sidecar?)")
    return rules


def read_nir(path: str | os.PathLike[str], *, dt: float | None = None,
             input_shape: tuple[int, ...] | None = None, reset: str | None = None
             ) -> SNNModel:
    """Read a NIR file into an SNNModel (:func:`.nir_import.from_nir`); its learning rules
    land in ``model.metadata["rules"]``, notes on dt and rules in
    ``model.metadata["nir"]["notes"]``."""
    path = Path(path)
    graph = read_graph(path)
    model = from_nir(graph, dt=dt, input_shape=input_shape, reset=reset)
    notes = model.metadata["nir"]["notes"]
    rules = read_rules(path, graph, notes=notes)
    if rules is not None:
        model.metadata["rules"] = rules
    model.metadata.setdefault("source", path.name)
    return model

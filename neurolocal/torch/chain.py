"""Reading a user's ``nn.Module`` as the chain of layers a rule trains.

``torch.fx`` traces the model's forward (an ``nn.Sequential`` or any module whose forward
is a straight line); the trace must be one chain: ``Linear``/``Conv2d`` layers, each followed
by at most one activation, ``Flatten``/``view``/``reshape`` between them, and optionally a
last ``Softmax``/``LogSoftmax``/``Sigmoid``/``Tanh`` on the output. Anything else is refused
by its name in the model, with what local_rule wraps.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

from neurolocal.errors import NeurolocalError

#: hidden activations the rate semantics have a derivative for
ACTIVATIONS = ("relu", "tanh", "sigmoid", "linear")
#: what the last layer's outputs may pass through: (rule's output activation, torch function)
OUTPUTS = ("softmax", "log_softmax", "sigmoid", "tanh", "relu", "linear")
SUPPORTED = ("Linear, Conv2d (square kernel, int stride/padding, no dilation or groups), "
             "ReLU, Tanh, Sigmoid, Identity, Flatten, and a last Softmax/LogSoftmax")


@dataclass
class WeightLayer:
    """A wrapped ``Linear`` or ``Conv2d`` and the activation of its neurons."""

    name: str
    module: Any
    activation: str = "linear"

    @property
    def conv(self) -> bool:
        import torch

        return isinstance(self.module, torch.nn.Conv2d)


@dataclass
class Chain:
    """The model as layers; ``output`` is what the last layer's drive passes through."""

    layers: list[WeightLayer] = field(default_factory=list)
    output: str | None = None  # None: the model returns the last layer's drive (logits)


def _refuse(where: str, why: str = ""):
    raise NeurolocalError(f"local_rule cannot wrap {where}{': ' + why if why else ''}; it "
                          f"wraps a chain of {SUPPORTED}")


def _module_kind(name: str, mod) -> tuple[str, Any]:
    """('layer', module) | ('act', name) | ('flatten', None) | ('output', name)."""
    import torch.nn as nn

    if isinstance(mod, nn.Linear):
        return "layer", mod
    if isinstance(mod, nn.Conv2d):
        _check_conv(name, mod)
        return "layer", mod
    acts = {nn.ReLU: "relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid", nn.Identity: "linear"}
    for cls, act in acts.items():
        if type(mod) is cls:
            return "act", act
    if type(mod) is nn.Flatten:
        if mod.start_dim != 1 or mod.end_dim != -1:
            _refuse(f"layer {name!r} (Flatten(start_dim={mod.start_dim}, end_dim="
                    f"{mod.end_dim}))", "only Flatten(1, -1) keeps the batch apart")
        return "flatten", None
    if type(mod) in (nn.Softmax, nn.LogSoftmax):
        if mod.dim not in (1, -1):
            _refuse(f"layer {name!r} ({type(mod).__name__}(dim={mod.dim}))",
                    "the output classes must be dimension 1")
        return "output", "softmax" if type(mod) is nn.Softmax else "log_softmax"
    recurrent = isinstance(mod, nn.RNNBase | nn.RNNCellBase)
    _refuse(f"layer {name!r} ({type(mod).__name__})",
            "recurrent layers are not supported yet" if recurrent else "")


def _check_conv(name: str, mod) -> None:
    k = mod.kernel_size
    bad = []
    if k[0] != k[1]:
        bad.append(f"kernel {k} is not square")
    if mod.stride[0] != mod.stride[1]:
        bad.append(f"stride {mod.stride}")
    if isinstance(mod.padding, str) or mod.padding[0] != mod.padding[1]:
        bad.append(f"padding {mod.padding!r}")
    if mod.dilation != (1, 1):
        bad.append(f"dilation {mod.dilation}")
    if mod.groups != 1:
        bad.append(f"groups {mod.groups}")
    if mod.padding_mode != "zeros":
        bad.append(f"padding_mode {mod.padding_mode!r}")
    if bad:
        _refuse(f"layer {name!r} (Conv2d)", ", ".join(bad))


def _function_kind(fn, args, kwargs) -> tuple[str, Any]:
    import torch
    import torch.nn.functional as F  # noqa: N812

    acts = {torch.relu: "relu", F.relu: "relu", torch.tanh: "tanh", F.tanh: "tanh",
            torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid"}
    if fn in acts:
        return "act", acts[fn]
    if fn is torch.flatten:
        start = args[1] if len(args) > 1 else kwargs.get("start_dim", 0)
        if start != 1:
            _refuse(f"torch.flatten(x, {start})", "flatten from dimension 1")
        return "flatten", None
    if fn in (F.softmax, torch.softmax, F.log_softmax, torch.log_softmax):
        dim = args[1] if len(args) > 1 else kwargs.get("dim")
        if dim not in (1, -1):
            _refuse(f"{fn.__name__}(dim={dim})", "the output classes must be dimension 1")
        return "output", "softmax" if "log" not in fn.__name__ else "log_softmax"
    _refuse(f"the call {getattr(fn, '__name__', fn)!r} in the model's forward")


def _method_kind(name: str) -> tuple[str, Any]:
    if name in ("relu", "tanh", "sigmoid"):
        return "act", name
    if name in ("flatten", "view", "reshape"):
        return "flatten", None
    if name in ("softmax", "log_softmax"):
        return "output", name
    _refuse(f"the tensor method {name!r} in the model's forward")


def _ops(model) -> list[tuple[str, str, Any]]:
    """(kind, where, payload) of each op of the model's forward, in order."""
    import torch.fx

    try:
        gm = torch.fx.symbolic_trace(model)
    except Exception as exc:  # fx raises many types for untraceable code
        raise NeurolocalError(f"local_rule could not trace the model's forward with torch.fx "
                              f"({type(exc).__name__}: {exc}); write the model as an "
                              "nn.Sequential of " + SUPPORTED) from None
    modules = dict(gm.named_modules())
    current, ops = None, []
    side = set()  # nodes computed from the current value but not on the chain (x.size(0))
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            if current is not None:
                _refuse(f"a model with several inputs ({node.name!r})")
            current = node
            continue
        if node.op == "call_method" and node.target == "size" or \
                node.op == "call_function" and node.target in (getattr, operator.getitem):
            side.add(node)
            continue
        if node.op == "output":
            if node.args[0] is not current:
                _refuse("a model whose forward returns something besides the chain's output")
            break
        tensors = [a for a in node.all_input_nodes if a not in side]
        if tensors != [current]:
            _refuse(f"{node.op} {node.target!r}",
                    "the forward is not a chain (it reads other values than the layer below)")
        if node.op == "call_module":
            kind, payload = _module_kind(node.target, modules[node.target])
        elif node.op == "call_function":
            kind, payload = _function_kind(node.target, node.args, node.kwargs)
        elif node.op == "call_method":
            kind, payload = _method_kind(node.target)
            if node.target == "softmax" or node.target == "log_softmax":
                dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
                if dim not in (1, -1):
                    _refuse(f"x.{node.target}(dim={dim})", "the classes must be dimension 1")
        else:
            _refuse(f"{node.op} {node.target!r}")
        ops.append((kind, str(node.target), payload))
        current = node
    return ops


def read_chain(model) -> Chain:
    """The model's layers; refuses, by name, what local_rule cannot wrap."""
    import torch.nn as nn

    for name, mod in model.named_modules():  # fx would trace into them
        if isinstance(mod, nn.RNNBase | nn.RNNCellBase):
            _refuse(f"layer {name or 'model'!r} ({type(mod).__name__})",
                    "recurrent layers are not supported yet")
    chain = Chain()
    for kind, where, payload in _ops(model):
        if chain.output is not None:
            _refuse(f"{where!r} after the output's {chain.output}")
        if kind == "layer":
            if any(w.module is payload for w in chain.layers):
                _refuse(f"layer {where!r} used twice", "weights are not shared")
            chain.layers.append(WeightLayer(where, payload))
        elif kind == "act":
            if not chain.layers:
                _refuse(f"an activation ({where!r}) before the first layer")
            last = chain.layers[-1]
            if last.activation != "linear" and payload != "linear":
                _refuse(f"two activations after layer {last.name!r} ({where!r})")
            if payload != "linear":
                last.activation = payload
        elif kind == "output":
            if not chain.layers:
                _refuse(f"{where!r} before the first layer")
            if chain.layers[-1].activation != "linear":
                _refuse(f"{where!r} after an activation")
            chain.output = payload
        # flatten: dense layers flatten their input anyway
    if not chain.layers:
        _refuse("a model without Linear or Conv2d layers")
    last = chain.layers[-1]
    if chain.output is None and last.activation != "linear":
        chain.output, last.activation = last.activation, "linear"
    seen_dense = False
    for w in chain.layers:
        if w.conv and seen_dense:
            _refuse(f"layer {w.name!r} (Conv2d after a Linear layer)")
        seen_dense = seen_dense or not w.conv
    return chain

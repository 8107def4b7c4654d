"""Read a trained rate network (torch ``Sequential``, state dict + architecture, or plain
(weight, bias) pairs) into an :class:`~converters.model.SNNModel`.

Why one strict importer: conversion is only exact for layers whose rate behaviour a spiking
neuron reproduces (ReLU after linear maps). Anything else is refused up front with the layer's
name and the supported set, so nothing is half-converted. BatchNorm is folded into the
preceding Conv2d/Linear (it is an affine map at inference time); Dropout and Identity vanish.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .model import ConversionError, Neuron, Op, SNNLayer, SNNModel, UnsupportedLayerError

__all__ = [
    "SUPPORTED_LAYERS",
    "build_arch",
    "build_sequential",
    "fold_batchnorm",
    "from_layers",
    "from_network",
    "from_sequential",
    "from_state_dict",
    "load_torch_file",
]

SUPPORTED_LAYERS: tuple[str, ...] = (
    "Linear", "Conv2d", "ReLU", "AvgPool2d", "Flatten", "BatchNorm1d", "BatchNorm2d",
    "Dropout", "Identity", "Softmax/LogSoftmax (last layer only)",
)
_IGNORED = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout, nn.Identity)
_HINTS = {
    "MaxPool2d": "replace it with AvgPool2d (max pooling has no exact rate equivalent)",
    "Sigmoid": "retrain with ReLU (IF neurons encode ReLU rates)",
    "Tanh": "retrain with ReLU (IF neurons encode ReLU rates)",
    "LeakyReLU": "retrain with ReLU (a negative slope needs negative spikes)",
    "GELU": "retrain with ReLU",
}
_ACTIVATIONS_OK = ("relu", "linear", "softmax", "identity", "none")


def _unsupported(name: str, module: nn.Module) -> UnsupportedLayerError:
    kind = type(module).__name__
    return UnsupportedLayerError("layer", name, kind, SUPPORTED_LAYERS, _HINTS.get(kind, ""))


def fold_batchnorm(module: nn.Sequential) -> nn.Sequential:
    """A copy of ``module`` with every BatchNorm folded into the Conv2d/Linear before it.

    ``bn(conv(x)) = gamma * (W x + b - mu) / sqrt(var + eps) + beta`` is again affine, with
    ``W' = W * s`` and ``b' = (b - mu) * s + beta``, ``s = gamma / sqrt(var + eps)``.
    Uses the running statistics (eval mode), whatever mode ``module`` is in.
    """
    if not isinstance(module, nn.Sequential):
        raise ConversionError(
            f"expected a torch.nn.Sequential, got {type(module).__name__}; wrap the layers in "
            "nn.Sequential(...) (only sequential networks are converted)"
        )
    out: list[tuple[str, nn.Module]] = []
    for name, mod in module.named_children():
        if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
            prev = out[-1][1] if out else None
            ok = (isinstance(mod, nn.BatchNorm2d) and isinstance(prev, nn.Conv2d)) or (
                isinstance(mod, nn.BatchNorm1d) and isinstance(prev, nn.Linear)
            )
            if not ok:
                raise ConversionError(
                    f"BatchNorm layer {name!r} follows "
                    f"{type(prev).__name__ if prev is not None else 'the input'}; it can only be "
                    "folded directly after Conv2d (BatchNorm2d) or Linear (BatchNorm1d)"
                )
            if mod.running_mean is None or mod.running_var is None:
                raise ConversionError(
                    f"BatchNorm layer {name!r} tracks no running statistics "
                    "(track_running_stats=False); it cannot be folded"
                )
            with torch.no_grad():
                w = prev.weight.detach().double()
                b = (prev.bias.detach().double() if prev.bias is not None
                     else torch.zeros(w.shape[0], dtype=torch.float64))
                gamma = (mod.weight.detach().double() if mod.weight is not None
                         else torch.ones_like(b))
                beta = (mod.bias.detach().double() if mod.bias is not None
                        else torch.zeros_like(b))
                s = gamma / torch.sqrt(mod.running_var.double() + mod.eps)
                new = _clone_layer(prev)
                shape = (-1,) + (1,) * (w.dim() - 1)
                new.weight.copy_((w * s.reshape(shape)).to(prev.weight.dtype))
                new.bias.copy_(((b - mod.running_mean.double()) * s + beta).to(prev.weight.dtype))
            out[-1] = (out[-1][0], new)
            continue
        out.append((name, mod))
    from collections import OrderedDict

    return nn.Sequential(OrderedDict(out))


def _clone_layer(layer: nn.Module) -> nn.Module:
    """A copy of a Linear/Conv2d that always has a bias parameter."""
    if isinstance(layer, nn.Linear):
        new = nn.Linear(layer.in_features, layer.out_features, bias=True)
    else:
        new = nn.Conv2d(
            layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride,
            padding=layer.padding, dilation=layer.dilation, groups=layer.groups, bias=True,
            padding_mode=layer.padding_mode,
        )
    new = new.to(layer.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(layer.weight)
        new.bias.zero_()
        if layer.bias is not None:
            new.bias.copy_(layer.bias)
    return new


def _infer_input_shape(module: nn.Sequential) -> tuple[int, ...] | None:
    for mod in module.children():
        if isinstance(mod, nn.Linear):
            return (mod.in_features,)
        if isinstance(mod, (nn.Conv2d, nn.AvgPool2d, nn.Flatten)):
            return None
    return None


def _check_children(children: list[tuple[str, nn.Module]]) -> None:
    """Refuse unsupported layers (and unsupported settings) before anything is converted."""
    for idx, (lname, mod) in enumerate(children):
        if isinstance(mod, (nn.Softmax, nn.LogSoftmax)):
            if any(not isinstance(m, _IGNORED) for _, m in children[idx + 1:]):
                raise ConversionError(
                    f"{type(mod).__name__} layer {lname!r} is only allowed at the end "
                    "(it does not change the argmax)"
                )
        elif isinstance(mod, nn.Conv2d):
            if mod.padding_mode != "zeros":
                raise ConversionError(f"Conv2d layer {lname!r} uses padding_mode="
                                      f"{mod.padding_mode!r}; only 'zeros' is supported")
            if mod.padding == "same" and any(
                (d * (k - 1)) % 2 for d, k in zip(mod.dilation, mod.kernel_size)
            ):
                raise ConversionError(f"Conv2d layer {lname!r}: padding='same' with an even "
                                      "kernel is asymmetric; use explicit padding")
        elif isinstance(mod, nn.AvgPool2d):
            if mod.ceil_mode or not mod.count_include_pad or mod.divisor_override:
                raise ConversionError(
                    f"AvgPool2d layer {lname!r}: ceil_mode, count_include_pad=False and "
                    "divisor_override are not supported (use the defaults)"
                )
        elif isinstance(mod, nn.Flatten):
            if mod.start_dim != 1 or mod.end_dim != -1:
                raise ConversionError(f"Flatten layer {lname!r}: only Flatten(1, -1) is "
                                      f"supported, got ({mod.start_dim}, {mod.end_dim})")
        elif not isinstance(mod, (nn.Linear, nn.ReLU) + _IGNORED):
            raise _unsupported(lname, mod)


def _op(mod: nn.Module, name: str, shape: tuple[int, ...], out_shape: tuple[int, ...]) -> Op:
    """The Op of one supported linear module (Linear, Conv2d, AvgPool2d, Flatten(1, -1))."""
    if isinstance(mod, nn.Linear):
        return Op("linear", name, shape, out_shape, weight=_np(mod.weight),
                  bias=_np(mod.bias) if mod.bias is not None else None)
    if isinstance(mod, nn.Conv2d):
        pad = mod.padding
        if isinstance(pad, str):  # 'same'/'valid': torch resolved it; recompute as ints
            pad = ((0, 0) if pad == "valid" else
                   tuple(d * (k - 1) // 2 for d, k in zip(mod.dilation, mod.kernel_size)))
        return Op("conv2d", name, shape, out_shape, weight=_np(mod.weight),
                  bias=_np(mod.bias) if mod.bias is not None else None, stride=mod.stride,
                  padding=pad, dilation=mod.dilation, groups=mod.groups)
    if isinstance(mod, nn.AvgPool2d):
        return Op("avgpool2d", name, shape, out_shape, kernel_size=mod.kernel_size,
                  stride=mod.stride if mod.stride is not None else mod.kernel_size,
                  padding=mod.padding)
    return Op("flatten", name, shape, out_shape, start_dim=0, end_dim=-1)


def _resolve_shape(module: nn.Sequential, input_shape: Sequence[int] | None,
                   fallback: Sequence[int] | None) -> tuple[int, ...]:
    if input_shape is None:
        input_shape = _infer_input_shape(module) or fallback
    if input_shape is None:
        first = type(next(iter(module.children()), None)).__name__
        raise ConversionError(
            f"cannot infer the input shape of a network that starts with {first}; give it: "
            "--input-shape 1,28,28 (input_shape=(1, 28, 28) from Python), or --dataset "
            "with an image data set"
        )
    return tuple(int(s) for s in input_shape)


def _layers(children: list[tuple[str, nn.Module]], input_shape: tuple[int, ...]
            ) -> list[SNNLayer]:
    """Walk the modules: ops accumulate until a ReLU closes a spiking layer."""
    layers: list[SNNLayer] = []
    ops: list[Op] = []
    shape, x = input_shape, torch.zeros((1, *input_shape))
    counts: dict[str, int] = {}
    short = {nn.Linear: "fc", nn.Conv2d: "conv", nn.AvgPool2d: "pool", nn.Flatten: "flat"}
    for lname, mod in children:
        if isinstance(mod, _IGNORED + (nn.Softmax, nn.LogSoftmax)):
            continue
        if isinstance(mod, nn.ReLU):
            if not ops:
                if layers and layers[-1].neuron is not None:
                    continue  # ReLU(ReLU(x)) == ReLU(x)
                raise ConversionError(f"ReLU layer {lname!r} acts on the raw input; inputs "
                                      "are assumed >= 0 (remove it)")
            idx = len(layers) + 1
            layers.append(SNNLayer(f"layer{idx}", ops, Neuron("IF", 1.0, name=f"lif{idx}")))
            ops = []
            continue
        params = list(mod.parameters())
        try:
            with torch.no_grad():
                y = mod(x.to(params[0].dtype if params else torch.float32))
        except RuntimeError as exc:
            raise ConversionError(
                f"layer {lname!r} ({type(mod).__name__}) does not accept input of shape "
                f"{tuple(x.shape[1:])}: {exc}; check --input-shape"
            ) from None
        key = short[type(mod)] if type(mod) in short else "op"
        counts[key] = counts.get(key, 0) + 1
        ops.append(_op(mod, f"{key}{counts[key]}", shape, tuple(y.shape[1:])))
        x, shape = y, tuple(y.shape[1:])
    if ops:
        layers.append(SNNLayer(f"layer{len(layers) + 1}", ops, None))
    return layers


def from_sequential(
    module: nn.Sequential,
    input_shape: Sequence[int] | None = None,
    *,
    name: str = "torch",
    fallback_shape: Sequence[int] | None = None,
) -> SNNModel:
    """Convert a ``torch.nn.Sequential`` of supported layers into an (unnormalised) SNNModel.

    Every ReLU becomes an IF population with threshold 1 (so the model still computes the ANN);
    :func:`converters.normalise.normalise` then sets the scales. ``input_shape`` (unbatched,
    e.g. ``(1, 28, 28)``) is needed when the first layer is not Linear; ``fallback_shape``
    (the data set's image shape) is used when it is not given and cannot be inferred.
    """
    module = fold_batchnorm(module)
    shape = _resolve_shape(module, input_shape, fallback_shape)
    children = list(module.named_children())
    _check_children(children)
    layers = _layers(children, shape)
    if not any(op.weighted for layer in layers for op in layer.ops):
        raise ConversionError("the Sequential has no Linear/Conv2d layers to convert")
    return SNNModel(shape, layers, {"source": name})


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32, copy=True)


# --------------------------------------------------------------------------------------------
# Architecture specs (for {"arch": ..., "state_dict": ...} files)
# --------------------------------------------------------------------------------------------

_CONSTRUCTORS: dict[str, type[nn.Module]] = {
    "Linear": nn.Linear, "Conv2d": nn.Conv2d, "ReLU": nn.ReLU, "AvgPool2d": nn.AvgPool2d,
    "Flatten": nn.Flatten, "BatchNorm1d": nn.BatchNorm1d, "BatchNorm2d": nn.BatchNorm2d,
    "Dropout": nn.Dropout, "Identity": nn.Identity, "Softmax": nn.Softmax,
    "LogSoftmax": nn.LogSoftmax,
}


def _parse_spec(spec: Any, i: int) -> nn.Module:
    if isinstance(spec, nn.Module):
        return spec
    if isinstance(spec, str):
        try:
            node = ast.parse(spec.strip(), mode="eval").body
        except SyntaxError:
            node = None
        if isinstance(node, ast.Name):
            kind, args, kwargs = node.id, [], {}
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            try:
                args = [ast.literal_eval(a) for a in node.args]
                kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
            except ValueError:
                raise ConversionError(
                    f"arch entry {i} {spec!r}: arguments must be literals"
                ) from None
            kind = node.func.id
        else:
            raise ConversionError(f"arch entry {i} {spec!r} is not of the form "
                                  "'Linear(784, 100)'")
    elif isinstance(spec, Mapping):
        kwargs = dict(spec)
        kind = str(kwargs.pop("type", kwargs.pop("kind", "")))
        args = list(kwargs.pop("args", []))
    elif isinstance(spec, Sequence) and spec and isinstance(spec[0], str):
        kind, args, kwargs = spec[0], list(spec[1:]), {}
    else:
        raise ConversionError(f"arch entry {i} {spec!r}: expected 'Linear(784, 100)', "
                              "{'type': 'Linear', ...} or ['Linear', 784, 100]")
    if kind not in _CONSTRUCTORS:
        raise UnsupportedLayerError("layer", str(i), kind or "<no type>", SUPPORTED_LAYERS,
                                    _HINTS.get(kind, ""))
    try:
        return _CONSTRUCTORS[kind](*args, **kwargs)
    except TypeError as exc:
        raise ConversionError(f"arch entry {i} {spec!r}: {exc}") from None


def build_sequential(arch: Any) -> nn.Sequential:
    """A ``Sequential`` from an architecture spec: a Sequential, or a list of entries like
    ``"Linear(784, 100)"``, ``{"type": "Conv2d", "in_channels": 1, ...}`` or ``["ReLU"]``."""
    if isinstance(arch, nn.Sequential):
        return arch
    if isinstance(arch, str) or not isinstance(arch, Sequence):
        raise ConversionError(
            f"architecture must be a list of layer specs (e.g. ['Linear(784, 100)', 'ReLU', "
            f"'Linear(100, 10)']), got {type(arch).__name__}"
        )
    return nn.Sequential(*[_parse_spec(s, i) for i, s in enumerate(arch)])


def from_state_dict(
    arch: Any,
    state_dict: Mapping[str, Any],
    input_shape: Sequence[int] | None = None,
    *,
    what: str = "the architecture",
    fallback_shape: Sequence[int] | None = None,
) -> SNNModel:
    """Build ``arch`` (see :func:`build_sequential`), load ``state_dict`` strictly, import."""
    module = build_sequential(arch)
    try:
        module.load_state_dict({k: torch.as_tensor(v) for k, v in state_dict.items()},
                               strict=True)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ConversionError(f"the state dict does not fit {what}: {exc}") from None
    return from_sequential(module.eval(), input_shape, name="state_dict",
                           fallback_shape=fallback_shape)


def build_arch(spec: str) -> nn.Sequential:
    """The network of ``--arch FILE.py:FUNCTION`` (or ``package.module:FUNCTION``).

    The function is called without arguments and must return the ``nn.Sequential`` the
    state dict was saved from. It runs code from that file: only name files you trust.
    """
    import importlib
    import importlib.util

    where, sep, func = str(spec).rpartition(":")
    if not sep or not where or not func.isidentifier():
        raise ConversionError(f"--arch {spec!r}: expected FILE.py:FUNCTION (e.g. --arch "
                              "model.py:build) or package.module:FUNCTION")
    try:
        if where.endswith(".py"):
            path = Path(where)
            if not path.is_file():
                raise ConversionError(f"--arch {spec!r}: file {where!r} does not exist")
            mod_spec = importlib.util.spec_from_file_location(f"_nl_arch_{path.stem}", path)
            module = importlib.util.module_from_spec(mod_spec)
            mod_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(where)
    except ConversionError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's file: any error is theirs to see
        raise ConversionError(f"--arch {spec!r}: importing {where!r} failed "
                              f"({type(exc).__name__}: {exc})") from None
    fn = getattr(module, func, None)
    if not callable(fn):
        raise ConversionError(f"--arch {spec!r}: {where!r} has no function {func!r}")
    try:
        net = fn()
    except Exception as exc:  # noqa: BLE001
        raise ConversionError(f"--arch {spec!r}: {func}() failed ({type(exc).__name__}: "
                              f"{exc}); it is called without arguments") from None
    if not isinstance(net, nn.Sequential):
        raise ConversionError(f"--arch {spec!r}: {func}() returned a {type(net).__name__}, "
                              "not an nn.Sequential")
    return net


def _state_dict_of(obj: Any) -> Mapping[str, Any] | None:
    """The state dict a loaded file holds: a plain one, or the 'state_dict' of a dict."""
    if isinstance(obj, Mapping):
        inner = obj.get("state_dict")
        if isinstance(inner, Mapping):
            return inner
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj
    return None


def _torch_load(p: Path) -> Any:
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - a pickled module needs the full unpickler
        try:
            return torch.load(p, map_location="cpu", weights_only=False)
        except Exception as exc:
            raise ConversionError(
                f"cannot read {str(p)!r} as a torch file ({type(exc).__name__}: {exc}); "
                "expected torch.save(nn.Sequential), a state_dict (with --arch FILE.py:"
                "FUNCTION) or torch.save({'arch': ..., 'state_dict': ...})"
            ) from None


def load_torch_file(
    path: str | os.PathLike[str],
    input_shape: Sequence[int] | None = None,
    *,
    arch: str | None = None,
    fallback_shape: Sequence[int] | None = None,
) -> SNNModel:
    """Import a ``.pt``: ``torch.save(sequential)``, a ``state_dict`` with ``arch``
    (``FILE.py:FUNCTION``, :func:`build_arch`), or ``{"arch", "state_dict"[, "input_shape"]}``.

    A whole pickled module can only be loaded with ``weights_only=False`` (arbitrary code runs
    while unpickling): only load files you trust. State dicts load with ``weights_only=True``.
    """
    p = Path(path)
    if not p.is_file():
        raise ConversionError(f"model file {str(p)!r} does not exist")
    obj = _torch_load(p)
    state = _state_dict_of(obj)
    if isinstance(obj, nn.Module):
        if not isinstance(obj, nn.Sequential):
            raise ConversionError(
                f"{str(p)!r} holds a {type(obj).__name__}, not an nn.Sequential; save its "
                "state_dict and name the network with --arch FILE.py:FUNCTION")
        model = from_sequential(obj.eval(), input_shape, name=p.name,
                                fallback_shape=fallback_shape)
    elif state is not None and (arch is not None or "arch" in obj):
        shape = input_shape or (obj.get("input_shape") if "state_dict" in obj else None)
        net, what = ((build_arch(arch), f"--arch {arch}") if arch is not None
                     else (obj["arch"], f"the 'arch' saved in {p.name}"))
        model = from_state_dict(net, state, shape, what=what, fallback_shape=fallback_shape)
        model.metadata["source"] = p.name
    elif state is not None:
        keys = list(state)[:4]
        raise ConversionError(
            f"{str(p)!r} holds a state_dict ({len(state)} tensors: {', '.join(keys)}"
            f"{', ...' if len(state) > 4 else ''}) but not the network it belongs to: give "
            "--arch FILE.py:FUNCTION (a function returning the nn.Sequential), or save "
            "{'arch': [...], 'state_dict': ...}")
    else:
        keys = sorted(obj) if isinstance(obj, Mapping) else type(obj).__name__
        raise ConversionError(
            f"{str(p)!r} holds {keys}; expected an nn.Sequential, a state_dict (with --arch "
            "FILE.py:FUNCTION) or a dict with 'arch' and 'state_dict'")
    return model


# --------------------------------------------------------------------------------------------
# The seam for neurolocal checkpoints: plain (weight, bias) pairs + activation names
# --------------------------------------------------------------------------------------------


def from_layers(
    layers: Sequence[tuple[Any, Any]],
    activations: Sequence[str],
    *,
    input_shape: Sequence[int] | None = None,
    name: str = "layers",
) -> SNNModel:
    """An MLP from ``[(W (out, in), b (out,)), ...]`` and one activation name per layer.

    This is the entry point for neurolocal's own checkpoints (``neurolocal.checkpoint``): hidden
    activations must be ``relu``; the last may be ``softmax``/``linear`` (read-out, decoded by
    accumulated membrane) or ``relu`` (spiking output, decoded by spike count).
    """
    if len(layers) != len(activations):
        raise ConversionError(f"{len(layers)} weight layers but {len(activations)} activations")
    if not layers:
        raise ConversionError("no layers given")
    mods: list[nn.Module] = []
    for i, ((w, b), act) in enumerate(zip(layers, activations)):
        w = np.asarray(w, np.float32)
        if w.ndim != 2:
            raise ConversionError(f"layer {i + 1}: weight must be 2-D (out, in), got {w.shape}")
        b = np.zeros(w.shape[0], np.float32) if b is None else np.asarray(b, np.float32)
        lin = nn.Linear(w.shape[1], w.shape[0])
        try:
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(w))
                lin.bias.copy_(torch.from_numpy(b.reshape(-1)))
        except RuntimeError:
            raise ConversionError(f"layer {i + 1}: bias shape {b.shape} does not match weight "
                                  f"{w.shape}") from None
        mods.append(lin)
        act_l = str(act).lower()
        last = i == len(layers) - 1
        if act_l == "relu":
            mods.append(nn.ReLU())
        elif act_l in ("linear", "identity", "none") or (last and act_l == "softmax"):
            if not last:
                raise ConversionError(
                    f"layer {i + 1}: hidden activation {act!r} cannot be converted; hidden "
                    "layers must be relu"
                )
        else:
            raise UnsupportedLayerError("activation", f"layer{i + 1}", str(act),
                                        ("relu", "linear/softmax (last layer only)"),
                                        _HINTS.get(str(act).capitalize(), ""))
    model = from_sequential(nn.Sequential(*mods), input_shape or (mods[0].in_features,),
                            name=name)
    return model


def from_network(net: Any) -> SNNModel:
    """Import a ``neurolocal.network.Network`` (duck-typed: sizes, weights(l), bias(l), ...)."""
    try:
        depth = int(net.depth)
        pairs = [(net.weights(layer), net.bias(layer)) for layer in range(1, depth + 1)]
        acts = [net.hidden_activation] * (depth - 1) + [net.output_activation]
    except AttributeError as exc:
        raise ConversionError(f"not a neurolocal Network: {exc}") from None
    convs = getattr(net, "convs", None) or {}
    if not convs:
        return from_layers(pairs, acts, name="neurolocal.Network")
    # a conv net: the same layers as a torch Sequential (Conv2d, ReLU, Flatten, Linear)
    if net.hidden_activation != "relu":
        raise ConversionError(f"hidden activation {net.hidden_activation!r} cannot be "
                              "converted; hidden layers must be relu")
    mods: list[nn.Module] = []
    for layer, (w, b) in enumerate(pairs, start=1):
        spec = convs.get(layer)
        if spec is not None:
            mod: nn.Module = nn.Conv2d(spec.in_channels, spec.out_channels, spec.kernel,
                                       stride=spec.stride, padding=spec.padding)
            weight = np.asarray(w, np.float32).reshape(mod.weight.shape)
        else:
            if layer - 1 in convs:
                mods.append(nn.Flatten())
            mod = nn.Linear(w.shape[1], w.shape[0])
            weight = np.asarray(w, np.float32)
        with torch.no_grad():
            mod.weight.copy_(torch.from_numpy(weight))
            mod.bias.copy_(torch.from_numpy(np.asarray(b, np.float32).reshape(-1)))
        mods.append(mod)
        if layer < depth or net.output_activation == "relu":
            mods.append(nn.ReLU())
        elif net.output_activation not in ("softmax", "linear"):
            raise ConversionError(f"output activation {net.output_activation!r} cannot be "
                                  "converted; use softmax, linear or relu")
    first = convs[1] if 1 in convs else None
    shape = (first.in_channels, first.in_height, first.in_width) if first else None
    return from_sequential(nn.Sequential(*mods), shape, name="neurolocal.Network")

"""Data-based weight normalisation (Diehl et al. 2015; Rueckauer et al. 2017).

Why: an IF neuron with threshold 1 fires at most once per step, so its rate encodes ReLU
activations in [0, 1]. Each spiking layer ``l`` gets a scale ``lambda_l`` -- the maximum or a
high percentile (default 99.9th, robust to outliers) of its positive ReLU activations on a
calibration set -- and the weights are rescaled so the layer's activation divided by
``lambda_l`` drives the neurons::

    W_l <- W_l * lambda_{l-1} / lambda_l,   b_l <- b_l / lambda_l,   theta_l = 1

The read-out layer keeps ``lambda_L = 1``, so the accumulated read-out divided by T estimates
the ANN's logits. Only the first weighted op of a layer is rescaled by the ratio; every bias in
the layer is divided by ``lambda_l`` (ops after the first are linear, so this is exact).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .model import ConversionError, Neuron, SNNModel, ann_forward, as_batch

__all__ = ["METHODS", "activation_scales", "normalise", "set_neurons"]

METHODS: tuple[str, ...] = ("max", "percentile")


def activation_scales(
    model: SNNModel,
    calibration: Any,
    *,
    method: str = "percentile",
    percentile: float = 99.9,
    batch_size: int = 256,
) -> list[float]:
    """``lambda_l`` for every layer (1.0 for the read-out) from the calibration inputs."""
    if method not in METHODS:
        raise ConversionError(f"normalisation method {method!r}: choose one of {METHODS}")
    if not 0.0 < float(percentile) <= 100.0:
        raise ConversionError(f"percentile must be in (0, 100], got {percentile}")
    x = as_batch(model, calibration)
    if len(x) == 0:
        raise ConversionError("the calibration set is empty; pass some training inputs")
    _, acts = ann_forward(model, x, batch_size=batch_size, activations=True)
    scales: list[float] = []
    for layer, act in zip(model.layers, acts):
        if layer.neuron is None:
            scales.append(1.0)
            continue
        pos = act[act > 0]
        if pos.size == 0:
            lam = 1.0  # a dead layer: nothing to scale, keep the weights as they are
        elif method == "max":
            lam = float(pos.max())
        else:
            lam = float(np.percentile(pos, float(percentile)))
        if not math.isfinite(lam) or lam <= 0:
            raise ConversionError(f"layer {layer.name!r}: activation scale {lam} is not usable")
        scales.append(lam)
    return scales


def normalise(
    model: SNNModel,
    calibration: Any,
    *,
    method: str = "percentile",
    percentile: float = 99.9,
    batch_size: int = 256,
) -> SNNModel:
    """A copy of an ANN-style ``model`` (thresholds 1, ReLU semantics) with scaled weights.

    ``calibration``: inputs (N, ...) the network sees in use (a slice of the training set).
    """
    for layer in model.layers:
        if layer.neuron is not None and layer.neuron.threshold != 1.0:
            raise ConversionError(
                f"layer {layer.name!r} already has threshold {layer.neuron.threshold}; "
                "normalise the ANN import (thresholds 1), not an already converted model"
            )
    scales = activation_scales(model, calibration, method=method, percentile=percentile,
                               batch_size=batch_size)
    out = model.copy()
    prev = 1.0
    for layer, lam in zip(out.layers, scales):
        weighted = layer.weighted_ops()
        if weighted:
            first = weighted[0]
            first.weight = (np.asarray(first.weight, np.float64) * (prev / lam)).astype(
                first.weight.dtype)
            for op in weighted:
                op.bias = (np.asarray(op.bias, np.float64) / lam).astype(op.bias.dtype)
        elif layer.neuron is not None:  # pool-only layer: balance the threshold instead
            layer.neuron.threshold = lam / prev
        layer.scale = lam
        prev = lam if layer.neuron is not None else prev
    out.metadata.update({
        "normalisation": method,
        "percentile": float(percentile) if method == "percentile" else None,
        "n_calibration": int(len(as_batch(model, calibration))),
        "scales": [float(s) for s in scales],
    })
    return out


def set_neurons(
    model: SNNModel,
    kind: str = "IF",
    *,
    beta: float | Sequence[float] = 1.0,
    reset: str = "subtract",
    v_init: float = 0.0,
) -> SNNModel:
    """A copy with every spiking layer's neuron type set (IF: beta = 1; LIF: beta < 1) and
    its initial membrane ``v_init`` (fraction of the threshold)."""
    out = model.copy()
    spiking = [layer for layer in out.layers if layer.neuron is not None]
    betas = list(beta) if isinstance(beta, Sequence) else [float(beta)] * len(spiking)
    if len(betas) != len(spiking):
        raise ConversionError(f"{len(betas)} betas for {len(spiking)} spiking layers")
    kind = kind.upper()
    for layer, b in zip(spiking, betas):
        if kind == "IF":
            b = 1.0
        elif kind == "LIF" and not 0.0 < float(b) < 1.0:
            raise ConversionError(f"LIF needs 0 < beta < 1, got {b} (beta = 1 is IF)")
        old = layer.neuron
        layer.neuron = Neuron(kind, old.threshold, float(b), reset, name=old.name,
                              v_init=v_init)
    return out

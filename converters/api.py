"""One call to convert a trained rate network and run it: :func:`convert` and :func:`run_snn`.

Why a single entry point: a user has a model (a torch ``Sequential``, a ``.pt``, a NIR file or
a neurolocal checkpoint) and wants a spiking network that runs on a target with known accuracy
and cost. :func:`convert` loads, normalises on calibration data, picks the neuron type,
optionally saves NIR (+ learning-rule sidecar) and evaluates on the chosen target;
:func:`run_snn` runs a converted network (a NIR file or an SNNModel) on any target.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neurolocal.errors import NeurolocalError

from .model import ConversionError, RunResult, SNNModel, ann_forward, as_batch

__all__ = ["ConversionResult", "convert", "load_model", "run_on", "run_snn"]



@dataclass
class ConversionResult:
    """The converted network, where it was saved, and how well it does on the evaluation set."""

    model: SNNModel
    source_kind: str  # "ann" (normalised here) or "snn" (already spiking, e.g. NIR)
    target: str
    timesteps: int
    ann_accuracy: float | None = None
    snn_accuracy: float | None = None
    run: RunResult | None = None
    path: Path | None = None
    seconds: float = 0.0
    rules: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def synops_per_inference(self) -> float | None:
        return None if self.run is None else self.run.synops_per_inference

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (what ``neurolocal convert --json`` prints)."""
        run = self.run
        return {
            "target": self.target,
            "timesteps": self.timesteps,
            "ann_accuracy": self.ann_accuracy,
            "snn_accuracy": self.snn_accuracy,
            "synops_per_inference": self.synops_per_inference,
            "spikes_per_inference": None if run is None else run.spikes_per_inference,
            "input_macs_per_inference": None if run is None else run.input_macs,
            "input": None if run is None else run.input,
            "n_eval": None if run is None else int(len(run.predictions)),
            "layers": [] if run is None else [s.as_dict() for s in run.layer_stats],
            "normalisation": self.model.metadata.get("normalisation"),
            "percentile": self.model.metadata.get("percentile"),
            "scales": self.model.metadata.get("scales"),
            "neuron": next((layer.neuron.kind for layer in self.model.layers if layer.neuron),
                           None),
            "v_init": next((layer.neuron.v_init for layer in self.model.layers
                            if layer.neuron), None),
            "readout": self.model.readout,
            "source_kind": self.source_kind,
            "out": None if self.path is None else str(self.path),
            "seconds": round(self.seconds, 3),
            "notes": self.notes,
        }


def _is_hdf5(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(8) == b"\x89HDF\r\n\x1a\n"


def load_model(
    model: Any, *, input_shape: tuple[int, ...] | None = None
) -> tuple[SNNModel, str, dict[str, Any] | None]:
    """Load anything :func:`convert` accepts: ``(SNNModel, "ann" | "snn", rules or None)``.

    ``.pt``/``.pth``: a torch Sequential or ``{"arch", "state_dict"}``; HDF5: a NIR graph
    (already spiking) or a neurolocal checkpoint (rate MLP; its rule text becomes the rules of
    every synaptic node); objects: ``nn.Sequential``, SNNModel, ``neurolocal.Network``.
    """
    from . import nir_io, torch_import

    if isinstance(model, SNNModel):
        kind = "snn" if model.metadata.get("normalisation") or "nir" in model.metadata else "ann"
        return model, kind, model.metadata.get("rules")
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if not path.is_file():
            raise ConversionError(f"model file {str(path)!r} does not exist")
        if path.suffix.lower() in (".pt", ".pth"):
            return torch_import.load_torch_file(path, input_shape), "ann", None
        if not _is_hdf5(path):
            raise ConversionError(
                f"{str(path)!r} is neither a torch file (.pt/.pth) nor HDF5 (a NIR graph or a "
                "neurolocal checkpoint)"
            )
        import h5py

        try:
            with h5py.File(path, "r") as fh:
                is_ckpt = fh.attrs.get("format") == "neurolocal-checkpoint"
        except OSError as exc:
            raise ConversionError(f"cannot read {str(path)!r}: corrupt HDF5 ({exc})") from None
        if is_ckpt:
            from neurolocal.checkpoint import load_checkpoint

            net, _meta = load_checkpoint(path)
            snn = torch_import.from_network(net)
            snn.metadata["source"] = path.name
            rule_text = getattr(getattr(net, "rule", None), "text", None)
            rules = None
            if rule_text:
                rules = {op.name: rule_text for layer in snn.layers for op in layer.ops
                         if op.weighted}
            return snn, "ann", rules
        snn = nir_io.read_nir(path, input_shape=input_shape)
        return snn, "snn", snn.metadata.get("rules")
    try:
        import torch

        if isinstance(model, torch.nn.Module):
            return torch_import.from_sequential(model, input_shape), "ann", None
    except ImportError:  # pragma: no cover - torch is a core dependency
        pass
    if hasattr(model, "weights") and hasattr(model, "depth"):
        snn = torch_import.from_network(model)
        text = getattr(getattr(model, "rule", None), "text", None)
        rules = ({op.name: text for layer in snn.layers for op in layer.ops if op.weighted}
                 if text else None)
        return snn, "ann", rules
    raise ConversionError(
        f"cannot convert a {type(model).__name__}: pass a torch.nn.Sequential, a .pt file, a NIR "
        "graph file, a neurolocal checkpoint or Network, or an SNNModel"
    )


def _dataset_slice(name: str, split: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    from neurolocal.app.data import load_dataset

    ds = load_dataset(name, split, limit=n, verbose=False)
    return np.array(ds.x), np.array(ds.y)


def _converted_target(name: str) -> Any:
    """The registered target ``name``, refused unless it runs converted networks."""
    from neurolocal.hardware.base import choices, get_target

    try:
        tgt = get_target(name)
    except NeurolocalError:
        tgt = None
    if tgt is None or not tgt.runs_converted:
        raise ConversionError(f"unknown target {name!r} for a converted network: choose one "
                              f"of {', '.join(choices(converted=True))}")
    return tgt


def run_on(
    model: SNNModel,
    x: Any,
    target: str,
    timesteps: int,
    *,
    input: str = "current",
    seed: int = 0,
    device: Any = None,
    progress: bool = False,
    **kw: Any,
) -> RunResult:
    """Run ``x`` on ``target`` (any registered spiking target) through its runtime."""
    tgt = _converted_target(target)
    if device not in (None, "cpu") and tgt.name != "snntorch":
        raise ConversionError(f"device={device!r} only applies to target 'snntorch'")
    if tgt.name == "snntorch":
        kw["device"] = device
    if tgt.name in ("snntorch", "lava:fixed_pt"):
        kw["progress"] = progress
    return tgt.run_converted(model, x, timesteps, input=input, seed=seed, **kw)


def convert(
    model: Any,
    *,
    calibration: Any = None,
    timesteps: int = 32,
    target: str = "snntorch",
    neuron: str = "IF",
    beta: float = 1.0,
    v_init: float = 0.5,
    normalisation: str = "percentile",
    percentile: float = 99.9,
    input: str = "current",
    evaluate: tuple[Any, Any] | None = None,
    dataset: str | None = "mnist",
    n_calibration: int = 2000,
    n_eval: int | None = 1000,
    input_shape: tuple[int, ...] | None = None,
    out: str | os.PathLike[str] | None = None,
    rules: dict[str, Any] | str | None = None,
    device: Any = None,
    seed: int = 0,
    progress: bool = False,
) -> ConversionResult:
    """Convert ``model`` to a spiking network and (optionally) evaluate it on ``target``.

    ``calibration``: inputs for data-based normalisation; default: the first
    ``n_calibration`` training images of ``dataset``. ``evaluate``: ``(x, y)`` to measure
    accuracy on; default: the first ``n_eval`` test images of ``dataset`` (``n_eval=None`` or
    ``dataset=None`` without ``evaluate`` skips evaluation). ``v_init``: initial membrane as a
    fraction of the threshold (0.5 halves the rate-coding error and the latency). ``out``:
    write the network as NIR (plus ``<name>.rules.json`` when there are rules). NIR inputs are
    already spiking and are used as they are (no normalisation).
    """
    from .normalise import normalise, set_neurons

    t0 = time.perf_counter()
    _converted_target(target)
    if not isinstance(timesteps, int) or timesteps < 1:
        raise ConversionError(f"timesteps must be an integer >= 1, got {timesteps!r}")
    snn, kind, found_rules = load_model(model, input_shape=input_shape)
    notes: list[str] = []
    ann = snn
    if kind == "ann":
        if calibration is None:
            if dataset is None:
                raise ConversionError("no calibration data: pass calibration=x_train[:2000] "
                                      "(or a dataset name)")
            calibration, _ = _dataset_slice(dataset, "train", n_calibration)
            notes.append(f"calibrated on the first {len(calibration)} {dataset} training images")
        snn = normalise(snn, calibration, method=normalisation, percentile=percentile)
        snn = set_neurons(snn, neuron, beta=beta, v_init=v_init)
    else:
        notes.append("already spiking (NIR): used as is, no normalisation")
    rules = rules if rules is not None else found_rules
    if rules is not None:
        snn.metadata["rules"] = rules
    path = None
    if out is not None:
        from .nir_io import write_nir

        path = write_nir(snn, out, rules=rules)
    result = ConversionResult(model=snn, source_kind=kind, target=target, timesteps=timesteps,
                              path=path, rules=rules if isinstance(rules, dict) else None,
                              notes=notes)
    if evaluate is None and dataset is not None and n_eval:
        evaluate = _dataset_slice(dataset, "test", n_eval)
    if evaluate is not None:
        x, y = evaluate
        x = as_batch(snn, x)
        y = np.asarray(y).reshape(-1)
        if kind == "ann":
            result.ann_accuracy = float(np.mean(ann_forward(ann, x).argmax(1) == y))
        result.run = run_on(snn, x, target, timesteps, input=input, seed=seed, device=device,
                            progress=progress)
        result.snn_accuracy = result.run.accuracy(y)
    result.seconds = time.perf_counter() - t0
    return result


def run_snn(
    path_or_model: Any,
    target: str = "snntorch",
    *,
    x: Any = None,
    y: Any = None,
    timesteps: int = 32,
    input: str = "current",
    dataset: str | None = "mnist",
    n_eval: int = 1000,
    device: Any = None,
    seed: int = 0,
    progress: bool = False,
) -> RunResult:
    """Run a converted network (NIR file or SNNModel) on ``target``.

    Without ``x``, the first ``n_eval`` test images of ``dataset`` are used (and their labels,
    so ``result.accuracy(labels)`` is in ``result.extra["accuracy"]``).
    """
    snn, kind, _ = load_model(path_or_model)
    if kind != "snn" and not isinstance(path_or_model, SNNModel):
        raise ConversionError(
            f"{path_or_model!s} is a rate network, not a converted one; convert it first "
            "(neurolocal convert MODEL --out snn.h5)"
        )
    if x is None:
        if dataset is None:
            raise ConversionError("no inputs: pass x= or a dataset name")
        x, y = _dataset_slice(dataset, "test", n_eval)
    res = run_on(snn, x, target, timesteps, input=input, seed=seed, device=device,
                 progress=progress)
    if y is not None:
        res.extra["accuracy"] = res.accuracy(y)
    return res

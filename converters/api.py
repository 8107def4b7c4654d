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

__all__ = ["IMAGE_SHAPE", "ConversionResult", "convert", "load_model", "run_on", "run_snn"]

#: the unbatched image shape of every data set neurolocal loads (MNIST, Fashion-MNIST)
IMAGE_SHAPE: tuple[int, ...] = (1, 28, 28)


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
    #: accuracy against T: {"T": [...], "snntorch": [...], "fixed_pt": [...] (Lava targets)}
    sweep: dict[str, Any] | None = None

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
            "sweep": self.sweep,
            "kind": "convert",
        }


def _is_hdf5(path: Path) -> bool:
    """HDF5's signature at offset 0, or after a user block of 512 bytes (sealed checkpoints)."""
    with open(path, "rb") as fh:
        head = fh.read(520)
    return b"\x89HDF\r\n\x1a\n" in (head[:8], head[512:520])


def _load_file(path: Path, input_shape: tuple[int, ...] | None, arch: str | None,
               dt: float | None, fallback: tuple[int, ...] | None
               ) -> tuple[SNNModel, str, dict[str, Any] | None]:
    from . import nir_io, torch_import

    if not path.is_file():
        raise ConversionError(f"model file {str(path)!r} does not exist")
    if path.suffix.lower() in (".pt", ".pth"):
        return (torch_import.load_torch_file(path, input_shape, arch=arch,
                                             fallback_shape=fallback), "ann", None)
    if not _is_hdf5(path):
        raise ConversionError(
            f"{str(path)!r} is neither a torch file (.pt/.pth) nor HDF5 (a NIR graph or a "
            "neurolocal checkpoint)")
    from neurolocal.checkpoint import is_checkpoint_file

    if is_checkpoint_file(path):
        from neurolocal.checkpoint import load_checkpoint

        net, _meta = load_checkpoint(path)
        snn = torch_import.from_network(net)
        snn.metadata["source"] = path.name
        return snn, "ann", _network_rules(net, snn)
    snn = nir_io.read_nir(path, dt=dt, input_shape=input_shape)
    return snn, "snn", snn.metadata.get("rules")


def _network_rules(net: Any, snn: SNNModel) -> dict[str, Any] | None:
    """A neurolocal Network's rule text for every synaptic node (None without a rule)."""
    text = getattr(getattr(net, "rule", None), "text", None)
    if not text:
        return None
    return {op.name: text for layer in snn.layers for op in layer.ops if op.weighted}


def load_model(
    model: Any, *, input_shape: tuple[int, ...] | None = None, arch: str | None = None,
    dt: float | None = None, dataset: str | None = None,
) -> tuple[SNNModel, str, dict[str, Any] | None]:
    """Load anything :func:`convert` accepts: ``(SNNModel, "ann" | "snn", rules or None)``.

    ``.pt``/``.pth``: a torch Sequential, a state dict with ``arch`` (``FILE.py:FUNCTION``) or
    ``{"arch", "state_dict"}``; HDF5: a NIR graph (already spiking; ``dt`` its time step) or a
    neurolocal checkpoint (rate MLP; its rule text becomes the rules of every synaptic node);
    objects: ``nn.Sequential``, SNNModel, ``neurolocal.Network``. With a ``dataset``, a torch
    network whose input shape cannot be inferred takes the data set's image shape.
    """
    from . import torch_import

    fallback = IMAGE_SHAPE if dataset is not None else None
    if isinstance(model, SNNModel):
        kind = "snn" if model.metadata.get("normalisation") or "nir" in model.metadata else "ann"
        return model, kind, model.metadata.get("rules")
    if isinstance(model, (str, os.PathLike)):
        return _load_file(Path(model), input_shape, arch, dt, fallback)
    try:
        import torch

        if isinstance(model, torch.nn.Module):
            return (torch_import.from_sequential(model, input_shape, fallback_shape=fallback),
                    "ann", None)
    except ImportError:  # pragma: no cover - torch is a core dependency
        pass
    if hasattr(model, "weights") and hasattr(model, "depth"):
        snn = torch_import.from_network(model)
        return snn, "ann", _network_rules(model, snn)
    raise ConversionError(
        f"cannot convert a {type(model).__name__}: pass a torch.nn.Sequential, a .pt file, a NIR "
        "graph file, a neurolocal checkpoint or Network, or an SNNModel"
    )


def _dataset_slice(name: str, split: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    from neurolocal.app.data import load_dataset

    ds = load_dataset(name, split, limit=n, verbose=False)
    return np.array(ds.x), np.array(ds.y)


def _sequence_input(dataset: str, input: str) -> str:
    """A sequence data set (smnist, copy-T) drives the network element by element."""
    from neurolocal.app.sequences import is_sequence

    if not is_sequence(dataset):
        if input == "sequence":
            raise ConversionError(f"--input sequence needs a sequence data set (smnist, "
                                  f"copy-T), not {dataset!r}")
        return input
    if input == "poisson":
        raise ConversionError(f"--dataset {dataset} is a sequence: its elements drive the "
                              "network as a current, one after another (--input sequence, "
                              "the default for it), not as Poisson spikes")
    return "sequence"


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
    codegen: str | None = None,
    raster: int = 0,
    **kw: Any,
) -> RunResult:
    """Run ``x`` on ``target`` (any registered spiking target) through its runtime.

    ``codegen``: Brian2's code generation (numpy, cython, auto); ``raster``: spike rasters of
    the first images in ``extra["raster"]``.
    """
    tgt = _converted_target(target)
    if device not in (None, "cpu") and tgt.name != "snntorch":
        raise ConversionError(f"--device {device}: only applies to --target snntorch")
    if tgt.name == "snntorch":
        kw["device"] = device
    if tgt.name == "brian2" and codegen is not None:
        kw["codegen_target"] = codegen
    if raster:
        kw["raster"] = int(raster)
    return tgt.run_converted(model, x, timesteps, input=input, seed=seed, progress=progress,
                             **kw)


def sweep_curves(model: SNNModel, x: Any, y: Any, timesteps: list[int], target: str, *,
                 input: str = "current", seed: int = 0) -> dict[str, Any]:
    """Accuracy against T for the plots: snntorch (float), and for a Lava target the
    fixed-point emulation (bit-exact with Lava fixed_pt), from one run to max(T) each."""
    from neurolocal.hardware.snntorch.inference import sweep_snntorch

    from .quantise import quantise, sweep_fixed

    ts = sorted({int(t) for t in timesteps})
    y = np.asarray(y).reshape(-1)
    float_runs = sweep_snntorch(model, x, ts, input=input, seed=seed)
    out: dict[str, Any] = {"T": ts, "snntorch": [float_runs[t].accuracy(y) for t in ts]}
    if target.startswith("lava"):
        fixed = sweep_fixed(quantise(model, input=input), x, ts, seed=seed)
        out["fixed_pt"] = [fixed[t].accuracy(y) for t in ts]
    return out


def _check_run_args(timesteps: Any, n: Any, what: str) -> None:
    if isinstance(timesteps, bool) or not isinstance(timesteps, int) or timesteps < 1:
        raise ConversionError(f"--timesteps/-T must be an integer >= 1, got {timesteps!r}")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
        raise ConversionError(f"{what} must be an integer >= 0, got {n!r}")


def _calibrated(snn: SNNModel, calibration: Any, dataset: str | None, n_calibration: int,
                normalisation: str, percentile: float, neuron: str, beta: float, v_init: float,
                notes: list[str]) -> SNNModel:
    from .normalise import normalise, set_neurons

    if calibration is None:
        if dataset is None:
            raise ConversionError("no calibration data: pass calibration=x_train[:2000] "
                                  "(or a dataset name)")
        if isinstance(n_calibration, bool) or not isinstance(n_calibration, int) \
                or n_calibration < 1:
            raise ConversionError(f"--n-calibration must be an integer >= 1, got "
                                  f"{n_calibration!r}")
        calibration, _ = _dataset_slice(dataset, "train", n_calibration)
        notes.append(f"calibrated on the first {len(calibration)} {dataset} training images")
    snn = normalise(snn, calibration, method=normalisation, percentile=percentile)
    return set_neurons(snn, neuron, beta=beta, v_init=v_init)


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
    arch: str | None = None,
    dt: float | None = None,
    codegen: str | None = None,
    sweep: list[int] | None = None,
) -> ConversionResult:
    """Convert ``model`` to a spiking network and (optionally) evaluate it on ``target``.

    ``calibration``: inputs for data-based normalisation; default: the first
    ``n_calibration`` training images of ``dataset``. ``evaluate``: ``(x, y)`` to measure
    accuracy on; default: the first ``n_eval`` test images of ``dataset`` (``n_eval=None`` or
    0, or ``dataset=None`` without ``evaluate``, skips evaluation). ``v_init``: initial membrane
    as a fraction of the threshold. ``out``: write the network as NIR (rules inside). ``arch``:
    ``FILE.py:FUNCTION`` building the network of a state dict; ``dt``: a NIR input's time step.
    NIR inputs are already spiking and are used as they are. ``sweep``: also measure accuracy
    at these T (``result.sweep``, for the plots).
    """
    t0 = time.perf_counter()
    _converted_target(target)
    _check_run_args(timesteps, n_eval, "--n-test")
    snn, kind, found_rules = load_model(model, input_shape=input_shape, arch=arch, dt=dt,
                                        dataset=dataset)
    notes: list[str] = list(snn.metadata.get("nir", {}).get("notes", []))
    ann = snn
    if kind == "ann":
        snn = _calibrated(snn, calibration, dataset, n_calibration, normalisation, percentile,
                          neuron, beta, v_init, notes)
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
        x, y = as_batch(snn, evaluate[0]), np.asarray(evaluate[1]).reshape(-1)
        if kind == "ann":
            result.ann_accuracy = float(np.mean(ann_forward(ann, x).argmax(1) == y))
        result.run = run_on(snn, x, target, timesteps, input=input, seed=seed, device=device,
                            progress=progress, codegen=codegen)
        result.snn_accuracy = result.run.accuracy(y)
        if sweep:
            result.sweep = sweep_curves(snn, x, y, sorted(set(sweep) | {timesteps}), target,
                                        input=input, seed=seed)
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
    dt: float | None = None,
    codegen: str | None = None,
    raster: int = 0,
    reference: bool = False,
) -> RunResult:
    """Run a converted network (NIR file or SNNModel) on ``target``.

    Without ``x``, the first ``n_eval`` test images of ``dataset`` are used (and their labels,
    so ``result.accuracy(labels)`` is in ``result.extra["accuracy"]``). ``dt``: the NIR
    file's time step; ``raster``: spike rasters of the first images; ``reference``: also run
    snntorch (float) on the same images, in ``extra["float_reference"]`` (for a Lava fixed_pt
    run: fixed point against float).
    """
    _check_run_args(timesteps, n_eval, "--n-test")
    snn, kind, _ = load_model(path_or_model, dt=dt)
    if kind != "snn" and not isinstance(path_or_model, SNNModel):
        raise ConversionError(
            f"{path_or_model!s} is a rate network, not a converted one; convert it first "
            "(neurolocal convert MODEL --out snn.nir)"
        )
    if x is None:
        if dataset is None:
            raise ConversionError("no inputs: pass x= or a dataset name")
        x, y = _dataset_slice(dataset, "test", n_eval)
        input = _sequence_input(dataset, input)
    res = run_on(snn, x, target, timesteps, input=input, seed=seed, device=device,
                 progress=progress, codegen=codegen, raster=raster)
    res.extra["notes"] = list(snn.metadata.get("nir", {}).get("notes", []))
    if y is not None:
        res.extra["accuracy"] = res.accuracy(y)
    if reference:
        ref = run_on(snn, x, "snntorch", timesteps, input=input, seed=seed, raster=raster)
        res.extra["float_reference"] = {
            "target": "snntorch", "outputs": ref.outputs, "predictions": ref.predictions,
            "layers": [s.as_dict() for s in ref.layer_stats],
            "accuracy": None if y is None else ref.accuracy(y),
            "raster": ref.extra.get("raster")}
    return res

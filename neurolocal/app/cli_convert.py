"""``neurolocal convert``, ``run`` and ``plot``: argparse wiring for the converters' API.

:mod:`.cli` calls :func:`add_convert_parser`, :func:`add_run_parser` and
:func:`add_plot_parser` with its subparsers. Importing this module is cheap (torch, Brian2 and
Lava load only when a command runs). The targets offered are the registry's spiking targets;
``run`` also evaluates a checkpoint that was trained on a spiking target, with that target's
own neuron model. Every out-of-range value is refused naming its flag, before work starts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import warnings
from collections.abc import Iterator
from typing import Any

from neurolocal.errors import NeurolocalError

__all__ = ["add_convert_parser", "add_export_parser", "add_plot_parser", "add_run_parser",
           "cmd_convert", "cmd_plot", "cmd_run"]


def _targets(converted: bool) -> list[str]:
    from neurolocal.hardware.base import choices

    return choices(mode="spiking", converted=converted)


def _common(p: argparse.ArgumentParser, *, converted: bool) -> None:
    p.add_argument("--timesteps", "-T", type=int, default=None,
                   help="simulation steps per input (default 32; a spiking-trained "
                        "checkpoint: the T it learned with)")
    p.add_argument("--target", choices=_targets(converted), default="snntorch",
                   help="simulator to run on (default snntorch)")
    p.add_argument("--input", choices=("current", "poisson", "sequence"), default="current",
                   help="constant input current (default), Poisson spikes, or a sequence "
                        "(each element a current for T/steps steps; the default for "
                        "sequence data sets such as smnist)")
    p.add_argument("--dataset", default="mnist",
                   help="data set for calibration/evaluation (default mnist)")
    p.add_argument("--n-test", type=int, default=1000,
                   help="test images to evaluate on (default 1000; 0 skips evaluation)")
    p.add_argument("--device", default=None, help="snntorch device, e.g. cuda (default cpu)")
    p.add_argument("--seed", type=int, default=0, help="seed for Poisson input (default 0)")
    p.add_argument("--dt", type=float, default=None,
                   help="time step of a NIR input in seconds (NIR stores none; default: the "
                        "file's own if neurolocal wrote it, else snntorch's 1e-4)")
    p.add_argument("--codegen", choices=("auto", "cython", "numpy"),
                   default=os.environ.get("NEUROLOCAL_BRIAN2_CODEGEN", "auto"),
                   help="brian2: code generation (default auto: cython where a compiler works, "
                        "compiled once; or $NEUROLOCAL_BRIAN2_CODEGEN)")
    p.add_argument("--plot", default=None, metavar="FILE",
                   help="also draw the results as a PNG (see `neurolocal plot`)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def add_convert_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``convert MODEL --timesteps T --target ... [--out snn.h5] [--json]``."""
    p = subparsers.add_parser(
        "convert",
        help="convert a trained rate network to a spiking one and evaluate it",
        description="Convert a trained ReLU network (.pt Sequential or {'arch','state_dict'}, "
                    "neurolocal checkpoint .h5, or NIR .h5/.nir) into IF/LIF neurons with "
                    "reset by subtraction, normalised on calibration data, and evaluate it.",
    )
    p.add_argument("model", help="model file: .pt/.pth, neurolocal checkpoint or NIR graph")
    _common(p, converted=True)
    p.add_argument("--out", "-o", default=None,
                   help="write the spiking network as NIR (HDF5), e.g. snn.h5")
    p.add_argument("--neuron", choices=("IF", "LIF"), default="IF", help="neuron type")
    p.add_argument("--beta", type=float, default=0.95, help="LIF decay per step (LIF only)")
    p.add_argument("--v-init", type=float, default=0.5,
                   help="initial membrane as a fraction of the threshold (default 0.5)")
    p.add_argument("--normalisation", choices=("percentile", "max"), default="percentile")
    p.add_argument("--percentile", type=float, default=99.9)
    p.add_argument("--n-calibration", type=int, default=2000,
                   help="training images for normalisation (default 2000)")
    p.add_argument("--input-shape", default=None,
                   help="unbatched input shape, e.g. 1,28,28 (default: inferred, or the "
                        "data set's image shape)")
    p.add_argument("--arch", default=None, metavar="FILE.py:FUNCTION",
                   help="for a state_dict: a function (called without arguments) that builds "
                        "the nn.Sequential it was saved from")
    p.add_argument("--rules", default=None,
                   help="learning rules for the sidecar: a JSON file {node: rule} or a rule "
                        "file applied to every synaptic node")
    p.set_defaults(func=cmd_convert)
    return p


def add_run_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``run SNN --target T`` (SNN: a NIR file written by ``convert --out``)."""
    p = subparsers.add_parser(
        "run",
        help="run a converted spiking network (NIR file) or a spiking-trained checkpoint",
        description="Run a spiking network stored as NIR on snntorch, Brian2 or Lava fixed_pt "
                    "and report accuracy, spikes and synaptic operations per inference; or "
                    "evaluate a checkpoint trained on a spiking target with the learning "
                    "targets' neuron model.",
    )
    p.add_argument("snn", help="NIR graph file (e.g. written by `neurolocal convert --out`), or "
                               "a checkpoint trained on a spiking target (`train --spiking --out`)")
    _common(p, converted=False)
    p.set_defaults(func=cmd_run)
    return p


def add_export_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``export CHECKPOINT --out FILE``."""
    from .deploy import cmd_export

    p = subparsers.add_parser(
        "export", help="write a spiking-trained checkpoint as NIR, with its learning rule",
        description="Write a network trained on a spiking target as a NIR graph (Affine -> "
                    "CubaLIF per layer, the learning targets' neuron model) with the rule "
                    "that trained it; snntorch's import_from_nir reads it back.")
    p.add_argument("checkpoint", help="a checkpoint written by `train --spiking --out`")
    p.add_argument("--out", "-o", required=True, help="the NIR file to write, e.g. net.nir")
    p.set_defaults(func=cmd_export)
    return p


def add_plot_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``plot RESULT.json [--out FILE]``."""
    p = subparsers.add_parser(
        "plot", help="draw the JSON result of train, convert or run as a PNG",
        description="Draw what `train --json`, `convert --json` or `run --json` printed: "
                    "training curves with the alignment angles, accuracy against T, spike "
                    "rasters and per-layer rates, fixed point against float.")
    p.add_argument("result", help="a JSON file written by a command run with --json")
    p.add_argument("--out", "-o", default=None,
                   help="the PNG to write (default: RESULT.png beside the JSON)")
    p.set_defaults(func=cmd_plot)
    return p


def cmd_plot(args: argparse.Namespace) -> int:
    """The ``plot`` command."""
    from .plots import plot_file

    print(f"wrote {plot_file(args.result, args.out)}")
    return 0


def _check_flags(args: argparse.Namespace, command: str) -> None:
    """Refuse out-of-range values naming the flag (before anything is loaded)."""
    def bad(flag: str, need: str, value: Any) -> NeurolocalError:
        return NeurolocalError(f"{flag} must be {need}, got {value!r}")

    if args.timesteps is not None and args.timesteps < 1:
        raise bad("--timesteps/-T", "an integer >= 1", args.timesteps)
    if args.n_test < 0:
        raise bad("--n-test", "an integer >= 0 (0 skips evaluation)", args.n_test)
    if args.seed < 0:
        raise bad("--seed", "an integer >= 0", args.seed)
    if args.dt is not None and not (math.isfinite(args.dt) and args.dt > 0):
        raise bad("--dt", "a time step > 0 in seconds (e.g. 1e-3)", args.dt)
    if args.plot:
        from .training import check_destination

        check_destination(args.plot, "--plot")
    if command != "convert":
        return
    if args.n_calibration < 1:
        raise bad("--n-calibration", "an integer >= 1", args.n_calibration)
    if not 0.0 < args.percentile <= 100.0:
        raise bad("--percentile", "in (0, 100]", args.percentile)
    if not 0.0 <= args.v_init < 1.0:
        raise bad("--v-init", "a fraction of the threshold in [0, 1)", args.v_init)
    if args.neuron == "LIF" and not 0.0 < args.beta < 1.0:
        raise bad("--beta", "in (0, 1) for --neuron LIF (beta = 1 is IF)", args.beta)
    if args.out:
        from .training import check_destination

        check_destination(args.out, "--out")


def _input_shape(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        shape = tuple(int(s) for s in text.replace("x", ",").split(",") if s.strip())
        if not shape or min(shape) < 1:
            raise ValueError
    except ValueError:
        raise NeurolocalError(f"--input-shape {text!r}: expected positive integers such as "
                              "1,28,28") from None
    return shape


def _sweep(timesteps: int) -> list[int]:
    """The T values of an accuracy-against-T plot: powers of two up to 2T, and T."""
    return sorted({2**k for k in range(int(math.log2(2 * timesteps)) + 1)} | {timesteps})


def _say(args: argparse.Namespace, msg: str) -> None:
    if not args.json:
        print(msg, file=sys.stderr, flush=True)


def _rules_arg(value: str | None) -> Any:
    if value is None:
        return None
    from pathlib import Path

    from neurolocal.converters.model import ConversionError

    path = Path(value)
    if not path.is_file():
        raise ConversionError(f"rules file {value!r} does not exist")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            return json.loads(text)
        except ValueError as exc:
            raise ConversionError(f"rules file {value!r} is not valid JSON ({exc})") from None
    return text


@contextlib.contextmanager
def _notes_only() -> Iterator[None]:
    """Convention warnings are printed as notes (once), not as Python warnings too."""
    from neurolocal.converters.nir_import import NIRConventionWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NIRConventionWarning)
        warnings.filterwarnings("ignore", message=".*belongs to an earlier version.*")
        yield


def _convert(args: argparse.Namespace) -> Any:
    from neurolocal.converters.api import convert

    return convert(
        args.model, timesteps=args.timesteps, target=args.target, neuron=args.neuron,
        beta=args.beta if args.neuron == "LIF" else 1.0, v_init=args.v_init,
        normalisation=args.normalisation,
        percentile=args.percentile, input=args.input, dataset=args.dataset,
        n_calibration=args.n_calibration, n_eval=args.n_test or None,
        input_shape=_input_shape(args.input_shape), out=args.out,
        rules=_rules_arg(args.rules), device=args.device, seed=args.seed,
        progress=not args.json, arch=args.arch, dt=args.dt, codegen=args.codegen,
        sweep=_sweep(args.timesteps) if args.plot else None,
    )


def cmd_convert(args: argparse.Namespace) -> int:
    """The ``convert`` command: exit 0 on success."""
    _check_flags(args, "convert")
    _input_shape(args.input_shape)
    args.timesteps = 32 if args.timesteps is None else args.timesteps
    _say(args, f"converting {args.model} for {args.target}, T={args.timesteps} ...")
    with _notes_only():
        res = _convert(args)
    d = res.as_dict()
    plotted = None
    if args.plot and res.run is not None:
        from .plots import plot_conversion

        plotted = plot_conversion(d, args.plot)
    if args.json:
        for note in res.notes:
            print(f"note: {note}", file=sys.stderr)
        print(json.dumps(d, sort_keys=True))
        return 0
    print(res.model.summary())
    if res.run is not None:
        ann = "-" if res.ann_accuracy is None else f"{100 * res.ann_accuracy:.2f} %"
        print(f"\nANN accuracy: {ann}   SNN accuracy ({args.target}, T={args.timesteps}): "
              f"{100 * res.snn_accuracy:.2f} %   on {len(res.run.predictions)} test images")
        print(res.run.table())
    if res.path is not None:
        print(f"\nwrote {res.path}")
    if plotted is not None:
        print(f"wrote {plotted}")
    for note in res.notes:
        print(f"note: {note}")
    return 0


def _run_dict(args: argparse.Namespace, res: Any) -> dict[str, Any]:
    import numpy as np

    from .plots import raster_json

    d = {"kind": "run", "target": args.target, "timesteps": args.timesteps,
         "snn_accuracy": res.extra.get("accuracy"),
         "synops_per_inference": res.synops_per_inference,
         "spikes_per_inference": res.spikes_per_inference,
         "input_macs_per_inference": res.input_macs, "n_eval": len(res.predictions),
         "layers": [s.as_dict() for s in res.layer_stats], "seconds": round(res.seconds, 3),
         "notes": res.extra.get("notes", [])}
    if "raster" in res.extra:
        d["raster"] = raster_json(res.extra["raster"])
    if "output_scale" in res.extra:
        d["output_scale"] = res.extra["output_scale"]
    ref = res.extra.get("float_reference")
    if ref is not None:
        d["outputs"] = np.asarray(res.outputs).tolist()
        d["float_reference"] = {"target": ref["target"], "accuracy": ref["accuracy"],
                                "layers": ref["layers"],
                                "outputs": np.asarray(ref["outputs"]).tolist()}
    return d


def cmd_run(args: argparse.Namespace) -> int:
    """The ``run`` command: a converted network (NIR) or a spiking-trained checkpoint."""
    from .deploy import is_checkpoint, run_checkpoint

    _check_flags(args, "run")
    if is_checkpoint(args.snn):
        return run_checkpoint(args)
    from neurolocal.converters.api import run_snn

    args.timesteps = 32 if args.timesteps is None else args.timesteps
    _say(args, f"running {args.snn} on {args.target}, T={args.timesteps} ...")
    with _notes_only():
        res = run_snn(args.snn, args.target, timesteps=args.timesteps, input=args.input,
                      dataset=args.dataset, n_eval=args.n_test or 1000, device=args.device,
                      seed=args.seed, progress=not args.json, dt=args.dt, codegen=args.codegen,
                      raster=1 if args.plot else 0,
                      reference=bool(args.plot) and args.target.startswith("lava"))
    d = _run_dict(args, res)
    plotted = None
    if args.plot:
        from .plots import plot_run

        plotted = plot_run(d, args.plot)
    for note in d["notes"]:
        print(f"note: {note}", file=sys.stderr)
    if args.json:
        print(json.dumps(d, sort_keys=True))
        return 0
    acc = d["snn_accuracy"]
    print(f"{args.target}, T={args.timesteps}: accuracy {100 * acc:.2f} % on "
          f"{len(res.predictions)} test images ({res.seconds:.1f} s)")
    print(res.table())
    if plotted is not None:
        print(f"wrote {plotted}")
    return 0

"""``neurolocal convert`` and ``neurolocal run``: argparse wiring for the converters' API.

:mod:`.cli` calls :func:`add_convert_parser` and :func:`add_run_parser` with its subparsers.
Importing this module is cheap (torch, Brian2 and Lava load only when a command runs). The
targets offered are the registry's spiking targets; ``run`` also evaluates a checkpoint that
was trained on a spiking target, with that target's own neuron model.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["add_convert_parser", "add_export_parser", "add_run_parser", "cmd_convert",
           "cmd_run"]


def _targets(converted: bool) -> list[str]:
    from neurolocal.hardware.base import choices

    return choices(mode="spiking", converted=converted)


def _common(p: argparse.ArgumentParser, *, converted: bool) -> None:
    p.add_argument("--timesteps", "-T", type=int, default=None,
                   help="simulation steps per input (default 32; a spiking-trained "
                        "checkpoint: the T it learned with)")
    p.add_argument("--target", choices=_targets(converted), default="snntorch",
                   help="simulator to run on (default snntorch)")
    p.add_argument("--input", choices=("current", "poisson"), default="current",
                   help="constant input current (default) or Poisson spikes")
    p.add_argument("--dataset", default="mnist",
                   help="data set for calibration/evaluation (default mnist)")
    p.add_argument("--n-test", type=int, default=1000,
                   help="test images to evaluate on (default 1000; 0 skips evaluation)")
    p.add_argument("--device", default=None, help="snntorch device, e.g. cuda (default cpu)")
    p.add_argument("--seed", type=int, default=0, help="seed for Poisson input (default 0)")
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
                   help="unbatched input shape for conv models, e.g. 1,28,28")
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


def cmd_convert(args: argparse.Namespace) -> int:
    """The ``convert`` command: exit 0 on success."""
    from neurolocal.converters.api import convert

    shape = None
    if args.input_shape:
        shape = tuple(int(s) for s in args.input_shape.replace("x", ",").split(",") if s)
    args.timesteps = 32 if args.timesteps is None else args.timesteps
    _say(args, f"converting {args.model} for {args.target}, T={args.timesteps} ...")
    res = convert(
        args.model, timesteps=args.timesteps, target=args.target, neuron=args.neuron,
        beta=args.beta if args.neuron == "LIF" else 1.0, v_init=args.v_init,
        normalisation=args.normalisation,
        percentile=args.percentile, input=args.input, dataset=args.dataset,
        n_calibration=args.n_calibration, n_eval=args.n_test or None, input_shape=shape,
        out=args.out, rules=_rules_arg(args.rules), device=args.device, seed=args.seed,
        progress=not args.json,
    )
    if args.json:
        print(json.dumps(res.as_dict(), sort_keys=True))
        return 0
    print(res.model.summary())
    if res.run is not None:
        ann = "-" if res.ann_accuracy is None else f"{100 * res.ann_accuracy:.2f} %"
        print(f"\nANN accuracy: {ann}   SNN accuracy ({args.target}, T={args.timesteps}): "
              f"{100 * res.snn_accuracy:.2f} %   on {len(res.run.predictions)} test images")
        print(res.run.table())
    if res.path is not None:
        print(f"\nwrote {res.path}")
    for note in res.notes:
        print(f"note: {note}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """The ``run`` command: a converted network (NIR) or a spiking-trained checkpoint."""
    from .deploy import is_checkpoint, run_checkpoint

    if is_checkpoint(args.snn):
        return run_checkpoint(args)
    from neurolocal.converters.api import run_snn

    args.timesteps = 32 if args.timesteps is None else args.timesteps
    _say(args, f"running {args.snn} on {args.target}, T={args.timesteps} ...")
    res = run_snn(args.snn, args.target, timesteps=args.timesteps, input=args.input,
                  dataset=args.dataset, n_eval=args.n_test or 1000, device=args.device,
                  seed=args.seed, progress=not args.json)
    acc = res.extra.get("accuracy")
    if args.json:
        print(json.dumps({
            "target": args.target, "timesteps": args.timesteps, "snn_accuracy": acc,
            "synops_per_inference": res.synops_per_inference,
            "spikes_per_inference": res.spikes_per_inference,
            "input_macs_per_inference": res.input_macs, "n_eval": len(res.predictions),
            "layers": [s.as_dict() for s in res.layer_stats], "seconds": round(res.seconds, 3),
        }, sort_keys=True))
        return 0
    print(f"{args.target}, T={args.timesteps}: accuracy {100 * acc:.2f} % on "
          f"{len(res.predictions)} test images ({res.seconds:.1f} s)")
    print(res.table())
    return 0

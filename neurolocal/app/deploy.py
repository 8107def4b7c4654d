"""Spiking-trained checkpoints after training: evaluate them on a target, export them as NIR."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from neurolocal.errors import NeurolocalError

__all__ = ["evaluate_checkpoint", "is_checkpoint", "run_checkpoint", "cmd_export"]


def is_checkpoint(path: str) -> bool:
    """Is ``path`` a neurolocal checkpoint (rather than a NIR graph or a torch file)?"""
    from neurolocal.checkpoint import is_checkpoint_file

    return Path(path).is_file() and is_checkpoint_file(path)


def _spiking_checkpoint(path: str, what: str) -> tuple[Any, Any, dict]:
    from neurolocal.checkpoint import load_checkpoint
    from neurolocal.hardware.semantics import SpikingConfig

    net, meta = load_checkpoint(path)
    if meta.get("mode") != "spiking":
        raise NeurolocalError(
            f"{path} was trained in rate mode (target {meta.get('target', '?')}); {what} "
            "takes a checkpoint trained on a spiking target. For a rate network, convert it "
            f"first: neurolocal convert {path} --out net.nir")
    return net, SpikingConfig().with_options(**meta.get("spiking", {})), meta


def evaluate_checkpoint(path: str, target: str, *, timesteps: int | None = None,
                        dataset: str = "mnist", n_test: int = 1000, seed: int = 0,
                        device: str | None = None) -> dict:
    """Accuracy of a spiking-trained checkpoint on ``target``'s learning neuron model."""
    from neurolocal.hardware.base import get_target

    from .data import load_dataset

    net, config, meta = _spiking_checkpoint(path, "run")
    if timesteps is not None:
        config = config.with_options(timesteps=int(timesteps))
    tgt = get_target(target)
    if tgt.mode != "spiking":
        raise NeurolocalError(f"--target {target}: a spiking-trained checkpoint runs on a "
                              "spiking target (snntorch, brian2, lava...)")
    options: dict[str, Any] = {"seed": seed}
    if device is not None:
        tgt.check_options({"device": device})
        options["device"] = device
    program = tgt.lower(net.rule, network=net, config=config, allow_nonlocal=True)
    runner = tgt.bind(net, program, **options)
    test = load_dataset(dataset, "test", limit=n_test, verbose=False)
    try:
        scores = runner.predict(test.x)
    finally:
        runner.close()
    acc = 100.0 * float((scores.argmax(1) == test.y).mean())
    return {"checkpoint": str(path), "target": tgt.name, "trained_on": meta.get("target"),
            "timesteps": config.timesteps, "test_accuracy": acc, "n_test": len(test.y),
            "rounding": getattr(runner, "rounding", 0.0)}


def run_checkpoint(args) -> int:
    """``neurolocal run CHECKPOINT --target T``."""
    res = evaluate_checkpoint(args.snn, args.target, timesteps=args.timesteps,
                              dataset=args.dataset, n_test=args.n_test or 1000, seed=args.seed,
                              device=args.device)
    if args.json:
        print(json.dumps(res, sort_keys=True))
    else:
        print(f"{res['target']}: test accuracy {res['test_accuracy']:.2f}% on {res['n_test']} "
              f"images, T={res['timesteps']} (trained on {res['trained_on']})")
        if res["rounding"]:
            print(f"  weights moved by at most {res['rounding']:.3g} onto the fixed-point grid")
    return 0


def cmd_export(args) -> int:
    """``neurolocal export CHECKPOINT --out FILE``: NIR graph plus the learning rule."""
    from neurolocal.converters.export import export_spiking

    from .training import check_destination

    check_destination(args.out, "--out")
    net, config, _ = _spiking_checkpoint(args.checkpoint, "export")
    path = export_spiking(net, config, args.out)
    print(f"wrote {path} (CubaLIF layers of the learning neuron model, T={config.timesteps}; "
          f"rule {net.rule.name} for every synaptic node)", file=sys.stdout)
    return 0

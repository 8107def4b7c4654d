"""Recurrent spiking networks: DFA through time on row-by-row MNIST on snntorch, and one
online pass over the same sequences on snntorch, Brian2 and Lava fixed_pt.

Net: 28 inputs -> one recurrent layer of 128 LIF neurons (recurrent synapses R) -> 10 output
neurons; each of a sequence's 28 rows is shown for E spike steps (``--steps-per-row``) and is
one learning epoch (hardware/timed.py, docs/recurrent.md); the answer is the output's rate over
the last row. ``--leak`` sets the current decay du so that the synaptic current keeps that share
of itself over one row ((1 - du)^E = leak). Everything goes through ``neurolocal train``'s loop.

    python benchmarks/recurrent_spiking.py                         # both sections
    python benchmarks/recurrent_spiking.py --section smnist --epochs 1 --limit 6000
    python benchmarks/recurrent_spiking.py --section subset --subset 1000 --test-subset 500

``smnist``: snntorch, batch 20, ``--lr`` per batch (the rule's lr global), ``--lr-decay`` per
epoch. ``subset``: one strictly online pass (batch 1, ``--subset-lr``) over the first
``--subset`` training sequences, tested on the first ``--test-subset`` test sequences, on each
target; the issue's claim is that Brian2 and Lava fixed_pt land within 2 points of snntorch.
A target that cannot run the rule is reported with its reason (a missed target).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from neurolocal.app.training import TrainConfig, train
from neurolocal.errors import NeurolocalError

ROOT = Path(__file__).resolve().parent.parent
HIDDEN = 128
TARGET_ACCURACY = 95.0  # issue 13: spiking recurrent DFA on snntorch, row-by-row MNIST


def _config(args, **kw) -> TrainConfig:
    base = dict(rule=args.rule, dataset="smnist", recurrent=[HIDDEN], leak=args.leak,
                timesteps=args.steps_per_row, seed=args.seed, test_limit=args.test_limit)
    base.update(kw)
    return TrainConfig(**base)


def section_smnist(args) -> dict:
    cfg = _config(args, target="snntorch", epochs=args.epochs, batch_size=args.batch_size,
                  globals={"lr": args.lr}, lr_decay=args.lr_decay, limit=args.limit)
    res = train(cfg, progress=False)
    rows = [{"epoch": h["epoch"], "test_accuracy": h["test_accuracy"], "lr": h["step"],
             "seconds": h["seconds"]} for h in res.history]
    return {"rows": rows, "best": max(r["test_accuracy"] for r in rows),
            "update_angles": res.update_angles, "samples": res.samples,
            "test_samples": res.test_samples, "spiking": res.extra.get("spiking")}


def section_subset(args) -> dict:
    out = {}
    for target in args.targets:
        kw = dict(target=target, epochs=1, batch_size=1 if target == "snntorch" else None,
                  globals={"lr": args.subset_lr}, limit=args.subset,
                  test_limit=args.test_subset)
        if target == "brian2":
            kw["codegen"] = args.codegen
        t0 = time.perf_counter()
        try:
            res = train(_config(args, **kw), progress=False)
        except NeurolocalError as exc:
            out[target] = {"error": str(exc)}
            print(f"  {target}: refused: {exc}", file=sys.stderr)
            continue
        out[target] = {"test_accuracy": res.test_accuracy, "seconds": res.seconds,
                       "wall": time.perf_counter() - t0, "samples": res.samples,
                       "test_samples": res.test_samples}
        print(f"  {target}: {res.test_accuracy:.2f}% ({res.seconds:.0f} s)", file=sys.stderr)
    return out


def _smnist_table(args, res: dict) -> str:
    spk = res.get("spiking") or {}
    lines = [f"**spiking {args.rule} on snntorch, row-by-row MNIST: 28-{HIDDEN}(R)-10, "
             f"E = {args.steps_per_row} steps per row (T = {28 * args.steps_per_row}), "
             f"du = {spk.get('du', 1.0):.4g}, batch {args.batch_size}, {res['samples']} "
             f"training / {res['test_samples']} test sequences**", "",
             "| epoch | test accuracy % | lr | train seconds (cum.) |",
             "|---|---|---|---|"]
    for r in res["rows"]:
        lines.append(f"| {r['epoch']} | {r['test_accuracy']:.2f} | {r['lr']:.4g} | "
                     f"{r['seconds']:.0f} |")
    hit = "met" if res["best"] >= TARGET_ACCURACY else "MISSED"
    lines += ["", f"target >= {TARGET_ACCURACY:.0f} %: {hit} (best {res['best']:.2f} %)"]
    return "\n".join(lines)


def _subset_table(args, res: dict) -> str:
    ref = res.get("snntorch", {}).get("test_accuracy")
    lines = [f"**one online pass (batch 1, lr {args.subset_lr}) over the first {args.subset} "
             f"training sequences, first {args.test_subset} test sequences, 28-{HIDDEN}(R)-10, "
             f"E = {args.steps_per_row}; chance = 10 %**", "",
             "| target | test accuracy % | vs snntorch | within 2 points | train seconds |",
             "|---|---|---|---|---|"]
    for target, r in res.items():
        if "error" in r:
            lines.append(f"| {target} | refused | | MISSED | |")
            continue
        diff = "" if ref is None or target == "snntorch" else f"{r['test_accuracy'] - ref:+.2f}"
        ok = "" if target == "snntorch" or ref is None else \
            ("yes" if abs(r["test_accuracy"] - ref) <= 2.0 else "MISSED")
        lines.append(f"| {target} | {r['test_accuracy']:.2f} | {diff} | {ok} | "
                     f"{r['seconds']:.0f} |")
    for target, r in res.items():
        if "error" in r:
            lines += ["", f"{target}: {r['error']}"]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--section", choices=["smnist", "subset", "all"], default="all")
    p.add_argument("--rule", default="dfa-rnn")
    p.add_argument("--steps-per-row", type=int, default=10)
    p.add_argument("--leak", type=float, default=0.35, help="current kept over one row")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=20)
    p.add_argument("--lr", type=float, default=0.2, help="the rule's lr per batch (snntorch)")
    p.add_argument("--lr-decay", type=float, default=1.0)
    p.add_argument("--limit", type=int, default=None, help="training sequences (smnist)")
    p.add_argument("--test-limit", type=int, default=None, help="test sequences (smnist)")
    p.add_argument("--subset", type=int, default=1000)
    p.add_argument("--test-subset", type=int, default=1000)
    p.add_argument("--subset-lr", type=float, default=0.01)
    p.add_argument("--targets", nargs="+", default=["snntorch", "brian2", "lava:fixed_pt"])
    p.add_argument("--codegen", default="cython")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="write the results here too")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    print("$ python benchmarks/recurrent_spiking.py " + " ".join(argv or sys.argv[1:]))
    results: dict = {"args": vars(args)}
    if args.section in ("smnist", "all"):
        results["smnist"] = section_smnist(args)
        print(_smnist_table(args, results["smnist"]) + "\n", flush=True)
    if args.section in ("subset", "all"):
        results["subset"] = section_subset(args)
        print(_subset_table(args, results["subset"]) + "\n", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

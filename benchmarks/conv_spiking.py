"""Spiking DFA and sparse DFA on a conv net (MNIST), online on snntorch (issue 12, conv part).

The rule text is the rate benchmark's (``benchmarks/conv_rules.py``); the net runs the
spiking semantics of docs/spiking.md with conv feature maps (``hardware/conv_spiking.py``):
LIF maps, one step of delay per projection, DFA feedback from the output into every map
neuron, each kernel entry moved by the sum of its copies' updates, batch-averaged.

Defaults: 1x28x28 -> conv 16 (5x5, stride 2, pad 2) -> 256 -> 10, T = 40, batch 20, the
rule's lr global 0.2 (dfa's 0.01 per sample x batch 20) x 0.8 per epoch, Poisson input, IF
neurons (du = 1, dv = 0), boxcar surrogate; snntorch on the CPU, 1 thread. The results file
is rewritten after every epoch, so a run stopped early keeps what it measured.

    python benchmarks/conv_spiking.py --rows dfa sdfa --epochs 3
    python benchmarks/conv_spiking.py --rows dfa --epochs 1 --limit 2000 --test-limit 1000  # a look
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from neurolocal.app.data import load_dataset
from neurolocal.app.training import accuracy
from neurolocal.hardware.base import get_target
from neurolocal.hardware.semantics import SpikingConfig
from neurolocal.network import build_cnn
from neurolocal.rules import get_rule

ROOT = Path(__file__).resolve().parent.parent


def _conv(text: str) -> tuple[int, int, int, int]:
    parts = [int(v) for v in text.split(":")]
    if len(parts) != 4:
        raise argparse.ArgumentTypeError(f"--conv {text}: expected C:K:S:P, e.g. 16:5:2:2")
    return tuple(parts)  # type: ignore[return-value]


def run_rule(name: str, tr, te, args, out: dict, save) -> dict:
    rule = get_rule(name).with_globals(lr=args.lr)
    net = build_cnn((1, 28, 28), args.conv, args.hidden, 10, rule, seed=args.seed)
    runner = get_target("snntorch").runner(net, SpikingConfig(timesteps=args.timesteps),
                                           batch_size=args.batch_size, seed=args.seed)
    eye = np.eye(10, dtype=np.float32)
    row = {"rule": name, "curve": [], "lr": [], "seconds": [], "test_accuracy": None}
    out["rows"][name] = row
    train_s = 0.0
    for epoch in range(1, args.epochs + 1):
        order = np.random.default_rng(args.seed + epoch).permutation(len(tr.x))
        t0 = time.perf_counter()
        runner.learn(tr.x[order], eye[tr.y[order]])
        train_s += time.perf_counter() - t0
        acc = accuracy(runner, te.x, te.y)
        row["curve"].append(acc)
        row["lr"].append(runner.g["lr"])
        row["seconds"].append(train_s)
        row["test_accuracy"] = acc
        row["synaptic_events"] = runner.events
        print(f"  {name} epoch {epoch}: {acc:.2f}% (lr {runner.g['lr']:.4g}, "
              f"train {train_s:.0f} s)", file=sys.stderr, flush=True)
        runner.g["lr"] *= args.lr_decay
        save()
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", nargs="+", default=["dfa", "sdfa"])
    ap.add_argument("--conv", nargs="+", type=_conv, default=[(16, 5, 2, 2)])
    ap.add_argument("--hidden", nargs="*", type=int, default=[256])
    ap.add_argument("--timesteps", type=int, default=40)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=20)
    ap.add_argument("--lr", type=float, default=0.2, help="the rule's lr global per epoch 1")
    ap.add_argument("--lr-decay", type=float, default=0.8)
    ap.add_argument("--limit", type=int, default=None, help="training images (default all)")
    ap.add_argument("--test-limit", type=int, default=None, help="test images (default all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "conv_spiking.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tr = load_dataset("mnist", "train", limit=args.limit, verbose=False)
    te = load_dataset("mnist", "test", limit=args.test_limit, verbose=False)
    command = "python benchmarks/conv_spiking.py " + " ".join(sys.argv[1:])
    arch = " -> ".join([f"conv{c} {k}x{k}/s{s}/p{p}" for c, k, s, p in args.conv]
                       + [str(h) for h in args.hidden] + ["10"])
    out = {"command": command, "net": f"1x28x28 -> {arch}", "timesteps": args.timesteps,
           "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
           "lr_decay": args.lr_decay, "train_images": len(tr.x), "test_images": len(te.x),
           "rows": {}}
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        path.write_text(json.dumps(out, indent=2, default=float))

    for name in args.rows:
        run_rule(name, tr, te, args, out, save)
    print(f"\nonline spiking conv learning on snntorch: MNIST, {out['net']}, T={args.timesteps}, "
          f"batch {args.batch_size}, lr {args.lr} x{args.lr_decay}/epoch, {len(tr.x)} training "
          f"/ {len(te.x)} test images")
    print(f"{'rule':<6} {'epoch':>5} {'test %':>7} {'lr':>8} {'train s':>8}")
    for row in out["rows"].values():
        for k, (acc, lr, s) in enumerate(zip(row["curve"], row["lr"], row["seconds"]), 1):
            print(f"{row['rule']:<6} {k:>5} {acc:>7.2f} {lr:>8.4g} {s:>8.0f}")
    print(f"\ncommand: {command}")
    save()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

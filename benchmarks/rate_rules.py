"""Rate-mode benchmark: every built-in rule on MNIST 784-500-10, same optimiser budget.

Prints an accuracy table against the floors of issue #2 (anchors: Akrout et al. 2019),
the B–W and update–gradient angles, and training throughput of each generated local
program next to backprop through torch autograd on the same net, batch and optimiser.
Writes benchmarks/results/rate_rules.json and docs/img/rate_rules.png.

    python benchmarks/rate_rules.py                 # the full table (about 10 min, 2 cores)
    python benchmarks/rate_rules.py --epochs 2      # a quick look
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _plotting import plot_curves

from neurolocal.app.training import TrainConfig, train
from neurolocal.hardware.rate import Optimiser, RateRunner
from neurolocal.network import build_mlp
from neurolocal.rules import get_rule

RULES = ["bp", "fa", "dfa", "kp", "wm", "usf", "brsf", "frsf", "fa-decay"]
FLOORS = {"bp": 98.3, "fa": 97.8, "dfa": 97.8, "kp": 98.2, "wm": 98.2, "usf": 98.0,
          "brsf": 98.0, "frsf": 98.0, "fa-decay": 97.8}
ANCHORS = {"bp": 98.50, "fa": 97.80, "wm": 98.49, "kp": 98.45}
ROOT = Path(__file__).resolve().parent.parent


def throughput(rule_name: str, batch: int, steps: int = 150, repeats: int = 3) -> float:
    """Samples/s of one training step of the generated program (best of ``repeats``)."""
    rule = get_rule(rule_name)
    prog = RateRunner(build_mlp([784, 500, 10], rule), backend="torch", allow_nonlocal=True)
    opt = Optimiser("adam")
    x = torch.rand(batch, 784)
    y = torch.eye(10)[torch.randint(0, 10, (batch,))]
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            prog.step(x, y, opt)
        best = max(best, steps * batch / (time.perf_counter() - t0))
    return best


def autograd_throughput(batch: int, steps: int = 150, repeats: int = 3) -> float:
    """Samples/s of backprop through torch autograd: same net, batch and optimiser."""
    model = torch.nn.Sequential(torch.nn.Linear(784, 500), torch.nn.ReLU(),
                                torch.nn.Linear(500, 10))
    # torch's fused Adam kernel: the one the rate runner calls for the rule's update stream
    opt = torch.optim.Adam(model.parameters(), Optimiser("adam").lr, fused=True)
    x = torch.rand(batch, 784)
    y = torch.randint(0, 10, (batch,))
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        best = max(best, steps * batch / (time.perf_counter() - t0))
    return best


def measure_throughput(rules: list[str], batch: int, rounds: int = 3) -> dict[str, float]:
    """Best-of-``rounds`` samples/s, autograd and rules interleaved so load drifts hit all."""
    speed: dict[str, float] = {}
    for _ in range(rounds):
        for name in ["autograd-bp", *rules]:
            sps = autograd_throughput(batch, repeats=1) if name == "autograd-bp" else \
                throughput(name, batch, repeats=1)
            speed[name] = max(speed.get(name, 0.0), sps)
    return speed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--rules", nargs="+", default=RULES)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "rate_rules.json"))
    ap.add_argument("--plot", default=str(ROOT / "docs" / "img" / "rate_rules.png"))
    ap.add_argument("--merge", action="store_true",
                    help="keep the other rules' rows from an earlier --out file")
    ap.add_argument("--throughput-only", action="store_true",
                    help="re-measure throughput only; accuracy rows come from --out")
    args = ap.parse_args()
    if args.throughput_only:
        if not Path(args.out).exists():
            ap.error(f"--throughput-only reads the accuracy rows from --out {args.out}, which "
                     "does not exist; run once without --throughput-only first")
        args.merge, args.rules = True, []
    torch.set_num_threads(args.threads)
    cfg = TrainConfig()
    rows = []
    for name in args.rules:
        res = train(TrainConfig(rule=name, epochs=args.epochs, allow_nonlocal=True),
                    progress=sys.stderr.isatty())
        fb = np.mean(list(res.feedback_angles.values())) if res.feedback_angles else float("nan")
        rows.append({"rule": name, "test_accuracy": res.test_accuracy,
                     "best_epoch_accuracy": max(h["test_accuracy"] for h in res.history),
                     "floor": FLOORS.get(name), "anchor": ANCHORS.get(name),
                     "fb_angle": fb, "update_angle_W1": res.update_angles["W1"],
                     "curve": [h["test_accuracy"] for h in res.history],
                     "train_seconds": res.seconds})
        print(f"  {name}: {res.test_accuracy:.2f}% ({res.seconds:.0f} s)", file=sys.stderr)
    history: list[str] = []
    if args.merge and Path(args.out).exists():
        old = json.loads(Path(args.out).read_text())
        history = old.get("commands", [old["command"]])
        fresh = {r["rule"] for r in rows}
        rows = [r for r in old["rows"] if r["rule"] not in fresh] + rows
        rows.sort(key=lambda r: RULES.index(r["rule"]) if r["rule"] in RULES else 99)
    # throughput is always measured afresh for every row, in one go, on one machine state
    from neurolocal.hardware.base import get_target

    batch = cfg.batch_size or get_target(cfg.target).default_batch_size  # the rate default
    speed = measure_throughput([r["rule"] for r in rows], batch)
    command = "python benchmarks/rate_rules.py " + " ".join(sys.argv[1:])
    if args.throughput_only:
        args.epochs = json.loads(Path(args.out).read_text())["epochs"]
    print(f"\nMNIST 784-500-10, {args.epochs} epochs, batch {cfg.batch_size}, Adam "
          f"lr {Optimiser('adam').lr:g} x{cfg.lr_decay}/epoch, ReLU, torch CPU "
          f"({args.threads} threads)")
    head = (f"{'rule':<9} {'test %':>7} {'floor':>6} {'ok':>3} {'anchor':>7} {'B-W deg':>8} "
            f"{'dW-grad deg':>11} {'samples/s':>10} {'vs autograd':>11}")
    print(head)
    print("-" * len(head))
    for r in rows:
        ok = "yes" if r["floor"] is None or r["test_accuracy"] >= r["floor"] else "NO"
        anchor = f"{r['anchor']:.2f}" if r["anchor"] else "-"
        sp = speed[r["rule"]]
        print(f"{r['rule']:<9} {r['test_accuracy']:>7.2f} {r['floor'] or 0:>6.1f} {ok:>3} "
              f"{anchor:>7} {r['fb_angle']:>8.1f} {r['update_angle_W1']:>11.1f} {sp:>10.0f} "
              f"{sp / speed['autograd-bp']:>10.2f}x")
    print(f"{'autograd':<9} {'':>7} {'':>6} {'':>3} {'':>7} {'':>8} {'':>11} "
          f"{speed['autograd-bp']:>10.0f} {1:>10.2f}x")
    print(f"\ncommand: {command}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"command": command, "commands": [*history, command],
                               "epochs": args.epochs, "rows": rows, "throughput": speed},
                              indent=2))
    if history:
        print("rows from earlier runs: " + "; ".join(history))
    plot_curves({r["rule"]: r["curve"] for r in rows}, Path(args.plot), ylim=(94, 99))
    return 0


if __name__ == "__main__":
    sys.exit(main())

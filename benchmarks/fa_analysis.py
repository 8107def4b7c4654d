"""Feedback alignment on a two-layer net, after Song, Xu & Lafferty (NeurIPS 2021).

Two claims about an over-parameterised two-layer network y = W2 relu(W1 x) trained by
feedback alignment (the hidden error is B e instead of W2^T e, B fixed random):

1. the training error falls exponentially (linear convergence), as for gradient descent;
2. the forward weights W2 align with the feedback B^T only with regularisation: under plain
   FA the angle between W2 and B^T stays large; with L2 weight decay (``fa-decay``) it falls.

Full-batch SGD on a fixed regression task, the same net and data for both rules. Prints a
table (loss every few hundred steps, the fitted exponential rate, the W2-B angle) and saves
docs/img/fa_analysis.png.

    python benchmarks/fa_analysis.py                  # about 20 s on one core
    python benchmarks/fa_analysis.py --steps 600      # quicker
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from neurolocal.app.metrics import feedback_angles
from neurolocal.hardware.rate import Optimiser, RateRunner
from neurolocal.network import build_mlp
from neurolocal.rules import get_rule

ROOT = Path(__file__).resolve().parent.parent


def task(n: int = 100, d: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Inputs on the sphere, targets from a random two-layer teacher (unit variance)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = np.tanh(x @ rng.standard_normal((d, 5))) @ rng.standard_normal((5, 1))
    y = (y - y.mean()) / y.std()
    return x.astype(np.float32), y.astype(np.float32)


def run(rule_name: str, *, steps: int = 2000, hidden: int = 1000, wd: float = 0.1,
        lr: float = 10.0, every: int = 50, seed: int = 0) -> dict:
    """Train ``rule_name`` full-batch; loss and W2-B angle every ``every`` steps."""
    x, y = task(seed=seed)
    rule = get_rule(rule_name)
    if "wd" in rule.globals:
        rule = rule.with_globals(wd=wd)
    net = build_mlp([x.shape[1], hidden, 1], rule, output_activation="linear", seed=seed)
    prog = RateRunner(net, backend="numpy", seed=seed)
    opt = Optimiser("sgd", lr=lr)
    curve, angles, at = [], [], []
    for step in range(steps + 1):
        if step % every == 0:
            out = prog.predict(x)
            curve.append(float(0.5 * np.mean((out - y) ** 2)))
            angles.append(feedback_angles(prog.sync())["B1"])
            at.append(step)
        if step < steps:
            prog.step(x, y, opt)
    loss = np.array(curve)
    # exponential rate: slope of log(loss) over the second half of the run
    half = len(at) // 2
    slope = np.polyfit(np.array(at[half:]), np.log(np.maximum(loss[half:], 1e-30)), 1)[0]
    return {"rule": rule_name, "steps": at, "loss": curve, "angle": angles,
            "rate_per_1000_steps": float(-slope * 1000)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--hidden", type=int, default=1000)
    ap.add_argument("--wd", type=float, default=0.1, help="fa-decay's weight decay")
    ap.add_argument("--plot", default=str(ROOT / "docs" / "img" / "fa_analysis.png"))
    args = ap.parse_args()
    runs = [run(name, steps=args.steps, hidden=args.hidden, wd=args.wd)
            for name in ("fa", "fa-decay")]
    print(f"two-layer net {task()[0].shape[1]}-{args.hidden}-1, ReLU, 100 samples, "
          f"full-batch SGD, {args.steps} steps (fa-decay: wd {args.wd:g})")
    head = f"{'rule':<9} {'loss@0':>9} {'loss@end':>9} {'exp rate/1k steps':>18} " \
           f"{'W2-B deg@0':>10} {'W2-B deg@end':>12}"
    print(head)
    print("-" * len(head))
    for r in runs:
        print(f"{r['rule']:<9} {r['loss'][0]:>9.3g} {r['loss'][-1]:>9.3g} "
              f"{r['rate_per_1000_steps']:>18.2f} {r['angle'][0]:>10.1f} {r['angle'][-1]:>12.1f}")
    print("\ncommand: python benchmarks/fa_analysis.py " + " ".join(sys.argv[1:]))
    _plot(runs, Path(args.plot))
    return 0


def _plot(runs: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.6))
    for r in runs:
        a.semilogy(r["steps"], r["loss"], label=r["rule"])
        b.plot(r["steps"], r["angle"], label=r["rule"])
    a.set_xlabel("step")
    a.set_ylabel("training loss (log)")
    b.set_xlabel("step")
    b.set_ylabel("angle(W2, B^T) (deg)")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())

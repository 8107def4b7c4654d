"""The rules of issue 5 on MNIST beside bp, fa and dfa, with the claim each paper makes.

Same net, data and optimiser budget as benchmarks/rate_rules.py (TrainConfig defaults:
784-500-10 ReLU, batch 50, Adam 3e-3 x0.8/epoch); the default is 3 epochs to keep one
run near 15 minutes on 2 cores (``--epochs 20`` for the core benchmark's budget).
For each rule it prints the test accuracy, the gap to bp, the feedback-forward angle
and the claim checked:

  ar-exact  relaxed activations = backprop gradient (cosine > 0.99 per layer), acc ~ bp
  ar, pc    within 1 point of bp
  dyninv    near bp (within 1 point); stability of its inversion dynamics reported
  pal       B aligns with W^T (angle well below fa's) and accuracy >= fa's
  ia        close to bp (within 1 point), B aligned with W^T
  sdfa      as dfa with 10 % of the feedback synapses (within 0.5 point of dfa)

Then the rule x target table: which lowering can express each rule (or its error).
Writes benchmarks/results/extra_rules.json and docs/img/extra_rules.png.

    python benchmarks/extra_rules.py                       # 3 epochs, ~15 min on 2 cores
    python benchmarks/extra_rules.py --epochs 20           # the core benchmark's budget
    python benchmarks/extra_rules.py --rules pal fa --epochs 1
    python benchmarks/extra_rules.py --epochs 20 --rules ar --update   # rerun one row
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _plotting import plot_curves

from neurolocal.app.data import load_dataset
from neurolocal.app.metrics import relaxed_cosines
from neurolocal.app.training import TrainConfig, train
from neurolocal.hardware.rate import RateRunner
from neurolocal.locality import check_locality
from neurolocal.rules import get_rule

RULES = ["bp", "fa", "dfa", "ar-exact", "ar", "pc", "dyninv", "pal", "ia", "sdfa"]
ROOT = Path(__file__).resolve().parent.parent


def claims(rows: dict) -> dict[str, tuple[bool, str]]:
    """Each rule's claim, checked against the measured rows (those present)."""
    def acc(name):
        return rows[name]["test_accuracy"] if name in rows else None

    out = {}
    bp, fa, dfa = acc("bp"), acc("fa"), acc("dfa")
    for name in ("ar", "pc", "dyninv", "ia"):
        if name in rows and bp is not None:
            gap = bp - acc(name)
            out[name] = (gap <= 1.0, f"bp - {name} = {gap:+.2f} (<= 1)")
    if "ar-exact" in rows:
        cos = rows["ar-exact"].get("relaxed_cosine", {})
        ok = bool(cos) and min(cos.values()) > 0.99
        out["ar-exact"] = (ok, "cos(x_l, dL/dr_l) " + ", ".join(f"{k}={v:.4f}"
                                                                 for k, v in cos.items()))
    if "pal" in rows and fa is not None:
        a_pal, a_fa = rows["pal"]["fb_angle"], rows["fa"]["fb_angle"]
        ok = acc("pal") >= fa and a_pal < a_fa - 20
        out["pal"] = (ok, f"angle {a_pal:.1f} vs fa {a_fa:.1f}; acc {acc('pal'):.2f} vs fa "
                          f"{fa:.2f}")
    if "sdfa" in rows and dfa is not None:
        gap = dfa - acc("sdfa")
        out["sdfa"] = (gap <= 0.5, f"dfa - sdfa = {gap:+.2f} (<= 0.5)")
    return out


def target_table(names: list[str]) -> dict[str, dict[str, str]]:
    """For each rule and each registered target: 'ok' or the lowering's error (the registry's
    own answer, as `neurolocal rules --json` gives it)."""
    from neurolocal.hardware.base import lowering_matrix

    table = {}
    for name in names:
        row = lowering_matrix(get_rule(name))
        table[name] = {t: "ok" if v == "runs" else v.splitlines()[0] for t, v in row.items()}
    return table


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--rules", nargs="+", default=RULES)
    ap.add_argument("--hidden", nargs="+", type=int, default=[500])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--limit", type=int, default=None, help="training images (default all)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "extra_rules.json"))
    ap.add_argument("--plot", default=str(ROOT / "docs" / "img" / "extra_rules.png"))
    ap.add_argument("--update", action="store_true",
                    help="keep the other rows of --out (same epochs and net), rerun --rules")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    probe = load_dataset("mnist", "test", limit=200, verbose=False)
    rows, commands = {}, []
    if args.update and Path(args.out).exists():
        old = json.loads(Path(args.out).read_text())
        if old["epochs"] != args.epochs or old["hidden"] != args.hidden:
            raise SystemExit(f"--update: {args.out} has {old['epochs']} epochs, hidden "
                             f"{old['hidden']}; this run {args.epochs}, {args.hidden}")
        rows = old["rows"]
        commands = old.get("commands", [old["command"]])
    for name in args.rules:
        t0 = time.perf_counter()
        ckpt = None
        if name in ("ar-exact", "dyninv"):
            ckpt = str(Path(tempfile.mkdtemp(prefix="nl-extra-")) / f"{name}.h5")
        res = train(TrainConfig(rule=name, epochs=args.epochs, hidden=args.hidden,
                                limit=args.limit, allow_nonlocal=True, out=ckpt),
                    progress=sys.stderr.isatty())
        fb = float(np.mean(list(res.feedback_angles.values()))) if res.feedback_angles \
            else float("nan")
        row = {"rule": name, "test_accuracy": res.test_accuracy, "fb_angle": fb,
               "update_angle_W1": res.update_angles["W1"],
               "curve": [h["test_accuracy"] for h in res.history],
               "seconds": time.perf_counter() - t0,
               "local": check_locality(get_rule(name)).local}
        if ckpt is not None:
            prog = _trained_program(ckpt)
            if name == "ar-exact":
                row["relaxed_cosine"] = relaxed_cosines(prog, probe.x[:100], probe.y[:100])
            else:
                eye = np.eye(10, dtype=np.float32)
                row["stability"] = prog.stability(probe.x[:8], eye[probe.y[:8]])
        rows[name] = row
        print(f"  {name}: {res.test_accuracy:.2f}% ({row['seconds']:.0f} s)", file=sys.stderr)
    checked = claims(rows)
    command = "python benchmarks/extra_rules.py " + " ".join(sys.argv[1:])
    commands.append(command)
    sizes = "-".join(str(s) for s in [784, *args.hidden, 10])
    print(f"\nMNIST {sizes}, {args.epochs} epochs, batch 50, Adam 3e-3 x0.8/epoch, ReLU, "
          f"torch CPU ({args.threads} thread{'s' if args.threads > 1 else ''})")
    head = (f"{'rule':<9} {'local':>5} {'test %':>7} {'vs bp':>6} {'B-W deg':>8} "
            f"{'dW1-grad':>8} {'s':>5}  claim")
    print(head)
    print("-" * (len(head) + 40))
    bp = rows.get("bp", {}).get("test_accuracy")
    for name, r in rows.items():
        gap = f"{r['test_accuracy'] - bp:+.2f}" if bp is not None else "-"
        ok, what = checked.get(name, (None, ""))
        mark = {True: "OK  ", False: "MISS", None: ""}[ok]
        print(f"{name:<9} {'yes' if r['local'] else 'no':>5} {r['test_accuracy']:>7.2f} "
              f"{gap:>6} {r['fb_angle']:>8.1f} {r['update_angle_W1']:>8.1f} "
              f"{r['seconds']:>5.0f}  {mark} {what}")
    if "dyninv" in rows:
        st = rows["dyninv"]["stability"]
        blocks = ", ".join(f"{k} {v:.3f}" for k, v in st["blocks"].items())
        print(f"\ndyninv stability after training ({st['samples']} test images): max Re eig "
              f"of the relaxation = {st['max_real_eig']:.3f} (stable iff < 0; per layer block "
              f"W f' B - alpha I: {blocks}), Euler radius {st['euler_radius']:.3f} (converges "
              f"iff < 1): {'stable' if st['stable'] else 'UNSTABLE'}")
    table = target_table(list(rows))
    print("\nrule x target")
    for name, row in table.items():
        print(f"  {name:<9} " + "; ".join(f"{t}: {v}" for t, v in row.items()))
    print("\ncommand" + ("s (rows merged)" if len(commands) > 1 else "") + ": "
          + "; ".join(commands))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"command": command, "commands": commands,
                               "epochs": args.epochs, "hidden": args.hidden,
                               "rows": rows, "claims": {k: list(v) for k, v in checked.items()},
                               "targets": table}, indent=2, default=float))
    plot_curves({n: r["curve"] for n, r in rows.items()}, Path(args.plot), markers=True)
    return 0


def _trained_program(checkpoint: str) -> RateRunner:
    """A program holding the trained weights, from the run's checkpoint."""
    from neurolocal.checkpoint import load_checkpoint
    net, _ = load_checkpoint(checkpoint)
    return RateRunner(net, backend="torch", allow_nonlocal=True)


if __name__ == "__main__":
    sys.exit(main())

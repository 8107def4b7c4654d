"""How far two trained checkpoints moved from their common initial weights, tensor by tensor.

(Δ1, Δ2: run 1's and run 2's changes; start, end: the weights before and after.)

For two runs of one rule from the same seed on different targets (say Lava fixed_pt and
snntorch): per weight tensor the norm of each change, their ratio, the cosine between the two
changes, the mean change per weight and its spread. A target whose changes agree in
direction but not in size has a step-size difference; a mean change far from 0 is a drift
that every weight shares (docs/spiking.md, pal on Lava fixed_pt)::

    neurolocal train --rule pal --spiking --target lava:fixed_pt --hidden 500 --timesteps 40 \\
        --samples 1000 --test-samples 1000 --out a.h5
    neurolocal train --rule pal --spiking --target snntorch --batch-size 1 --hidden 500 \\
        --timesteps 40 --samples 1000 --test-samples 1000 --out b.h5
    python benchmarks/weight_drift.py a.h5 b.h5 --seed 0
"""

from __future__ import annotations

import argparse

import numpy as np

from neurolocal.app.metrics import cosine
from neurolocal.checkpoint import load_checkpoint
from neurolocal.network import build_mlp


def drift_rows(a_path: str, b_path: str, seed: int) -> list[dict]:
    a, _ = load_checkpoint(a_path)
    b, _ = load_checkpoint(b_path)
    if a.sizes != b.sizes:
        raise SystemExit(f"the checkpoints hold different nets: {a.sizes} and {b.sizes}")
    start = build_mlp(list(a.sizes), a.rule, hidden_activation=a.hidden_activation,
                      output_activation=a.output_activation, seed=seed)
    rows = []
    for proj, layers in sorted(a.state.items()):
        for layer in sorted(layers):
            w0, wa, wb = (np.asarray(n.state[proj][layer]["w"], np.float64)
                          for n in (start, a, b))
            da, db = wa - w0, wb - w0
            rows.append({"tensor": f"{proj}{layer}", "norm_a": float(np.linalg.norm(da)),
                         "norm_b": float(np.linalg.norm(db)), "cosine": cosine(da, db),
                         "mean_a": float(da.mean()), "mean_b": float(db.mean()),
                         "std_a": float(da.std()), "std_b": float(db.std()),
                         "column_means_a": (float(da.mean(0).min()), float(da.mean(0).max())),
                         "norm_w0": float(np.linalg.norm(w0)),
                         "norm_wa": float(np.linalg.norm(wa)),
                         "norm_wb": float(np.linalg.norm(wb))})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", help="checkpoint of run 1 (HDF5)")
    ap.add_argument("b", help="checkpoint of run 2: the same net and seed")
    ap.add_argument("--seed", type=int, default=0, help="the runs' seed (initial weights)")
    args = ap.parse_args(argv)
    print("| tensor | ‖Δ1‖ | ‖Δ2‖ | ‖Δ1‖/‖Δ2‖ | cosine | mean Δ1 (per column) | mean Δ2 "
          "| std Δ1 | std Δ2 | ‖start‖ | ‖end 1‖ | ‖end 2‖ |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in drift_rows(args.a, args.b, args.seed):
        print(f"| {r['tensor']} | {r['norm_a']:.2f} | {r['norm_b']:.2f} | "
              f"{r['norm_a'] / r['norm_b']:.2f} | {r['cosine']:.2f} | {r['mean_a']:+.4f} "
              f"({r['column_means_a'][0]:+.3f} to {r['column_means_a'][1]:+.3f}) | "
              f"{r['mean_b']:+.4f} | {r['std_a']:.3f} | {r['std_b']:.3f} | {r['norm_w0']:.2f} "
              f"| {r['norm_wa']:.2f} | {r['norm_wb']:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

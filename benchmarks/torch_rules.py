"""local_rule on a user's own torch models: accuracy on MNIST with torch's own training loop.

Two rows, each an ``nn.Sequential`` a PyTorch user would write (torch's default init),
wrapped by :func:`neurolocal.torch.local_rule` and trained with ``torch.optim.Adam``
(3e-3), ``ExponentialLR`` (x0.8 per epoch, the rate table's budget), a shuffling
``DataLoader`` (batch 50) and cross-entropy:

- ``fa``: 784-500-10 MLP (ReLU), 20 epochs; target >= 98.2 % (the rate table's FA row);
- ``dfa``: LeNet-style conv net, conv 32 5x5/2 -> conv 64 5x5/2 -> 256 -> 10 (ReLU),
  20 epochs; target >= 98.0 %.

    nohup python benchmarks/torch_rules.py > /tmp/torch_rules.log &   # ~30 min, 1 thread
    python benchmarks/torch_rules.py --rows fa --epochs 1 --limit 5000    # a quick look
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from neurolocal.app.data import load_dataset
from neurolocal.torch import local_rule

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {"fa": 98.2, "dfa": 98.0}


def model_for(row: str) -> tuple[nn.Module, dict]:
    if row == "fa":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 500), nn.ReLU(),
                             nn.Linear(500, 10)), {}
    return nn.Sequential(nn.Conv2d(1, 32, 5, 2, 2), nn.ReLU(), nn.Conv2d(32, 64, 5, 2, 2),
                         nn.ReLU(), nn.Flatten(), nn.Linear(64 * 7 * 7, 256), nn.ReLU(),
                         nn.Linear(256, 10)), {"input_shape": (1, 28, 28)}


def accuracy(model, x, y) -> float:
    model.eval()
    with torch.no_grad():
        hits = sum(int((model(x[i:i + 1000]).argmax(1) == y[i:i + 1000]).sum())
                   for i in range(0, len(x), 1000))
    model.train()
    return 100.0 * hits / len(x)


def run(row: str, args) -> dict:
    torch.manual_seed(args.seed)
    tr = load_dataset("mnist", "train", limit=args.limit, verbose=False)
    te = load_dataset("mnist", "test", verbose=False)
    x, y = torch.from_numpy(np.array(tr.x)).view(-1, 1, 28, 28), torch.from_numpy(
        np.array(tr.y)).long()  # np.array: the data sets' arrays are read-only
    xt, yt = torch.from_numpy(np.array(te.x)).view(-1, 1, 28, 28), torch.from_numpy(
        np.array(te.y)).long()
    net, kw = model_for(row)
    model = local_rule(net, row, seed=args.seed, **kw)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, 0.8)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=50,
                                         shuffle=True)
    curve, seconds = [], 0.0
    epochs = args.epochs or 20
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        for xb, yb in loader:
            opt.zero_grad()
            nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
        sched.step()
        seconds += time.perf_counter() - t0
        curve.append(accuracy(model, xt, yt))
        print(f"  {row} epoch {epoch}: {curve[-1]:.2f}% ({seconds:.0f} s)", flush=True)
    return {"rule": row, "program": "fused" if model.program is not None else "generic",
            "epochs": epochs, "test_accuracy": curve[-1], "curve": curve,
            "train_seconds": seconds, "target": TARGETS[row]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    ap.add_argument("--epochs", type=int, default=None, help="default: 20")
    ap.add_argument("--limit", type=int, default=None, help="training images (default all)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "torch_rules.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = [run(row, args) for row in args.rows]
    print("\n| rule | model | epochs | test % | target | met |\n|---|---|---|---|---|---|")
    for r in rows:
        model = "784-500-10 MLP" if r["rule"] == "fa" else "LeNet-style conv"
        print(f"| {r['rule']} | {model} | {r['epochs']} | {r['test_accuracy']:.2f} | "
              f"{r['target']} | {'yes' if r['test_accuracy'] >= r['target'] else 'NO'} |")
    command = "python benchmarks/torch_rules.py " + " ".join(argv or sys.argv[1:])
    print(f"\ncommand: {command}")
    if args.limit is None:  # full data: a result (a quick look on a subset writes nothing)
        Path(args.out).write_text(json.dumps({"command": command, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""DFA and sparse DFA on a convolutional net (MNIST), beside backprop and a read-out control.

The claim (Han & Yoo 2019; Crafton et al. 2019; Nøkland 2016): DFA trains conv nets, with
an accuracy loss against backprop, and sparse feedback (10 % of the feedback synapses)
costs little against dense DFA. The control row trains the output layer only (conv and
hidden layers stay at their random initial weights): DFA has to beat it for its updates
of the conv layers to count as learning.

Net: 1x28x28 -> conv 32 (5x5, stride 2, pad 2) -> conv 64 (5x5, stride 2, pad 2) -> 256 ->
10, ReLU, softmax output; batch 50, Adam 3e-3 x0.8 per epoch (the core benchmark's budget),
torch on the CPU, 1 thread. ``bp`` is torch autograd on the same layers from the same
initial weights (the ``bp`` rule's tied feedback has no conv lowering); ``dfa``, ``sdfa``
and ``readout`` are rules run by the generated rate program.

    python benchmarks/conv_rules.py                    # 8 epochs, ~25 min on 2 cores
    python benchmarks/conv_rules.py --epochs 1 --limit 5000 --out /tmp/c.json   # a look
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from neurolocal.app.data import iterate_minibatches, load_dataset
from neurolocal.app.training import accuracy
from neurolocal.hardware.rate import Optimiser, RateRunner
from neurolocal.locality import check_locality
from neurolocal.network import build_cnn
from neurolocal.parser import parse_rule
from neurolocal.rule import FORWARD
from neurolocal.rules import get_rule

ROOT = Path(__file__).resolve().parent.parent
CONVS = [(32, 5, 2, 2), (64, 5, 2, 2)]
HIDDEN = [256]
#: the control: every hidden layer keeps its initial weights, the output layer learns
READOUT = """
rule readout "Output layer only (control)"
global lr = 0.01
output err = r - target
output delta = err
neuron delta = 0
on W: dw = -lr * post.delta * pre.r
"""


def _net(rule, seed: int):
    return build_cnn((1, 28, 28), CONVS, HIDDEN, 10, rule, seed=seed)


def run_rule(rule, tr, te, args) -> dict:
    net = _net(rule, args.seed)
    prog = RateRunner(net, backend="torch", seed=args.seed)
    opt = Optimiser("adam", lr=None)
    eye = np.eye(10, dtype=np.float32)
    curve, seconds = [], 0.0
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        for xb, yb in iterate_minibatches(tr.x, tr.y, 50, shuffle=True, seed=args.seed + epoch):
            prog.step(xb, eye[yb], opt)
        seconds += time.perf_counter() - t0
        opt.lr *= 0.8
        curve.append(accuracy(prog, te.x, te.y))
        print(f"  {rule.name} epoch {epoch}: {curve[-1]:.2f}%", file=sys.stderr)
    from neurolocal.app.metrics import update_angles
    angles = update_angles(prog, te.x[:200], te.y[:200])
    return {"rule": rule.name, "test_accuracy": curve[-1], "curve": curve,
            "seconds": seconds, "local": check_locality(rule).local,
            "update_angles": angles}


def run_backprop(tr, te, args) -> dict:
    """Autograd on the same layers, initial weights and batches."""
    net = _net(get_rule("dfa"), args.seed)  # only its initial forward weights are used
    layers: list[torch.nn.Module] = []
    c = 1
    for k, (ch, kern, stride, pad) in enumerate(CONVS, start=1):
        conv = torch.nn.Conv2d(c, ch, kern, stride=stride, padding=pad)
        w = net.state[FORWARD][k]["w"]
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(w[:, :-1].reshape(conv.weight.shape)))
            conv.bias.copy_(torch.from_numpy(w[:, -1]))
        layers += [conv, torch.nn.ReLU()]
        c = ch
    layers.append(torch.nn.Flatten())
    for k in range(len(CONVS) + 1, net.depth + 1):
        w = net.state[FORWARD][k]["w"]
        lin = torch.nn.Linear(w.shape[1] - 1, w.shape[0])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w[:, :-1]))
            lin.bias.copy_(torch.from_numpy(w[:, -1]))
        layers.append(lin)
        if k < net.depth:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    curve, seconds = [], 0.0
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        for xb, yb in iterate_minibatches(tr.x, tr.y, 50, shuffle=True, seed=args.seed + epoch):
            loss = torch.nn.functional.cross_entropy(
                model(torch.from_numpy(xb).reshape(-1, 1, 28, 28)), torch.from_numpy(yb).long())
            opt.zero_grad()
            loss.backward()
            opt.step()
        seconds += time.perf_counter() - t0
        for g in opt.param_groups:
            g["lr"] *= 0.8
        with torch.no_grad():
            pred = np.concatenate([model(torch.from_numpy(te.x[i:i + 1000]).reshape(
                -1, 1, 28, 28)).argmax(1).numpy() for i in range(0, len(te.x), 1000)])
        curve.append(100.0 * float((pred == te.y).mean()))
        print(f"  bp (autograd) epoch {epoch}: {curve[-1]:.2f}%", file=sys.stderr)
    return {"rule": "bp (autograd)", "test_accuracy": curve[-1], "curve": curve,
            "seconds": seconds, "local": False, "update_angles": {}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--limit", type=int, default=None, help="training images (default all)")
    ap.add_argument("--rows", nargs="+", default=["bp", "dfa", "sdfa", "readout"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "conv_rules.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tr = load_dataset("mnist", "train", limit=args.limit, verbose=False)
    te = load_dataset("mnist", "test", verbose=False)
    rows = {}
    for name in args.rows:
        if name == "bp":
            rows[name] = run_backprop(tr, te, args)
        else:
            rule = parse_rule(READOUT) if name == "readout" else get_rule(name)
            rows[name] = run_rule(rule, tr, te, args)
    command = "python benchmarks/conv_rules.py " + " ".join(sys.argv[1:])
    arch = " -> ".join([f"conv{c} {k}x{k}/s{s}" for c, k, s, _ in CONVS]
                       + [str(h) for h in HIDDEN] + ["10"])
    print(f"\nMNIST, 1x28x28 -> {arch}; {args.epochs} epochs on "
          f"{len(tr.x)} training images, batch 50, Adam 3e-3 x0.8/epoch, 10,000 test images")
    head = f"{'rule':<14} {'local':>5} {'test %':>7} {'vs bp':>6} {'s':>6}  update vs BP grad"
    print(head)
    print("-" * (len(head) + 30))
    bp = rows.get("bp", {}).get("test_accuracy")
    for r in rows.values():
        gap = f"{r['test_accuracy'] - bp:+.2f}" if bp is not None else "-"
        ang = ", ".join(f"{k} {v:.0f}°" for k, v in r["update_angles"].items())
        print(f"{r['rule']:<14} {'yes' if r['local'] else 'no':>5} {r['test_accuracy']:>7.2f} "
              f"{gap:>6} {r['seconds']:>6.0f}  {ang}")
    print(f"\ncommand: {command}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"command": command, "epochs": args.epochs, "limit": args.limit,
                               "convs": CONVS, "hidden": HIDDEN, "rows": rows}, indent=2,
                              default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Online learning over full MNIST on the Loihi 2 model, beside snntorch: the headline run.

    python benchmarks/lava_mnist.py run --target lava:fixed_pt [--passes 3 --hidden 500 ...]
    python benchmarks/lava_mnist.py run --target lava:floating_pt
    python benchmarks/lava_mnist.py run --target snntorch
    python benchmarks/lava_mnist.py table              # the comparison table, from the results

Strictly online (batch 1: one learning epoch per image), full 60,000-image passes, the same
image order, the same Poisson spike trains (seeded per pass and block) and the same initial
weights on every target (fixed_pt snaps them onto its weight grid and says by how much);
the step size decays by ``--lr-decay`` per pass. After every block of images the network
and the run's progress go into one checkpoint, written atomically (``--out``/TARGET.nlck);
a run that is interrupted (Ctrl-C, kill -9, a reboot) continues from its last checkpoint
when the same command is given again. Test accuracy on the 10,000 test images after each
pass, on the same spike trains for every target.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "mnist_online"
TARGETS = ("lava:fixed_pt", "lava:floating_pt", "snntorch")
#: flags that must match to continue a run from its checkpoint
RUN_FLAGS = ("rule", "hidden", "timesteps", "lr", "lr_decay", "seed", "block", "limit",
             "test_samples")

PUBLISHED = [  # network, accuracy, passes, precision, on-chip learning
    {"system": "Renner et al. 2024 (Nat. Commun.), on-chip backprop, Loihi",
     "network": "400-400-10", "accuracy": "96.3 % (97.5 % best setting)", "passes": "see paper",
     "precision": "Loihi (8-bit weights)"},
    {"system": "Shrestha et al. 2021, EMSTDP (FA/DFA), Loihi", "network": "see paper",
     "accuracy": "94.7 %", "passes": "see paper", "precision": "Loihi (8-bit weights)"},
]


def _checkpoint(out: Path, target: str) -> Path:
    return out / f"{target.replace(':', '_')}.nlck"


def _spiking_config(args):
    from neurolocal.hardware.semantics import SpikingConfig

    return SpikingConfig(timesteps=args.timesteps)


def _network(args, lr: float, init=None):
    from neurolocal.network import build_mlp
    from neurolocal.rule import FORWARD
    from neurolocal.rules import get_rule

    rule = get_rule(args.rule).with_globals(lr=lr)
    net = build_mlp([784, *args.hidden, 10], rule, seed=args.seed)
    if init is not None:
        for layer, w in init.state[FORWARD].items():
            net.state[FORWARD][layer]["w"] = np.array(w["w"])
        for proj, layers in init.state.items():
            if proj != FORWARD and proj in net.state:
                net.state[proj] = layers
    return net


def _runner(args, net):
    from neurolocal.hardware.base import get_target

    target = get_target(args.target)
    options = {"batch_size": 1, "seed": args.seed} if target.name == "snntorch" else {}
    return target.runner(net, _spiking_config(args), **options)


def _encode(x: np.ndarray, args, *key: int) -> np.ndarray:
    from neurolocal.hardware.encoding import encode_input

    seed = np.random.SeedSequence([args.seed, *key])
    return encode_input(np.asarray(x), _spiking_config(args),
                        seed=np.random.default_rng(seed)).astype(np.int8)


def _accuracy(runner, test, args) -> float:
    """Test accuracy on ``test``, the same spike trains for every target (chunks of 1000)."""
    correct = 0
    for start in range(0, len(test.x), 1000):
        x, y = test.x[start:start + 1000], test.y[start:start + 1000]
        scores = runner.predict_spikes(_encode(x, args, 10 ** 6, start))
        correct += int((np.asarray(scores).argmax(1) == y).sum())
    return 100.0 * correct / len(test.x)


def _updates_per_sample(net) -> int:
    """Synapses the learning engine updates per learning epoch (every plastic synapse)."""
    from neurolocal.rule import FORWARD

    return int(sum(np.asarray(v["w"]).size for v in net.state[FORWARD].values()))


def _start(args, out: Path) -> tuple[Any, dict]:
    """The network and progress to continue from (a fresh start if no checkpoint)."""
    from neurolocal.checkpoint import load_checkpoint

    path = _checkpoint(out, args.target)
    flags = {k: getattr(args, k) for k in RUN_FLAGS}
    if not path.exists():
        return _network(args, args.lr), {"flags": flags, "pass": 1, "next": 0, "history": [],
                                         "seconds": 0.0, "events": 0.0, "samples": 0}
    net, meta = load_checkpoint(path)
    progress = meta["progress"]
    stored = {k: (list(v) if isinstance(v, (list, tuple)) else v)
              for k, v in progress["flags"].items()}
    asked = {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in flags.items()}
    if stored != asked:
        diff = ", ".join(f"--{k.replace('_', '-')} {stored.get(k)} (asked {asked.get(k)})"
                         for k in asked if stored.get(k) != asked.get(k))
        raise SystemExit(f"{path} was made with {diff}: give the same flags to continue it, "
                         f"or another --out for a new run")
    print(f"continuing {path}: pass {progress['pass']}, image {progress['next']}",
          file=sys.stderr)
    return net, progress


def run(args) -> dict:
    from neurolocal.app.data import load_dataset
    from neurolocal.checkpoint import save_checkpoint

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train = load_dataset("mnist", "train", limit=args.limit, verbose=False)
    test = load_dataset("mnist", "test", limit=args.test_samples, verbose=False)
    eye = np.eye(10)
    net, progress = _start(args, out)
    path = _checkpoint(out, args.target)
    while progress["pass"] <= args.passes:
        p = progress["pass"]
        lr = args.lr * args.lr_decay ** (p - 1)
        runner = _runner(args, _network(args, lr, init=net))
        rounding = float(getattr(runner, "rounding", 0.0))
        order = np.random.default_rng([args.seed, p]).permutation(len(train.x))
        events0 = float(runner.events)
        try:
            while progress["next"] < len(order):
                start = progress["next"]
                idx = order[start:start + args.block]
                spikes = _encode(train.x[idx], args, p, start)
                t0 = time.perf_counter()
                runner.learn_spikes(spikes, eye[train.y[idx]])
                progress["seconds"] += time.perf_counter() - t0
                progress["samples"] += len(idx)
                progress["next"] = start + len(idx)
                progress["events"] += float(runner.events) - events0
                events0 = float(runner.events)
                net = runner.sync()
                save_checkpoint(path, net, meta={"progress": progress})
                rate = progress["samples"] / max(progress["seconds"], 1e-9)
                print(f"{args.target} pass {p}: {progress['next']}/{len(order)} images, "
                      f"{rate:.1f} images/s", file=sys.stderr, flush=True)
            acc = _accuracy(runner, test, args)
        finally:
            runner.close()
        progress["history"].append({"pass": p, "test_accuracy": acc, "lr": lr,
                                    "seconds": progress["seconds"],
                                    "start_rounding": rounding})
        progress.update({"pass": p + 1, "next": 0})
        save_checkpoint(path, net, meta={"progress": progress})
        print(f"{args.target} pass {p}: test accuracy {acc:.2f} % (lr {lr:g})", flush=True)
    progress["updates_per_sample"] = _updates_per_sample(net)
    progress["events_per_sample"] = progress["events"] / max(progress["samples"], 1)
    (out / f"{args.target.replace(':', '_')}.json").write_text(json.dumps(
        {"target": args.target, **progress}, indent=1))
    return progress


def precision(target: str, args) -> dict:
    """Weight, trace and message precision of a target (what a chip designer reads)."""
    if not target.startswith("lava"):
        return {"weights": "float32", "traces": "float32", "error": "float32"}
    from neurolocal.hardware.base import get_target
    from neurolocal.hardware.profiles import LOIHI2

    lp = get_target(target).lower(_network(args, args.lr).rule, network=_network(args, args.lr),
                                  config=_spiking_config(args))
    if target.endswith("floating_pt"):
        return {"weights": "float64 (in weight LSBs)", "traces": "float64",
                "error": "float64 graded spikes"}
    return {"weights": f"{LOIHI2.weights.magnitude_bits}-bit, mixed sign (learned: 9-bit "
                       "range)",
            "traces": f"{LOIHI2.traces.bits}-bit unsigned", "error":
            f"{lp.options.payload_bits}-bit graded spikes, 7-bit post factors (y)",
            "t_epoch": lp.epoch_len}


def table(args) -> str:
    out = Path(args.out)
    rows = []
    for target in TARGETS:
        f = out / f"{target.replace(':', '_')}.json"
        if f.exists():
            rows.append(json.loads(f.read_text()))
    lines = ["| system | network | test accuracy | passes | precision (weights / traces / "
             "error) | synaptic events per image | learning-engine updates per image | "
             "learning epochs per image |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        best = max(h["test_accuracy"] for h in r["history"])
        last = r["history"][-1]
        prec = precision(r["target"], argparse.Namespace(**r["flags"], target=r["target"]))
        lines.append(
            f"| neurolocal DFA, {r['target']}, online (batch 1) | 784-"
            f"{'-'.join(map(str, r['flags']['hidden']))}-10, T = {r['flags']['timesteps']} | "
            f"**{last['test_accuracy']:.2f} %** (best pass {best:.2f} %) | {len(r['history'])} | "
            f"{prec['weights']} / {prec['traces']} / {prec['error']} | "
            f"{r['events_per_sample']:.3g} | {r['updates_per_sample']:,} | 1 |")
    for p in PUBLISHED:
        lines.append(f"| {p['system']} | {p['network']} | {p['accuracy']} | {p['passes']} | "
                     f"{p['precision']} | | | |")
    lines += ["", *_per_pass(rows)]
    text = "\n".join(lines)
    print(text)
    return text


def _per_pass(rows: list[dict]) -> list[str]:
    """Test accuracy after each pass, the targets side by side (the same budget per column),
    with fixed_pt's gap to the others."""
    acc = {r["target"]: {h["pass"]: h["test_accuracy"] for h in r["history"]} for r in rows}
    passes = sorted({p for a in acc.values() for p in a})
    names = [t for t in TARGETS if t in acc]
    gaps = [t for t in names if t != "lava:fixed_pt" and "lava:fixed_pt" in acc]
    lines = ["| pass | lr | " + " | ".join(names) + "".join(
        f" | fixed_pt - {t}" for t in gaps) + " | images/s, learning, whole run |",
        "|---" * (3 + len(names) + len(gaps)) + "|"]
    for p in passes:
        lr = next(h["lr"] for r in rows for h in r["history"] if h["pass"] == p)
        cells = [f"{acc[t][p]:.2f} %" if p in acc[t] else "" for t in names]
        diffs = [f"{acc['lava:fixed_pt'][p] - acc[t][p]:+.2f}"
                 if p in acc[t] and p in acc["lava:fixed_pt"] else "" for t in gaps]
        speed = ", ".join(f"{r['target']} {r['samples'] / max(r['seconds'], 1e-9):.0f}"
                          for r in rows if p == 1)
        lines.append(f"| {p} | {lr:g} | " + " | ".join(cells + diffs) + f" | {speed} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/lava_mnist.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--target", required=True, choices=TARGETS)
    r.add_argument("--rule", default="dfa")
    r.add_argument("--hidden", type=int, nargs="+", default=[500])
    r.add_argument("--timesteps", type=int, default=20)
    r.add_argument("--lr", type=float, default=0.02)
    r.add_argument("--lr-decay", type=float, default=0.7, help="step size factor per pass")
    r.add_argument("--passes", type=int, default=3)
    r.add_argument("--block", type=int, default=2000, help="images between checkpoints")
    r.add_argument("--limit", type=int, default=None, help="training images (default: all)")
    r.add_argument("--test-samples", type=int, default=None, help="default: all 10,000")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--out", default=str(OUT))
    t = sub.add_parser("table")
    t.add_argument("--out", default=str(OUT))
    args = p.parse_args(argv)
    print("command: python benchmarks/lava_mnist.py " + " ".join(argv if argv is not None
                                                          else sys.argv[1:]), flush=True)
    if args.cmd == "table":
        table(args)
        return 0
    for flag in ("passes", "block", "timesteps"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag} must be at least 1")
    if not 0 < args.lr_decay <= 1:
        p.error("--lr-decay must be in (0, 1]")
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

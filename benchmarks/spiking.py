"""Spiking targets: accuracy of online spiking DFA, and throughput against hand-written loops.

Prints three tables (and, with ``--json FILE``, writes every number):

1. accuracy -- the generated snntorch program trains 784-H-10 with rule dfa online on all of
   MNIST (Poisson input, T steps per sample), test accuracy per epoch;
2. subset -- the same rule on Brian2 (strictly online, batch 1) and on snntorch with the same
   budget: the first N training images, one pass, tested on the first M test images;
3. throughput -- synaptic events/s (pre spikes x fan-out, forward projections) of the
   generated program and of a hand-written plain loop for the same network, rule and
   semantics, in the same run (interleaved repeats, median), per target.

Run: ``.venv/bin/python benchmarks/spiking.py`` (about an hour on 2 CPU cores; Brian2's
Cython compile adds a few minutes once) or ``--quick`` for a smoke test.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    p.add_argument("--sections", default="accuracy,subset,throughput")
    p.add_argument("--rule", default="dfa")
    p.add_argument("--timesteps", type=int, default=40)
    p.add_argument("--hidden", type=int, default=500)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=20)
    p.add_argument("--lr", type=float, default=0.2, help="the rule's lr global")
    p.add_argument("--lr-decay", type=float, default=0.8)
    p.add_argument("--subset", type=int, default=1000, help="training images (subset table)")
    p.add_argument("--test-subset", type=int, default=1000)
    p.add_argument("--subset-lr", type=float, default=0.01, help="lr for batch-1 training")
    p.add_argument("--throughput-samples", type=int, default=300)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--codegen", default="cython", choices=["cython", "numpy"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write all results to this file")
    a = p.parse_args(argv)
    if a.quick:
        a.timesteps, a.hidden, a.epochs = 10, 100, 1
        a.subset, a.test_subset, a.throughput_samples, a.repeats = 200, 200, 60, 2
        a.codegen = "numpy"
    return a


def _table(title: str, header: list[str], rows: list[list]) -> str:
    cells = [[str(c) for c in r] for r in [header, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells[1:]]
    return "\n".join([f"\n### {title}\n", line, sep, *body])


def _config(a):
    from neurolocal.hardware.semantics import SpikingConfig
    return SpikingConfig(timesteps=a.timesteps)


def _train(a, target, lr, **kw):
    """One run of the project's training loop (the same loop ``neurolocal train`` runs)."""
    from neurolocal.app.training import TrainConfig, train

    cfg = TrainConfig(rule=a.rule, target=target, hidden=[a.hidden], timesteps=a.timesteps,
                      seed=a.seed, globals={"lr": lr}, **kw)
    return train(cfg, progress=False).to_dict()


def _rule(a, lr):
    from neurolocal.rules import get_rule
    return get_rule(a.rule).with_globals(lr=lr)


# --------------------------------------------------------------------------------------
# 1. accuracy (snntorch, full MNIST)


def accuracy_section(a, out):
    res = _train(a, "snntorch", a.lr, epochs=a.epochs, batch_size=a.batch_size,
                 limit=2000 if a.quick else None, test_limit=1000 if a.quick else None,
                 device=a.device, lr_decay=a.lr_decay)
    out["accuracy"] = res
    rows = [[h["epoch"], f"{h['test_accuracy']:.2f}", f"{h['step']:.4g}", f"{h['seconds']:.0f}"]
            for h in res["history"]]
    print(_table(f"online spiking {a.rule} on snntorch: 784-{a.hidden}-10, T={a.timesteps}, "
                 f"batch {a.batch_size}, {res['samples']} training / {res['test_samples']} "
                 "test images", ["epoch", "test accuracy %", "lr", "train seconds (cum.)"],
                 rows), flush=True)


# --------------------------------------------------------------------------------------
# 2. subset (Brian2 vs snntorch, same budget, batch 1)


def subset_section(a, out):
    """Brian2 beside snntorch, batch 1, the same images and budget, one training loop."""
    res_t = _train(a, "snntorch", a.subset_lr, batch_size=1, limit=a.subset,
                   test_limit=a.test_subset)
    t0 = time.perf_counter()
    _train(a, "brian2", a.subset_lr, limit=2, test_limit=2, codegen=a.codegen)  # compile once
    compile_s = time.perf_counter() - t0
    res_b = _train(a, "brian2", a.subset_lr, limit=a.subset, test_limit=a.test_subset,
                   codegen=a.codegen)
    res_b["compile_or_load_seconds"] = compile_s
    out["subset"] = {"snntorch": res_t, "brian2": res_b}
    rows = [["snntorch", "generated", f"{res_t['test_accuracy']:.2f}",
             f"{res_t['seconds']:.1f}"],
            [f"brian2 ({res_b['codegen']})", "generated", f"{res_b['test_accuracy']:.2f}",
             f"{res_b['seconds']:.1f}"]]
    print(_table(f"online spiking {a.rule}, batch 1, one pass over the first {a.subset} "
                 f"training images, first {a.test_subset} test images (784-{a.hidden}-10, "
                 f"T={a.timesteps}, lr={a.subset_lr}; chance = 10 %)",
                 ["target", "program", "test accuracy %", "train seconds"], rows), flush=True)


# --------------------------------------------------------------------------------------
# 3. throughput: generated vs hand-written


def throughput_section(a, out):
    import torch
    from handwritten.brian2_dfa import handwritten_brian2
    from handwritten.snntorch_dfa import handwritten_snntorch

    from neurolocal.app.data import load_dataset
    from neurolocal.hardware.base import get_target
    from neurolocal.network import build_mlp

    cfg = _config(a)
    rule = _rule(a, a.lr)
    tr = load_dataset("mnist", "train", limit=a.throughput_samples, verbose=False)
    x, y = np.array(tr.x), np.eye(10, dtype=np.float32)[tr.y]
    results: dict = {"snntorch": {"generated": [], "hand-written": []},
                     "brian2": {"generated": [], "hand-written": []}}
    net0 = build_mlp([784, a.hidden, 10], rule, seed=a.seed)
    w1, w2 = net0.state["W"][1]["w"], net0.state["W"][2]["w"]
    bfb = net0.state["B"][1]["w"]
    xt, yt = torch.tensor(x), torch.tensor(y)

    def run_snntorch_generated():
        prog = get_target("snntorch").runner(build_mlp([784, a.hidden, 10], rule, seed=a.seed),
                                             cfg, seed=a.seed, batch_size=a.batch_size)
        t0 = time.perf_counter()
        prog.learn(xt, yt)
        return prog.events / (time.perf_counter() - t0)

    def run_snntorch_hand():
        gen = torch.Generator().manual_seed(a.seed)
        t0 = time.perf_counter()
        ev = handwritten_snntorch(torch.tensor(w1), torch.tensor(w2), torch.tensor(bfb), xt, yt,
                                  cfg, a.lr, a.batch_size, gen)
        return ev / (time.perf_counter() - t0)

    # Brian2: build (and compile or load from cache) both, warm up, then time
    runner = get_target("brian2").runner(build_mlp([784, a.hidden, 10], rule, seed=a.seed),
                                         cfg, codegen=a.codegen, seed=a.seed)
    hw_run, hw_events, _ = handwritten_brian2(w1.astype(np.float64), w2.astype(np.float64),
                                           bfb.astype(np.float64), cfg, a.lr, a.codegen)
    runner.run(x[:3], y[:3])
    hw_run(x[:3], y[:3])

    def run_brian2_generated():
        ev0, t0 = runner.events, time.perf_counter()
        runner.run(x, y)
        return (runner.events - ev0) / (time.perf_counter() - t0)

    def run_brian2_hand():
        ev0, t0 = hw_events(), time.perf_counter()
        hw_run(x, y)
        return (hw_events() - ev0) / (time.perf_counter() - t0)

    pairs = {"snntorch": (run_snntorch_generated, run_snntorch_hand),
             "brian2": (run_brian2_generated, run_brian2_hand)}
    for rep in range(a.repeats):  # interleaved, alternating which one goes first
        for target, (gen_fn, hand_fn) in pairs.items():
            order = [("generated", gen_fn), ("hand-written", hand_fn)]
            for kind, fn in (order if rep % 2 == 0 else order[::-1]):
                results[target][kind].append(fn())
    out["throughput"] = results
    rows = []
    for target, r in results.items():
        gen_m = statistics.median(r["generated"])
        hw_m = statistics.median(r["hand-written"])
        label = target if target == "snntorch" else f"brian2 ({a.codegen})"
        rows.append([label, f"{gen_m / 1e6:.1f}", f"{hw_m / 1e6:.1f}", f"{gen_m / hw_m:.2f}"])
    print(_table(f"throughput, synaptic events/s (millions; median of {a.repeats}), online "
                 f"{a.rule} training, 784-{a.hidden}-10, T={a.timesteps}, "
                 f"{a.throughput_samples} images, snntorch batch {a.batch_size}, Brian2 "
                 "batch 1", ["target", "generated", "hand-written", "generated / hand-written"],
                 rows), flush=True)


def main(argv=None) -> int:
    a = _args(argv)
    import torch
    torch.set_num_threads(a.threads)
    cmd = "python benchmarks/spiking.py " + " ".join(sys.argv[1:] if argv is None else argv)
    print(f"# {cmd}\n# torch threads: {a.threads}", flush=True)
    out: dict = {"command": cmd, "args": vars(a)}
    sections = a.sections.split(",")
    for name, fn in (("accuracy", accuracy_section), ("subset", subset_section),
                     ("throughput", throughput_section)):
        if name in sections:
            t0 = time.perf_counter()
            fn(a, out)
            print(f"({name}: {time.perf_counter() - t0:.0f} s wall)", flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())

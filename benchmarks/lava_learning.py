"""Lava (Loihi 2) benchmarks: online DFA beside snntorch; throughput against hand-written graphs.

    python benchmarks/lava_learning.py dfa [--samples 1000 --test-samples 1000 --hidden 100 ...]
    python benchmarks/lava_learning.py throughput [--samples 100 --tag fixed_pt --repeats 5]

``dfa`` trains through the one training loop (``neurolocal.app.training``) on snntorch (batch
1) and on Lava floating_pt and fixed_pt with the same images, budget and initial weights.
``throughput`` times the generated graphs against hand-written plain Lava graphs of the same
network, spikes and epoch layout (``handwritten/lava_dfa.py``), interleaved, best of N.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

TARGETS = ("snntorch", "lava:floating_pt", "lava:fixed_pt")


def throughput_benchmark(net, spikes: np.ndarray, targets: np.ndarray, *, tag: str = "fixed_pt",
                         config=None, repeats: int = 3) -> dict:
    """Synaptic events/s of the generated graphs next to hand-written plain Lava graphs.

    Same network, input spikes (T, K, n0), epoch layout and number of steps, compile time
    excluded, each pair ``repeats`` times interleaved (the best time of each counts: the
    machine is shared). Pairs: the generated inference graph against RingBuffer -> Dense ->
    LIF; the generated learning graph against RingBuffer -> LearningDense (the same rule
    strings) -> LIF, which learns nothing useful (stock LIFs send no third factor) but runs the
    same learning engine; and, for dfa-shaped rules, against the same learning graph written by
    hand (``handwritten_dfa_graph``), the like-for-like comparison. The generated learning
    graph is timed in both forms: the graph of cores (the default) and the graph of parts
    (``generated_parts``, one process per part, as the hand-written graphs are built).
    """
    from handwritten.lava_dfa import handwritten_dfa_graph, handwritten_graph, time_graph

    from neurolocal.hardware.base import get_target
    from neurolocal.hardware.lava.runtime import learning_rule
    from neurolocal.hardware.lava.session import import_lava
    from neurolocal.rule import FORWARD

    import_lava()
    target = get_target(f"lava:{tag}")
    runner = target.bind(net, target.lower(net.rule, network=net, config=config))
    parts = target.bind(copy.deepcopy(net), runner.lp, graph="processes")
    lp = runner.lp
    t, k = lp.timesteps, spikes.shape[1]
    w0 = {g.layer: np.array(runner.net.state[FORWARD][g.layer]["w"]) for g in lp.groups}
    weights, biases, vth = [], [], []
    for layer in range(1, lp.depth + 1):
        w = runner.weights_lsb(layer)
        weights.append(w if layer == 1 else w[:, :-1])
        biases.append(None if layer == 1 else w[:, -1])
        g = lp.group(layer)
        vth.append(round(lp.config.vth / g.weight_step) if tag == "fixed_pt"
                   else lp.config.vth / g.weight_step)

    def layout(steps: int) -> np.ndarray:
        data = np.zeros((lp.sizes[0] + 1, k * steps))
        for i in range(k):
            data[:-1, i * steps + 1:i * steps + 1 + t] = spikes[:, i].T
            data[-1, i * steps:i * steps + t] = 1
        return data

    rules = [learning_rule(lp, g.layer, tag) for g in lp.groups]
    # the hand-written DFA neuron covers rules shaped like dfa: output error to every hidden
    # layer, one signed post factor in y2/y3
    dfa = bool(lp.feedback) and all(f.plan.scope == "output" for f in lp.feedback) and \
        len(lp.post_factors) == 1 and lp.post_factors[0].traces == ("y2", "y3")
    best: dict[str, float] = {}
    events = {"inference": 0.0, "learning": 0.0, "dfa": 0.0, "parts": 0.0}
    for _ in range(max(1, repeats)):
        for g in lp.groups:  # every learning run starts from the same weights
            runner.net.state[FORWARD][g.layer]["w"] = w0[g.layer].copy()
            parts.net.state[FORWARD][g.layer]["w"] = w0[g.layer].copy()
        inf = runner.run(spikes, None, learn=False)
        events["inference"] = inf["events"]
        secs = {"generated_inference": inf["seconds"],
                "handwritten_inference": time_graph(
                    handwritten_graph(weights, biases, layout(t + 1), vth, tag), k * (t + 1),
                    tag)}
        lrn = runner.run(spikes, targets, learn=True)
        runner.close()
        events["learning"] = events["dfa"] = events["parts"] = lrn["events"]
        secs["generated_learning"] = lrn["seconds"]
        secs["generated_parts"] = parts.run(spikes, targets, learn=True)["seconds"]
        secs["handwritten_learning"] = time_graph(
            handwritten_graph(weights, biases, layout(lp.epoch_len), vth, tag, rules),
            k * lp.epoch_len, tag)
        if dfa:
            secs["handwritten_dfa"] = time_graph(
                handwritten_dfa_graph(runner, spikes, targets, rules, tag), k * lp.epoch_len,
                tag)
        for key, v in secs.items():
            best[key] = min(best.get(key, math.inf), v)
    out: dict[str, Any] = {"samples": k, "timesteps": t, "tag": tag, "sizes": list(lp.sizes),
                           "repeats": repeats, "events": events}
    for key, v in best.items():
        out[key] = {"seconds": v, "events_per_s": events[key.split("_")[1]] / v}
    for kind in ("inference", "learning"):
        out[f"ratio_{kind}"] = out[f"generated_{kind}"]["events_per_s"] / \
            out[f"handwritten_{kind}"]["events_per_s"]
    if dfa:
        for key in ("learning", "parts"):
            out[f"ratio_{key}_vs_handwritten_dfa"] = \
                out[f"generated_{key}"]["events_per_s"] / out["handwritten_dfa"]["events_per_s"]
    return out


def bench_dfa(args) -> dict:
    """The rule on a training subset: Lava fixed_pt and floating_pt beside snntorch, batch 1."""
    import torch

    from neurolocal.app.training import TrainConfig, train

    torch.set_num_threads(1)
    rows: dict[str, Any] = {}
    for target in args.targets:
        cfg = TrainConfig(rule=args.rule, target=target, hidden=list(args.hidden),
                          epochs=args.epochs, batch_size=1, limit=args.samples,
                          test_limit=args.test_samples, timesteps=args.timesteps,
                          seed=args.seed, globals={"lr": args.lr})
        rows[target] = train(cfg, progress=target != "snntorch").to_dict()
    print(f"{args.rule} {'-'.join(map(str, [784, *args.hidden, 10]))}, T = {args.timesteps}, "
          f"lr = {args.lr}, batch 1, {args.samples} training / {args.test_samples} test "
          f"images, {args.epochs} pass(es)")
    print(f"{'target':<18} {'test acc %':>10} {'learn s':>9} {'samples/s':>10} {'events/s':>10}")
    for name, r in rows.items():
        n = r["samples"] * r["epochs"]
        print(f"{name:<18} {r['test_accuracy']:>10.1f} {r['seconds']:>9.1f} "
              f"{n / r['seconds']:>10.1f} {r.get('synaptic_events_per_second', 0):>10.3g}")
    return rows


def bench_throughput(args) -> dict:
    from neurolocal.app.data import load_dataset
    from neurolocal.hardware.encoding import encode_input
    from neurolocal.hardware.semantics import SpikingConfig
    from neurolocal.network import build_mlp
    from neurolocal.rules import get_rule

    cfg = SpikingConfig(timesteps=args.timesteps)
    ds = load_dataset("mnist", "train", limit=args.samples, verbose=False)
    rule = get_rule(args.rule).with_globals(lr=args.lr)
    net = build_mlp([784, *args.hidden, 10], rule, seed=args.seed)
    spikes = encode_input(np.asarray(ds.x), cfg, seed=np.random.default_rng(args.seed))
    res = throughput_benchmark(net, spikes, np.eye(10)[ds.y], tag=args.tag, config=cfg,
                               repeats=args.repeats)
    print(f"throughput, {args.rule} {'-'.join(map(str, res['sizes']))}, T = {args.timesteps}, "
          f"{args.samples} samples, {args.tag}, best of {args.repeats}")
    print(f"{'graph':<26} {'seconds':>8} {'events/s':>10}")
    for key in ("generated_inference", "handwritten_inference", "generated_learning",
                "generated_parts", "handwritten_learning", "handwritten_dfa"):
        if key in res:
            print(f"{key:<26} {res[key]['seconds']:>8.2f} {res[key]['events_per_s']:>10.3g}")
    for key in ("ratio_inference", "ratio_learning", "ratio_learning_vs_handwritten_dfa",
                "ratio_parts_vs_handwritten_dfa"):
        if key in res:
            print(f"{key:<34} {res[key]:.2f}")
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/lava_learning.py", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("dfa", "throughput"):
        s = sub.add_parser(name)
        s.add_argument("--rule", default="dfa")
        s.add_argument("--hidden", type=int, nargs="+", default=[100])
        s.add_argument("--timesteps", type=int, default=20)
        s.add_argument("--lr", type=float, default=0.02)
        s.add_argument("--seed", type=int, default=0)
        s.add_argument("--json", help="also write the results to this file")
    d = sub.choices["dfa"]
    d.add_argument("--samples", type=int, default=1000)
    d.add_argument("--test-samples", type=int, default=1000)
    d.add_argument("--epochs", type=int, default=1)
    d.add_argument("--targets", nargs="+", default=list(TARGETS))
    t = sub.choices["throughput"]
    t.add_argument("--samples", type=int, default=100)
    t.add_argument("--tag", default="fixed_pt", choices=("fixed_pt", "floating_pt"))
    t.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    print("command: python benchmarks/lava_learning.py " + " ".join(argv if argv is not None
                                                           else sys.argv[1:]))
    res = bench_dfa(args) if args.cmd == "dfa" else bench_throughput(args)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=1, default=float)
    return 0


if __name__ == "__main__":
    sys.exit(main())

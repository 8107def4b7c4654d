"""Lava learning speed: the live graph of cores against the graph of parts, same work.

    python benchmarks/lava_speed.py [--samples 200 --hidden 100 --repeats 3 --calls 2]
    python benchmarks/lava_speed.py --profile        # where a sample's time goes, per core

Both graphs learn the same samples from the same weights (DFA, 784-100-10, T = 20 by
default), interleaved, best of N. *One call*: all samples in one ``run``; the learned weights
must be identical (checked every repeat, else the script fails). *Calls*: the training
loop's pattern, ``--calls`` calls in a row, end to end (building, starting, reading weights
back and stopping included): the graph of parts is built per call, the cores graph starts
once and stays running.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

GRAPHS = ("processes", "cores")
TAGS = ("fixed_pt", "floating_pt")


def workload(args):
    from neurolocal.app.data import load_dataset
    from neurolocal.hardware.encoding import encode_input
    from neurolocal.hardware.semantics import SpikingConfig
    from neurolocal.network import build_mlp
    from neurolocal.rules import get_rule

    cfg = SpikingConfig(timesteps=args.timesteps)
    ds = load_dataset("mnist", "train", limit=args.samples, verbose=False)
    net = build_mlp([784, *args.hidden, 10], get_rule(args.rule).with_globals(lr=args.lr),
                    seed=args.seed)
    spikes = encode_input(np.asarray(ds.x), cfg, seed=np.random.default_rng(args.seed))
    return cfg, net, spikes, np.eye(10)[ds.y]


def one_call(tag: str, graph: str, cfg, net, spikes, targets) -> tuple[dict, float, float]:
    """(weights, run seconds, end-to-end seconds) of one run over all samples."""
    from neurolocal.hardware.base import get_target
    from neurolocal.rule import FORWARD

    t0 = time.perf_counter()
    runner = get_target(f"lava:{tag}").runner(copy.deepcopy(net), cfg, graph=graph)
    res = runner.run(spikes, targets, learn=True)
    runner.close()
    wall = time.perf_counter() - t0
    weights = {k: np.array(v["w"]) for k, v in runner.net.state[FORWARD].items()}
    return weights, res["seconds"], wall


def calls(tag: str, graph: str, cfg, net, spikes, targets, n_calls: int) -> float:
    """End-to-end seconds of ``n_calls`` learn calls in a row (the training loop's way)."""
    from neurolocal.hardware.base import get_target

    t0 = time.perf_counter()
    runner = get_target(f"lava:{tag}").runner(copy.deepcopy(net), cfg, graph=graph)
    for part in np.array_split(np.arange(spikes.shape[1]), n_calls):
        runner.run(spikes[:, part], targets[part], learn=True)
    runner.close()
    return time.perf_counter() - t0


def speed(args) -> dict:
    cfg, net, spikes, targets = workload(args)
    n = spikes.shape[1]
    best: dict = {}
    for rep in range(args.repeats):
        for tag in args.tags:
            weights = {}
            for graph in GRAPHS if rep % 2 == 0 else GRAPHS[::-1]:
                w, run_s, wall = one_call(tag, graph, cfg, net, spikes, targets)
                weights[graph] = w
                b = best.setdefault((tag, graph), {"run": np.inf, "call": np.inf,
                                                   "calls": np.inf})
                b["run"], b["call"] = min(b["run"], run_s), min(b["call"], wall)
                if args.calls:
                    b["calls"] = min(b["calls"], calls(tag, graph, cfg, net, spikes, targets,
                                                       args.calls))
                print(f"  repeat {rep + 1} {tag} {graph}: {n / run_s:.1f} samples/s",
                      file=sys.stderr, flush=True)
            same = all(np.array_equal(weights["processes"][k], weights["cores"][k])
                       for k in weights["processes"])
            if not same:
                raise SystemExit(f"{tag}: the cores graph learned different weights")
    sizes = "-".join(map(str, [784, *args.hidden, 10]))
    print(f"Lava learning speed, {args.rule} {sizes}, T = {args.timesteps}, {n} samples, "
          f"best of {args.repeats}, interleaved; weights identical in every repeat")
    head = f"{'tag':<12} {'graph':<10} {'run /s':>8} {'call /s':>8}"
    if args.calls:
        head += f" {f'{args.calls} calls /s':>12}"
    print(head)
    out: dict = {"samples": n, "sizes": sizes, "timesteps": args.timesteps,
                 "repeats": args.repeats, "calls": args.calls, "rows": []}
    for tag in args.tags:
        for graph in GRAPHS:
            b = best[(tag, graph)]
            row = {"tag": tag, "graph": graph, "run": n / b["run"], "call": n / b["call"],
                   "calls": n / b["calls"] if args.calls else None}
            out["rows"].append(row)
            line = f"{tag:<12} {graph:<10} {row['run']:>8.1f} {row['call']:>8.1f}"
            if args.calls:
                line += f" {row['calls']:>12.1f}"
            print(line)
        ratio = {k: best[(tag, "processes")][k] / best[(tag, "cores")][k]
                 for k in ("run", "call", "calls") if np.isfinite(best[(tag, "cores")][k])}
        out[f"ratio_{tag}"] = ratio
        print(f"{tag:<12} {'ratio':<10} " + " ".join(f"{v:>7.2f}x" for v in ratio.values()))
    return out


# -- profile --------------------------------------------------------------------------------------

PARTS = {  # method of the core model -> what it is
    "_step": "neurons (LIF + neuron program)",
    "_synapse_step": "synapses: W . s and trace bookkeeping",
    "recv_traces": "  of which trace bookkeeping",
    "_feedback": "feedback synapses B . payload",
    "run_lrn": "learning phase (per sample)",
    "_compute_trace_histories": "  of which trace histories",
    "_apply_learning_rules": "  of which the learning rule",
}


def _instrument(folder: str) -> None:
    """Wrap the core models' methods with timers; each worker writes its sums to ``folder``."""
    import functools

    from neurolocal.hardware.lava.session import import_lava

    import_lava()
    from neurolocal.hardware.lava.procs import core

    sums: dict = {}

    def wrap(cls, name):
        f = getattr(cls, name)

        @functools.wraps(f)
        def timed(self, *a, **k):
            t = time.perf_counter()
            try:
                return f(self, *a, **k)
            finally:
                sums[name] = sums.get(name, 0.0) + time.perf_counter() - t
                if name == "run_lrn" and self.time_step // self._L == \
                        int(self._header["range"][1]):
                    Path(folder, f"{self.__class__.__name__}-{self._layer}.json").write_text(
                        json.dumps(sums))
        setattr(cls, name, timed)

    for cls in (core.NeuroCoreModelFixed, core.NeuroCoreModelFloat):
        for name in PARTS:
            wrap(cls, name)


def profile(args) -> dict:
    cfg, net, spikes, targets = workload(args)
    n = spikes.shape[1]
    folder = tempfile.mkdtemp(prefix="neurolocal-lava-profile-")
    _instrument(folder)
    from neurolocal.hardware.base import get_target

    out: dict = {}
    for tag in args.tags:
        runner = get_target(f"lava:{tag}").runner(copy.deepcopy(net), cfg, graph="cores")
        res = runner.run(spikes, targets, learn=True)
        runner.close()
        wall = res["seconds"] / n * 1e6
        cores = {}
        for f in sorted(Path(folder).glob("*.json")):
            cores[int(f.stem.rsplit("-", 1)[1])] = {k: v / n * 1e6 for k, v in
                                                    json.loads(f.read_text()).items()}
            f.unlink()
        print(f"\nwhere a sample's time goes, {tag}, {'-'.join(map(str, [784, *args.hidden, 10]))}"
              f", T = {args.timesteps} ({runner.lp.epoch_len} steps per sample), {n} samples:"
              f" {wall:.0f} us per sample")
        print(f"{'part':<40}" + "".join(f"{f'core {c} us':>12}" for c in cores))
        for name, label in PARTS.items():
            print(f"{label:<40}" + "".join(f"{cores[c].get(name, 0):>12.0f}" for c in cores))
        busy = {c: sum(v.get(k, 0) for k in ("_step", "_synapse_step", "_feedback", "run_lrn"))
                for c, v in cores.items()}
        print(f"{'waiting, channels, Lava step sync':<40}" +
              "".join(f"{wall - busy[c]:>12.0f}" for c in cores))
        out[tag] = {"us_per_sample": wall, "cores": cores}
    os.rmdir(folder)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/lava_speed.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rule", default="dfa")
    p.add_argument("--hidden", type=int, nargs="+", default=[100])
    p.add_argument("--timesteps", type=int, default=20)
    p.add_argument("--lr", type=float, default=0.02)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--samples", type=int, default=200)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--calls", type=int, default=0,
                   help="also time this many learn calls in a row, end to end")
    p.add_argument("--tags", nargs="+", default=list(TAGS), choices=TAGS)
    p.add_argument("--profile", action="store_true", help="time the parts of a core instead")
    p.add_argument("--json", help="also write the results to this file")
    args = p.parse_args(argv)
    print("command: python benchmarks/lava_speed.py " + " ".join(argv if argv is not None
                                                          else sys.argv[1:]))
    res = profile(args) if args.profile else speed(args)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())

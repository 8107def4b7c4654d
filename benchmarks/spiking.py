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
    from neurolocal.hardware.spiking import SpikingConfig
    return SpikingConfig(timesteps=a.timesteps)


def _rule(a, lr):
    from neurolocal.rules import get_rule
    return get_rule(a.rule).with_globals(lr=lr)


# --------------------------------------------------------------------------------------
# 1. accuracy (snntorch, full MNIST)


def accuracy_section(a, out):
    from neurolocal.hardware.snntorch_target import train
    res = train(_rule(a, a.lr), hidden=(a.hidden,), epochs=a.epochs, batch_size=a.batch_size,
                samples=2000 if a.quick else None, test_samples=1000 if a.quick else None,
                config=_config(a), seed=a.seed, device=a.device, lr_decay=a.lr_decay)
    res.pop("program")
    out["accuracy"] = res
    rows = [[h["epoch"], f"{h['test_accuracy']:.2f}", f"{h['lr']:.4g}", f"{h['seconds']:.0f}"]
            for h in res["history"]]
    print(_table(f"online spiking {a.rule} on snntorch: 784-{a.hidden}-10, T={a.timesteps}, "
                 f"batch {a.batch_size}, {res['samples']} training / {res['test_samples']} "
                 "test images", ["epoch", "test accuracy %", "lr", "train seconds (cum.)"],
                 rows), flush=True)


# --------------------------------------------------------------------------------------
# 2. subset (Brian2 vs snntorch, same budget, batch 1)


def subset_section(a, out):
    from neurolocal.data import load_dataset
    from neurolocal.hardware.brian2_target import Brian2Runner
    from neurolocal.hardware.snntorch_target import train
    from neurolocal.network import build_mlp

    cfg, rule = _config(a), _rule(a, a.subset_lr)
    res_t = train(rule, hidden=(a.hidden,), epochs=1, batch_size=1, samples=a.subset,
                  test_samples=a.test_subset, config=cfg, seed=a.seed, progress=False)
    res_t.pop("program")
    tr = load_dataset("mnist", "train", limit=a.subset, verbose=False)
    te = load_dataset("mnist", "test", limit=a.test_subset, verbose=False)
    net = build_mlp([784, a.hidden, 10], rule, seed=a.seed)
    t0 = time.perf_counter()
    runner = Brian2Runner(net, cfg, codegen=a.codegen, input_mode="poisson", seed=a.seed)
    runner.run(np.array(tr.x[:2]), np.eye(10)[tr.y[:2]])  # compile (cached after once)
    compile_s = time.perf_counter() - t0
    runner = Brian2Runner(build_mlp([784, a.hidden, 10], rule, seed=a.seed), cfg,
                          codegen=a.codegen, input_mode="poisson", seed=a.seed)
    order = np.random.default_rng(a.seed + 1).permutation(len(tr.x))
    t0 = time.perf_counter()
    runner.run(np.array(tr.x)[order], np.eye(10)[tr.y[order]], learn=True)
    train_s = time.perf_counter() - t0
    scores = runner.run(np.array(te.x), None, learn=False)
    acc_b = 100.0 * float((scores.argmax(1) == te.y).mean())
    out["subset"] = {"snntorch": res_t, "brian2": {
        "test_accuracy": acc_b, "seconds": train_s, "compile_or_load_seconds": compile_s,
        "codegen": runner.codegen}}
    rows = [["snntorch", "generated", f"{res_t['test_accuracy']:.2f}",
             f"{res_t['seconds']:.1f}"],
            [f"brian2 ({runner.codegen})", "generated", f"{acc_b:.2f}", f"{train_s:.1f}"]]
    print(_table(f"online spiking {a.rule}, batch 1, one pass over the first {a.subset} "
                 f"training images, first {a.test_subset} test images (784-{a.hidden}-10, "
                 f"T={a.timesteps}, lr={a.subset_lr}; chance = 10 %)",
                 ["target", "program", "test accuracy %", "train seconds"], rows), flush=True)


# --------------------------------------------------------------------------------------
# 3. throughput: generated vs hand-written


def handwritten_snntorch(w1, w2, bfb, xs, ys, cfg, lr, batch, gen):
    """A plain snntorch loop for 784-H-10 DFA with the same semantics, written by hand."""
    import snntorch as snn
    import torch

    t_steps = cfg.timesteps
    lif1 = snn.Leaky(beta=1.0, threshold=1.0, reset_mechanism="zero", reset_delay=False,
                     surrogate_disable=True)
    lif2 = snn.Leaky(beta=1.0, threshold=1.0, reset_mechanism="zero", reset_delay=False,
                     surrogate_disable=True)
    events = 0.0
    with torch.no_grad():
        for i in range(0, len(xs), batch):
            x, y = xs[i:i + batch], ys[i:i + batch]
            n = len(x)
            s_in = (torch.rand((t_steps, *x.shape), generator=gen) < x).to(x.dtype)
            mem1 = lif1.reset_mem()
            mem2 = lif2.reset_mem()
            s0_prev = torch.zeros_like(x)
            s1_prev = torch.zeros(n, w1.shape[0], dtype=x.dtype)
            c1 = torch.zeros(n, w1.shape[0], dtype=x.dtype)
            c2 = torch.zeros(n, w2.shape[0], dtype=x.dtype)
            a1 = torch.zeros(n, w1.shape[0], dtype=x.dtype)
            for t in range(t_steps):
                i1 = s0_prev @ w1[:, :-1].T + w1[:, -1]
                i2 = s1_prev @ w2[:, :-1].T + (w2[:, -1] if t >= 1 else 0.0)  # bias window
                s1, mem1 = lif1(i1, mem1)
                s2, mem2 = lif2(i2, mem2)
                if t >= 1:  # layer 1's window: steps 1 .. T-1
                    a1 += i1
                c1 += s1
                c2 += s2
                s0_prev, s1_prev = s_in[t], s1.to(x.dtype)
            events += float(s_in.sum()) * w1.shape[0] + float(c1.sum()) * w2.shape[0]
            # rates over each layer's window (T - layer steps)
            r0, r1, r2 = s_in.mean(0), c1 / (t_steps - 1), c2 / (t_steps - 2)
            err = r2 - y
            d1 = (err @ bfb.T) * (c1 > 0) * (a1 / (t_steps - 1) < 1.0)
            one = torch.ones(n, 1, dtype=x.dtype)
            w2 -= lr / n * err.T @ torch.cat([r1, one], 1)
            w1 -= lr / n * d1.T @ torch.cat([r0, one], 1)
    return events


def handwritten_brian2(w1, w2, bfb, cfg, lr, codegen):
    """A plain Brian2 script for 784-H-10 DFA with the same semantics, written by hand."""
    from brian2 import (
        Network,
        NetworkOperation,
        NeuronGroup,
        SpikeMonitor,
        Synapses,
        ms,
        prefs,
    )

    from neurolocal.hardware.brian2_target import _set_prefs
    _set_prefs(codegen)
    del prefs
    t_ep = cfg.timesteps * ms
    # T0, T1, T2: the windows of the input, hidden and output layers (T - layer steps)
    ns = {"T0": float(cfg.timesteps), "T1": float(cfg.timesteps - 1),
          "T2": float(cfg.timesteps - 2), "lr": float(lr)}
    h, o = w1.shape[0], w2.shape[0]
    inp = NeuronGroup(784, "p : 1\ncnt : 1", threshold="rand() < p", reset="cnt += 1",
                      name="hw_in", dt=1 * ms, namespace=ns)
    hid = NeuronGroup(h, "v : 1\nI : 1\nb : 1\ncnt : 1\nasum : 1\nerr : 1\nage : 1 (shared)",
                      threshold="v > 1", reset="v = 0\ncnt += 1", name="hw_hid", dt=1 * ms,
                      namespace=ns)
    out = NeuronGroup(o, "v : 1\nI : 1\nb : 1\ncnt : 1\ntarget : 1\nage : 1 (shared)",
                      threshold="v > 1",
                      reset="v = 0\ncnt += 1", name="hw_out", dt=1 * ms, namespace=ns)
    # age = sample step + 1; the output's bias neuron (in the hidden layer) fires from step 1,
    # the hidden drive is averaged over its window (steps 1 .. T-1)
    hid.run_regularly("age += 1\nv = v + I + b\nasum += (I + b)*int(age > 1)\nI = 0",
                      when="groups", name="hw_hid_step")
    out.run_regularly("age += 1\nv = v + I + b*int(age >= 2)\nI = 0", when="groups",
                      name="hw_out_step")
    s1 = Synapses(inp, hid, "w : 1", on_pre="I_post += w", name="hw_w1", dt=1 * ms,
                  namespace=ns)
    s2 = Synapses(hid, out, "w : 1", on_pre="I_post += w", name="hw_w2", dt=1 * ms,
                  namespace=ns)
    fb = Synapses(out, hid, "w : 1\nerr_post = w*(cnt_pre/T2 - target_pre) : 1 (summed)",
                  name="hw_b", dt=1 * ms, namespace=ns)
    for s in (s1, s2, fb):
        s.connect()
    s1.w = w1[s1.j[:], s1.i[:]]
    s2.w = w2[s2.j[:], s2.i[:]]
    fb.w = bfb[fb.j[:], fb.i[:]]
    hid.b, out.b = w1[:, -1], w2[:, -1]
    upd = fb.summed_updaters["err_post"]
    upd.when, upd.order = "end", 1
    s2.run_regularly("w += -lr*(cnt_post/T2 - target_post)*cnt_pre/T1", dt=t_ep, when="end",
                     order=2, name="hw_w2_upd")
    out.run_regularly("b += -lr*(cnt/T2 - target)", dt=t_ep, when="end", order=2,
                      name="hw_out_upd")
    s1.run_regularly("w += -lr*err_post*int(cnt_post > 0)*int(asum_post < T1)*cnt_pre/T0",
                     dt=t_ep, when="end", order=2, name="hw_w1_upd")
    hid.run_regularly("b += -lr*err*int(cnt > 0)*int(asum < T1)", dt=t_ep, when="end",
                      order=2, name="hw_hid_upd")
    for g in (inp, hid, out):
        code = ("" if g is inp else "age = 0\nv = 0\nI = 0\n") + "cnt = 0" + \
            ("\nasum = 0" if g is hid else "")
        g.run_regularly(code, dt=t_ep, when="end", order=3, name=f"{g.name}_reset")
    counters = [SpikeMonitor(inp, record=False, name="hw_c0"),
                SpikeMonitor(hid, record=False, name="hw_c1")]
    feed = {"x": None, "y": None, "k": 0}

    def next_sample():
        feed["k"] += 1
        if feed["k"] < len(feed["x"]):
            inp.p = feed["x"][feed["k"]]
            out.target = feed["y"][feed["k"]]

    net = Network(inp, hid, out, s1, s2, fb, *counters,
                  NetworkOperation(next_sample, dt=t_ep, when="end", order=4, name="hw_next"))
    net.t_ = float(1 * ms)

    def run(x, y):
        feed.update(x=x, y=y, k=0)
        inp.p, out.target = x[0], y[0]
        net.run(len(x) * t_ep, namespace={})

    def events():
        return float(counters[0].count[:].sum()) * h + float(counters[1].count[:].sum()) * o

    def weights():
        """(W1, W2) with the bias as last column, as the network IR stores them."""
        found = []
        for syn, grp, shape in ((s1, hid, w1.shape), (s2, out, w2.shape)):
            w = np.zeros(shape)
            w[syn.j[:], syn.i[:]] = syn.w[:]
            w[:, -1] = grp.b[:]
            found.append(w)
        return tuple(found)

    return run, events, weights


def throughput_section(a, out):
    import torch

    from neurolocal.data import load_dataset
    from neurolocal.hardware.brian2_target import Brian2Runner
    from neurolocal.hardware.snntorch_target import SnnTorchProgram
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
        prog = SnnTorchProgram(build_mlp([784, a.hidden, 10], rule, seed=a.seed), cfg,
                               seed=a.seed)
        t0 = time.perf_counter()
        for i in range(0, len(x), a.batch_size):
            prog.learn(xt[i:i + a.batch_size], yt[i:i + a.batch_size])
        return prog.events / (time.perf_counter() - t0)

    def run_snntorch_hand():
        gen = torch.Generator().manual_seed(a.seed)
        t0 = time.perf_counter()
        ev = handwritten_snntorch(torch.tensor(w1), torch.tensor(w2), torch.tensor(bfb), xt, yt,
                                  cfg, a.lr, a.batch_size, gen)
        return ev / (time.perf_counter() - t0)

    # Brian2: build (and compile or load from cache) both, warm up, then time
    runner = Brian2Runner(build_mlp([784, a.hidden, 10], rule, seed=a.seed), cfg,
                          codegen=a.codegen, input_mode="poisson", seed=a.seed)
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

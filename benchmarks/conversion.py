"""ANN -> SNN conversion on MNIST: accuracy vs time steps on snntorch, Lava fixed_pt and Brian2.

Trains (or loads from the cache) two ReLU networks with torch on one thread -- an MLP
784-300-100-10 and a LeNet-like CNN with BatchNorm (folded at conversion) -- converts each
with 99.9th-percentile normalisation to IF neurons with reset by subtraction (initial membrane
half the threshold), constant-current input and an accumulated-membrane read-out, and prints
per model:

* accuracy vs T (8, 16, 32, 64, 128) on snntorch (all 10,000 test images), and on the first
  1,000 test images for snntorch, the bit-exact fixed-point emulation of Lava and Lava
  ``fixed_pt`` itself (measured at ``--lava-T``; the emulation equals Lava there, checked),
  with spikes and synaptic operations per inference;
* Brian2 vs snntorch spike counts for the same inputs (per neuron, float64 and float32).

Writes ``docs/img/conversion.png`` and ``benchmarks/results/conversion.json``.
Run: ``.venv/bin/python benchmarks/conversion.py`` (about 10 minutes on 2 CPU cores) or
``--quick`` for a smoke test (small nets, few images).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def _args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    p.add_argument("--models", default="mlp,cnn")
    p.add_argument("--timesteps", default="8,16,32,64,128")
    p.add_argument("--epochs-mlp", type=int, default=6)
    p.add_argument("--epochs-cnn", type=int, default=4)
    p.add_argument("--n-train", type=int, default=60000)
    p.add_argument("--n-test", type=int, default=10000)
    p.add_argument("--n-subset", type=int, default=1000, help="images for the Lava columns")
    p.add_argument("--calibration", type=int, default=5000, help="training images")
    p.add_argument("--percentile", type=float, default=99.9)
    p.add_argument("--v-init", type=float, default=0.5,
                   help="initial membrane, fraction of the threshold")
    p.add_argument("--lava-T", default="16,32", help="T values measured on Lava ('' to skip)")
    p.add_argument("--brian2-T", type=int, default=32)
    p.add_argument("--brian2-images", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--retrain", action="store_true", help="ignore the cached models")
    p.add_argument("--cache", default=None, help="model cache folder "
                   "(default: neurolocal's data cache /benchmarks)")
    p.add_argument("--json", default=None,
                   help="results file (default benchmarks/results/conversion.json)")
    p.add_argument("--plot", default=None, help="plot (default docs/img/conversion.png)")
    a = p.parse_args(argv)
    if a.quick:
        a.epochs_mlp, a.epochs_cnn, a.n_train, a.n_test = 1, 1, 5000, 500
        a.n_subset, a.calibration, a.lava_T, a.brian2_images = 60, 500, "16", 4
        a.timesteps = "8,16,32"
    quick_dir = Path(tempfile.gettempdir())  # a smoke test never overwrites the real results
    a.json = a.json or str(quick_dir / "conversion-quick.json" if a.quick
                           else ROOT / "benchmarks" / "results" / "conversion.json")
    a.plot = a.plot or str(quick_dir / "conversion-quick.png" if a.quick
                           else ROOT / "docs" / "img" / "conversion.png")
    return a


# ------------------------------------------------------------------------------ models

ARCH = {
    "mlp": (["Linear(784, 300)", "ReLU", "Linear(300, 100)", "ReLU", "Linear(100, 10)"],
            (784,)),
    "cnn": (["Conv2d(1, 6, 5)", "BatchNorm2d(6)", "ReLU", "AvgPool2d(2)",
             "Conv2d(6, 12, 5)", "BatchNorm2d(12)", "ReLU", "AvgPool2d(2)", "Flatten",
             "Linear(192, 64)", "ReLU", "Linear(64, 10)"], (1, 28, 28)),
}


def _train(name, arch, shape, x, y, epochs, seed=0):
    import torch

    from neurolocal.converters.torch_import import build_sequential

    torch.manual_seed(seed)
    net = build_sequential(arch)
    xt = torch.from_numpy(x.reshape((-1, *shape)))
    yt = torch.from_numpy(y)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    sched = torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.7)
    for ep in range(epochs):
        t0 = time.perf_counter()
        net.train()
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 128):
            idx = perm[i:i + 128]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(xt[idx]), yt[idx]).backward()
            opt.step()
        sched.step()
        print(f"  train {name}: epoch {ep + 1}/{epochs} ({time.perf_counter() - t0:.0f} s)",
              flush=True)
    return net.eval()


def _model(name, args, data):
    import torch

    from neurolocal.app.data import default_cache_dir
    from neurolocal.converters.torch_import import load_torch_file

    arch, shape = ARCH[name]
    epochs = args.epochs_mlp if name == "mlp" else args.epochs_cnn
    key = hashlib.sha1(json.dumps([arch, epochs, args.n_train]).encode()).hexdigest()[:10]
    cache = Path(args.cache) if args.cache else default_cache_dir() / "benchmarks"
    path = cache / f"conversion-{name}-{key}.pt"
    if path.exists() and not args.retrain:
        print(f"  {name}: cached model {path}")
    else:
        x, y = data["train"]
        net = _train(name, arch, shape, x[:args.n_train], y[:args.n_train], epochs)
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save({"arch": arch, "state_dict": net.state_dict(), "input_shape": shape}, tmp)
        tmp.replace(path)
    return load_torch_file(path), path


# ------------------------------------------------------------------------------ runs


def _bench_model(name, args, data, ts, lava_ts):
    import torch

    from neurolocal.converters.model import ann_forward
    from neurolocal.converters.normalise import normalise, set_neurons
    from neurolocal.converters.quantise import quantise, sweep_fixed
    from neurolocal.hardware.brian2.inference import run_brian2
    from neurolocal.hardware.lava.inference import run_lava
    from neurolocal.hardware.snntorch.inference import run_snntorch, sweep_snntorch

    ann, path = _model(name, args, data)
    x, _ = data["train"]
    xt, yt = data["test"]
    xs, ys = xt[:args.n_subset], yt[:args.n_subset]
    out = {"model": name, "arch": ARCH[name][0], "cache": str(path), "n_test": len(xt),
           "n_subset": len(xs)}
    out["ann_accuracy"] = float(np.mean(ann_forward(ann, xt).argmax(1) == yt))
    out["ann_accuracy_subset"] = float(np.mean(ann_forward(ann, xs).argmax(1) == ys))
    t0 = time.perf_counter()
    snn0 = normalise(ann, x[:args.calibration], percentile=args.percentile)
    snn = set_neurons(snn0, "IF", v_init=args.v_init)
    out["scales"] = snn.metadata["scales"]
    out["v_init"] = args.v_init
    print(f"  {name}: normalised in {time.perf_counter() - t0:.1f} s, scales "
          f"{[round(s, 3) for s in snn.metadata['scales']]}", flush=True)

    t0 = time.perf_counter()
    full = sweep_snntorch(snn, xt, ts)
    out["snntorch_seconds"] = time.perf_counter() - t0
    print(f"  {name}: snntorch on {len(xt)} images, T up to {ts[-1]}: "
          f"{out['snntorch_seconds']:.0f} s", flush=True)
    sub = sweep_snntorch(snn, xs, ts)
    sub0 = sweep_snntorch(snn0, xs, ts)  # the same network starting from v = 0
    q = quantise(snn)
    out["quantisation"] = q.errors()
    print(q.error_table())
    t0 = time.perf_counter()
    emu = sweep_fixed(q, xs, ts, model=snn)
    out["emulation_seconds"] = time.perf_counter() - t0
    out["emulation_overflow"] = emu[ts[-1]].extra  # u wraps, v clips, max |a_in| per layer
    print(f"  {name}: fixed-point emulation on {len(xs)} images: "
          f"{out['emulation_seconds']:.0f} s", flush=True)
    lava = {}
    for t in lava_ts:
        res = run_lava(q, xs, t, float_model=snn, progress=True)
        same = bool(np.array_equal(res.outputs, emu[t].outputs)) if t in emu else None
        lava[t] = res
        out.setdefault("lava", {})[str(t)] = {
            "accuracy": res.accuracy(ys), "seconds": res.seconds,
            "agreement_with_snntorch": float(np.mean(res.predictions == sub[t].predictions))
            if t in sub else None,
            "bit_exact_with_emulation": same,
            "synops_per_inference": res.synops_per_inference,
            "spikes_per_inference": res.spikes_per_inference,
        }
        print(f"  {name}: Lava fixed_pt T={t} on {len(xs)} images: {res.seconds:.0f} s, "
              f"bit-exact with the emulation: {same}", flush=True)
    rows = []
    for t in ts:
        rows.append({
            "T": t,
            "snntorch": full[t].accuracy(yt),
            "loss_points": 100 * (out["ann_accuracy"] - full[t].accuracy(yt)),
            "snntorch_subset": sub[t].accuracy(ys),
            "snntorch_subset_v0": sub0[t].accuracy(ys),
            "fixed_emulation_subset": emu[t].accuracy(ys),
            "lava_subset": lava[t].accuracy(ys) if t in lava else None,
            "synops_per_inference": full[t].synops_per_inference,
            "spikes_per_inference": full[t].spikes_per_inference,
            "input_macs_per_inference": full[t].input_macs,
            "layers": [s.as_dict() for s in full[t].layer_stats],
        })
    out["rows"] = rows
    # Brian2 vs snntorch: same inputs, per-neuron spike counts
    nb, tb = args.brian2_images, args.brian2_T
    t0 = time.perf_counter()
    b = run_brian2(snn, xt[:nb], tb, return_counts=True, batch_size=4 if name == "cnn" else 16)
    bsec = time.perf_counter() - t0
    s64 = run_snntorch(snn, xt[:nb], tb, dtype=torch.float64, return_counts=True)
    s32 = run_snntorch(snn, xt[:nb], tb, return_counts=True)
    tot = sum(int(c.size) for c in b.spike_counts)
    out["brian2"] = {
        "T": tb, "images": nb, "seconds": bsec, "neurons_compared": tot,
        "spikes": int(sum(c.sum() for c in b.spike_counts)),
        "equal_float64": int(sum((a == c).sum() for a, c in zip(b.spike_counts,
                                                                  s64.spike_counts))),
        "equal_float32": int(sum((a == c).sum() for a, c in zip(b.spike_counts,
                                                                  s32.spike_counts))),
        "abs_diff_float32": int(sum(np.abs(a.astype(int) - c).sum()
                                    for a, c in zip(b.spike_counts, s32.spike_counts))),
        "predictions_equal_float32": bool(np.array_equal(b.predictions, s32.predictions)),
    }
    return out


def _print(res):
    name = res["model"]
    print(f"\n{name.upper()}: {' '.join(a for a in res['arch'])}")
    n, m = res["n_test"], res["n_subset"]
    print(f"ANN accuracy {100 * res['ann_accuracy']:.2f} % ({n} test images), "
          f"{100 * res['ann_accuracy_subset']:.2f} % (first {m})")
    head = (f"{'T':>4} {'snntorch':>9} {'loss':>6} | {'snn sub':>7} {'v0=0':>6} {'fixed':>8} "
            f"{'Lava':>8} | {'synops':>9} {'spikes':>7}")
    print(head)
    print("-" * len(head))
    for r in res["rows"]:
        lava = "-" if r["lava_subset"] is None else f"{100 * r['lava_subset']:.1f}"
        print(f"{r['T']:>4} {100 * r['snntorch']:>8.2f}% {r['loss_points']:>+6.2f} | "
              f"{100 * r['snntorch_subset']:>6.1f}% {100 * r['snntorch_subset_v0']:>5.1f}% "
              f"{100 * r['fixed_emulation_subset']:>7.1f}% "
              f"{lava:>7}% | {r['synops_per_inference']:>9.0f} "
              f"{r['spikes_per_inference']:>7.0f}")
    print(f"loss: ANN minus SNN accuracy in points ({n} test images); sub, fixed, Lava: first {m} "
          f"images; v0=0: snntorch without the initial membrane v_init={res['v_init']};\n"
          "fixed: bit-exact emulation of Lava fixed_pt; synops: spike-driven synaptic "
          "events "
          f"per inference (+{res['rows'][0]['input_macs_per_inference']:.0f} MACs for the "
          "input current, once)")
    b = res["brian2"]
    print(f"Brian2 vs snntorch, T={b['T']}, {b['images']} images, {b['spikes']} spikes: "
          f"per-neuron counts equal for {b['equal_float64']}/{b['neurons_compared']} "
          f"(snntorch float64), {b['equal_float32']}/{b['neurons_compared']} (float32, "
          f"{b['abs_diff_float32']} spikes differ); predictions equal (float32): "
          f"{b['predictions_equal_float32']}; Brian2 {b['seconds']:.0f} s")
    for t, lv in res.get("lava", {}).items():
        print(f"Lava fixed_pt T={t}: {100 * lv['accuracy']:.1f} % on {m} images, agreement with "
              f"snntorch {100 * lv['agreement_with_snntorch']:.1f} %, bit-exact with the "
              f"emulation: {lv['bit_exact_with_emulation']}, {lv['seconds']:.0f} s")


def _plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4), squeeze=False)
    for ax, res in zip(axes[0], results):
        ts = [r["T"] for r in res["rows"]]
        n, m = res["n_test"], res["n_subset"]
        ax.axhline(100 * res["ann_accuracy"], color="k", ls="--", lw=1, label=f"ANN ({n})")
        ax.plot(ts, [100 * r["snntorch"] for r in res["rows"]], "o-", label=f"snntorch ({n})")
        ax.plot(ts, [100 * r["snntorch_subset"] for r in res["rows"]], ".:",
                label=f"snntorch (first {m})")
        ax.plot(ts, [100 * r["snntorch_subset_v0"] for r in res["rows"]], "x:", color="gray",
                label=f"snntorch, v(0) = 0 (first {m})")
        ax.plot(ts, [100 * r["fixed_emulation_subset"] for r in res["rows"]], "s--",
                label=f"Loihi 2 fixed-point emulation ({m})")
        lv = [(r["T"], 100 * r["lava_subset"]) for r in res["rows"] if r["lava_subset"]]
        if lv:
            ax.plot(*zip(*lv), "r*", ms=12, label=f"Lava fixed_pt ({m})")
        ax.set_xscale("log", base=2)
        ax.set_xticks(ts, [str(t) for t in ts])
        ax.set_xlabel("time steps T")
        ax.set_ylabel("test accuracy (%)")
        lo = min(min(100 * r["snntorch"], 100 * r["fixed_emulation_subset"],
                     100 * r["snntorch_subset"]) for r in res["rows"])
        ax.set_ylim(max(lo - 1, 100 * res["ann_accuracy"] - 6), 100 * res["ann_accuracy"] + 0.7)
        ax.set_title(f"{res['model'].upper()}: IF, reset by subtraction, "
                     f"v(0) = {res['v_init']:g} theta")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    args = _args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from neurolocal.app.data import load_dataset

    t_start = time.perf_counter()
    tr = load_dataset("mnist", "train")
    te = load_dataset("mnist", "test", limit=args.n_test)
    data = {"train": (np.array(tr.x), np.array(tr.y)), "test": (np.array(te.x), np.array(te.y))}
    ts = sorted(int(t) for t in args.timesteps.split(","))
    lava_ts = [int(t) for t in args.lava_T.split(",") if t]
    results = []
    for name in args.models.split(","):
        print(f"== {name}", flush=True)
        results.append(_bench_model(name, args, data, ts, lava_ts))
    for res in results:
        _print(res)
    total = time.perf_counter() - t_start
    cmd = " ".join([".venv/bin/python", "benchmarks/conversion.py",
                    *[shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])]])
    print(f"\ntotal {total:.0f} s; command: {cmd}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"command": cmd, "seconds": total,
                                           "results": results}, indent=1))
    _plot(results, Path(args.plot))
    print(f"wrote {args.json} and {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

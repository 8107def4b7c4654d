"""Evaluation speed of converted networks: batched Lava / Brian2 against image by image.

A converted 784-500-10 MNIST network (IF, reset by subtraction, v(0) = theta/2, T = 32,
constant-current input) is evaluated on the same test images by

* snntorch (batched; the reference),
* Lava fixed_pt and floating_pt as copies side by side (the tool's batched layout), and Lava
  fixed_pt image by image: the first version's code (``benchmarks/previous/
  first_version.py``, commit 13dc4f6, verbatim) and the tool's ``layout="stream"``,
* Brian2 as copies side by side (cython and numpy), and as the first version ran it (a new
  network per 16 images, numpy: its code, verbatim),
* hand-written expert baselines (``benchmarks/handwritten/copies_eval.py``): a stock-process
  Lava graph of copies (floating_pt; reset to zero, v(0) = 0, the stock neuron's semantics,
  so the tool is timed on that model beside it) and a plain Brian2 script of copies.

Every figure includes building the network (Lava: graph, compile, start, stop; Brian2:
objects and code) and is the best of ``--repeats`` interleaved runs; image-by-image paths
run on ``--n-slow`` images (they are 20-100x slower). Per-image results are checked
identical: spike counts of every neuron (batched vs image by image, batched vs chunk 1),
predictions against the baselines. Then the whole 10k test set on Lava fixed_pt, and the
conv net of ``benchmarks/conversion.py`` on Lava fixed_pt, batched vs the first version.

Run: ``.venv/bin/python benchmarks/evaluation.py`` (about 10 minutes on 2 CPU cores, the
first Brian2 cython compile included) or ``--quick``. Writes
``benchmarks/results/evaluation.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))


def _args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    p.add_argument("--n", type=int, default=1000, help="images for the batched paths")
    p.add_argument("--n-slow", type=int, default=200, help="images for image-by-image paths")
    p.add_argument("--timesteps", "-T", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--skip-full", action="store_true", help="no 10k run on Lava fixed_pt")
    p.add_argument("--skip-cnn", action="store_true")
    p.add_argument("--cnn-n", type=int, default=1000)
    p.add_argument("--cnn-n-slow", type=int, default=100)
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    if a.quick:
        a.n, a.n_slow, a.repeats, a.skip_full = 100, 20, 1, True
        a.cnn_n, a.cnn_n_slow = 40, 10
    a.json = a.json or str(Path("/tmp/evaluation-quick.json") if a.quick
                           else ROOT / "benchmarks" / "results" / "evaluation.json")
    return a


def _mlp(data, epochs=3):
    """A 784-500-10 ReLU network trained with torch (cached), converted with the defaults."""
    import torch

    from neurolocal.app.data import default_cache_dir
    from neurolocal.converters.normalise import normalise, set_neurons
    from neurolocal.converters.torch_import import build_sequential, from_sequential

    arch = ["Linear(784, 500)", "ReLU", "Linear(500, 10)"]
    key = hashlib.sha1(json.dumps([arch, epochs]).encode()).hexdigest()[:10]
    path = default_cache_dir() / "benchmarks" / f"evaluation-mlp-{key}.pt"
    net = build_sequential(arch)
    if path.exists():
        net.load_state_dict(torch.load(path, weights_only=True))
    else:
        x, y = (torch.from_numpy(a) for a in data["train"])
        torch.manual_seed(0)
        opt = torch.optim.Adam(net.parameters(), 1e-3)
        for _ in range(epochs):
            perm = torch.randperm(len(x))
            for i in range(0, len(x), 128):
                idx = perm[i:i + 128]
                opt.zero_grad()
                torch.nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
                opt.step()
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(net.state_dict(), path)
    ann = from_sequential(net.eval())
    snn = normalise(ann, data["train"][0][:5000])
    return ann, set_neurons(snn, "IF", v_init=0.5), set_neurons(snn, "IF", reset="zero")


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _methods(model, zero, x, args):
    """name -> (images, callable returning predictions (and counts where compared))."""
    from handwritten.copies_eval import handwritten_brian2, handwritten_lava, mlp_arrays
    from previous.first_version import run_brian2_v1, run_lava_v1

    from neurolocal.hardware.brian2.inference import run_brian2
    from neurolocal.hardware.lava.inference import run_lava
    from neurolocal.hardware.snntorch.inference import run_snntorch

    t, n, ns = args.timesteps, args.n, args.n_slow
    w1, b1, w2, b2, theta, v0 = mlp_arrays(model)
    zw1, zb1, zw2, zb2, ztheta, _ = mlp_arrays(zero)
    return {
        "snntorch (batched)": (n, lambda: run_snntorch(model, x[:n], t)),
        "lava fixed_pt, batched": (n, lambda: run_lava(model, x[:n], t)),
        "lava fixed_pt, image by image (first version)": (
            ns, lambda: run_lava_v1(model, x[:ns], t)),
        "lava fixed_pt, image by image (layout='stream')": (
            ns, lambda: run_lava(model, x[:ns], t, layout="stream")),
        "lava floating_pt, batched": (n, lambda: run_lava(model, x[:n], t, tag="floating_pt")),
        "lava floating_pt, batched (reset to zero, v0 = 0)": (
            n, lambda: run_lava(zero, x[:n], t, tag="floating_pt")),
        "lava floating_pt, hand-written copies (reset to zero, v0 = 0)": (
            n, lambda: handwritten_lava(zw1, zb1, zw2, zb2, x[:n], t, ztheta)),
        "brian2 cython, batched": (  # one worker process per core (the default)
            n, lambda: run_brian2(model, x[:n], t, codegen_target="cython")),
        "brian2 cython, batched, 1 process": (
            n, lambda: run_brian2(model, x[:n], t, codegen_target="cython", workers=1)),
        "brian2 numpy, batched": (n, lambda: run_brian2(model, x[:n], t)),
        "brian2 numpy, 16 per network (first version)": (
            ns, lambda: run_brian2_v1(model, x[:ns], t)),
        "brian2 cython, hand-written copies": (
            n, lambda: handwritten_brian2(w1, b1, w2, b2, x[:n], t, theta, v0)),
    }


def _predictions(out):
    if isinstance(out, tuple):
        return np.asarray(out[0]).argmax(1)
    if isinstance(out, np.ndarray):
        return out.argmax(1)
    return out.predictions


def _speed(model, zero, x, y, args):
    methods = _methods(model, zero, x, args)
    best: dict[str, float] = {}
    preds: dict[str, np.ndarray] = {}
    for name, (_, fn) in methods.items():  # warm-up: imports, Brian2's cython compile
        if "cython" in name or name.startswith("lava floating_pt, hand"):
            fn()
    for rep in range(args.repeats):
        for name, (count, fn) in methods.items():
            sec, out = _timed(fn)
            best[name] = min(best.get(name, np.inf), sec)
            preds[name] = _predictions(out)
            print(f"  [{rep + 1}/{args.repeats}] {name}: {count} images in {sec:.2f} s "
                  f"({count / sec:.0f} images/s)", flush=True)
    rows = []
    for name, (count, _) in methods.items():
        rows.append({"path": name, "images": count, "seconds": best[name],
                     "images_per_s": count / best[name],
                     "accuracy": float(np.mean(preds[name] == y[:count]))})
    return rows, preds


def _identity(model, x, args):
    """Per-image results of the batched paths against image-by-image runs."""
    import torch
    from previous.first_version import run_brian2_v1, run_lava_v1

    from neurolocal.hardware.brian2.inference import run_brian2
    from neurolocal.hardware.lava.inference import run_lava
    from neurolocal.hardware.snntorch.inference import run_snntorch

    t, ns = args.timesteps, args.n_slow
    out = {}
    batched = run_lava(model, x[:ns], t, record_neurons=True)
    for name, other in (("first version", run_lava_v1(model, x[:ns], t, record_neurons=True)),
                        ("layout='stream'", run_lava(model, x[:ns], t, layout="stream",
                                                     record_neurons=True))):
        out[f"lava fixed_pt: batched = {name}, every neuron's count"] = bool(
            all(np.array_equal(a, b) for a, b in zip(batched.spike_counts, other.spike_counts))
            and np.array_equal(batched.outputs, other.outputs))
    k = min(ns, 20)
    fb = run_lava(model, x[:k], t, tag="floating_pt", record_neurons=True)
    f1 = run_lava(model, x[:k], t, tag="floating_pt", chunk=1, record_neurons=True)
    out[f"lava floating_pt: batched = one image per graph ({k} images)"] = bool(
        all(np.array_equal(a, b) for a, b in zip(fb.spike_counts, f1.spike_counts))
        and np.array_equal(fb.outputs, f1.outputs))
    bb = run_brian2(model, x[:ns], t, return_counts=True)
    b16 = run_brian2_v1(model, x[:ns], t, return_counts=True)
    ref = run_snntorch(model, x[:ns], t, dtype=torch.float64, return_counts=True)
    out["brian2: batched = first version, every neuron's count"] = bool(
        all(np.array_equal(a, b) for a, b in zip(bb.spike_counts, b16.spike_counts)))
    out["brian2 = snntorch float64, every neuron's count"] = bool(
        all(np.array_equal(a, b) for a, b in zip(bb.spike_counts, ref.spike_counts)))
    lf = run_lava(model, x[:ns], t, tag="floating_pt", record_neurons=True)
    same = sum(int((a == b).sum()) for a, b in zip(lf.spike_counts, ref.spike_counts))
    out["lava floating_pt = snntorch float64: neurons with equal counts"] = (
        f"{same}/{sum(int(a.size) for a in ref.spike_counts)}")
    return out


def _full(model, x, y, args):
    from neurolocal.hardware.lava.inference import run_lava

    sec, res = _timed(lambda: run_lava(model, x, args.timesteps))
    print(f"  lava fixed_pt, all {len(x)} test images: {sec:.1f} s", flush=True)
    return {"images": len(x), "seconds": sec, "accuracy": res.accuracy(y),
            "chunk": res.extra["chunk"]}


def _cnn(data, args):
    """The conv net of benchmarks/conversion.py on Lava fixed_pt: batched vs first version."""
    from conversion import _model
    from previous.first_version import run_lava_v1

    from neurolocal.converters.normalise import normalise, set_neurons
    from neurolocal.hardware.lava.inference import run_lava

    conv_args = argparse.Namespace(epochs_mlp=6, epochs_cnn=4, n_train=60000, cache=None,
                                   retrain=False)
    ann, _ = _model("cnn", conv_args, data)
    model = set_neurons(normalise(ann, data["train"][0][:5000]), "IF", v_init=0.5)
    x, y = data["test"]
    t = args.timesteps
    paths = {"batched": (args.cnn_n, lambda n: run_lava(model, x[:n], t)),
             "image by image (first version)": (args.cnn_n_slow,
                                                lambda n: run_lava_v1(model, x[:n], t))}
    best, out = {}, {}
    for _ in range(max(1, args.repeats - 1)):
        for name, (n, fn) in paths.items():
            sec, res = _timed(lambda fn=fn, n=n: fn(n))
            best[name] = min(best.get(name, np.inf), sec)
            print(f"  cnn lava fixed_pt {name}: {n} images in {sec:.1f} s "
                  f"({n / sec:.1f} images/s)", flush=True)
            if name == "batched":
                out["chunk"], out["accuracy_batched"] = res.extra["chunk"], res.accuracy(y[:n])
    out["rows"] = [{"path": f"cnn lava fixed_pt, {name}", "images": n, "seconds": best[name],
                    "images_per_s": n / best[name]} for name, (n, _) in paths.items()]
    k = min(args.cnn_n_slow, 20)
    a = run_lava(model, x[:k], t, record_neurons=True)
    b = run_lava_v1(model, x[:k], t, record_neurons=True)
    out[f"batched = first version, every neuron's count ({k} images)"] = bool(
        all(np.array_equal(p, q) for p, q in zip(a.spike_counts, b.spike_counts)))
    return out


def _print(res):
    print(f"\n784-500-10, T = {res['timesteps']}, build included, best of {res['repeats']}")
    print(f"{'path':<62} {'images':>6} {'seconds':>8} {'images/s':>9} {'accuracy':>8}")
    for r in res["rows"]:
        print(f"{r['path']:<62} {r['images']:>6} {r['seconds']:>8.2f} "
              f"{r['images_per_s']:>9.0f} {100 * r['accuracy']:>7.1f}%")
    for k, v in res["identity"].items():
        print(f"  {k}: {v}")
    for k, v in res["agreement"].items():
        print(f"  {k}: {v}")
    if res.get("full"):
        f = res["full"]
        print(f"lava fixed_pt on all {f['images']} test images: {f['seconds']:.1f} s "
              f"({f['images'] / f['seconds']:.0f} images/s), accuracy "
              f"{100 * f['accuracy']:.2f} %, {f['chunk']} copies per graph")
    if res.get("cnn"):
        c = res["cnn"]
        for r in c["rows"]:
            print(f"{r['path']:<62} {r['images']:>6} {r['seconds']:>8.1f} "
                  f"{r['images_per_s']:>9.1f}")
        print(f"  cnn: {c['chunk']} copies per graph; " + "; ".join(
            f"{k}: {v}" for k, v in c.items() if k not in ("rows", "chunk")))


def main(argv=None):
    args = _args(argv)
    import torch

    torch.set_num_threads(1)
    from neurolocal.app.data import load_dataset

    t0, load0 = time.perf_counter(), os.getloadavg()[0]
    tr, te = load_dataset("mnist", "train"), load_dataset("mnist", "test")
    data = {"train": (np.array(tr.x), np.array(tr.y)), "test": (np.array(te.x), np.array(te.y))}
    ann, model, zero = _mlp(data)
    x, y = data["test"]
    print(model.summary(), flush=True)
    rows, preds = _speed(model, zero, x, y, args)
    res = {"timesteps": args.timesteps, "repeats": args.repeats, "rows": rows,
           "identity": _identity(model, x, args)}
    ref = preds["lava floating_pt, batched (reset to zero, v0 = 0)"]
    hand = preds["lava floating_pt, hand-written copies (reset to zero, v0 = 0)"]
    res["agreement"] = {
        "hand-written Lava = tool (reset to zero), predictions": f"{int((ref == hand).sum())}"
                                                                f"/{len(ref)}",
        "hand-written Brian2 = tool, predictions": f"{int((preds['brian2 cython, batched'] == preds['brian2 cython, hand-written copies']).sum())}/{args.n}",  # noqa: E501
    }
    if not args.skip_full:
        res["full"] = _full(model, x, y, args)
    if not args.skip_cnn:
        res["cnn"] = _cnn(data, args)
    _print(res)
    cmd = " ".join([".venv/bin/python", "benchmarks/evaluation.py",
                    *[shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])]])
    res["command"], res["seconds"] = cmd, time.perf_counter() - t0
    res["load_average"] = [load0, os.getloadavg()[0]]  # other jobs on the machine
    print(f"\ntotal {res['seconds']:.0f} s; 1-minute load average {load0:.1f} at the start, "
          f"{res['load_average'][1]:.1f} at the end ({os.cpu_count()} cores); command: {cmd}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(res, indent=1, default=float))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""NIR between Norse and neurolocal, both directions, in a separate venv (CI does not run it).

Why a separate venv: Norse 1.1.0 needs numpy 2, which lava-nc's pins exclude, so it cannot
live in the project's venv. This script builds one (``pip install "torch==2.13.0" norse``
into ``--venv``, once) and runs its Norse half there (``--worker``, which imports only torch,
norse, nir and numpy); files and spike counts go through a temporary folder.

1. **Norse -> neurolocal.** A Norse MLP (``Linear 784-100``, ``LIFBoxCell``, ``Linear
   100-10``, ``LIBoxCell`` read-out; Norse's default ``tau_mem_inv = 100``, so tau = 10 ms,
   at Norse's default dt = 1 ms) is trained briefly with Norse's surrogate gradient on
   constant-current MNIST input, run on test images (hidden spike counts, final read-out
   voltages) and written with ``norse.torch.to_nir``. Norse 1.1's ``to_nir(..., dt=)``
   writes ``tau = dt / tau_mem_inv`` (norse#411): only ``dt=1`` writes the true tau in
   seconds, so the file is written that way, and once with the default call to show what a
   reader sees then. neurolocal reads the file at ``--dt 1e-3`` and at its default (snntorch's
   1e-4) and compares spike counts and accuracy with Norse's own run.
2. **neurolocal -> Norse.** A converted 784-100-10 network (IF, reset to zero, v(0) = 0:
   what Norse's importer runs) is written with ``write_nir(..., convention="norse",
   dt=1e-3)`` (r = 1, the input scale in the weights) and in the default snntorch
   convention; Norse's ``from_nir(..., dt=1e-3)`` runs both, and the summed read-outs are
   compared with neurolocal's.

Run: ``.venv/bin/python benchmarks/norse_interop.py`` (a few minutes the first time: the venv
install). Writes ``benchmarks/results/norse_interop.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
T = 32


# ------------------------------------------------------------------------------ Norse side


def _norse_model(norse, torch, hidden):
    """Norse's defaults (tau_mem_inv = 100/s, v_th = 1), as per-neuron tensors: Norse 1.1
    exports scalar parameters as 0-d arrays, which nir.write cannot store."""
    lif = norse.LIFBoxParameters(tau_mem_inv=torch.full((hidden,), 100.0),
                                 v_th=torch.ones(hidden), v_leak=torch.zeros(hidden),
                                 v_reset=torch.zeros(hidden))
    li = norse.LIBoxParameters(tau_mem_inv=torch.full((10,), 100.0), v_leak=torch.zeros(10))
    return norse.SequentialState(torch.nn.Linear(784, hidden), norse.LIFBoxCell(lif),
                                 torch.nn.Linear(hidden, 10), norse.LIBoxCell(li))


def _norse_run(model, torch, x, steps):
    """Hidden spike counts and the final read-out voltage of a Norse model (dt = 1 ms)."""
    hidden = {}

    def hook(_mod, _inp, out):
        z = out[0]
        hidden["count"] = hidden.get("count", 0) + z.detach()

    handle = model[1].register_forward_hook(hook)
    state = None
    with torch.no_grad():
        for _ in range(steps):
            out, state = model(x, state)
    handle.remove()
    return hidden["count"].numpy(), out.numpy()


def _worker_export(work: Path) -> None:
    import nir
    import norse.torch as norse
    import torch

    torch.manual_seed(0)
    d = np.load(work / "data.npz")
    model = _norse_model(norse, torch, 100)
    opt = torch.optim.Adam(model.parameters(), 2e-3)
    xs, ys = torch.from_numpy(d["x_train"]).float() * 4, torch.from_numpy(d["y_train"]).long()
    for i in range(0, len(xs), 100):  # one epoch, surrogate gradients through time
        state, x = None, xs[i:i + 100]
        for _ in range(T):
            out, state = model(x, state)
        loss = torch.nn.functional.cross_entropy(out, ys[i:i + 100])
        opt.zero_grad()
        loss.backward()
        opt.step()
    xt = torch.from_numpy(d["x_test"]).float() * 4
    counts, out = _norse_run(model, torch, xt, T)
    np.savez(work / "norse_run.npz", counts=counts, out=out)
    sample = torch.rand(1, 784)
    nir.write(work / "norse.nir", norse.to_nir(model, sample, dt=1.0))  # true tau (norse#411)
    nir.write(work / "norse_default.nir", norse.to_nir(model, sample))


def _worker_import(work: Path) -> None:
    import nir
    import norse.torch as norse
    import torch

    d = np.load(work / "data.npz")
    x = torch.from_numpy(d["x_test"]).float()
    res = {}
    for name in ("ours_norse", "ours_snntorch"):
        model = norse.from_nir(nir.read(work / f"{name}.nir"), dt=1e-3)
        state, total = None, 0
        with torch.no_grad():
            for _ in range(T):
                out, state = model(x, state)
                total = total + out
        res[name] = total.numpy()
    np.savez(work / "norse_import.npz", **res)


# ------------------------------------------------------------------------------ our side


def _venv(path: Path) -> Path:
    py = path / "bin" / "python"
    if py.exists() and subprocess.run([str(py), "-c", "import norse, nir"],
                                      capture_output=True).returncode == 0:
        return py
    print(f"building {path} (pip install torch==2.13.0 norse) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", "torch==2.13.0", "norse"],
                   check=True)
    return py


def _norse_version(py: Path) -> str:
    out = subprocess.run([str(py), "-c", "import norse, numpy; print(norse.__version__, "
                          "numpy.__version__)"], capture_output=True, text=True)
    return out.stdout.strip()


def _worker(py: Path, task: str, work: Path) -> None:
    subprocess.run([str(py), __file__, "--worker", task, str(work)], check=True)


def _norse_to_us(work: Path, y: np.ndarray) -> dict:
    import warnings

    import torch

    from neurolocal.converters.model import ConversionError
    from neurolocal.converters.nir_io import read_nir
    from neurolocal.hardware.snntorch.inference import run_snntorch

    ref = np.load(work / "norse_run.npz")
    x = np.load(work / "data.npz")["x_test"] * 4
    out = {"norse_accuracy": float(np.mean(ref["out"].argmax(1) == y))}
    for label, dt in (("dt 1e-3 (--dt)", 1e-3), ("default dt (snntorch's 1e-4)", None)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = read_nir(work / "norse.nir", dt=dt)
        run = run_snntorch(model, x, T, dtype=torch.float64, return_counts=True)
        counts = run.spike_counts[0]
        out[label] = {
            "accuracy": run.accuracy(y),
            "hidden_counts_equal": f"{int((counts == ref['counts']).sum())}/{counts.size}",
            "hidden_spikes": [int(counts.sum()), int(ref["counts"].sum())],
            "readout_max_abs_diff": float(np.abs(run.outputs - ref["out"]).max()),
            "warnings": [str(w.message) for w in caught],
        }
    try:
        read_nir(work / "norse_default.nir", dt=1e-3)
        out["norse default to_nir"] = "read (unexpected)"
    except ConversionError as exc:
        out["norse default to_nir"] = f"refused: {exc}"
    return out


def _us_to_norse(py: Path, work: Path, data: dict) -> dict:
    import torch

    from neurolocal.converters.nir_io import write_nir
    from neurolocal.converters.normalise import normalise, set_neurons
    from neurolocal.converters.torch_import import from_sequential
    from neurolocal.hardware.snntorch.inference import run_snntorch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(784, 100), torch.nn.ReLU(),
                              torch.nn.Linear(100, 10))
    xs, ys = torch.from_numpy(data["x_train"]), torch.from_numpy(data["y_train"]).long()
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    for i in range(0, len(xs), 64):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(xs[i:i + 64]), ys[i:i + 64]).backward()
        opt.step()
    model = set_neurons(normalise(from_sequential(net.eval()), data["x_train"][:2000]), "IF",
                        reset="zero")
    write_nir(model, work / "ours_norse.nir", convention="norse", dt=1e-3)
    write_nir(model, work / "ours_snntorch.nir")
    _worker(py, "import", work)
    theirs = np.load(work / "norse_import.npz")
    ours = run_snntorch(model, data["x_test"], T, dtype=torch.float64)
    y = data["y_test"]
    out = {"neurolocal_accuracy": ours.accuracy(y)}
    for name in ("ours_norse", "ours_snntorch"):
        t = theirs[name]
        out[name] = {"norse_accuracy": float(np.mean(t.argmax(1) == y)),
                     "predictions_equal": f"{int((t.argmax(1) == ours.predictions).sum())}"
                                          f"/{len(y)}",
                     "readout_max_abs_diff": float(np.abs(t - ours.outputs).max())}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--venv", default=str(Path(tempfile.gettempdir()) / "neurolocal-norse-venv"))
    p.add_argument("--n-train", type=int, default=10000)
    p.add_argument("--n-test", type=int, default=1000)
    p.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "norse_interop.json"))
    p.add_argument("--worker", nargs=2, metavar=("TASK", "DIR"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        {"export": _worker_export, "import": _worker_import}[args.worker[0]](Path(args.worker[1]))
        return 0
    from neurolocal.app.data import load_dataset

    t0 = time.perf_counter()
    py = _venv(Path(args.venv))
    tr = load_dataset("mnist", "train", limit=args.n_train, verbose=False)
    te = load_dataset("mnist", "test", limit=args.n_test, verbose=False)
    data = {"x_train": np.array(tr.x), "y_train": np.array(tr.y),
            "x_test": np.array(te.x), "y_test": np.array(te.y)}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        np.savez(work / "data.npz", **data)
        _worker(py, "export", work)
        res = {"norse": _norse_version(py), "T": T, "n_test": args.n_test,
               "norse_to_neurolocal": _norse_to_us(work, data["y_test"]),
               "neurolocal_to_norse": _us_to_norse(py, work, data)}
    res["seconds"] = time.perf_counter() - t0
    res["command"] = ".venv/bin/python benchmarks/norse_interop.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    print(json.dumps(res, indent=1))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

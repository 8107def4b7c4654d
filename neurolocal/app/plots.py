"""Plots of what the tool computed: training curves, accuracy against T, rasters and rates.

Why in the tool: the numbers a command prints are easier to judge as curves -- accuracy and
the alignment angles over training, what a conversion loses at each T, which layers fire how
much, fixed point against float. Every plot is drawn from the JSON a command prints with
``--json`` (``neurolocal plot RESULT.json`` redraws it), with matplotlib's Agg backend (no
display needed), and written atomically with the user's umask.

* :func:`plot_training` -- ``train --json``: test accuracy per epoch; the feedback angles
  (forward vs feedback weights, every mode) and, in rate mode, the update angles (the rule's
  update vs backprop's gradient), per layer.
* :func:`plot_conversion` -- ``convert --json``: accuracy against T on snntorch (float) and,
  for a Lava target, the bit-exact fixed-point emulation, the run's own point, the ANN; and
  the spike rate of every layer at the run's T.
* :func:`plot_run` -- ``run --json``: the spike raster of the first image in every spiking
  layer, per-layer rates, and for a run with a float reference (``--plot`` on a Lava target)
  the fixed-point read-out against the float one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from neurolocal.errors import NeurolocalError

__all__ = ["plot_conversion", "plot_file", "plot_result", "plot_run", "plot_training",
           "raster_json"]


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | os.PathLike[str]) -> Path:
    from neurolocal.fileio import atomic_write

    plt = _plt()
    fig.tight_layout()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    finally:
        plt.close(fig)


def raster_json(raster: dict[str, np.ndarray] | None, image: int = 0) -> dict[str, Any]:
    """Rasters (images, T, n) per layer as JSON: the spikes of one image as (t, i) lists."""
    out: dict[str, Any] = {}
    for name, r in (raster or {}).items():
        r = np.asarray(r)
        if r.ndim != 3 or r.shape[0] <= image:
            continue
        t, i = np.nonzero(r[image])
        out[name] = {"shape": [int(r.shape[1]), int(r.shape[2])], "t": t.tolist(),
                     "i": i.tolist()}
    return out


def plot_training(result: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Test accuracy and alignment angles per epoch, from a ``train --json`` result."""
    hist = result.get("history") or []
    if not hist:
        raise NeurolocalError("the training result has no 'history' to plot (run train with "
                              "--json, or train for at least one epoch)")
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    epochs = [h["epoch"] for h in hist]
    ax1.plot(epochs, [h["test_accuracy"] for h in hist], "o-")
    ax1.set(xlabel="epoch", ylabel="test accuracy (%)",
            title=f"{result.get('rule', '?')} on {result.get('target', '?')}")
    ax1.grid(alpha=0.3)
    from matplotlib.ticker import MaxNLocator

    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for key, style in (("feedback_angles", "-"), ("update_angles", "--")):
        names = sorted({k for h in hist for k in (h.get(key) or {})})
        for name in names:
            ys = [(h.get(key) or {}).get(name, np.nan) for h in hist]
            ax2.plot(epochs, ys, style, marker=".", label=f"{key.split('_')[0]} {name}")
    top = max([95.0] + [y + 5 for line in ax2.lines for y in line.get_ydata()
                        if np.isfinite(y)])
    ax2.set(xlabel="epoch", ylabel="angle (degrees)", ylim=(0, min(180.0, top)))
    ax2.set_title("alignment: feedback (solid), update vs BP (dashed)", fontsize=10)
    ax2.axhline(90, color="gray", lw=0.8, ls=":")
    ax2.grid(alpha=0.3)
    if ax2.lines:
        ax2.legend(fontsize=7, ncol=2)
    return _save(fig, path)


def _rates(ax: Any, layers: list[dict], ref: list[dict] | None, label: str) -> None:
    spiking = [s for s in layers if s.get("spikes")]
    names = [s["name"] for s in spiking]
    x = np.arange(len(names))
    width = 0.4 if ref else 0.7
    ax.bar(x - (width / 2 if ref else 0), [s["rate"] for s in spiking], width, label=label)
    if ref:
        by_name = {s["name"]: s for s in ref}
        ax.bar(x + width / 2, [by_name.get(n, {}).get("rate", 0) for n in names], width,
               label="snntorch (float)")
        ax.legend(fontsize=8)
    ax.set_xticks(x, names)
    ax.set(ylabel="spikes per neuron per step", title="per-layer spike rates")
    ax.grid(alpha=0.3, axis="y")


def plot_conversion(result: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Accuracy against T (and per-layer rates), from a ``convert --json`` result."""
    sweep = result.get("sweep")
    if not sweep and result.get("snn_accuracy") is None:
        raise NeurolocalError("the conversion result has no accuracy to plot (it was not "
                              "evaluated: give --n-test > 0)")
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    n = result.get("n_eval")
    if result.get("ann_accuracy") is not None:
        ax1.axhline(100 * result["ann_accuracy"], color="k", ls="--", lw=1, label="ANN")
    if sweep:
        ax1.plot(sweep["T"], [100 * a for a in sweep["snntorch"]], "o-",
                 label="snntorch (float)")
        if sweep.get("fixed_pt"):
            ax1.plot(sweep["T"], [100 * a for a in sweep["fixed_pt"]], "s--",
                     label="Loihi 2 fixed point (emulation = Lava fixed_pt)")
        ax1.set_xscale("log", base=2)
        ax1.set_xticks(sweep["T"], [str(t) for t in sweep["T"]])
    if result.get("snn_accuracy") is not None:
        ax1.plot([result["timesteps"]], [100 * result["snn_accuracy"]], "r*", ms=13,
                 label=f"{result['target']}, T={result['timesteps']}")
    ax1.set(xlabel="time steps T", ylabel="test accuracy (%)",
            title=f"accuracy against T ({n} test images)")
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=8, loc="lower right")
    _rates(ax2, result.get("layers") or [], None, f"{result['target']}, T={result['timesteps']}")
    return _save(fig, path)


def _raster(ax: Any, name: str, r: dict[str, Any]) -> None:
    steps, n = r["shape"]
    ax.scatter(r["t"], r["i"], s=min(40.0, max(1.5, 2000.0 / max(n, 1))), marker="|", color="k")
    ax.set(xlim=(-0.5, steps - 0.5), ylim=(-0.5, n - 0.5), xlabel="time step", ylabel="neuron")
    ax.set_title(f"{name}: {len(r['t'])} spikes (first image)", fontsize=10)


def plot_run(result: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Rasters of the first image, per-layer rates, fixed point against float, from a
    ``run --json`` result."""
    rasters = result.get("raster") or {}
    ref = result.get("float_reference")
    ncols = len(rasters) + 1 + (1 if ref and ref.get("outputs") is not None else 0)
    plt = _plt()
    fig, axes = plt.subplots(1, ncols, figsize=(4.2 * ncols, 3.8), squeeze=False)
    axes = list(axes[0])
    for ax, (name, r) in zip(axes, rasters.items()):
        _raster(ax, name, r)
    _rates(axes[len(rasters)], result.get("layers") or [], ref and ref.get("layers"),
           f"{result['target']}")
    if ncols > len(rasters) + 1:
        ax = axes[-1]
        # fixed point reads out in Loihi's v units: back to the float model's units
        a = np.asarray(result["outputs"]) / float(result.get("output_scale") or 1.0)
        b = np.asarray(ref["outputs"])
        ax.scatter(b.reshape(-1), a.reshape(-1), s=2, alpha=0.4)
        lo, hi = float(min(a.min(), b.min())), float(max(a.max(), b.max()))
        ax.plot([lo, hi], [lo, hi], "k:", lw=1)
        agree = float(np.mean(a.argmax(1) == b.argmax(1)))
        ax.set(xlabel="snntorch (float) read-out", ylabel=f"{result['target']} read-out")
        ax.set_title(f"read-out of {len(a)} images: {100 * agree:.1f} % same class", fontsize=10)
        ax.grid(alpha=0.3)
    acc = result.get("snn_accuracy")
    fig.suptitle(f"{result['target']}, T={result['timesteps']}"
                 + (f": accuracy {100 * acc:.2f} %" if acc is not None else ""), fontsize=10)
    return _save(fig, path)


def plot_result(result: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Whichever plot fits the result (a train, convert or run ``--json`` object)."""
    if not isinstance(result, dict):
        raise NeurolocalError("expected a JSON object printed by train, convert or run --json")
    kind = result.get("kind") or ("train" if "history" in result else
                                  "convert" if "ann_accuracy" in result else "run")
    if kind == "train":
        return plot_training(result, path)
    if kind == "convert":
        return plot_conversion(result, path)
    if "layers" not in result or "target" not in result:
        raise NeurolocalError("the JSON is not a train, convert or run --json result (no "
                              "'history', 'ann_accuracy' or 'layers')")
    return plot_run(result, path)


def plot_file(json_path: str | os.PathLike[str], out: str | os.PathLike[str] | None = None
              ) -> Path:
    """``neurolocal plot RESULT.json [--out FILE]``: the plot, beside the JSON by default."""
    src = Path(json_path)
    if not src.is_file():
        raise NeurolocalError(f"result file {str(src)!r} does not exist")
    try:
        result = json.loads(src.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise NeurolocalError(f"{str(src)!r} is not JSON ({exc}); give the output of a "
                              "command run with --json") from None
    return plot_result(result, out if out is not None else src.with_suffix(".png"))

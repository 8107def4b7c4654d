"""The accuracy-per-epoch figure the rate benchmarks write (docs/img/*.png)."""

from __future__ import annotations

from pathlib import Path


def plot_curves(curves: dict[str, list[float]], path: Path, *,
                ylim: tuple[float, float] | None = None, markers: bool = False) -> None:
    """One line per rule: MNIST test accuracy after each epoch."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, curve in curves.items():
        ax.plot(range(1, len(curve) + 1), curve, label=name,
                **({"marker": "o", "ms": 3} if markers else {}))
    ax.set_xlabel("epoch")
    ax.set_ylabel("MNIST test accuracy (%)")
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.grid(alpha=0.3)
    ax.legend(ncol=3, fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)

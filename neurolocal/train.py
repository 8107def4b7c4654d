"""Rate-mode training with any rule: progress, test accuracy, alignment, checkpoints.

The loop is rule-agnostic: it hands batches to the compiled :class:`RateProgram` and
applies the rule's updates through a synapse-local optimiser. A NaN/inf stops the run
with :class:`DivergenceError`; the last good checkpoint stays on disk.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import DivergenceError, NeurolocalError
from .metrics import feedback_angles, update_angles
from .network import build_cnn, build_mlp
from .rule import Rule
from .rules import get_rule


@dataclass
class TrainConfig:
    rule: str | Rule = "fa"
    dataset: str = "mnist"
    hidden: list[int] = field(default_factory=lambda: [500])
    #: conv layers before the dense ones: (out_channels, kernel, stride, padding) each; the
    #: input is the 1x28x28 image
    conv: list[tuple[int, int, int, int]] = field(default_factory=list)
    epochs: int = 1
    batch_size: int = 50
    optimiser: str = "adam"
    lr: float | None = None      # None: adam 3e-3; sgd/momentum x1 (the rule's own lr)
    lr_decay: float = 0.8        # multiplicative per epoch (exponential schedule)
    activation: str = "relu"
    backend: str = "torch"
    device: str = "cpu"
    seed: int = 0
    limit: int | None = None     # training images used (None: all)
    test_limit: int | None = None
    out: str | None = None
    allow_nonlocal: bool = False
    globals: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainResult:
    rule: str
    dataset: str
    test_accuracy: float
    train_accuracy: float
    epochs: int
    seconds: float
    samples_per_second: float
    history: list[dict]
    feedback_angles: dict[str, float]
    update_angles: dict[str, float]
    data_source: str
    checkpoint: str | None

    def to_dict(self) -> dict:
        from dataclasses import asdict
        return asdict(self)


def accuracy(program, x: np.ndarray, y: np.ndarray, batch: int = 1000) -> float:
    correct = 0
    for i in range(0, len(x), batch):
        out = program._np(program.predict(x[i:i + batch]))
        correct += int((out.argmax(1) == y[i:i + batch]).sum())
    return 100.0 * correct / max(len(x), 1)


def _finite(program, comps) -> bool:
    """NaN/inf anywhere in the output or in any synaptic state."""
    arrays = [comps[-1]["r"]] + [a for layers in program.state.values()
                                 for d in layers.values() for a in d.values()]
    if program.backend == "torch":
        import torch
        return bool(torch.isfinite(torch.stack([a.sum() for a in arrays])).all())
    return bool(np.isfinite([float(np.sum(a)) for a in arrays]).all())


def train(cfg: TrainConfig, *, progress: bool = True, log=sys.stderr) -> TrainResult:
    """Train an MLP (or a conv net, ``cfg.conv``) with ``cfg.rule``; see :class:`TrainConfig`."""
    from .data import iterate_minibatches, load_dataset
    from .hardware.rate import Optimiser, RateProgram
    from .io import save_checkpoint

    rule = cfg.rule if isinstance(cfg.rule, Rule) else get_rule(cfg.rule)
    if cfg.globals:
        rule = rule.with_globals(**cfg.globals)
    if cfg.epochs < 1:
        raise NeurolocalError(f"--epochs must be >= 1, got {cfg.epochs}")
    train_set = load_dataset(cfg.dataset, "train", limit=cfg.limit, verbose=progress)
    test_set = load_dataset(cfg.dataset, "test", limit=cfg.test_limit, verbose=progress)
    n_classes = int(train_set.y.max()) + 1
    if cfg.conv:
        side = int(round(train_set.x.shape[1] ** 0.5))
        net = build_cnn((1, side, side), list(cfg.conv), list(cfg.hidden), n_classes, rule,
                        hidden_activation=cfg.activation, seed=cfg.seed)
    else:
        sizes = [train_set.x.shape[1], *cfg.hidden, n_classes]
        net = build_mlp(sizes, rule, hidden_activation=cfg.activation, seed=cfg.seed)
    program = RateProgram(net, backend=cfg.backend, device=cfg.device,
                          allow_nonlocal=cfg.allow_nonlocal, seed=cfg.seed)
    opt = Optimiser(cfg.optimiser, lr=cfg.lr)
    eye = np.eye(n_classes, dtype=np.float32)
    history: list[dict] = []
    probe_x, probe_y = train_set.x[:1000], train_set.y[:1000]
    seconds = 0.0
    seen = 0
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        batches = iterate_minibatches(train_set.x, train_set.y, cfg.batch_size,
                                      shuffle=True, seed=cfg.seed + epoch)
        bar = _progress(len(train_set.x), f"{rule.name} epoch {epoch}/{cfg.epochs}",
                        progress, log)
        for step, (xb, yb) in enumerate(batches):
            comps = program.learn(xb, eye[yb], opt)
            seen += len(xb)
            bar.update(len(xb))
            if (step % 20 == 0 or seen == len(train_set.x) * epoch) and \
                    not _finite(program, comps):
                bar.close()
                raise DivergenceError(
                    f"training diverged (NaN/inf in the output) in epoch {epoch} of rule "
                    f"{rule.name!r}: the step size is probably too large for this rule — "
                    f"lower --lr (now {opt.lr:g}) or the rule's lr global"
                    + (f"; the last good checkpoint is {cfg.out}" if cfg.out else ""))
        bar.close()
        seconds += time.perf_counter() - t0
        opt.lr *= cfg.lr_decay
        test_acc = accuracy(program, test_set.x, test_set.y)
        entry = {"epoch": epoch, "test_accuracy": test_acc, "seconds": seconds,
                 "feedback_angles": feedback_angles(program),
                 "update_angles": update_angles(program, probe_x[:500], probe_y[:500])}
        history.append(entry)
        if progress:
            angles = " ".join(f"{k}={v:.1f}" for k, v in entry["feedback_angles"].items())
            print(f"  epoch {epoch}: test {test_acc:.2f}%  {angles}", file=log)
        if cfg.out:
            save_checkpoint(cfg.out, program.sync(), meta={
                "epoch": epoch, "test_accuracy": test_acc, "dataset": cfg.dataset})
    train_acc = accuracy(program, probe_x, probe_y)
    return TrainResult(
        rule=rule.name, dataset=cfg.dataset, test_accuracy=history[-1]["test_accuracy"],
        train_accuracy=train_acc, epochs=cfg.epochs, seconds=seconds,
        samples_per_second=seen / max(seconds, 1e-9), history=history,
        feedback_angles=history[-1]["feedback_angles"],
        update_angles=history[-1]["update_angles"],
        data_source=train_set.source, checkpoint=str(Path(cfg.out)) if cfg.out else None)


class _progress:
    """A tqdm bar on a terminal-ish stream, nothing otherwise."""

    def __init__(self, total: int, desc: str, enabled: bool, stream):
        self.bar = None
        if enabled:
            from tqdm import tqdm
            self.bar = tqdm(total=total, desc=desc, unit="img", file=stream, leave=False,
                            mininterval=0.5)

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

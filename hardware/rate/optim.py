"""Synapse-local optimisers: each is a per-synapse filter of the rule's update stream."""

from __future__ import annotations

from dataclasses import dataclass, field

from neurolocal.errors import RuleError


@dataclass
class Optimiser:
    """``sgd``: w += lr dw. ``momentum``: v = mu v + dw; w += lr v. ``adam``: Adam on -dw.

    For sgd and momentum ``lr`` is a multiplier of the rule's own update (default 1: the
    rule's ``lr`` global is the step size); for adam it is Adam's step size.
    """

    kind: str = "adam"
    lr: float | None = None
    momentum: float = 0.9
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    slots: dict = field(default_factory=dict)
    t: int = 0

    def __post_init__(self):
        if self.kind not in ("sgd", "momentum", "adam"):
            raise RuleError(f"unknown optimiser {self.kind!r}: expected sgd, momentum or adam")
        if self.lr is None:
            self.lr = 3e-3 if self.kind == "adam" else 1.0

    def step(self) -> None:
        self.t += 1

    def delta(self, key, dw, ops):
        if self.kind == "sgd":
            return self.lr * dw
        if self.kind == "momentum":
            v = self.slots.get(key)
            v = dw if v is None else self.momentum * v + dw
            self.slots[key] = v
            return self.lr * v
        b1, b2 = self.betas
        m, v = self.slots.get(key, (0.0, 0.0))
        m = b1 * m + (1 - b1) * dw
        v = b2 * v + (1 - b2) * dw * dw
        self.slots[key] = (m, v)
        mhat = m / (1 - b1 ** self.t)
        vhat = v / (1 - b2 ** self.t)
        return self.lr * mhat / (ops.sqrt(vhat) + self.eps)

"""The network IR: populations, forward projections, feedback projections and their state.

A :class:`Network` is a multi-layer perceptron shape (784-500-10 and deeper) plus the
rule that trains it. State is kept as numpy arrays, the one format every backend loads
from and writes back to and that checkpoints store. Forward weights carry the bias as
their last column (a synapse from an always-on neuron), so one update equation covers
weights and biases alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import sympy

from .errors import RuleError, ShapeError
from .rule import FORWARD, FeedbackDecl, Rule

ACTIVATIONS = ("relu", "tanh", "sigmoid", "linear", "softmax")


@dataclass(frozen=True)
class Population:
    name: str
    size: int
    activation: str


@dataclass
class Network:
    """Layer sizes, activations, the rule and every projection's synaptic state."""

    sizes: list[int]
    rule: Rule
    hidden_activation: str = "relu"
    output_activation: str = "softmax"
    #: ``state[proj][layer][var]``: forward projection W has one entry per layer 1..L
    #: (index 0 unused), a feedback projection one per hidden layer 1..L-1.
    state: dict[str, dict[int, dict[str, np.ndarray]]] = field(default_factory=dict)

    @property
    def depth(self) -> int:
        return len(self.sizes) - 1

    @property
    def populations(self) -> list[Population]:
        acts = ["linear"] + [self.hidden_activation] * (self.depth - 1) + [self.output_activation]
        names = ["input"] + [f"hidden{i}" for i in range(1, self.depth)] + ["output"]
        return [Population(n, s, a) for n, s, a in zip(names, self.sizes, acts)]

    def feedback_source_size(self, fb: FeedbackDecl, layer: int) -> int:
        scope = fb.source.scope
        return {"next": self.sizes[layer + 1], "lateral": self.sizes[layer],
                "prev": self.sizes[layer - 1]}.get(scope, self.sizes[-1])

    def weights(self, layer: int) -> np.ndarray:
        """Forward weights into ``layer`` without the bias column."""
        return self.state[FORWARD][layer]["w"][:, :-1]

    def bias(self, layer: int) -> np.ndarray:
        return self.state[FORWARD][layer]["w"][:, -1]


def _uniform(rng: np.random.Generator, shape: tuple[int, int], fan_in: int) -> np.ndarray:
    bound = 1.0 / np.sqrt(fan_in)
    return rng.uniform(-bound, bound, size=shape).astype(np.float32)


def _sparse_density(expr: sympy.Expr) -> float | None:
    for node in sympy.preorder_traversal(expr):
        if isinstance(node, sympy.Function) and node.func.__name__ == "sparse":
            return float(node.args[0])
    return None


def build_mlp(sizes: list[int], rule: Rule, *, hidden_activation: str = "relu",
              output_activation: str = "softmax", seed: int = 0) -> Network:
    """A fresh MLP for ``rule``: uniform(±1/sqrt(fan_in)) init, zero biases."""
    if len(sizes) < 2 or any(int(s) != s or s < 1 for s in sizes):
        raise ShapeError(f"layer sizes must be >= 2 positive integers, got {sizes}")
    for act in (hidden_activation, output_activation):
        if act not in ACTIVATIONS:
            raise RuleError(f"unknown activation {act!r}: expected one of {', '.join(ACTIVATIONS)}")
    rng = np.random.default_rng(seed)
    net = Network([int(s) for s in sizes], rule, hidden_activation, output_activation)
    net.state[FORWARD] = {}
    for layer in range(1, net.depth + 1):
        n_in, n_out = net.sizes[layer - 1], net.sizes[layer]
        w = np.zeros((n_out, n_in + 1), np.float32)
        w[:, :-1] = _uniform(rng, (n_out, n_in), n_in)
        net.state[FORWARD][layer] = {"w": w}
        for var in rule.state_vars(FORWARD)[1:]:
            net.state[FORWARD][layer][var] = np.zeros_like(w)
    for name, fb in rule.feedback.items():
        net.state[name] = {}
        if fb.source.scope == "prev":
            continue  # the forward synapses themselves carry it: no state of its own
        density = _sparse_density(fb.weights)
        for layer in range(1, net.depth):
            n_src = net.feedback_source_size(fb, layer)
            b = _uniform(rng, (net.sizes[layer], n_src), n_src)
            if density is not None:
                b *= (rng.random(b.shape) < density).astype(np.float32)
            net.state[name][layer] = {"w": b}
            for var in rule.state_vars(name)[1:]:
                net.state[name][layer][var] = np.zeros_like(b)
    return net

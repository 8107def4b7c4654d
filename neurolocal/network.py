"""The network IR: populations, forward projections, feedback projections and their state.

A :class:`Network` is a stack of populations (784-500-10 and deeper) plus the rule that
trains it. A forward projection is dense, or a convolution (:class:`ConvSpec`): the same
synapse (kernel entry) repeated at every position of the feature map, its population the
flattened map (channel, row, column). State is kept as numpy arrays, the one format every
backend loads from and writes back to and that checkpoints store. Forward weights carry the
bias as their last column (a synapse from an always-on neuron), so one update equation
covers weights and biases alike: dense ``(n_out, n_in + 1)``, conv
``(out_channels, in_channels * kernel * kernel + 1)``.

A hidden layer may be recurrent (:class:`RecurrentSpec`, built by :func:`build_rnn`): beside
its forward synapses ``W`` it has recurrent synapses ``R`` from the same layer one step
earlier, state ``(n, n)`` without a bias column (the forward weights carry it). Such a network
runs on sequences ``(batch, steps, features)`` and answers at the last step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import sympy

from .errors import RuleError, ShapeError
from .rule import FORWARD, RECURRENT, FeedbackDecl, Rule

ACTIVATIONS = ("relu", "tanh", "sigmoid", "linear", "softmax")
#: largest dense feedback matrix build_cnn draws (a feature map to a feature map is not one)
MAX_FEEDBACK_SYNAPSES = 20_000_000


@dataclass(frozen=True)
class Population:
    name: str
    size: int
    activation: str


@dataclass(frozen=True)
class ConvSpec:
    """A convolutional forward projection: input map (C, H, W) -> output map.

    Zero padding ``padding`` on every side, square ``kernel``, ``stride``; the output map's
    population is flattened channel-major, as ``torch.flatten`` flattens (B, C, H, W).
    """

    in_channels: int
    in_height: int
    in_width: int
    out_channels: int
    kernel: int
    stride: int = 1
    padding: int = 0

    def __post_init__(self) -> None:
        for name in ("in_channels", "in_height", "in_width", "out_channels", "kernel",
                     "stride"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ShapeError(f"conv {name} must be a positive integer, got {value!r}")
        if self.padding < 0 or int(self.padding) != self.padding:
            raise ShapeError(f"conv padding must be an integer >= 0, got {self.padding!r}")
        if self.out_height < 1 or self.out_width < 1:
            raise ShapeError(
                f"conv kernel {self.kernel} (padding {self.padding}) does not fit the "
                f"{self.in_height}x{self.in_width} input map; use a smaller kernel or padding")

    @property
    def out_height(self) -> int:
        return (self.in_height + 2 * self.padding - self.kernel) // self.stride + 1

    @property
    def out_width(self) -> int:
        return (self.in_width + 2 * self.padding - self.kernel) // self.stride + 1

    @property
    def positions(self) -> int:
        """Output positions per channel: how often each kernel synapse is repeated."""
        return self.out_height * self.out_width

    @property
    def in_size(self) -> int:
        return self.in_channels * self.in_height * self.in_width

    @property
    def out_size(self) -> int:
        return self.out_channels * self.positions

    @property
    def fan_in(self) -> int:
        return self.in_channels * self.kernel * self.kernel

    def to_dict(self) -> dict:
        from dataclasses import asdict
        return asdict(self)


@dataclass(frozen=True)
class RecurrentSpec:
    """A recurrent layer's dynamics: ``r_t = leak * r_{t-1} + (1 - leak) * f(a_t)`` with drive
    ``a_t = W x_t + R r_{t-1} + b`` (``r_0 = 0``).

    ``leak`` 0 is the plain (Elman) recurrent layer; a leaky one (0 < leak < 1) integrates its
    input over about ``1 / (1 - leak)`` steps, as a membrane does.
    """

    leak: float = 0.0

    def __post_init__(self) -> None:
        value = self.leak
        if isinstance(value, bool) or not isinstance(value, int | float) or \
                not 0.0 <= float(value) < 1.0:
            raise ShapeError(f"recurrent leak must be a number in [0, 1), got {value!r}")

    def to_dict(self) -> dict:
        return {"leak": float(self.leak)}


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
    #: layer -> ConvSpec for the forward projections into ``layer`` that are convolutions
    convs: dict[int, ConvSpec] = field(default_factory=dict)
    #: hidden layer -> RecurrentSpec for the layers with recurrent synapses ``R``
    recurrent: dict[int, RecurrentSpec] = field(default_factory=dict)

    def forward_shape(self, layer: int) -> tuple[int, int]:
        """Shape of the forward weights into ``layer``, bias column included."""
        spec = self.convs.get(layer)
        if spec is not None:
            return spec.out_channels, spec.fan_in + 1
        return self.sizes[layer], self.sizes[layer - 1] + 1

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
                "future": self.sizes[layer],
                "prev": self.sizes[layer - 1]}.get(scope, self.sizes[-1])

    def recurrent_shape(self, layer: int) -> tuple[int, int]:
        """Shape of the recurrent weights of ``layer`` (no bias column)."""
        return self.sizes[layer], self.sizes[layer]

    def leak(self, layer: int) -> float:
        spec = self.recurrent.get(layer)
        return 0.0 if spec is None else float(spec.leak)

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
    net = Network([int(s) for s in sizes], rule, hidden_activation, output_activation)
    return _init_state(net, np.random.default_rng(seed))


def build_cnn(input_shape: tuple[int, int, int], convs: list[tuple[int, int, int, int]],
              hidden: list[int], n_out: int, rule: Rule, *, hidden_activation: str = "relu",
              output_activation: str = "softmax", seed: int = 0) -> Network:
    """A fresh conv net: ``convs`` = (out_channels, kernel, stride, padding) per conv layer,
    then dense ``hidden`` layers and ``n_out`` outputs; init as :func:`build_mlp`.

    ``input_shape``: (channels, height, width) of the flattened input vectors.
    """
    if len(input_shape) != 3:
        raise ShapeError(f"input_shape must be (channels, height, width), got {input_shape}")
    if not convs:
        raise ShapeError("build_cnn needs at least one conv layer; use build_mlp otherwise")
    for act in (hidden_activation, output_activation):
        if act not in ACTIVATIONS:
            raise RuleError(f"unknown activation {act!r}: expected one of {', '.join(ACTIVATIONS)}")
    c, h, w = (int(v) for v in input_shape)
    sizes, specs = [c * h * w], {}
    for layer, conv in enumerate(convs, start=1):
        if len(conv) != 4:
            raise ShapeError(f"conv layer {layer}: expected (out_channels, kernel, stride, "
                             f"padding), got {conv}")
        spec = ConvSpec(c, h, w, *(int(v) for v in conv))
        specs[layer] = spec
        sizes.append(spec.out_size)
        c, h, w = spec.out_channels, spec.out_height, spec.out_width
    sizes += [int(s) for s in hidden] + [int(n_out)]
    if any(s < 1 for s in sizes):
        raise ShapeError(f"layer sizes must be positive, got {sizes}")
    net = Network(sizes, rule, hidden_activation, output_activation, convs=specs)
    return _init_state(net, np.random.default_rng(seed))


def build_rnn(n_in: int, recurrent: list[int], n_out: int, rule: Rule, *,
              hidden: list[int] | tuple[int, ...] = (), leak: float = 0.0,
              hidden_activation: str = "tanh", output_activation: str = "softmax",
              seed: int = 0) -> Network:
    """A fresh recurrent net: ``n_in`` features per step -> the ``recurrent`` layers (each with
    recurrent synapses ``R``, all with the same ``leak``) -> dense ``hidden`` layers -> ``n_out``.

    Init as :func:`build_mlp`; ``R`` too is uniform(±1/sqrt(n)) (spectral radius about 0.6,
    so a fresh layer forgets rather than explodes).
    """
    if not recurrent:
        raise ShapeError("build_rnn needs at least one recurrent layer; use build_mlp otherwise")
    sizes = [n_in, *recurrent, *hidden, n_out]
    if any(isinstance(s, bool) or int(s) != s or s < 1 for s in sizes):
        raise ShapeError(f"layer sizes must be positive integers, got {sizes}")
    for act in (hidden_activation, output_activation):
        if act not in ACTIVATIONS:
            raise RuleError(f"unknown activation {act!r}: expected one of {', '.join(ACTIVATIONS)}")
    spec = RecurrentSpec(leak)
    net = Network([int(s) for s in sizes], rule, hidden_activation, output_activation,
                  recurrent={layer: spec for layer in range(1, len(recurrent) + 1)})
    return _init_state(net, np.random.default_rng(seed))


def _init_state(net: Network, rng: np.random.Generator) -> Network:
    rule = net.rule
    net.state[FORWARD] = {}
    for layer in range(1, net.depth + 1):
        n_out, cols = net.forward_shape(layer)
        w = np.zeros((n_out, cols), np.float32)
        w[:, :-1] = _uniform(rng, (n_out, cols - 1), cols - 1)
        net.state[FORWARD][layer] = {"w": w}
        for var in rule.state_vars(FORWARD)[1:]:
            net.state[FORWARD][layer][var] = np.zeros_like(w)
    if net.recurrent:
        net.state[RECURRENT] = {}
    for layer in sorted(net.recurrent):
        shape = net.recurrent_shape(layer)
        r = _uniform(rng, shape, shape[1])
        net.state[RECURRENT][layer] = {"w": r}
        for var in rule.state_vars(RECURRENT)[1:]:
            net.state[RECURRENT][layer][var] = np.zeros_like(r)
    for name, fb in rule.feedback.items():
        net.state[name] = {}
        if fb.source.scope == "prev":
            continue  # the forward synapses themselves carry it: no state of its own
        density = _sparse_density(fb.weights)
        for layer in range(1, net.depth):
            n_src = net.feedback_source_size(fb, layer)
            if net.convs and net.sizes[layer] * n_src > MAX_FEEDBACK_SYNAPSES:
                raise ShapeError(
                    f"feedback {fb.name} = {fb.source} -> {fb.target} into layer {layer} would "
                    f"be a dense {net.sizes[layer]} x {n_src} matrix between feature maps "
                    f"(more than {MAX_FEEDBACK_SYNAPSES:,} synapses); conv nets take feedback "
                    "from the output (dfa, sdfa: output.err -> err)")
            b = _uniform(rng, (net.sizes[layer], n_src), n_src)
            if density is not None:
                b *= (rng.random(b.shape) < density).astype(np.float32)
            net.state[name][layer] = {"w": b}
            for var in rule.state_vars(name)[1:]:
                net.state[name][layer][var] = np.zeros_like(b)
    return net

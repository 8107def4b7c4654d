"""The Lava lowering's output as data: options, term maps, synapse groups, the program.

:func:`.lower.lower_to_loihi` builds a :class:`LoihiProgram`; :mod:`.report` prints it and
:mod:`.runtime` builds the Lava graph from it. Nothing here imports Lava.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import sympy

from neurolocal.errors import LoweringError
from neurolocal.rule import FORWARD, Rule

from ..profiles import Profile
from ..semantics import FeedbackPlan, SpikingConfig, SpikingProgram
from .loihi_rule import Factor
from .neuron_program import NeuronProgram

TAGS = ("floating_pt", "fixed_pt")
#: a trace that never decays: Lava's float model takes inf; its fixed model casts tau to an
#: integer, so it gets 2^30 (a loss of one trace LSB per ~10^7 trace-steps at most).
NO_DECAY_TAU = {"floating_pt": math.inf, "fixed_pt": float(2**30)}
SYN_VARS = ("w", "t", "d")  # rule state var order -> Loihi synaptic variable
SYN_TARGET = {"w": "dw", "t": "dt", "d": "dd"}
TRACE_NAMES = ("y1", "y2", "y3")
#: the zero of an offset-coded 7-bit trace: x1 (learned feedback) or a y channel holding a
#: signed value in one channel (Loihi's bracketed factor ``(x1-64)``)
GRADED_ZERO = 64


@dataclass(frozen=True)
class LavaOptions:
    """Numeric choices of the lowering, all in one place (``compile`` prints them).

    ``weight_headroom``: the weight LSB is the power of two that lets the largest initial
    weight of a layer grow this many times before the 8-bit weight saturates.
    ``third_factor_range``: the magnitude of a post factor (an error) that fills a 7-bit y
    channel (larger values saturate). ``feedback_range``: the magnitude of the feedback source
    value (an output error) that fills a graded payload of ``payload_bits`` (signed).
    ``max_scale_error``: a term whose scale Loihi can only approximate worse than this
    (relative) is a LoweringError. ``rng_seed``: Lava's stochastic rounding (fixed_pt).
    """

    weight_headroom: float = 3.0
    third_factor_range: float = 1.0
    feedback_range: float = 1.0
    payload_bits: int = 8
    max_scale_error: float = 0.5
    rng_seed: int = 0

    def __post_init__(self) -> None:
        for name in ("weight_headroom", "third_factor_range", "feedback_range"):
            if not getattr(self, name) > 0:
                raise LoweringError(f"Lava option {name} must be > 0, got "
                                    f"{getattr(self, name)!r}")
        if not 2 <= self.payload_bits <= 24:
            raise LoweringError(f"payload_bits must lie in [2, 24] (Loihi 2 graded spikes "
                                f"carry up to 24 bits), got {self.payload_bits}")
        if not 0 < self.max_scale_error <= 1:
            raise LoweringError(f"max_scale_error must lie in (0, 1], got "
                                f"{self.max_scale_error}")

    @property
    def payload_max(self) -> int:
        return 2 ** (self.payload_bits - 1) - 1


@dataclass(frozen=True)
class LoihiTermMap:
    """How one term of a rule update became one or two Loihi product terms (rule level).

    ``pre``: trace factors (``x1``, ``x2``), normalised per synapse group by
    :meth:`pre_gain`; ``channel``: index of the post factor in :attr:`LoihiProgram.post_factors`
    (None: no post factor or the ``y0`` dependency); ``syn``: Loihi synaptic factors.
    """

    projection: str
    var: str
    target: str
    index: int
    text: str
    coef: float
    dependency: str
    pre: tuple[str, ...]
    channel: int | None
    syn: tuple[Factor, ...]
    syn_var: str | None
    line: int = 0
    graded: float = 0.0  # > 0: x1 is a graded value (x1 - GRADED_ZERO) x graded, not a count
    epoch: str | None = None  # the noise phase whose epochs apply it (None: sample epochs)
    epochs: int = 1  # learning epochs per sample (the windows of the first one are shorter)

    def pre_gain(self, config: SpikingConfig, layer: int) -> float:
        """Rate per trace unit of the pre factors for the synapses into ``layer``.

        The pre neurons are layer ``layer - 1``: their traces are normalised over that
        layer's window (:meth:`.spiking.SpikingConfig.gain`). A graded pre trace (a learned
        feedback synapse) holds the value it carries: ``graded`` value units per trace unit.
        """
        if self.graded:
            return self.graded if self.pre else 1.0
        gain = 1.0
        for tr in self.pre:
            # several learning epochs per sample: the windows of the second and later ones
            # (the post neuron scales its factors in the first epoch: NeuronProgram.first_ratio)
            sub = 1 if self.epochs > 1 else 0
            gain *= config.gain(1 if tr == "x1" else 2, layer - 1, sub, self.epochs)
        return gain

    @property
    def where(self) -> str:
        return f"on {self.projection}: d{self.var} term[{self.index}] {self.text!r}" + \
            (f" (line {self.line})" if self.line else "")


@dataclass(frozen=True)
class PostFactor:
    """A post-synaptic factor the post neuron computes and hands over in y channels."""

    expr: sympy.Expr
    text: str
    signed: bool
    traces: tuple[str, ...]  # ("y2", "y3") for signed (+, -), ("y1",) for unsigned
    offset: int = 0  # > 0: a signed factor in one channel, y = Q * factor + offset
    epoch: str | None = None  # the noise phase whose epochs it belongs to (None: samples)


@dataclass(frozen=True)
class ProductMap:
    """One Loihi product term of one synapse group, with its provenance and precision."""

    term: LoihiTermMap
    part: str  # "" or "+"/"-" (the positive / negative part of a signed post factor)
    wanted: float  # the exact scale (weight LSB per factor unit)
    products: dict  # tag -> ProductTerm
    rel_error: float
    shift: int  # LSBs Lava's fixed-point engine drops from this product
    tick: int = 1  # applied every tick-th epoch (a decimated decay: scales.decay_tick)


@dataclass(frozen=True)
class SynapseGroup:
    """A learned forward projection of one layer: ``EpochLearningDense`` + its rule strings."""

    projection: str
    layer: int
    shape: tuple[int, int]
    weight_step: float
    channel_gain: dict  # trace -> Q (y units per post-factor unit)
    products: tuple[ProductMap, ...]
    rule_sets: dict  # tag -> RuleSet (validated)
    uses_bap: bool
    x_impulse: dict = field(default_factory=dict)  # "x1"/"x2" -> impulse per pre spike

    @property
    def tick(self) -> int:
        """Epochs between decimated decays (0: none): the post neuron's bap period."""
        return max((pm.tick for pm in self.products if pm.tick > 1), default=0)

    def strings(self, tag: str) -> dict[str, str]:
        return self.rule_sets[tag].to_lava_strings()


@dataclass(frozen=True)
class FeedbackGroup:
    """A feedback projection into hidden layer ``layer``: a graded ``Dense`` (fixed), or a
    graded ``EpochLearningDense`` (learned: ``learning`` holds its rule, its pre trace x1
    is overwritten by the value each graded spike carries, offset by :data:`GRADED_ZERO`;
    the source first sends the bare offset, one step earlier, so that the hidden neuron can
    subtract B . offset)."""

    plan: FeedbackPlan
    layer: int
    source_layer: int
    shape: tuple[int, int]
    weight_step: float
    arrives: int  # within-epoch step at which B . source reaches the hidden neurons
    learning: SynapseGroup | None = None
    x_quantum: float = 0.0  # learned: value units per x1 unit of the graded pre trace

    @property
    def learned(self) -> bool:
        return self.learning is not None


@dataclass
class LoihiProgram:
    """A rule lowered to Loihi 2 for a concrete network: strings, traces, graph, scales."""

    spiking: SpikingProgram
    options: LavaOptions
    profile: Profile
    sizes: tuple[int, ...]
    timesteps: int
    epoch_len: int
    x_impulse: dict  # the smallest pre-trace impulses; each group's own: SynapseGroup.x_impulse
    terms: tuple[LoihiTermMap, ...]
    post_factors: tuple[PostFactor, ...]
    groups: tuple[SynapseGroup, ...]
    feedback: tuple[FeedbackGroup, ...]
    neurons: tuple[NeuronProgram, ...]
    payload_quantum: float
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    epochs: int = 1  # learning epochs per sample
    noise_cycle: int = 1  # learning epochs per cycle: 1 sample epoch + its noise epochs

    @property
    def epoch_steps(self) -> int:
        return self.timesteps // self.epochs

    @property
    def learned_feedback(self) -> tuple[FeedbackGroup, ...]:
        return tuple(f for f in self.feedback if f.learned)

    @property
    def rule(self) -> Rule:
        return self.spiking.rule

    @property
    def config(self) -> SpikingConfig:
        return self.spiking.config

    @property
    def depth(self) -> int:
        return len(self.sizes) - 1

    def group(self, layer: int, projection: str = FORWARD) -> SynapseGroup:
        return next(g for g in self.groups if g.layer == layer and g.projection == projection)

    def synapse_group(self, layer: int, projection: str = FORWARD) -> SynapseGroup:
        """The learned synapse group into ``layer``: forward, or a learned feedback one."""
        if projection == FORWARD:
            return self.group(layer)
        return next(f.learning for f in self.feedback
                    if f.layer == layer and f.plan.name == projection and f.learned)

    def trace_params(self, tag: str, layer: int = 1, projection: str = FORWARD
                     ) -> dict[str, Any]:
        """Keyword arguments of ``Loihi3FLearningRule`` plus the y taus set afterwards."""
        cfg, keep = self.config, NO_DECAY_TAU[tag]
        impulse = self.synapse_group(layer, projection).x_impulse
        out: dict[str, Any] = {"t_epoch": self.epoch_len, "rng_seed": self.options.rng_seed}
        for name, k in (("x1", 1), ("x2", 2)):
            tau = getattr(cfg, f"tau{k}")
            out[f"{name}_impulse"] = float(impulse.get(name, 0.0))
            out[f"{name}_tau"] = keep if math.isinf(tau) else float(tau)
        for name in TRACE_NAMES:
            out[f"{name}_tau"] = keep
        return out

"""Hardware profiles: the numeric formats and resource limits of each target, as data.

Backends and validators read limits from a :class:`Profile` instead of hard-coding them, so a
limit is written down (with its source) exactly once. Numbers for Loihi 2 come from two kinds of
source, marked on every line:

* ``[lava]`` -- read from lava-nc 0.10.0's own fixed-point model (file named). These are what
  ``Loihi2SimCfg(select_tag="fixed_pt")`` actually does, i.e. what our tests can check.
* ``[intel]`` -- Intel's public Loihi 2 technology brief ("Taking Neuromorphic Computing to the
  Next Level with Loihi 2", Intel Labs, 2021). ``[estimate]`` marks numbers derived from those
  (e.g. chip totals divided by the core count) or not stated by either source.

Importing this module must stay cheap (no torch/brian2/lava): Lava imports every module in a
Process package when it looks for models, and profiles are read by the locality checker too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType

__all__ = [
    "CPU_FLOAT32",
    "GPU_FLOAT32",
    "LOIHI2",
    "PROFILES",
    "CoreResources",
    "LearningEngine",
    "LIFFormat",
    "Profile",
    "TraceFormat",
    "WeightFormat",
    "get_profile",
]

Range = tuple[int, int]  # inclusive [lo, hi]


def _frozen_map(d: Mapping[str, int]) -> Mapping[str, int]:
    return MappingProxyType(dict(d))


@dataclass(frozen=True)
class WeightFormat:
    """Synaptic weight storage and how the synaptic input is scaled.

    Loihi stores an integer weight ``w`` per synapse and a shared exponent per synapse group;
    the post-synaptic input is ``sum(w[:, spiking]) * 2**weight_exp`` (a shift, which floors
    for negative ``weight_exp``).
    """

    magnitude_bits: int
    signed: bool
    range_mixed: Range
    range_excitatory: Range
    range_inhibitory: Range
    mixed_sign_dropped_lsbs: int
    num_weight_bits_range: Range
    weight_exp_range: Range | None
    learned_weights_retruncated: bool


@dataclass(frozen=True)
class TraceFormat:
    """Pre/post synaptic trace representation (x1, x2, y1, y2, y3)."""

    bits: int
    range: Range
    impulse_fraction_bits: int
    decay: str
    stochastic_rounding: bool


@dataclass(frozen=True)
class LearningEngine:
    """Sum-of-products learning engine: what a ``dw``/``dd``/``dt`` string may contain.

    Each product term is ``m * 2^e * dependency * factor * factor ...``; the term is evaluated
    only when its dependency fires (``x0`` pre spike, ``y0`` post spike, ``u<k>`` every
    ``2^k``-th learning epoch).
    """

    targets: tuple[str, ...]
    dependencies: tuple[str, ...]
    uk_digits: Range
    max_dependencies_per_term: int
    max_uk_per_rule_set: int
    pre_traces: tuple[str, ...]
    post_traces: tuple[str, ...]
    synaptic_vars: tuple[str, ...]
    sgn_vars: tuple[str, ...]
    scale_mantissa_range: Range
    scale_exp_range: Range
    constant_range: Range
    accumulator_bits: int
    factor_widths: Mapping[str, int] = field(compare=False, hash=False)
    scale_mantissa_bits: int = 4
    epoch_time_bits: int = 6
    tag_range: Range = (-257, 255)
    delay_tag_range: Range = (0, 255)

    def fixed_point_shift(self, factor_vars: list[str] | tuple[str, ...]) -> int:
        """Right shift Lava's fixed-point model applies to a product with these factors.

        ``shift = max(0, sum(factor widths) + mantissa bits - accumulator bits)``; a product of
        two 7-bit traces loses 3 LSBs (and is scaled by 2**-3 relative to the float model).
        """
        width = sum(self.factor_widths[v] for v in factor_vars) + self.scale_mantissa_bits
        return max(0, width - self.accumulator_bits)


@dataclass(frozen=True)
class LIFFormat:
    """Fixed-point LIF neuron state (Lava's bit-accurate ``PyLifModelBitAcc``)."""

    u_bits: int
    v_bits: int
    decay_bits: int
    bias_mant_range: Range
    bias_exp_range: Range
    vth_range: Range
    vth_shift: int
    activation_shift: int
    activation_in_bits: int


@dataclass(frozen=True)
class CoreResources:
    """Per-chip and per-core capacities (public figures; partly estimates)."""

    neuro_cores_per_chip: int
    neurons_per_chip: int
    synapses_per_chip: int
    neurons_per_core: int
    synapses_per_core: int
    max_synaptic_delay: int


@dataclass(frozen=True)
class Profile:
    """A target's numeric format and limits.

    ``numeric`` is ``"fixed"`` (integer state, the sub-formats below apply) or a float dtype
    name (``"float32"``); a float profile has no sum-of-products engine (``learning is None``)
    and accepts any expression its backend can evaluate.
    """

    name: str
    description: str
    numeric: str
    device: str
    weights: WeightFormat | None = None
    traces: TraceFormat | None = None
    learning: LearningEngine | None = None
    lif: LIFFormat | None = None
    resources: CoreResources | None = None
    sources: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType({}), compare=False, hash=False
    )

    @property
    def is_fixed_point(self) -> bool:
        return self.numeric == "fixed"

    def rows(self) -> list[tuple[str, str, str]]:
        """``(quantity, value, source)`` rows, the data behind :meth:`describe`."""
        out: list[tuple[str, str, str]] = [
            ("numeric", self.numeric, ""),
            ("device", self.device, ""),
        ]
        for section in ("weights", "traces", "learning", "lif", "resources"):
            obj = getattr(self, section)
            if obj is None:
                continue
            for f in fields(obj):
                key = f"{section}.{f.name}"
                value = getattr(obj, f.name)
                if isinstance(value, Mapping):
                    value = ", ".join(f"{k}:{v}" for k, v in value.items())
                elif isinstance(value, tuple) and value and isinstance(value[0], str):
                    value = " ".join(value)
                elif isinstance(value, tuple) and len(value) == 2:
                    value = f"[{value[0]}, {value[1]}]"
                out.append((key, str(value), self.sources.get(key, "")))
        return out

    def describe(self) -> str:
        """A plain-text table of every limit and where it comes from (print it)."""
        rows = self.rows()
        w0 = max(len(r[0]) for r in rows)
        w1 = min(40, max(len(r[1]) for r in rows))
        lines = [f"{self.name}: {self.description}", "-" * (w0 + w1 + 12)]
        for key, value, source in rows:
            lines.append(f"{key:<{w0}}  {value:<{w1}}  {source}".rstrip())
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Loihi 2. Paths are relative to site-packages/lava (lava-nc 0.10.0).
_C = "magma/core/learning/constants.py"
_CONN = "magma/core/model/py/connection.py"
_WU = "utils/weightutils.py"
_LIF = "proc/lif/models.py"
_SRC: dict[str, str] = {
    # weights
    "weights.magnitude_bits": f"[lava] {_C} W_WEIGHTS_U=8",
    "weights.signed": f"[lava] {_C} W_WEIGHTS_S = W_WEIGHTS_U + 1",
    "weights.range_mixed": f"[lava] {_WU} clip_weights(num_bits=8), SignMode.MIXED",
    "weights.range_excitatory": f"[lava] {_WU} clip_weights, SignMode.EXCITATORY",
    "weights.range_inhibitory": f"[lava] {_WU} clip_weights, SignMode.INHIBITORY",
    "weights.mixed_sign_dropped_lsbs": f"[lava] {_WU} truncate_weights: 8-num_weight_bits+mixed",
    "weights.num_weight_bits_range": "[lava] proc/dense/process.py docstring (default 8)",
    "weights.weight_exp_range": "[estimate] Loihi 1 docs; Lava shifts by any int, unchecked",
    "weights.learned_weights_retruncated": "[lava] proc/dense/models.py truncates once at t=1",
    # traces
    "traces.bits": f"[lava] {_C} W_TRACE=7",
    "traces.range": f"[lava] {_CONN} _add_impulse clips to [0, 2**W_TRACE-1]",
    "traces.impulse_fraction_bits": f"[lava] {_C} W_TRACE_FRACTIONAL_PART=8",
    "traces.decay": f"[lava] {_CONN} _decay_trace",
    "traces.stochastic_rounding": f"[lava] {_CONN} stochastic_round after decay/impulse",
    # learning engine
    "learning.targets": "[lava] magma/core/learning/string_symbols.py",
    "learning.dependencies": "[lava] magma/core/learning/string_symbols.py",
    "learning.uk_digits": r"[lava] symbolic_equation.py Uk regex u\d (one digit)",
    "learning.max_dependencies_per_term": "[lava] product_series.py; x0*y0 breaks floating_pt",
    "learning.max_uk_per_rule_set": "[lava] learning_rule.py _validate_uk",
    "learning.pre_traces": "[lava] string_symbols.py PRE_TRACES",
    "learning.post_traces": "[lava] string_symbols.py POST_TRACES (3 post traces)",
    "learning.synaptic_vars": "[lava] string_symbols.py SYNAPTIC_VARIABLES (w, d=tag_2, t=tag_1)",
    "learning.sgn_vars": "[lava] product_series.py Factor._validate_sgn",
    "learning.scale_mantissa_range": f"[lava] product_series.py; {_C} W_S_MANT=4 (signed)",
    "learning.scale_exp_range": "[lava] product_series.py (s_exp < -7 or s_exp >= 9 rejected)",
    "learning.constant_range": f"[lava] {_C} W_CONST=8 (+sign)",
    "learning.accumulator_bits": f"[lava] {_C} W_ACCUMULATOR_U=15 (+sign)",
    "learning.factor_widths": f"[lava] {_C} FACTOR_TO_WIDTH_DICT",
    "learning.scale_mantissa_bits": f"[lava] {_C} W_S_MANT",
    "learning.epoch_time_bits": f"[lava] {_C} W_EPOCH_TIME=6 (t_epoch <= 63) [estimate: unchecked]",
    "learning.tag_range": f"[lava] {_CONN} _saturate_synaptic_variable tag_1",
    "learning.delay_tag_range": f"[lava] {_CONN} _saturate_synaptic_variable tag_2",
    # LIF
    "lif.u_bits": f"[lava] {_LIF} uv_bitwidth=24 (u wraps, v saturates)",
    "lif.v_bits": f"[lava] {_LIF} uv_bitwidth=24",
    "lif.decay_bits": f"[lava] {_LIF} du/dv precision=12; decay = (4096-du-1)/4096 for u",
    "lif.bias_mant_range": f"[lava] {_LIF} PyLifModelBitAcc docstring (signed 13-bit)",
    "lif.bias_exp_range": f"[lava] {_LIF} PyLifModelBitAcc docstring (unsigned 3-bit)",
    "lif.vth_range": f"[lava] {_LIF} PyLifModelBitAcc docstring (unsigned 17-bit)",
    "lif.vth_shift": f"[lava] {_LIF} vth_shift=6 (effective threshold vth << 6)",
    "lif.activation_shift": f"[lava] {_LIF} act_shift=6 (input << 6 before adding to u)",
    "lif.activation_in_bits": f"[lava] {_LIF} a_in precision=16",
    # resources
    "resources.neuro_cores_per_chip": "[intel] Loihi 2 brief: 128 neuro cores (+6 x86 cores)",
    "resources.neurons_per_chip": "[intel] Loihi 2 brief: up to 1M neurons",
    "resources.synapses_per_chip": "[intel] Loihi 2 brief: up to 120M synapses",
    "resources.neurons_per_core": "[estimate] 1M/128 = 8192, commonly cited",
    "resources.synapses_per_core": "[estimate] 120M/128; real value depends on compression",
    "resources.max_synaptic_delay": "[lava] proc/dense/models.py DelayDense: 6-bit delay",
}

LOIHI2 = Profile(
    name="loihi2",
    description="Intel Loihi 2 as modelled by lava-nc 0.10.0 fixed_pt (Loihi2SimCfg)",
    numeric="fixed",
    device="loihi2",
    weights=WeightFormat(
        magnitude_bits=8,  # [lava] W_WEIGHTS_U
        signed=True,  # [lava] W_WEIGHTS_S = 9 (8 + sign)
        range_mixed=(-256, 255),  # [lava] clip_weights(num_bits=8) after every learning update
        range_excitatory=(0, 255),  # [lava] clip_weights, EXCITATORY
        range_inhibitory=(-255, 0),  # [lava] clip_weights, INHIBITORY
        # [lava] truncate_weights: MIXED drops 8 - num_weight_bits + 1 LSBs when loaded, so with
        # the default num_weight_bits=8 the usable initial weights are the even ints -256..254.
        mixed_sign_dropped_lsbs=1,
        num_weight_bits_range=(1, 8),  # [lava] Dense docstring, default 8
        weight_exp_range=(-8, 7),  # [estimate] Loihi 1 convention; Lava does not check it
        # [lava] LearningDense truncates only at the first time step; learned weights may be odd
        learned_weights_retruncated=False,
    ),
    traces=TraceFormat(
        bits=7,  # [lava] W_TRACE
        range=(0, 127),  # [lava] _add_impulse clip
        impulse_fraction_bits=8,  # [lava] W_TRACE_FRACTIONAL_PART
        # [lava] each time step: trace <- SR(trace * exp(-1/tau)) (+ impulse on a spike);
        # tau == 0 resets the trace every step in fixed_pt (and gives NaN in floating_pt).
        decay="SR(trace*exp(-1/tau)) per step; tau=0: no memory",
        stochastic_rounding=True,  # [lava] stochastic_round with seeded numpy generators
    ),
    learning=LearningEngine(
        targets=("dw", "dd", "dt"),  # [lava] LEARNING_RULE_TARGETS
        dependencies=("x0", "y0", "u"),  # [lava] DEPENDENCIES
        uk_digits=(0, 9),  # [lava] Uk regex u\d
        max_dependencies_per_term=1,  # [lava] product_series._generate_product
        max_uk_per_rule_set=1,  # [lava] LoihiLearningRule._validate_uk
        pre_traces=("x1", "x2"),  # [lava] PRE_TRACES
        post_traces=("y1", "y2", "y3"),  # [lava] POST_TRACES
        synaptic_vars=("w", "d", "t"),  # [lava] SYNAPTIC_VARIABLES
        sgn_vars=("w", "d", "t"),  # [lava] Factor._validate_sgn
        scale_mantissa_range=(-8, 7),  # [lava] 4-bit signed mantissa (W_S_MANT)
        scale_exp_range=(-7, 8),  # [lava] stored as e+7 in [0, 15]
        constant_range=(-256, 255),  # [lava] W_CONST = 8 (+ sign)
        accumulator_bits=15,  # [lava] W_ACCUMULATOR_U (+ sign = 16)
        factor_widths=_frozen_map(  # [lava] FACTOR_TO_WIDTH_DICT
            {"x0": 1, "y0": 1, "x1": 7, "x2": 7, "y1": 7, "y2": 7, "y3": 7,
             "w": 9, "d": 9, "t": 9, "C": 8}
        ),
        scale_mantissa_bits=4,  # [lava] W_S_MANT
        epoch_time_bits=6,  # [lava] W_EPOCH_TIME
        tag_range=(-257, 255),  # [lava] tag_1 clip in fixed_pt (sic: -(2**8)-1)
        delay_tag_range=(0, 255),  # [lava] tag_2 clip in fixed_pt
    ),
    lif=LIFFormat(
        u_bits=24,  # [lava] uv_bitwidth
        v_bits=24,  # [lava] uv_bitwidth
        decay_bits=12,  # [lava] du, dv precision=12 (0..4095), unity 4096
        bias_mant_range=(-4096, 4095),  # [lava] signed 13-bit
        bias_exp_range=(0, 7),  # [lava] unsigned 3-bit
        vth_range=(0, 131071),  # [lava] unsigned 17-bit
        vth_shift=6,  # [lava] vth_shift
        activation_shift=6,  # [lava] act_shift
        activation_in_bits=16,  # [lava] a_in precision
    ),
    resources=CoreResources(
        neuro_cores_per_chip=128,  # [intel] technology brief
        neurons_per_chip=1_048_576,  # [intel] "up to 1M neurons" (= 128 * 8192)
        synapses_per_chip=120_000_000,  # [intel] "up to 120M synapses"
        neurons_per_core=8192,  # [estimate] 1M / 128, commonly cited
        synapses_per_core=937_500,  # [estimate] 120M / 128
        max_synaptic_delay=63,  # [lava] DelayDense: 6-bit delays, 0..63
    ),
    sources=MappingProxyType(_SRC),
)

CPU_FLOAT32 = Profile(
    name="cpu-float32",
    description="CPU simulators (numpy/torch rate reference, snntorch, Brian2 numpy target)",
    numeric="float32",
    device="cpu",
)

GPU_FLOAT32 = Profile(
    name="gpu-float32",
    description="CUDA simulators (torch rate reference, snntorch on CUDA)",
    numeric="float32",
    device="cuda",
)

PROFILES: Mapping[str, Profile] = MappingProxyType(
    {p.name: p for p in (LOIHI2, CPU_FLOAT32, GPU_FLOAT32)}
)


def get_profile(name: str) -> Profile:
    """Look a profile up by name, with an error that lists the known ones."""
    try:
        return PROFILES[name]
    except KeyError:
        raise KeyError(
            f"unknown hardware profile {name!r}; known profiles: {', '.join(PROFILES)}"
        ) from None

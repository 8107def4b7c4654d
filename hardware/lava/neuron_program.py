"""The program one NeuroLIF population runs: typed data generated from the rule.

It travels to the process model in ``proc_params`` (Lava forks its workers, so it is not
pickled); the process model in :mod:`.procs.procs` reads it, which is why it imports nothing
heavy.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Channel:
    """One post trace ``y<trace+1>`` holding ``max(sign * factor, 0) * gain`` of a post factor."""

    trace: int   # 0, 1, 2 for y1, y2, y3
    factor: int  # index into the list ``post_factors`` returns
    sign: int    # +1, or -1 for the negative part of a signed factor
    gain: float  # trace units per unit of the factor


@dataclass(frozen=True)
class NeuronProgram:
    """What a NeuroLIF population computes besides Lava's LIF dynamics.

    ``code`` is Python source (printed by ``neurolocal compile --target lava``) defining
    ``measure(st, k)`` (raw state -> compartments), ``equations(c, g)`` (the rule's output or
    hidden equations) and ``post_factors(c, g)`` (the values the learning engine reads).
    Steps are counted within the learning epoch of ``epoch_len`` steps (1 = the lead step,
    2..T+1 the forward window); ``eq_step`` is when a hidden layer's error arrives.
    """

    name: str
    layer: int
    n: int
    role: str                         # "hidden" or "output"
    timesteps: int                    # T
    epoch_len: int                    # L: steps per learning epoch (T + 1 when inferring)
    eq_step: int
    code: str
    globals: dict[str, float]
    constants: dict[str, float]       # spiking constants of this layer (T, k1, ...)
    computed: tuple[str, ...]         # compartments the program writes (0 until written)
    decays: tuple[float, float, float]
    traces: tuple[int, ...]           # which of tr1..tr3 the measured symbols read
    channels: tuple[Channel, ...]
    u_unit: float                     # float units per unit of Lava's u
    fb_target: str | None = None      # compartment the feedback adds to
    fb_unit: float = 0.0              # float units per unit of a_third_factor_in
    src: str | None = None            # compartment sent down on s_fb_out
    src_quantum: float = 1.0          # float units per payload unit
    payload_max: int = 127
    reset: str = "zero"               # "zero" or "subtract" (spiking.SpikingConfig.reset)
    learn: bool = True

    def running(self, *, epoch_len: int, learn: bool, u_unit: float) -> NeuronProgram:
        """This program for one graph: its epoch length, learning switch and u unit."""
        return replace(self, epoch_len=epoch_len, learn=learn, u_unit=u_unit)

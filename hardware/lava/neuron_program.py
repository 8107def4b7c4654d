"""The program one NeuroLIF population runs: typed data generated from the rule.

It travels to the process model in ``proc_params`` (Lava forks its workers, so it is not
pickled); the process model in :mod:`.procs.procs` reads it, which is why it imports nothing
heavy.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class Channel:
    """One post trace ``y<trace+1>`` holding ``max(sign * factor, 0) * gain`` of a post factor."""

    trace: int   # 0, 1, 2 for y1, y2, y3
    factor: int  # index into the list ``post_factors`` returns
    sign: int    # +1, or -1 for the negative part of a signed factor
    gain: float  # trace units per unit of the factor
    offset: int = 0  # > 0: the signed factor offset-coded in this one channel
    epoch: str | None = None  # the noise phase whose epochs it belongs to (None: samples)
    forward: bool = True  # read by the forward synapse group (False: a feedback group)


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
    # -- beyond one learning epoch per sample (EpochNeuroLIF; hardware.noise) -----------------
    epochs: int = 1                   # learning epochs per sample
    epoch_steps: int = 0              # E: forward steps per learning epoch (0: T)
    first_constants: dict | None = None  # constants of a sample's first learning epoch
    rest_constants: dict | None = None   # and of its later ones (``constants``: one epoch)
    first_ratio: float = 1.0          # forward post factors x this in the first epoch
    cycle: int = 1                    # 2: every sample epoch is followed by a noise epoch
    phase: str | None = None          # that noise phase
    phase_sigma: float = 0.0
    noise: tuple = ()                 # private noise: (name, sigma, into) per source
    seed: int = 0                     # the neurons' noise generator (Loihi 2's per-core PRNG)
    replay: Any = None                # recorded noise to replay instead: {kind: array}
    slow_measured: tuple[str, ...] = ()
    slow_computed: tuple[str, ...] = ()
    slow_decay: float = 0.0
    src_graded: bool = False          # the payload feeds a learned group's pre trace x1
    src_x_quantum: float = 1.0        # value units per x1 unit
    fb_graded: bool = False           # the feedback comes from a learned group (offset)
    tick: int = 0                     # > 0: a bap every tick-th epoch (decimated decays)
    tick_epoch: str | None = None     # in epochs of this kind (None: sample epochs)
    epoch_offset: int = 0             # learning epochs of this kind run before this graph
    v_unit: float = 1.0               # float units per unit of v (noise into the voltage)
    a_unit: float = 1.0               # float units per unit of a_in (noise currents)

    @property
    def extended(self) -> bool:
        """Does this program need :class:`~.procs.epochs.EpochNeuroLIF`?"""
        return (self.epochs > 1 or self.cycle > 1 or bool(self.noise) or self.src_graded
                or self.fb_graded or self.tick > 0 or bool(self.slow_measured)
                or bool(self.slow_computed) or any(c.offset for c in self.channels))

    def running(self, *, epoch_len: int, learn: bool, u_unit: float, **more: Any
                ) -> NeuronProgram:
        """This program for one graph: its epoch length, learning switch and u unit."""
        return replace(self, epoch_len=epoch_len, learn=learn, u_unit=u_unit, **more)

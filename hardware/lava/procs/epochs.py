"""Lava processes for programs beyond one learning epoch per sample with fixed feedback.

* :class:`ScheduleSource` -- input spikes, bias unit and targets laid out step by step on the
  host (any schedule: learning epochs within a sample, noise epochs in which the input is
  silent);
* :class:`EpochNeuroLIF` -- :class:`~.procs.NeuroLIF` whose neuron program also runs
  several learning epochs per sample (the LIF state runs on; the forward dynamics pause in
  the error steps, holding the input in flight), noise epochs (hidden neurons driven by their
  own noise, the drive from below summed), private noise currents, slow(X) traces, the graded
  payload of a learned feedback group (offset-coded, after an offset-only calibration spike),
  offset-coded y channels and decimated decay ticks on ``s_out_bap``.

The noise comes from a seeded generator in the neuron program (standing for Loihi 2's per-core
pseudo-random generator that microcode neurons read) or from a recorded draw (``replay``).
Everything here reads numpy and Lava only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from neurolocal.hardware.lava.procs.procs import (
    TRACE_MAX,
    NeuroLIF,
    NeuroLIFModelFixed,
    NeuroLIFModelFloat,
    _ops,
)

GRADED_ZERO = 64  # = lava.program.GRADED_ZERO (kept here: this package imports no lowering)


class ScheduleSource(AbstractProcess):
    """Input spikes and bias unit (``steps``: (n + 1, S) 0/1) and targets (``targets``:
    (n_out, S)) for every step of a run, laid out on the host."""

    def __init__(self, *, steps: np.ndarray, targets: np.ndarray, name: str | None = None):
        super().__init__(name=name)
        self.steps = Var(shape=steps.shape, init=steps.astype(np.int8))
        self.targets = Var(shape=targets.shape, init=targets)
        self.s_out = OutPort(shape=(steps.shape[0],))
        self.t_out = OutPort(shape=(targets.shape[0],))


class _ScheduleSourceModel(PyLoihiProcessModel):
    s_out: Any = None
    t_out: Any = None

    def run_spk(self) -> None:
        t = self.time_step - 1
        if t < self.steps.shape[1]:
            self.s_out.send(self.steps[:, t].astype(self._dtype))
            self.t_out.send(self.targets[:, t].astype(self._dtype))
        else:
            self.s_out.send(np.zeros(self.steps.shape[0], dtype=self._dtype))
            self.t_out.send(np.zeros(self.targets.shape[0], dtype=self._dtype))


@implements(proc=ScheduleSource, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class ScheduleSourceModelFloat(_ScheduleSourceModel):
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    t_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    steps: np.ndarray = LavaPyType(np.ndarray, np.int8, precision=1)
    targets: np.ndarray = LavaPyType(np.ndarray, float)
    _dtype = float


@implements(proc=ScheduleSource, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class ScheduleSourceModelFixed(_ScheduleSourceModel):
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=1)
    t_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=8)
    steps: np.ndarray = LavaPyType(np.ndarray, np.int8, precision=1)
    targets: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=8)
    _dtype = np.int32


class EpochNeuroLIF(NeuroLIF):
    """:class:`NeuroLIF` with the extended neuron program (see the module docstring)."""


class _EpochNeuron:
    """The extended per-step and per-epoch logic, shared by the float and fixed models."""

    def _setup_epochs(self) -> None:
        p = self._p
        ns: dict = {"ops": _ops(), "np": np}
        exec(compile(p.code, f"<neurolocal neuron program {p.name}>", "exec"), ns)
        self._noise_fn = ns.get("post_factors_noise")
        self._E = p.epoch_steps or p.timesteps
        self._kfirst = dict(p.first_constants) if p.first_constants else self._k
        self._krest = dict(p.rest_constants) if p.rest_constants else self._k
        self._hidden = p.role == "hidden"
        # a graph per run call: the epochs run before it pick a fresh stream
        self._rng = np.random.default_rng([p.seed, p.epoch_offset])
        self._slow: dict = {}
        self._pending = None
        self._calib = None
        self._held = None
        self._xi: dict = {}
        self._xi_a = None
        self._xi_v = None
        self._xi_phase = np.zeros(self._n)
        self._ndsum = np.zeros(self._n)
        self._kind, self._sub, self._sample = "sample", 0, 0
        self._bap_none = np.zeros(self._n, dtype=bool)
        self._bap_all = np.ones(self._n, dtype=bool)

    # -- the epoch schedule ----------------------------------------------------------------
    def _begin_epoch(self) -> None:
        p = self._p
        k_local = (self.time_step - 1) // self._L
        k = k_local + p.epoch_offset
        per_sample = p.cycle if p.cycle > 1 else p.epochs
        self._kind = "noise" if p.cycle > 1 and k % p.cycle else "sample"
        self._sub = k % p.epochs if p.epochs > 1 else 0
        self._sample = k_local // per_sample
        self._tick = p.tick > 0 and (
            (self._kind == "noise") == (p.tick_epoch is not None)) and \
            ((k // p.cycle if p.cycle > 1 else k) + 1) % p.tick == 0
        if self._sub == 0:  # a sample (or a noise epoch) starts: its state restarts
            self.u[:] = 0
            self.v[:] = 0
            self._last = np.zeros(self._n, dtype=bool)
            self._slow = {}
            self._pending = None
        n = self._n
        self._tr = [np.zeros(n), np.zeros(n), np.zeros(n)]
        self._count = np.zeros(n)
        self._asum = np.zeros(n)
        self._ndsum = np.zeros(n)
        self._c = {}
        self._calib = None
        self._held = None
        self._y = [np.full(n, self._zero_code(t), dtype=self._y_dtype) for t in range(3)]
        self.y1[:], self.y2[:], self.y3[:] = self._y
        self._draw()

    def _zero_code(self, trace: int) -> int:
        """A channel's value for a factor of 0 (its offset if offset-coded)."""
        return next((c.offset for c in self._p.channels if c.trace == trace and c.offset), 0)

    def _draw(self) -> None:
        """This epoch's noise: private sources (sample epochs, learning) or the noise phase's."""
        p, n = self._p, self._n
        self._xi, self._xi_a, self._xi_v = {}, None, None
        if not (self._learn and self._hidden):
            return
        replay = p.replay or {}
        if self._kind == "noise":
            z = replay["phase"][self._sample] if "phase" in replay else \
                p.phase_sigma * self._rng.standard_normal(n)
            self._xi_phase = self._grid(np.asarray(z, dtype=float), p.a_unit)
            return
        for j, (name, sigma, into) in enumerate(p.noise):
            z = replay["private"][self._sample, self._sub, j] if "private" in replay else \
                sigma * self._rng.standard_normal(n)
            unit = p.v_unit if into == "r" else p.a_unit
            xi = self._grid(np.asarray(z, dtype=float), unit)
            self._xi[name] = xi
            units = self._units(xi, unit)
            if into == "r":
                self._xi_v = units if self._xi_v is None else self._xi_v + units
            else:
                self._xi_a = units if self._xi_a is None else self._xi_a + units

    # -- one step -------------------------------------------------------------------------------
    def run_spk(self) -> None:
        a = self.a_in.recv()
        fb = self._recv(self.a_third_factor_in)
        tgt = self._recv(self.target_in)
        s = (self.time_step - 1) % self._L + 1
        if s == 1:
            self._begin_epoch()
        e, out, sample = self._E, self._out, self._kind == "sample"
        if 2 <= s <= e + 1:
            spikes = self._forward(a, s, sample)
            out[:-1] = spikes
        else:
            if s == e + 2 and sample and self._sub < self._p.epochs - 1:
                self._pending = a  # the last forward step's spikes: the next epoch's input
            spikes = self._zeros_in.astype(bool)
            out[:-1] = 0
        out[-1] = 1 if sample and s <= e and self._sub * e + s - 1 >= self._layer else 0
        self.s_out.send(out)
        self.s_out_bap.send(self._bap(s, spikes))
        payload = None
        if s == e + 1:
            payload = self._window_end(tgt)
        if self._learn and not self._output:
            if s == self._eq_step - 1 and self._p.fb_graded:
                self._calib = np.asarray(fb, dtype=float).copy()
            if s == self._eq_step:
                payload = self._arrive(fb)
        self.s_fb_out.send(self._payload(payload))
        self.s_out_y1.send(self._y[0])
        self.s_out_y2.send(self._y[1])
        self.s_out_y3.send(self._y[2])

    def _forward(self, a, s: int, sample: bool) -> np.ndarray:
        """One forward step: the sample's input (plus private noise), or a noise epoch's."""
        if sample:
            if s == 2 and self._pending is not None:
                a = a + self._pending
                self._pending = None
            if self._xi_a is not None:
                a = a + self._xi_a
            spikes = self._step(a, self._xi_v)
            if self._sub * self._E + s - 2 >= self._layer:
                self._asum += self.u
        else:
            if self._layer >= 2:
                self._ndsum += a
            if not self._hidden:
                return self._zeros_in.astype(bool)
            spikes = self._step(self._units(self._xi_phase, self._p.a_unit), None)
        self._count += spikes
        for k in self._decaying:
            self._tr[k] *= self._decays[k]
            self._tr[k] += spikes
        return spikes

    def _bap(self, s: int, spikes) -> np.ndarray:
        if self._p.tick:
            return self._bap_all if self._tick and s == 2 else self._bap_none
        return spikes

    def _payload(self, payload):
        """What goes out on s_fb_out this step (a graded source: its value one step after
        the offset-only calibration spike)."""
        if self._held is not None:
            held, self._held = self._held, None
            return held
        if payload is None:
            return self._no_payload
        if not self._p.src_graded:
            return payload
        self._held = payload
        return np.full(self._n, 2 * GRADED_ZERO, dtype=self._payload_dtype)

    # -- the epoch program ----------------------------------------------------------------------
    def _window_end(self, tgt):
        """Step E + 1: measure; the output layer runs its program (or its noise epoch's)."""
        p = self._p
        if self._kind == "noise":
            self._c = {name: np.zeros(self._n) for name in p.computed}
            self._c["noise_value"] = self._xi_phase if self._hidden else np.zeros(self._n)
            self._c["noise_drive"] = self._ndsum * p.a_unit / (p.timesteps - 1)
            return self._emit_all() if self._output and self._learn else None
        k = self._kfirst if self._sub == 0 else self._krest
        tr = [self._count if self._decays[j] == 1.0 else self._tr[j] for j in range(3)]
        st = {"tr1": tr[0], "tr2": tr[1], "tr3": tr[2], "spk": (self._count > 0) * 1.0,
              "asum": self._asum * p.u_unit}
        for name, _, _ in p.noise:
            st[f"nz_{name}"] = self._xi.get(name, np.zeros(self._n))
        self._c = self._measure_fn(st, k)
        for name in p.computed:
            self._c[name] = np.zeros(self._n)
        self._slow_update(p.slow_measured)
        self.counts[:] = self._count
        self.spikes_total[:] = self.spikes_total + self._count.sum()
        if not (self._output and self._learn):
            return None
        self._c["target"] = np.asarray(tgt, dtype=float)
        self._equations_fn(self._c, self._g)
        self._slow_update(p.slow_computed)
        return self._emit_all()

    def _arrive(self, fb):
        """Hidden layer, step ``eq_step``: the feedback arrives; equations; emit."""
        p = self._p
        value = np.asarray(fb, dtype=float)
        if p.fb_graded:
            value = value - (self._calib if self._calib is not None else 0.0)
        if p.fb_target is not None:
            self._c[p.fb_target] = self._c[p.fb_target] + value * p.fb_unit
        if self._kind == "sample":
            self._equations_fn(self._c, self._g)
            self._slow_update(p.slow_computed)
        return self._emit_all()

    def _slow_update(self, names) -> None:
        d = self._p.slow_decay
        for name in names:
            s_prev, n_prev = self._slow.get(name, (0.0, 0.0))
            s_new, n_new = d * s_prev + self._c[name], d * n_prev + 1.0
            self._slow[name] = (s_new, n_new)
            self._c[f"slow_{name}"] = s_new / n_new

    def _emit_all(self):
        """The y channels of this epoch's kind and the graded payload."""
        p, c = self._p, self._c
        noise = self._kind == "noise"
        fn = self._noise_fn if noise else self._factors_fn
        factors = fn(c, self._g) if fn is not None else []
        phase = p.phase if noise else None
        for ch in p.channels:
            if ch.epoch != phase:
                continue
            value = np.broadcast_to(np.asarray(factors[ch.factor], dtype=float), (self._n,))
            if ch.forward and self._sub == 0 and not noise:
                value = value * p.first_ratio  # the first epoch's shorter pre windows
            if ch.offset:
                y = self._quantise_offset(value * ch.gain + ch.offset)
            else:
                y = self._quantise_channel(np.maximum(ch.sign * value, 0.0) * ch.gain)
            self._y[ch.trace] = y
        self.y1[:], self.y2[:], self.y3[:] = self._y
        src = "noise_drive" if noise else p.src
        if p.src is None:
            return None
        value = np.broadcast_to(np.asarray(c[src], dtype=float), (self._n,))
        if p.src_graded:
            return self._graded(value / p.src_x_quantum + GRADED_ZERO)
        return self._quantise_payload(value / p.src_quantum)


@implements(proc=EpochNeuroLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class EpochNeuroLIFModelFloat(_EpochNeuron, NeuroLIFModelFloat):
    """Float model: exact arithmetic (noise, payloads and channels unrounded)."""

    implements_process = None  # replaced by @implements (the parent implements NeuroLIF)

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self._setup_epochs()

    def _step(self, a, v_add) -> np.ndarray:
        self.subthr_dynamics(activation_in=a)
        if v_add is not None:
            self.v[:] = self.v + v_add
        return self._fire(self.vth)

    @staticmethod
    def _grid(x: np.ndarray, unit: float) -> np.ndarray:
        return x

    @staticmethod
    def _units(x: np.ndarray, unit: float) -> np.ndarray:
        return x / unit

    @staticmethod
    def _quantise_offset(y: np.ndarray) -> np.ndarray:
        return y

    def _graded(self, x: np.ndarray) -> np.ndarray:
        return 2.0 * x


@implements(proc=EpochNeuroLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("bit_accurate_loihi", "fixed_pt")
class EpochNeuroLIFModelFixed(_EpochNeuron, NeuroLIFModelFixed):
    """Fixed-point model: noise on the u/v and input grids, payloads and channels 7-bit."""

    implements_process = None  # replaced by @implements (the parent implements NeuroLIF)

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self._setup_epochs()

    def _step(self, a, v_add) -> np.ndarray:
        if not self.isbiasscaled:
            self.scale_bias()
        if not self.isthrscaled:
            self.effective_vth = np.left_shift(self.vth, self.vth_shift)
            self.isthrscaled = True
        self.subthr_dynamics(activation_in=np.asarray(a, dtype=np.int32))
        if v_add is not None:
            self.v[:] = self.v + v_add
        return self._fire(self.effective_vth)

    @staticmethod
    def _grid(x: np.ndarray, unit: float) -> np.ndarray:
        return np.rint(x / unit) * unit

    @staticmethod
    def _units(x: np.ndarray, unit: float) -> np.ndarray:
        return np.rint(x / unit).astype(np.int32)

    @staticmethod
    def _quantise_offset(y: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(y), 0, TRACE_MAX).astype(np.int32)

    def _graded(self, x: np.ndarray) -> np.ndarray:
        return 2 * np.clip(np.rint(x), 0, TRACE_MAX).astype(np.int32)

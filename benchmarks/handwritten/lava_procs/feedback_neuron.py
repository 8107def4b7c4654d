"""Hand-written KP and PAL neurons for Lava: the throughput baselines of the generated graph.

``HandFeedbackNeuron`` is what one writes by hand, without neurolocal, to run Kolen-Pollack
or phaseless alignment learning (PAL) with on-graph errors and learned feedback synapses on
Lava, for one hidden layer: Lava's LIF (integrate-and-fire, reset to zero); counts and mean
drive over each layer's window; the output's ``err = r - target`` (PAL: plus the fast part
of its drive, ``a - slow(a)``) sent to the feedback synapses as an offset graded spike after
an offset-only one (their pre trace x1 is overwritten by the value); at the hidden neurons
``delta = err * [spiked and a < vth]``; the post factors the learning engine reads: delta
(PAL: its slow part) in y2/y3, KP's rate or PAL's noise (offset-coded) in y1; PAL's noise
current into the voltage, one draw per learning epoch, and its learning epochs within a
sample; decimated decays on the bap. It has the ports of the generated neuron, so the same
wiring serves both; nothing is generated.
"""

from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.neuron import LearningNeuronModelFixed, LearningNeuronModelFloat
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.neuron import LearningNeuronProcess
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.lif.models import AbstractPyLifModelFixed, AbstractPyLifModelFloat

ZERO = 64  # the offset of an offset-coded trace


class HandFeedbackNeuron(LearningNeuronProcess, AbstractProcess):
    """LIF + hand-coded KP / PAL neuron program (see the module docstring)."""

    def __init__(self, *, shape: tuple[int, ...], du: float, dv: float, vth: float,
                 params: dict, name: str | None = None) -> None:
        super().__init__(shape=shape, learning_rule=None, params=params, name=name)
        n = shape[0]
        self.a_in = InPort(shape=(n,))
        self.target_in = InPort(shape=(n,))
        self.s_out = OutPort(shape=(n + 1,))
        self.s_fb_out = OutPort(shape=(n,))
        self.u = Var(shape=(n,), init=0)
        self.v = Var(shape=(n,), init=0)
        self.du = Var(shape=(1,), init=du)
        self.dv = Var(shape=(1,), init=dv)
        self.bias_mant = Var(shape=(n,), init=0)
        self.bias_exp = Var(shape=(n,), init=0)
        self.vth = Var(shape=(1,), init=vth)


class _HandFeedback:
    def _setup(self, proc_params) -> None:
        p = self._p = dict(proc_params["params"])
        self._pal = p["rule"] == "pal"
        self._E, self._L, self._M, self._n = int(p["E"]), int(p["L"]), int(p["M"]), int(p["n"])
        self._output, self._layer = bool(p["output"]), int(p["layer"])
        self._rng = np.random.default_rng(int(p["seed"]))
        self._zero = np.zeros(self._n, dtype=self._dtype)
        self._out = np.zeros(self._n + 1, dtype=self._dtype)
        self._none = np.zeros(self._n, dtype=bool)
        self._all = np.ones(self._n, dtype=bool)
        self._sa = self._sd = self._norm = 0.0

    def run_spk(self) -> None:
        a = self.a_in.recv()
        fb = self.a_third_factor_in.recv() if not self._output else None
        tgt = self.target_in.recv() if self._output else None
        s = (self.time_step - 1) % self._L + 1
        k = (self.time_step - 1) // self._L
        m = k % self._M
        p, e = self._p, self._E
        if s == 1:
            self._begin(k, m)
        if 2 <= s <= e + 1:
            if s == 2 and self._pending is not None:
                a = a + self._pending
            spikes = self._lif_step(a, self._xi_v)
            if m * e + s - 2 >= self._layer:
                self._asum += self.u
            self._count += spikes
            self._out[:-1] = spikes
        else:
            if s == e + 2 and m < self._M - 1:
                self._pending = a
            self._out[:-1] = 0
        self._out[-1] = 1 if s <= e and m * e + s - 1 >= self._layer else 0
        self.s_out.send(self._out)
        self.s_out_bap.send(self._all if self._tick and s == 2 else self._none)
        payload = self._zero
        window = e - max(0, self._layer - m * e)
        if self._output and s == e + 1:
            r = self._count / window
            err = r - tgt
            up = err
            if self._pal:
                a_mean = self._asum * p["u_unit"] / window
                self._norm = p["dec"] * self._norm + 1.0
                self._sa = p["dec"] * self._sa + a_mean
                up = err + (a_mean - self._sa / self._norm)
                self._sd = p["dec"] * self._sd + err
                err = self._sd / self._norm
            ratio = p["first_ratio"] if m == 0 else 1.0
            self._y2, self._y3 = self._pair(err * ratio)
            self._value = self._graded(up / p["x_quantum"] + ZERO)
            payload = self._calibration
        elif self._output and s == e + 2:
            payload = self._value
        elif not self._output and s == self._L - 1:
            self._calib = fb
        elif not self._output and s == self._L:
            err = (fb - self._calib) * p["fb_unit"]
            a_mean = self._asum * p["u_unit"] / window
            delta = err * ((self._count > 0) & (a_mean < p["vth_float"]))
            if self._pal:
                self._norm = p["dec"] * self._norm + 1.0
                self._sd = p["dec"] * self._sd + delta
                delta = self._sd / self._norm
                self._y1 = self._offset(self._xi_f * p["qb"] + ZERO)
            else:
                self._y1 = self._unsigned(self._count / window * p["qb"])
            ratio = p["first_ratio"] if m == 0 else 1.0
            self._y2, self._y3 = self._pair(delta * ratio)
        self.s_fb_out.send(payload)
        self.s_out_y1.send(self._y1)
        self.s_out_y2.send(self._y2)
        self.s_out_y3.send(self._y3)

    def _begin(self, k: int, m: int) -> None:
        p = self._p
        if m == 0:
            self.u[:] = 0
            self.v[:] = 0
            self._pending = None
            self._sa = self._sd = self._norm = 0.0
        self._count = np.zeros(self._n)
        self._asum = np.zeros(self._n)
        self._calib = self._value = None
        zero_y1 = ZERO if self._pal else 0
        self._y1 = np.full(self._n, zero_y1, dtype=self._dtype)
        self._y2, self._y3 = self._zero, self._zero
        self._calibration = np.full(self._n, 2 * ZERO, dtype=self._dtype)
        tick = int(p["tick"])
        self._tick = tick > 0 and (k + 1) % tick == 0
        self._xi_v = None
        if self._pal and not self._output:
            z = p["replay"][k // self._M, m] if p.get("replay") is not None else \
                p["sigma"] * self._rng.standard_normal(self._n)
            self._xi_f, self._xi_v = self._noise(np.asarray(z, dtype=float), p["v_unit"])


@implements(proc=HandFeedbackNeuron, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class HandFeedbackNeuronFloat(_HandFeedback, LearningNeuronModelFloat, AbstractPyLifModelFloat):
    a_third_factor_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    target_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    s_fb_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    vth: float = LavaPyType(float, float)
    _dtype = float

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self._setup(proc_params)

    def _lif_step(self, a, xi_v):
        self.subthr_dynamics(activation_in=a)
        if xi_v is not None:
            self.v[:] = self.v + xi_v
        spikes = self.v > self.vth
        self.v[spikes] = 0
        return spikes

    def _pair(self, x):
        q = self._p["q"]
        return np.maximum(x, 0.0) * q, np.maximum(-x, 0.0) * q

    def _unsigned(self, x):
        return x

    def _offset(self, x):
        return x

    def _graded(self, x):
        return 2.0 * x

    @staticmethod
    def _noise(z, unit):
        return z, z / unit


@implements(proc=HandFeedbackNeuron, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class HandFeedbackNeuronFixed(_HandFeedback, LearningNeuronModelFixed, AbstractPyLifModelFixed):
    a_third_factor_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    target_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=8)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=1)
    s_fb_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    vth: int = LavaPyType(int, np.int32, precision=17)
    _dtype = np.int32

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self._setup(proc_params)

    def _lif_step(self, a, xi_v):
        if not self.isthrscaled:
            self.scale_bias()
            self.effective_vth = np.left_shift(self.vth, self.vth_shift)
            self.isthrscaled = True
        self.subthr_dynamics(activation_in=np.asarray(a, dtype=np.int32))
        if xi_v is not None:
            self.v[:] = self.v + xi_v
        spikes = self.v > self.effective_vth
        self.v[spikes] = 0
        return spikes

    def _pair(self, x):
        q = self._p["q"]
        return (np.clip(np.rint(np.maximum(x, 0.0) * q), 0, 127).astype(np.int32),
                np.clip(np.rint(np.maximum(-x, 0.0) * q), 0, 127).astype(np.int32))

    def _unsigned(self, x):
        return np.clip(np.rint(x), 0, 127).astype(np.int32)

    def _offset(self, x):
        return np.clip(np.rint(x), 0, 127).astype(np.int32)

    def _graded(self, x):
        return 2 * np.clip(np.rint(x), 0, 127).astype(np.int32)

    @staticmethod
    def _noise(z, unit):
        units = np.rint(z / unit)
        return units * unit, units.astype(np.int32)

"""A hand-written DFA neuron for Lava: the throughput baseline of the generated graph.

``HandDFANeuron`` is what one writes by hand, without neurolocal, to run direct feedback
alignment on Lava with on-graph errors: Lava's LIF, the spike count and mean drive over the
layer's window (``T - layer`` steps), ``err = count/window - target`` at the output,
``delta = err * [spiked and a < vth]`` at hidden neurons, ``delta`` split into y2 (positive
part) and y3 (negative part) for the learning engine, and ``err`` sent as a graded spike to
the feedback synapses. It has the ports of :class:`.procs.NeuroLIF`, so the same wiring
serves both; nothing is generated. Used only by ``lava_target.throughput_benchmark``.
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


class HandDFANeuron(LearningNeuronProcess, AbstractProcess):
    """LIF + hand-coded DFA error/third factor (see the module docstring)."""

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


class _HandDFA:
    def _setup(self, proc_params) -> None:
        p = proc_params["params"]
        self._T, self._L, self._n = int(p["T"]), int(p["L"]), int(p["n"])
        self._output = bool(p["output"])
        self._layer = int(p["layer"])
        self._window = self._T - self._layer  # the sample reaches layer l at sample step l
        self._q, self._quantum = float(p["q"]), float(p["quantum"])
        self._fb_unit, self._u_unit = float(p["fb_unit"]), float(p["u_unit"])
        self._vth_float = float(p["vth_float"])
        self._count = np.zeros(self._n)
        self._asum = np.zeros(self._n)
        self._out = np.zeros(self._n + 1, dtype=self._dtype)
        self._zero = np.zeros(self._n, dtype=self._dtype)
        self._y2, self._y3 = self._zero, self._zero

    def run_spk(self) -> None:
        a = self.a_in.recv()
        fb = self.a_third_factor_in.recv() if not self._output else None
        tgt = self.target_in.recv() if self._output else None
        s = (self.time_step - 1) % self._L + 1
        t = self._T
        if s == 1:
            self.u[:] = 0
            self.v[:] = 0
            self._count[:] = 0
            self._asum[:] = 0
            self._y2, self._y3 = self._zero, self._zero
        if 2 <= s <= t + 1:
            spikes = self._lif_step(a)
            if s - 2 >= self._layer:
                self._asum += self.u
            self._count += spikes
            self._out[:-1] = spikes
        else:
            self._out[:-1] = 0
        self._out[-1] = 1 if self._layer < s <= t else 0
        self.s_out.send(self._out)
        payload = self._zero
        if self._output and s == t + 1:
            err = self._count / self._window - tgt
            payload = self._round(err / self._quantum)
            self._y2, self._y3 = self._channel(err), self._channel(-err)
        elif not self._output and s == t + 2:
            err = fb * self._fb_unit
            dphi = (self._count > 0) & \
                (self._asum * self._u_unit / self._window < self._vth_float)
            delta = err * dphi
            self._y2, self._y3 = self._channel(delta), self._channel(-delta)
        self.s_fb_out.send(payload)
        self.s_out_y2.send(self._y2)
        self.s_out_y3.send(self._y3)


@implements(proc=HandDFANeuron, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class HandDFANeuronFloat(_HandDFA, LearningNeuronModelFloat, AbstractPyLifModelFloat):
    a_third_factor_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    target_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    s_fb_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    vth: float = LavaPyType(float, float)
    _dtype = float

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self._setup(proc_params)

    def _lif_step(self, a):
        self.subthr_dynamics(activation_in=a)
        spikes = self.v > self.vth
        self.v[spikes] = 0
        return spikes

    def _channel(self, x):
        return np.maximum(x, 0.0) * self._q

    def _round(self, x):
        return x


@implements(proc=HandDFANeuron, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class HandDFANeuronFixed(_HandDFA, LearningNeuronModelFixed, AbstractPyLifModelFixed):
    a_third_factor_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    target_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=8)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=1)
    s_fb_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    vth: int = LavaPyType(int, np.int32, precision=17)
    _dtype = np.int32

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self._setup(proc_params)

    def _lif_step(self, a):
        if not self.isthrscaled:
            self.scale_bias()
            self.effective_vth = np.left_shift(self.vth, self.vth_shift)
            self.isthrscaled = True
        self.subthr_dynamics(activation_in=np.asarray(a, dtype=np.int32))
        spikes = self.v > self.effective_vth
        self.v[spikes] = 0
        return spikes

    def _channel(self, x):
        return np.clip(np.rint(np.maximum(x, 0.0) * self._q), 0, 127).astype(np.int32)

    def _round(self, x):
        return np.clip(np.rint(x), -127, 127).astype(np.int32)

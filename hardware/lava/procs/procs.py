"""The three Lava Processes the generated Loihi 2 graph needs beyond Lava's own.

Lava's stock ``LearningLIF`` computes no third factor and sends nothing on its
``s_out_bap``/``s_out_y*`` ports, and ``LearningDense`` never resets its traces, so a graph
that learns once per sample with an error computed on the graph needs:

* :class:`EpochSource` -- the input spike trains laid out in learning epochs, an always-on
  bias unit, and the one-hot teaching signal at the end of each epoch's forward window;
* :class:`NeuroLIF` -- Lava's current-based LIF (the same arithmetic as ``LIF``: float, or
  bit-accurate fixed point) plus the *neuron program* neurolocal generates from the rule:
  at the end of the forward window it measures its compartments, runs the rule's output or
  hidden equations (with the error arriving on ``a_third_factor_in``), sends the compartment
  the feedback projection reads as a graded spike on ``s_fb_out``, and holds the rule's
  post-synaptic factors on ``s_out_y1..3`` for the learning engine (Loihi 3-factor learning);
* :class:`EpochLearningDense` -- Lava's ``LearningDense`` (same ports, same learning engine,
  same float / bit-approximate models) whose pre-synaptic traces are reset after each
  learning epoch, as neurolocal's semantics reset state between samples.

The epoch layout (``L`` steps, ``s = 1..L`` within the epoch): ``s = 1`` a lead step in which
only the input's bias unit fires (layer l's bias unit fires at ``s = l+1..T``, its window,
so its spike count is the window and its rate 1), ``s = 2..T+1`` the forward window (sample
step ``s - 2``), ``s = T+2..L`` the error steps (feedback travels one synapse group per
step), the learning engine runs at ``s = L`` (``t_epoch = L``). Everything here reads numpy
and Lava only.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.neuron import LearningNeuronModelFixed, LearningNeuronModelFloat
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.neuron import LearningNeuronProcess
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.dense.models import (
    PyLearningDenseModelBitApproximate,
    PyLearningDenseModelFloat,
)
from lava.proc.dense.process import LearningDense
from lava.proc.lif.models import AbstractPyLifModelFixed, AbstractPyLifModelFloat

from neurolocal.hardware.lava.neuron_program import NeuronProgram
from neurolocal.hardware.profiles import LOIHI2

TRACE_MAX = LOIHI2.traces.range[1]  # 7-bit unsigned traces


def _ops() -> SimpleNamespace:
    """What generated neuron code calls (the ``ops`` namespace of codegen.ArrayPrinter)."""
    return SimpleNamespace(
        exp=np.exp, log=np.log, tanh=np.tanh, sign=np.sign, abs=np.abs, sqrt=np.sqrt,
        step=lambda x: (np.asarray(x) > 0).astype(np.float64),
        maximum=np.maximum, minimum=np.minimum, zeros_like=np.zeros_like)


# ----------------------------------------------------------------------------------------------
# Input: spikes, bias unit, teaching signal


class EpochSource(AbstractProcess):
    """Input spike trains (K samples x T steps) and one-hot targets, laid out in epochs.

    ``s_out`` (n + 1): the sample's spikes in the forward window and, as the last unit, an
    always-on bias neuron firing at ``s = 1..T`` (so the bias reaches the first layer in every
    forward step through the one-step synaptic delay). ``t_out`` (n_out): the target, sent at
    ``s = T + 1`` only (when the output neurons compute their error).
    """

    def __init__(self, *, spikes: np.ndarray, targets: np.ndarray, epoch_len: int,
                 name: str | None = None) -> None:
        k, t, n = spikes.shape
        super().__init__(timesteps=t, epoch_len=epoch_len, n_samples=k, name=name)
        self.spikes = Var(shape=(n, k * t), init=spikes.reshape(k * t, n).T.astype(np.int8))
        self.targets = Var(shape=targets.shape[::-1], init=targets.T.copy())
        self.s_out = OutPort(shape=(n + 1,))
        self.t_out = OutPort(shape=(targets.shape[1],))


class _EpochSourceModel(PyLoihiProcessModel):
    s_out: Any = None
    t_out: Any = None

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self._t = int(proc_params["timesteps"])
        self._len = int(proc_params["epoch_len"])
        self._k = int(proc_params["n_samples"])

    def run_spk(self) -> None:
        s = (self.time_step - 1) % self._len + 1
        k = (self.time_step - 1) // self._len
        n = self.spikes.shape[0]
        out = np.zeros(n + 1, dtype=self._dtype)
        tgt = np.zeros(self.targets.shape[0], dtype=self._dtype)
        if k < self._k:
            if 2 <= s <= self._t + 1:
                out[:n] = self.spikes[:, k * self._t + s - 2]
            if s <= self._t:
                out[n] = 1
            if s == self._t + 1:
                tgt[:] = self.targets[:, k]
        self.s_out.send(out)
        self.t_out.send(tgt)


@implements(proc=EpochSource, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class EpochSourceModelFloat(_EpochSourceModel):
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    t_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    spikes: np.ndarray = LavaPyType(np.ndarray, np.int8, precision=1)
    targets: np.ndarray = LavaPyType(np.ndarray, float)
    _dtype = float


@implements(proc=EpochSource, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class EpochSourceModelFixed(_EpochSourceModel):
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=1)
    t_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=8)
    spikes: np.ndarray = LavaPyType(np.ndarray, np.int8, precision=1)
    targets: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=8)
    _dtype = np.int32


# ----------------------------------------------------------------------------------------------
# Neurons with the rule's neuron program


class NeuroLIF(LearningNeuronProcess, AbstractProcess):
    """Lava's LIF plus neurolocal's per-epoch neuron program (a Loihi 2 3-factor neuron).

    Ports: ``a_in`` (forward input), ``a_third_factor_in`` (the feedback projections' sum,
    graded), ``target_in`` (output layer: the teaching signal), ``s_out`` (n + 1: spikes and
    the layer's always-on bias unit), ``s_fb_out`` (graded: the compartment the feedback
    projections read), ``s_out_bap`` (spikes, for a ``y0`` dependency) and ``s_out_y1..3``
    (the rule's post-synaptic factors, 7-bit in fixed point). ``program`` is the data
    :mod:`neurolocal.hardware.lava_target` generates (equations as code, timing, scales).
    Vars besides LIF's: ``counts`` (spike counts of the last epoch), ``scores`` (the output
    layer's class scores per sample, as the other targets score), ``spikes_total``.
    """

    def __init__(self, *, shape: tuple[int, ...], du: float, dv: float, vth: float,
                 program: NeuronProgram, n_samples: int, name: str | None = None) -> None:
        super().__init__(shape=shape, learning_rule=None, program=program,
                         n_samples=n_samples, name=name)
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
        self.counts = Var(shape=(n,), init=0)
        self.scores = Var(shape=(n, max(int(n_samples), 1)), init=0)
        self.spikes_total = Var(shape=(1,), init=0)


class _NeuronProgram:
    """The per-step and per-epoch logic shared by the float and fixed-point models.

    The per-step path is kept lean (it runs ``T`` times per sample): spike counts and the
    drive are accumulated, traces that decay are updated, and only connected input ports are
    read; everything else happens once per epoch.
    """

    def _setup(self, proc_params) -> None:
        p: NeuronProgram = proc_params["program"]
        self._p = p
        self._n = p.n
        self._T, self._L = p.timesteps, p.epoch_len
        ns: dict = {"ops": _ops(), "np": np}
        exec(compile(p.code, f"<neurolocal neuron program {p.name}>", "exec"), ns)
        self._measure_fn = ns["measure"]
        self._equations_fn = ns["equations"]
        self._factors_fn = ns["post_factors"]
        self._decays = [float(d) for d in p.decays]
        # traces with decay 1 are the spike count; only the others are updated every step
        self._decaying = [k for k in p.traces if self._decays[k] != 1.0]
        self._g = dict(p.globals)
        self._k = dict(p.constants)
        self._learn = p.learn
        # "zero": Lava's LIF (v = 0 in the step it spikes); "subtract": vth is subtracted in
        # the next step (semantics.SpikingConfig.reset)
        self._subtract = p.reset == "subtract"
        self._output = p.role == "output"
        self._eq_step = p.eq_step if not self._output else self._T + 1
        # the window: the sample reaches layer l at sample step l (epoch step l + 2); the
        # drive is averaged over it, and the bias unit fires in it (epoch steps l+1 .. T)
        self._layer = p.layer
        self._no_payload = np.zeros(self._n, dtype=self._payload_dtype)
        self._zeros_in = np.zeros(self._n)
        self._out = np.zeros(self._n + 1, dtype=self._spike_dtype)
        self._reset_program()

    def _reset_program(self) -> None:
        n = self._n
        self._tr = [np.zeros(n), np.zeros(n), np.zeros(n)]
        self._count = np.zeros(n)
        self._asum = np.zeros(n)
        self._last = np.zeros(n, dtype=bool)
        self._c: dict = {}
        self._y = [np.zeros(n, dtype=self._y_dtype) for _ in range(3)]

    def _measure(self) -> dict:
        tr = [self._count if self._decays[k] == 1.0 else self._tr[k] for k in range(3)]
        st = {"tr1": tr[0], "tr2": tr[1], "tr3": tr[2], "spk": (self._count > 0) * 1.0,
              "asum": self._asum * self._p.u_unit}
        c = self._measure_fn(st, self._k)
        for name in self._p.computed:
            c[name] = np.zeros(self._n)
        return c

    def _emit(self) -> np.ndarray:
        """Run the equations' consequences: the graded payload and the held y channels."""
        p, c = self._p, self._c
        factors = self._factors_fn(c, self._g)
        for ch in p.channels:
            value = np.broadcast_to(np.asarray(factors[ch.factor], dtype=float), (self._n,))
            self._y[ch.trace] = self._quantise_channel(np.maximum(ch.sign * value, 0.0) * ch.gain)
        self._publish_y()
        if p.src is None:
            return self._no_payload
        value = np.broadcast_to(np.asarray(c[p.src], dtype=float), (self._n,))
        return self._quantise_payload(value / p.src_quantum)

    def _end_of_window(self, sample: int, tgt) -> np.ndarray | None:
        """Step T + 1: measure; the output layer predicts and, learning, runs its program."""
        self._c = self._measure()
        self.counts[:] = self._count
        self.spikes_total[:] = self.spikes_total + self._count.sum()
        if self._output:
            t, window = self._T, self._k["T"]
            score = self._count * self._k["k1"] if self._decays[0] == 1.0 else \
                self._tr[0] * self._k["k1"]
            self._keep_score(sample, score + (0.5 / t) * np.tanh(self._asum * self._p.u_unit
                                                                  / window))
            if self._learn:
                self._c["target"] = np.asarray(tgt, dtype=float)
                self._equations_fn(self._c, self._g)
                return self._emit()
        return None

    def _keep_score(self, sample: int, score: np.ndarray) -> None:
        if sample < self.scores.shape[1]:
            self.scores[:, sample] = score

    def _error_arrives(self, fb) -> np.ndarray:
        """Hidden layer, step ``eq_step``: add the feedback, run the equations, emit."""
        p = self._p
        if p.fb_target is not None:
            self._c[p.fb_target] = self._c[p.fb_target] + np.asarray(fb, dtype=float) * p.fb_unit
        self._equations_fn(self._c, self._g)
        return self._emit()

    def _fire(self, vth) -> np.ndarray:
        """Threshold and reset after the sub-threshold update (float or fixed units)."""
        if self._subtract:  # the previous step's spike is subtracted now
            self.v[:] = self.v - vth * self._last
        spikes = self.v > vth
        if not self._subtract:
            self.v[spikes] = 0
        self._last = spikes
        return spikes

    def _recv(self, port):
        return port.recv() if port.csp_ports else self._zeros_in

    def run_spk(self) -> None:
        a = self.a_in.recv()
        fb = self._recv(self.a_third_factor_in)
        tgt = self._recv(self.target_in)
        spikes, payload = self._step(a, fb, tgt)
        self.s_out.send(self._out)
        self.s_out_bap.send(spikes)
        self.s_fb_out.send(self._no_payload if payload is None else payload)
        self.s_out_y1.send(self._y[0])
        self.s_out_y2.send(self._y[1])
        self.s_out_y3.send(self._y[2])

    def _step(self, a, fb, tgt) -> tuple[np.ndarray, np.ndarray | None]:
        """One time step given this step's input ``a``, feedback ``fb`` and target ``tgt``:
        the spikes, and the graded payload for the feedback synapses (None: nothing to send).
        ``self._out`` holds the spikes plus the bias unit, ``self._y`` the post factors."""
        s = (self.time_step - 1) % self._L + 1
        t = self._T
        if s == 1:
            self._reset_state()
        out = self._out
        if 2 <= s <= t + 1:
            spikes = self._lif_step(a)
            if s - 2 >= self._layer:
                self._asum += self.u
            self._count += spikes
            for k in self._decaying:
                self._tr[k] *= self._decays[k]
                self._tr[k] += spikes
            out[:-1] = spikes
        else:
            spikes = self._zeros_in.astype(bool)
            out[:-1] = 0
        out[-1] = 1 if self._layer < s <= t else 0
        payload = None
        if s == t + 1:
            payload = self._end_of_window((self.time_step - 1) // self._L, tgt)
        if self._learn and not self._output and s == self._eq_step:
            payload = self._error_arrives(fb)
        return spikes, payload

    def _reset_state(self) -> None:
        self.u[:] = 0
        self.v[:] = 0
        self._reset_program()
        self._publish_y()

    def _publish_y(self) -> None:
        """The neuron's y Vars show the post factors (a fused core overrides this)."""
        self.y1[:], self.y2[:], self.y3[:] = self._y


class FloatNeurons:
    """Float arithmetic of the neuron program: Lava's float LIF, float payloads and y values."""

    _y_dtype = float
    _payload_dtype = float
    _spike_dtype = float

    def _lif_step(self, a: np.ndarray) -> np.ndarray:
        self.subthr_dynamics(activation_in=a)
        return self._fire(self.vth)

    @staticmethod
    def _quantise_channel(y: np.ndarray) -> np.ndarray:
        return y

    @staticmethod
    def _quantise_payload(x: np.ndarray) -> np.ndarray:
        return x


class FixedNeurons:
    """Fixed-point arithmetic: Lava's bit-accurate LIF (24-bit u/v, 12-bit decays, threshold
    << 6); the program's arithmetic runs in float64 on integer state and its outputs are
    quantised: y channels to 7-bit unsigned, payloads to ``payload_max`` signed."""

    _y_dtype = np.int32
    _payload_dtype = np.int32
    _spike_dtype = np.int32

    def _lif_step(self, a: np.ndarray) -> np.ndarray:
        if not self.isbiasscaled:
            self.scale_bias()
        if not self.isthrscaled:
            self.effective_vth = np.left_shift(self.vth, self.vth_shift)
            self.isthrscaled = True
        self.subthr_dynamics(activation_in=np.asarray(a, dtype=np.int32))
        return self._fire(self.effective_vth)

    @staticmethod
    def _quantise_channel(y: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(y), 0, TRACE_MAX).astype(np.int32)

    def _quantise_payload(self, x: np.ndarray) -> np.ndarray:
        cap = int(self._p.payload_max)
        return np.clip(np.rint(x), -cap, cap).astype(np.int32)


@implements(proc=NeuroLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class NeuroLIFModelFloat(_NeuronProgram, FloatNeurons, LearningNeuronModelFloat,
                         AbstractPyLifModelFloat):
    """Floating-point model: Lava's float LIF arithmetic, float payloads and y values."""

    a_third_factor_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    target_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    s_fb_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    vth: float = LavaPyType(float, float)
    counts: np.ndarray = LavaPyType(np.ndarray, float)
    scores: np.ndarray = LavaPyType(np.ndarray, float)
    spikes_total: np.ndarray = LavaPyType(np.ndarray, float)

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self._setup(proc_params)


@implements(proc=NeuroLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("bit_accurate_loihi", "fixed_pt")
class NeuroLIFModelFixed(_NeuronProgram, FixedNeurons, LearningNeuronModelFixed,
                         AbstractPyLifModelFixed):
    """Fixed-point model (:class:`FixedNeurons`)."""

    a_third_factor_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    target_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=8)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=1)
    s_fb_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    vth: int = LavaPyType(int, np.int32, precision=17)
    counts: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    scores: np.ndarray = LavaPyType(np.ndarray, float)
    spikes_total: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=32)

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self.effective_vth = 0
        self._setup(proc_params)


# ----------------------------------------------------------------------------------------------
# Learning synapses whose traces are reset between samples


class EpochLearningDense(LearningDense):
    """``LearningDense`` whose pre-synaptic traces x1, x2 restart at 0 in every epoch.

    Same constructor, ports and learning engine as Lava's ``LearningDense``; its models are
    Lava's own (float / bit-approximate) with one addition after the learning phase: the
    pre traces are reset, which neurolocal's semantics (state reset between samples) need and
    Lava's LearningDense has no switch for. (The post traces of a 3-factor rule are written
    by the post neuron every step and need no reset.)
    """


def _reset_pre_traces(model) -> None:
    model.x1 = np.zeros_like(model.x1)
    model.x2 = np.zeros_like(model.x2)


@implements(proc=EpochLearningDense, protocol=LoihiProtocol)
class EpochLearningDenseModelFloat(PyLearningDenseModelFloat):
    """Lava's float LearningDense model plus the per-epoch pre-trace reset."""

    implements_process = None  # replaced by @implements (the parent implements LearningDense)

    def run_lrn(self) -> None:
        super().run_lrn()
        _reset_pre_traces(self)


@implements(proc=EpochLearningDense, protocol=LoihiProtocol)
class EpochLearningDenseModelFixed(PyLearningDenseModelBitApproximate):
    """Lava's bit-approximate LearningDense model plus the per-epoch pre-trace reset."""

    implements_process = None  # replaced by @implements (the parent implements LearningDense)

    def run_lrn(self) -> None:
        super().run_lrn()
        _reset_pre_traces(self)

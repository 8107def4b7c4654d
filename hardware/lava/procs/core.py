"""A layer as one Lava process: its incoming synapses and its neurons, as on one neurocore.

:class:`NeuroCore` is ``EpochLearningDense -> NeuroLIF <- Dense(B)`` in one process: the
forward synapses with Lava's own learning engine (the ``LearningDense`` models, inherited,
so weights, traces and stochastic rounding are Lava's arithmetic; :mod:`.engine` and
:mod:`.traces` compute parts of it with fewer numpy calls), the neurons with the rule's
neuron program (the ``NeuroLIF`` code, shared) and the fixed graded feedback synapses into
the layer (Lava's ``Dense`` arithmetic). Inside the process they talk through variables with
the same one-step delays; between cores, Lava channels. The first core reads the samples,
and the last the targets, from memory the host shares (:mod:`..shared`); every core leaves
its results there, so nothing goes through ``Var.get``.

The cores run free (``AsyncProtocol``): told to run ``n`` steps, a core steps itself through
Lava's Loihi phases in ``LoihiProtocol``'s order instead of being handed each phase by the
runtime service, and the channels keep the cores in lockstep. A graph of cores computes bit
for bit what the graph of separate processes computes (tested), with two processes fewer
per layer and no runtime-service handshake per step.
"""

from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.learning.constants import (
    GradedSpikeCfg,
)
from lava.magma.core.learning.learning_rule import Loihi3FLearningRule
from lava.magma.core.model.py.model import PyAsyncProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.variable import Var
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.async_protocol import AsyncProtocol
from lava.magma.runtime.mgmt_token_enums import MGMT_COMMAND, enum_equal
from lava.proc.dense.models import (
    PyLearningDenseModelBitApproximate,
    PyLearningDenseModelFloat,
)
from lava.proc.dense.process import LearningDense
from lava.proc.lif.models import AbstractPyLifModelFixed, AbstractPyLifModelFloat
from lava.utils.weightutils import SignMode, clip_weights, truncate_weights

from neurolocal.hardware.lava.neuron_program import NeuronProgram
from neurolocal.hardware.lava.procs.engine import (
    BlockTraceRandom,
    OuterApplier,
    stochastic_round_weights,
)
from neurolocal.hardware.lava.procs.procs import FixedNeurons, FloatNeurons, _NeuronProgram
from neurolocal.hardware.lava.procs.traces import fixed_history, float_history
from neurolocal.hardware.lava.shared import Shared


class NeuroCore(LearningDense):
    """Forward learning synapses + neurons + feedback synapses of one layer.

    Ports: ``s_in`` (the layer below's spikes and bias unit), ``s_out`` (spikes + bias unit),
    ``fb_in`` (the graded payload of the layer the error comes from; its synapses,
    ``fb_weights``, live here), ``s_fb_out`` (this layer's payload), ``target_in`` (output
    layer). Vars: ``LearningDense``'s and ``NeuroLIF``'s.

    ``feed`` (:func:`feed_layout`): the first core reads its input from it instead of
    ``s_in``, the output core its targets instead of ``target_in``; ``header`` says which
    samples the feed holds; ``mailbox`` (:func:`mailbox_layout`) receives the core's weights
    at the end of each block of samples, its spike counts and (output core) the scores.
    """

    def __init__(self, *, weights: np.ndarray, learning_rule: Loihi3FLearningRule, du: float,
                 dv: float, vth: float, program: NeuronProgram, n_samples: int,
                 fb_weights: np.ndarray | None = None, name: str | None = None,
                 feed: Shared | None = None, header: Shared | None = None,
                 mailbox: Shared | None = None, reads_input: bool = False,
                 reads_targets: bool = False) -> None:
        super().__init__(weights=weights, learning_rule=learning_rule, name=name,
                         sign_mode=SignMode.MIXED, program=program, n_samples=n_samples,
                         has_feedback=fb_weights is not None, feed=feed, header=header,
                         mailbox=mailbox, reads_input=reads_input, reads_targets=reads_targets)
        n = weights.shape[0]
        fb = np.zeros((n, 1)) if fb_weights is None else np.asarray(fb_weights)
        self.a_in = InPort(shape=(n,))  # the LIF's input port: fed inside the core, unused
        self.target_in = InPort(shape=(n,))
        self.s_out = OutPort(shape=(n + 1,))
        self.s_fb_out = OutPort(shape=(n,))
        self.fb_in = InPort(shape=(fb.shape[1],))
        self.fb_weights = Var(shape=fb.shape, init=fb)
        self.fb_buff = Var(shape=(n,), init=0)
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


def feed_layout(capacity: int, timesteps: int, n_in: int, n_out: int) -> dict:
    """What the host writes before a block: the samples' spikes and one-hot targets."""
    return {"spikes": ((capacity, timesteps, n_in), np.int8),
            "targets": ((capacity, n_out), np.float64)}


#: which samples the feed holds: global indices ``base .. end - 1`` (one learning epoch each)
HEADER_LAYOUT = {"range": ((2,), np.int64)}


def mailbox_layout(n_post: int, n_pre: int, capacity: int) -> dict:
    """What a core leaves for the host: weights (LSBs, after the block's last sample), the last
    sample's spike counts, the running spike total, the block's class scores (output core)."""
    return {"weights": ((n_post, n_pre), np.float64), "counts": ((n_post,), np.float64),
            "spikes_total": ((1,), np.float64), "scores": ((n_post, capacity), np.float64)}


def _x(k: int, dep: str):
    """Lava's formula for x trace ``k`` evaluated at dependency ``dep``."""
    if dep == "x0":
        return lambda m, xh, yh: xh[m.tx, k].diagonal()[np.newaxis, :]
    if dep == "y0":
        return lambda m, xh, yh: xh[m.ty, k]
    return lambda m, xh, yh: xh[-1, k][np.newaxis, :]


def _y(k: int, dep: str):
    """Lava's formula for y trace ``k`` evaluated at dependency ``dep``."""
    if dep == "x0":
        return lambda m, xh, yh: yh[m.tx, k].T
    if dep == "y0":
        return lambda m, xh, yh: yh[m.ty, k].diagonal()[:, np.newaxis]
    return lambda m, xh, yh: yh[-1, k][:, np.newaxis]


_DEPS = ("x0", "y0", "u")
_TRACE_KEYS = {**{f"x{k + 1}": {d: _x(k, d) for d in _DEPS} for k in range(2)},
               **{f"y{k + 1}": {d: _y(k, d) for d in _DEPS} for k in range(3)}}


class _Core:
    """The step of a core (neurons on last step's synaptic input, then the synapses), and
    its free-running loop."""

    def _setup_core(self, proc_params) -> None:
        self._setup(proc_params)
        self._has_feedback = bool(proc_params["has_feedback"])
        self._fb_ready = False
        self._needed_traces = {
            f"{factor.state_var}_{product.dependency}"
            for series in self._learning_rule.active_product_series.values()
            for product in series.products for factor in product.factors
            if factor.state_var in _TRACE_KEYS}
        # the trace rows the rule reads: the others' histories are never looked at (x traces
        # are reset after each learning phase, y traces rewritten by the neurons every step)
        read = {key.split("_")[0] for key in self._needed_traces}
        self._x_rows = np.array([k for k in range(2) if f"x{k + 1}" in read], dtype=int)
        self._y_rows = np.array([k for k in range(3) if f"y{k + 1}" in read], dtype=int)
        self._feed, self._header = proc_params.get("feed"), proc_params.get("header")
        self._mailbox = proc_params.get("mailbox")
        self._reads_input = bool(proc_params.get("reads_input"))
        self._reads_targets = bool(proc_params.get("reads_targets"))
        if self._reads_input:
            self._feed_in = np.zeros(self._feed["spikes"].shape[2] + 1, dtype=bool)
        self._no_target = np.zeros(self._n)
        self._cmd_handlers[MGMT_COMMAND.RUN[0]] = self._run_free

    def _run_free(self) -> None:
        """Run the steps the host asked for, each as Lava's ``LoihiProtocol`` would order its
        phases: ``time_step += 1``, the spiking phase, the learning phase at an epoch's end.
        A stop command is looked for between epochs."""
        steps = int(self.service_to_process.recv()[0].item())
        for _ in range(steps):
            self.time_step += 1
            self.run_spk()
            self.advance_to_time_step(self.time_step + 1)
            if self.lrn_guard():
                self.run_lrn()
                if self.check_for_stop_cmd():
                    break
        self.process_to_service.send(PyAsyncProcessModel.Response.STATUS_DONE)

    def check_for_stop_cmd(self) -> bool:
        """Lava's ``PyAsyncProcessModel.check_for_stop_cmd``."""
        return bool(self.service_to_process.probe()) and enum_equal(
            self.service_to_process.peek(), MGMT_COMMAND.STOP)

    # -- the host's feed and mailbox ------------------------------------------------------------
    def _sample(self) -> tuple[int, int]:
        """(step within the epoch 1..L, the sample's index in the feed)."""
        return (self.time_step - 1) % self._L + 1, (self.time_step - 1) // self._L - \
            int(self._header["range"][0])

    def _input(self) -> np.ndarray:
        """This step's input spikes and bias unit, as ``EpochSource`` lays them out."""
        if not self._reads_input:
            s_in = self.s_in.recv()
            return s_in if self.num_message_bits.item() > 0 else s_in.astype(bool)
        s, k = self._sample()
        x = self._feed_in
        x[:-1] = self._feed["spikes"][k, s - 2] if 2 <= s <= self._T + 1 else False
        x[-1] = s <= self._T
        return x

    def _target(self) -> np.ndarray:
        if not self._reads_targets:
            return self._recv(self.target_in)
        s, k = self._sample()
        return self._feed["targets"][k] if s == self._T + 1 else self._no_target

    def _end_of_window(self, sample: int, tgt) -> np.ndarray | None:
        payload = super()._end_of_window(sample, tgt)
        if self._mailbox is not None:
            self._mailbox["counts"][:] = self.counts
            self._mailbox["spikes_total"][:] = self.spikes_total
        return payload

    def _keep_score(self, sample: int, score: np.ndarray) -> None:
        if self._mailbox is None:
            super()._keep_score(sample, score)
            return
        self._mailbox["scores"][:, sample - int(self._header["range"][0])] = score

    # -- a step ---------------------------------------------------------------------------------
    def _extract_applier_evaluated_traces(self, x_hist: np.ndarray, y_hist: np.ndarray
                                          ) -> dict[str, np.ndarray]:
        """Lava's evaluated traces (``PyLearningConnection``), only those the rule's products
        read: the others are (post x pre) gathers that no product of the rule uses."""
        return {key: _TRACE_KEYS[key.split("_")[0]][key.split("_")[1]](self, x_hist, y_hist)
                for key in self._needed_traces}

    def _publish_y(self) -> None:
        """The learning engine reads the neurons' y values in :meth:`recv_traces`."""

    def _feedback(self, payload: np.ndarray) -> np.ndarray:
        return self.fb_weights.dot(payload)

    def run_spk(self) -> None:
        if self._has_feedback and not self._fb_ready:
            self._prepare_feedback()
        self._spikes, payload = self._step(self.a_buff, self.fb_buff, self._target())
        self.s_out.send(self._out)
        self.s_fb_out.send(self._no_payload if payload is None else payload)
        if self._has_feedback:  # B . payload arrives next step, as through a Dense
            self.fb_buff = self._feedback(self.fb_in.recv())
        self._synapse_step(self._input())

    def _synapse_step(self, s_in: np.ndarray) -> None:
        """Lava's ``LearningDense.run_spk`` on ``s_in`` (its ``a_out`` is this core's
        neurons): ``a_buff = W . s_in`` for the next step, then the learning engine's pre/post
        bookkeeping (:meth:`recv_traces`)."""
        self._prepare_weights()
        if self.num_message_bits.item() > 0:
            self.a_buff = self._scaled(self.weights.dot(s_in))
        else:
            self.a_buff = self._scaled(self.weights[:, s_in].sum(axis=1))
        self.recv_traces(s_in)

    def _process_pre_spikes(self, s_in: np.ndarray) -> None:
        """Lava's, for binary spikes (``USE_REGULAR_IMPULSE``), without the work it does on
        empty selections: a neuron spiking again in the epoch gets its impulses now, and
        every spike is timed."""
        if self._graded_spike_cfg != GradedSpikeCfg.USE_REGULAR_IMPULSE:
            super()._process_pre_spikes(s_in)
            return
        spiked = np.asarray(s_in).astype(bool, copy=False)
        again = spiked & (self.tx > 0)
        if again.any():
            self._impulse_again(again)
        self.tx[spiked] = self._within_epoch_time_step()

    def recv_traces(self, s_in) -> None:
        """Lava's ``recv_traces`` (Loihi3FLearningRule) with this core's post spikes and y
        values instead of ports. Lava adds the post-trace impulses of neurons that spiked
        again, then overwrites all three y traces with the neuron's y values: only the spike
        times and ``y0`` of that step remain, which is what is kept here."""
        self._process_pre_spikes(s_in)
        self._update_trace_randoms()
        spikes = np.asarray(self._spikes, dtype=bool)
        self.y0[spikes] = True
        self.ty[spikes] = self._within_epoch_time_step()
        for name, y in zip(("y1", "y2", "y3"), self._y):
            setattr(self, name, np.array(y, dtype=getattr(self, name).dtype))
        self._update_trace_randoms()

    def run_lrn(self) -> None:
        super().run_lrn()
        self.x1 = np.zeros_like(self.x1)  # one learning epoch per sample (EpochLearningDense)
        self.x2 = np.zeros_like(self.x2)
        if self._mailbox is not None and self.time_step // self._L == int(self._header["range"][1]):
            self._mailbox["weights"][:] = self.weights  # the block's last sample is learned

@implements(proc=NeuroCore, protocol=AsyncProtocol)
@requires(CPU)
@tag("floating_pt")
class NeuroCoreModelFloat(_Core, _NeuronProgram, FloatNeurons, PyLearningDenseModelFloat,
                          AbstractPyLifModelFloat):
    """Float: Lava's float LearningDense, float LIF, float Dense for the feedback."""

    implements_process = None  # set by @implements (the parent implements LearningDense,
    implements_protocol = None  # with LoihiProtocol)

    target_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    fb_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    s_fb_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    fb_weights: np.ndarray = LavaPyType(np.ndarray, float)
    fb_buff: np.ndarray = LavaPyType(np.ndarray, float)
    vth: float = LavaPyType(float, float)
    counts: np.ndarray = LavaPyType(np.ndarray, float)
    scores: np.ndarray = LavaPyType(np.ndarray, float)
    spikes_total: np.ndarray = LavaPyType(np.ndarray, float)

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self._setup_core(proc_params)

    def _prepare_feedback(self) -> None:
        self._fb_ready = True  # Lava's float Dense uses its weights as they are

    def _prepare_weights(self) -> None:
        """Lava's float LearningDense uses its weights as they are."""

    def _impulse_again(self, again: np.ndarray) -> None:
        self.x1[again] += self._x_impulses[0]
        self.x2[again] += self._x_impulses[1]

    def _compute_trace_histories(self) -> tuple[np.ndarray, np.ndarray]:
        t = self._learning_rule.t_epoch
        x = float_history(self._x_traces, self._x_taus, self.tx, self._x_impulses, t,
                          self._x_rows)
        y = float_history(self._y_traces, self._y_taus, self.ty, self._y_impulses, t,
                          self._y_rows)
        if x is None or y is None:
            return super()._compute_trace_histories()
        return x, y

    @staticmethod
    def _scaled(a: np.ndarray) -> np.ndarray:
        return a


@implements(proc=NeuroCore, protocol=AsyncProtocol)
@requires(CPU)
@tag("bit_approximate_loihi", "fixed_pt")
class NeuroCoreModelFixed(_Core, _NeuronProgram, FixedNeurons,
                          PyLearningDenseModelBitApproximate, AbstractPyLifModelFixed):
    """Fixed point: Lava's bit-approximate LearningDense, bit-accurate LIF and Dense."""

    implements_process = None  # set by @implements (the parent implements LearningDense,
    implements_protocol = None  # with LoihiProtocol)

    target_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=8)
    fb_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=1)
    s_fb_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    fb_weights: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=8)
    fb_buff: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    vth: int = LavaPyType(int, np.int32, precision=17)
    counts: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    scores: np.ndarray = LavaPyType(np.ndarray, float)
    spikes_total: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=32)

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self.effective_vth = 0
        self._setup_core(proc_params)
        self._learning_rule_appliers = {name: OuterApplier(applier._product_series)
                                        for name, applier in
                                        self._learning_rule_appliers.items()}
        seed = self._learning_rule.rng_seed  # as Lava's _init_randoms seeds them
        self._x_random = BlockTraceRandom(seed, seed + 1)
        self._y_random = BlockTraceRandom(seed + 2, seed + 3)

    def _prepare_feedback(self) -> None:
        """What Lava's bit-accurate Dense does to its weights at its first step."""
        w = clip_weights(self.fb_weights, SignMode.MIXED, num_bits=8)
        self.fb_weights = truncate_weights(w, SignMode.MIXED, 8)
        self._fb_ready = True

    def _feedback(self, payload: np.ndarray) -> np.ndarray:
        return np.right_shift(self.fb_weights.dot(payload), 0)

    @staticmethod
    def _stochastic_round_synaptic_variable(syn_var_name: str, syn_var_values: np.ndarray,
                                            random: float) -> np.ndarray:
        return stochastic_round_weights(syn_var_name, syn_var_values, random)

    def _impulse_again(self, again: np.ndarray) -> None:
        for k, name in enumerate(("x1", "x2")):
            trace = getattr(self, name)
            trace[again] = self._add_impulse(trace[again], 0, self._x_impulses_int[k],
                                             self._x_impulses_frac[k])

    def _compute_trace_histories(self) -> tuple[np.ndarray, np.ndarray]:
        t = self._learning_rule.t_epoch
        x = fixed_history(self._x_traces, self._x_taus, self.tx, self._x_random,
                          self._x_impulses_int, self._x_impulses_frac, t, self._x_rows)
        y = fixed_history(self._y_traces, self._y_taus, self.ty, self._y_random,
                          self._y_impulses_int, self._y_impulses_frac, t, self._y_rows)
        if x is None or y is None:
            return super()._compute_trace_histories()
        return x, y

    def _prepare_weights(self) -> None:
        """What Lava's bit-approximate LearningDense does before its first step."""
        if not self.weights_set:
            self.weights = truncate_weights(self.weights, sign_mode=self.sign_mode,
                                            num_weight_bits=self.num_weight_bits)
            self.weights_set = True

    def _scaled(self, a: np.ndarray) -> np.ndarray:
        exp = self.proc_params.get("weight_exp", 0)
        return np.left_shift(a, exp) if exp > 0 else np.right_shift(a, -exp)

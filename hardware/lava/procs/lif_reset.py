"""Lava's ``LIFReset`` models with reset by subtraction and an initial membrane.

Used by converted networks (:mod:`neurolocal.hardware.lava.inference`) through
``exception_proc_model_map``: Lava's stock models reset v to 0 after a spike, snntorch's
``Leaky`` (which conversion targets) subtracts the threshold in the next step. One subclass
per stock model -- bit-accurate ``PyLifResetModelBitAcc`` and float ``PyLifResetModelFloat``
-- each changing only the two resets.
"""

from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.lif.models import PyLifResetModelBitAcc, PyLifResetModelFloat
from lava.proc.lif.process import LIFReset

__all__ = ["PyLifResetSubtractBitAcc", "PyLifResetSubtractFloat"]


class _SubtractReset:
    """The two changed resets, shared by the fixed and the float model.

    (a) After a spike, instead of ``v = 0``, the next step subtracts the (scaled) threshold
    after the decay and input, ``v[t] = decay(v[t-1]) + u[t] + bias - vth * s[t-1]``
    (``proc_params["neurolocal_reset"] == "zero"`` keeps Lava's zeroing); (b) the periodic
    reset sets ``v`` to ``proc_params["neurolocal_v0"]`` instead of 0.
    """

    def _init_resets(self, proc_params: dict, v0_type: type) -> None:
        self.prev_spikes: np.ndarray | None = None
        self.subtract = proc_params.get("neurolocal_reset", "subtract") == "subtract"
        self.v0 = v0_type(proc_params.get("neurolocal_v0", 0))

    def _window_reset(self) -> bool:
        if (self.time_step % self.reset_interval) == self.reset_offset:
            self.u *= 0
            self.v[:] = self.v0
            self.prev_spikes = None
            return True
        return False

    def _step(self, a_in_data: np.ndarray, vth: float) -> None:
        self.subthr_dynamics(activation_in=a_in_data)
        if self.subtract and self.prev_spikes is not None:  # one pass, no gather/scatter
            np.subtract(self.v, vth, out=self.v, where=self.prev_spikes)
        s_out = self.spiking_activation()  # a new array that nothing writes to later
        if not self.subtract:
            self.reset_voltage(spike_vector=s_out)
        self.prev_spikes = s_out
        self.s_out.send(s_out)


@implements(proc=LIFReset, protocol=LoihiProtocol)
@requires(CPU)
@tag("bit_accurate_loihi", "fixed_pt")
class PyLifResetSubtractBitAcc(_SubtractReset, PyLifResetModelBitAcc):
    """``PyLifResetModelBitAcc`` with the resets of :class:`_SubtractReset` (v in v units,
    the threshold subtracted as ``vth << 6``).

    For the converted networks' IF neurons (``du = 4095``: u is the step's input; ``dv = 0``:
    no leak) Lava's decays multiply by 0 and by 4096 >> 12: the sub-threshold step is then
    computed without them, the same integers in a third of the time (the dtypes, the 24-bit
    wrap of u and the clip of v are Lava's).
    """

    def __init__(self, proc_params: dict) -> None:
        super().__init__(proc_params)
        self._init_resets(proc_params, int)

    def subthr_dynamics(self, activation_in: np.ndarray) -> None:
        if not (self.du + self.ds_offset == self.decay_unity and self.dv + self.dm_offset == 0):
            super().subthr_dynamics(activation_in)
            return
        curr = np.left_shift(activation_in.astype(np.int32, copy=False), self.act_shift)
        top = self.max_uv_val
        if curr.size and (curr.max() > top or curr.min() <= -top):  # Lava's 24-bit wrap
            wrapped = np.where(curr > top, curr - 2 * top, curr)
            curr = np.where(wrapped <= -top, curr + 2 * top, wrapped)
        self.u[:] = curr
        limit = np.int32(top) - 1
        v = self.v  # in place: v + u + bias, clipped (int32 holds the sum of 24-bit values)
        np.add(v, self.u, out=v)
        np.add(v, self.effective_bias, out=v)
        np.clip(v, -limit, limit, out=v)

    def run_spk(self) -> None:
        a_in_data = self.a_in.recv()
        if self._window_reset() or not self.isbiasscaled:
            self.scale_bias()  # once per window: nothing sets the bias during a run
        if not self.isthrscaled:
            self.scale_threshold()
        self._step(a_in_data, self.effective_vth)


@implements(proc=LIFReset, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyLifResetSubtractFloat(_SubtractReset, PyLifResetModelFloat):
    """``PyLifResetModelFloat`` with the resets of :class:`_SubtractReset`."""

    def __init__(self, proc_params: dict) -> None:
        super().__init__(proc_params)
        self._init_resets(proc_params, float)

    def run_spk(self) -> None:
        a_in_data = self.a_in.recv()
        self._window_reset()
        self._step(a_in_data, self.vth)

"""Lava's bit-accurate ``LIFReset`` with reset by subtraction and an initial membrane.

Used by converted networks (:mod:`neurolocal.hardware.lava.inference`) through
``exception_proc_model_map``: Lava's stock model resets v to 0 after a spike, snntorch's
``Leaky`` (which conversion targets) subtracts the threshold in the next step.
"""

from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.lif.models import PyLifResetModelBitAcc
from lava.proc.lif.process import LIFReset


@implements(proc=LIFReset, protocol=LoihiProtocol)
@requires(CPU)
@tag("bit_accurate_loihi", "fixed_pt")
class PyLifResetSubtractBitAcc(PyLifResetModelBitAcc):
    """Identical to ``PyLifResetModelBitAcc`` except (a) after a spike, instead of ``v = 0``,
    the next step subtracts the scaled threshold after the decay and input,
    ``v[t] = decay(v[t-1]) + u[t] + bias - (vth << 6) * s[t-1]``
    (``proc_params["neurolocal_reset"] == "zero"`` keeps Lava's zeroing), and (b) the
    periodic reset sets ``v`` to ``proc_params["neurolocal_v0"]`` instead of 0.
    """

    def __init__(self, proc_params: dict) -> None:
        super().__init__(proc_params)
        self.prev_spikes: np.ndarray | None = None
        self.subtract = proc_params.get("neurolocal_reset", "subtract") == "subtract"
        self.v0 = int(proc_params.get("neurolocal_v0", 0))

    def run_spk(self) -> None:
        a_in_data = self.a_in.recv()
        if (self.time_step % self.reset_interval) == self.reset_offset:
            self.u *= 0
            self.v[:] = self.v0
            self.prev_spikes = None
        self.scale_bias()
        if not self.isthrscaled:
            self.scale_threshold()
        self.subthr_dynamics(activation_in=a_in_data)
        if self.subtract and self.prev_spikes is not None:
            self.v[self.prev_spikes] -= self.effective_vth
        s_out = self.spiking_activation()
        if not self.subtract:
            self.reset_voltage(spike_vector=s_out)
        self.prev_spikes = s_out.copy()
        self.s_out.send(s_out)

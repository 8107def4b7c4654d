"""Lava's ``Sparse`` models with the binary-spike sum as a sparse matrix-vector product.

Lava's models sum the weights of the spiking inputs by column slicing
(``weights[:, s_in].sum(axis=1)``), which copies the selected part of the matrix every step.
For block-diagonal weights over a thousand network copies that copy dominates the step. These
subclasses compute ``weights.dot(s_in)`` instead: the same sum of the same weights in the same
(CSR row) order, so the same integers in ``fixed_pt`` and the same floats in
``floating_pt`` (tests compare the two against image-by-image runs). Everything else --
weight clipping and truncation, the weight exponent's shift, the one-step output buffer -- is
Lava's own code. Used by :mod:`neurolocal.hardware.lava.inference` through
``exception_proc_model_map``.
"""

from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.sparse.models import PySparseModelBitAcc, PySparseModelFloat
from lava.proc.sparse.process import Sparse
from lava.utils.weightutils import clip_weights, determine_sign_mode, truncate_weights

__all__ = ["PySparseDotBitAcc", "PySparseDotFloat"]


@implements(proc=Sparse, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PySparseDotFloat(PySparseModelFloat):
    """``PySparseModelFloat`` with ``a_buff = weights @ s_in`` for binary spikes too."""

    def run_spk(self) -> None:
        self.a_out.send(self.a_buff)
        s_in = self.s_in.recv()
        if self.num_message_bits.item() == 0:
            s_in = s_in.astype(bool).astype(np.float64)
        self.a_buff = self.weights.dot(s_in)


@implements(proc=Sparse, protocol=LoihiProtocol)
@requires(CPU)
@tag("bit_accurate_loihi", "fixed_pt")
class PySparseDotBitAcc(PySparseModelBitAcc):
    """``PySparseModelBitAcc`` with the accumulation as ``weights @ s_in`` (integers)."""

    def run_spk(self) -> None:
        self.weight_exp = self.proc_params.get("weight_exp", 0)
        if not self.weights_set:
            num_weight_bits = self.proc_params.get("num_weight_bits", 8)
            sign_mode = self.proc_params.get("sign_mode") or determine_sign_mode(self.weights)
            self.weights = clip_weights(self.weights, sign_mode, num_bits=8)
            self.weights = truncate_weights(self.weights, sign_mode, num_weight_bits)
            self.weights_set = True
        self.a_out.send(self.a_buff)
        s_in = self.s_in.recv()
        if self.num_message_bits.item() == 0:
            s_in = s_in.astype(bool).astype(np.int32)
        a_accum = self.weights.dot(s_in)
        self.a_buff = (np.left_shift(a_accum, self.weight_exp) if self.weight_exp > 0
                       else np.right_shift(a_accum, -self.weight_exp))


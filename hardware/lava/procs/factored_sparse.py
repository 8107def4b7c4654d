"""One synapse stage as a chain of sparse matrices, for layers whose ops are not one matrix.

Why: a converted conv layer is often a pool followed by a conv. Composed into one matrix, every
input pixel of a 2x2 pool carries the conv's weights again: four times the weights of the two
ops applied in turn. :class:`FactoredSparse` keeps the factors, ``a_out = F_k ... F_1 s_in``,
with the semantics of Lava's ``Sparse`` otherwise: the output of a step is buffered and sent
in the next (one step of delay), binary or graded input (``num_message_bits``), and in fixed
point the weight exponent's shift (a floor shift for a negative exponent) on the integer sum.
The fixed-point factors are the quantiser's loadable integers
(:meth:`neurolocal.converters.quantise.QuantLayer.factors`, whose product is checked equal to
the matrix Lava's ``Dense`` receives), so the sums are the same integers.

``copies``: the factors are one image's, and the ports carry ``copies`` images side by side
(batched evaluation). The product then runs on all copies at once as a matrix of copies
columns -- a block-diagonal matrix-vector product would stream every weight once per copy;
this reads it once per step. Floats keep CSR's summation order (the same sums as one image
per graph); integers, whose sums are exact in any order, are summed in float32 (or float64)
while every partial sum stays an exact integer there (checked from the factors' row sums and
the input's bit width), as a dense BLAS product for a factor dense enough that this is faster.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

__all__ = ["FactoredSparse", "PyFactoredSparseFixed", "PyFactoredSparseFloat"]


#: a factor at least this dense runs as a dense product in fixed point (below it scipy's
#: sparse product is faster: measured on the conv net of benchmarks/conversion.py)
DENSE_FRACTION = 0.3
DENSE_MAX = 2**24  #: and holds at most this many entries (128 MB)
_EXACT32, _EXACT = 2.0**24, 2.0**53  # float32 / float64 hold every integer below these


class FactoredSparse(AbstractProcess):
    """``a_out = factors[-1] @ ... @ factors[0] @ s_in`` (scipy CSR matrices, in order), for
    each of ``copies`` images side by side."""

    def __init__(self, *, factors: list[Any], weight_exp: int = 0, num_message_bits: int = 0,
                 copies: int = 1, name: str | None = None) -> None:
        for a, b in zip(factors[:-1], factors[1:]):
            if a.shape[0] != b.shape[1]:
                raise ValueError(f"FactoredSparse: factor shapes {a.shape} then {b.shape} "
                                 "do not chain")
        if int(copies) != copies or copies < 1:
            raise ValueError(f"FactoredSparse: copies must be an integer >= 1, got {copies!r}")
        copies = int(copies)
        n_in, n_out = factors[0].shape[1] * copies, factors[-1].shape[0] * copies
        super().__init__(factors=list(factors), weight_exp=int(weight_exp),
                         num_message_bits=int(num_message_bits), copies=copies, name=name)
        self.s_in = InPort(shape=(n_in,))
        self.a_out = OutPort(shape=(n_out,))
        self.a_buff = Var(shape=(n_out,), init=0)


class _FactoredModel(PyLoihiProcessModel):
    def __init__(self, proc_params: dict) -> None:
        super().__init__(proc_params)
        self.graded = proc_params["num_message_bits"] > 0
        self.weight_exp = proc_params["weight_exp"]
        self.copies = proc_params.get("copies", 1)
        self.factors = self._prepare(proc_params["factors"], proc_params["num_message_bits"])

    def _prepare(self, factors: list[Any], bits: int) -> list[Any]:
        return list(factors)

    def _accumulate(self, s_in: np.ndarray, dtype: Any) -> np.ndarray:
        h = s_in if self.graded else s_in.astype(bool)
        h = h.astype(dtype).reshape(self.copies, -1).T  # (n_in, copies)
        for f in self.factors:
            h = f @ h
        return np.ascontiguousarray(h.T).reshape(-1).astype(dtype)

    def run_spk(self) -> None:
        self.a_out.send(self.a_buff)  # the previous step's sum: Sparse's one-step delay
        self.a_buff = self._finish(self._accumulate(self.s_in.recv(), self._dtype))


@implements(proc=FactoredSparse, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyFactoredSparseFloat(_FactoredModel):
    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    a_buff: np.ndarray = LavaPyType(np.ndarray, float)
    _dtype = np.float64

    def _finish(self, h: np.ndarray) -> np.ndarray:
        return h


@implements(proc=FactoredSparse, protocol=LoihiProtocol)
@requires(CPU)
@tag("bit_accurate_loihi", "fixed_pt")
class PyFactoredSparseFixed(_FactoredModel):
    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=8)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=16)
    a_buff: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=16)
    _dtype = np.int64

    def _prepare(self, factors: list[Any], bits: int) -> list[Any]:
        """Each factor transposed, for ``h @ F.T`` on images in rows, in the cheapest type
        whose sums are exact: float32 while every sum stays below 2**24, float64 below
        2**53, else int64 (bound: the input's largest magnitude times each factor's largest
        row sum). A factor at least ``DENSE_FRACTION`` full is a dense array (BLAS)."""
        bound, out = 2.0 ** max(bits, 1), []
        for f in factors:
            bound *= float(abs(f).sum(axis=1).max()) if f.nnz else 0.0
            kind = (np.float32 if bound < _EXACT32 else np.float64 if bound < _EXACT
                    else np.int64)
            size = f.shape[0] * f.shape[1]
            dense = (kind is not np.int64 and f.nnz >= DENSE_FRACTION * size
                     and size <= DENSE_MAX)
            out.append(np.ascontiguousarray(f.toarray().T, dtype=kind) if dense
                       else f.T.tocsr().astype(kind))
        return out

    def _accumulate(self, s_in: np.ndarray, dtype: Any) -> np.ndarray:
        h = s_in if self.graded else s_in.astype(bool)
        h = h.reshape(self.copies, -1)  # (copies, n_in): images in rows
        for f in self.factors:
            h = np.asarray(h.astype(f.dtype, copy=False) @ f)
        return (h if h.dtype == np.int64 else np.rint(h).astype(np.int64)).reshape(-1)

    def _finish(self, h: np.ndarray) -> np.ndarray:
        e = self.weight_exp
        h = np.left_shift(h, e) if e > 0 else np.right_shift(h, -e)
        return h.astype(np.int32)

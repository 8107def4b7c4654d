"""A measuring probe for converted inference: sums (and records) a port over a time window.

Why: reading a Lava ``Var`` costs ~20 us per element (``Var.get`` sends an array one value
at a time), and a ``RingBuffer`` sink holds one column per step. A network that runs a
thousand images side by side needs one number per neuron and image (its spike count), once.
:class:`WindowProbe` receives a port's messages every step, sums them over the steps
``start .. stop`` (1-based, inclusive) and sends the sum -- and, with ``keep > 0``, the first
``keep`` entries of every step of the window (a spike raster) -- to the host once, at
``stop``, through a pipe like Lava's own ``Extractor``. ``decay < 1`` makes the sum a leaky
one, ``total = decay * total + input`` (a leaky read-out's membrane). It changes nothing it
measures.
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
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

__all__ = ["PyWindowProbe", "WindowProbe"]


class WindowProbe(AbstractProcess):
    """Sum of ``a_in`` over steps ``start..stop`` (and the first ``keep`` entries per step).

    ``receive()`` (after the run reached ``stop``) returns ``(sum (n,), raster (steps, keep)
    or None)``.
    """

    def __init__(self, *, shape: tuple[int, ...], start: int, stop: int, keep: int = 0,
                 decay: float = 1.0, name: str | None = None) -> None:
        if not 1 <= start <= stop:
            raise ValueError(f"WindowProbe: need 1 <= start <= stop, got {start}, {stop}")
        n = int(np.prod(shape))
        keep = int(min(max(keep, 0), n))
        super().__init__(shape=shape, start=int(start), stop=int(stop), keep=keep,
                         decay=float(decay), name=name)
        self.a_in = InPort(shape=(n,))
        self.sum_out = OutPort(shape=(n,))
        self.sum_out.flag_external_pipe(buffer_size=1)
        self.raster_out = OutPort(shape=(max(1, keep * (stop - start + 1)),))
        self.raster_out.flag_external_pipe(buffer_size=1)

    def receive(self) -> tuple[np.ndarray, np.ndarray | None]:
        total = self.sum_out.external_pipe_csp_recv_port.recv()
        keep = self.proc_params["keep"]
        if not keep:
            return np.array(total), None
        steps = self.proc_params["stop"] - self.proc_params["start"] + 1
        raster = self.raster_out.external_pipe_csp_recv_port.recv()
        return np.array(total), np.array(raster).reshape(steps, keep)


@implements(proc=WindowProbe, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt", "fixed_pt")
class PyWindowProbe(PyLoihiProcessModel):
    """Accumulates in float64 (exact for the integers of fixed_pt) and sends once."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    sum_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    raster_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)

    def __init__(self, proc_params: dict[str, Any]) -> None:
        super().__init__(proc_params)
        # (not ``start``/``stop``: those names are the process model's own methods)
        self.first, self.last = proc_params["start"], proc_params["stop"]
        self.keep, self.decay = proc_params["keep"], proc_params["decay"]
        self.total: np.ndarray | None = None
        self.raster = (np.zeros((self.last - self.first + 1, self.keep))
                       if self.keep else None)

    def run_spk(self) -> None:
        data = self.a_in.recv()
        t = self.time_step
        if self.first <= t <= self.last:
            if self.total is None:
                self.total = np.zeros(data.shape, np.float64)
            if self.decay != 1.0:
                self.total *= self.decay
            self.total += data
            if self.raster is not None:
                self.raster[t - self.first] = data[:self.keep]
        if t == self.last:
            self.sum_out.csp_ports[-1].send(self.total)
            if self.raster is not None:
                self.raster_out.csp_ports[-1].send(self.raster.reshape(-1))

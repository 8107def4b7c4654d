"""The learning graph kept running between calls, its data going through shared memory.

One :class:`~.procs.core.NeuroCore` per layer. For each block of samples the host writes the
spikes and targets into the feed and runs the graph for the block's learning epochs; the
cores leave the weights (after the block's last sample), spike counts and scores in their
mailboxes. The graph stays started across blocks and calls, so Lava's simulator (its random
streams included) continues as in one long run, until :meth:`LiveCores.close`.
"""

from __future__ import annotations

import time
import weakref
from typing import Any

import numpy as np

from .procs.core import HEADER_LAYOUT, feed_layout, mailbox_layout
from .session import LavaSession
from .shared import Shared


class LiveCores:
    """A started graph of cores for ``runner``'s network, ``capacity`` samples per block."""

    def __init__(self, runner: Any, capacity: int) -> None:
        lp = runner.lp
        self.capacity, self.epoch_len, self.depth = int(capacity), lp.epoch_len, lp.depth
        t0 = time.perf_counter()
        self.feed = Shared(feed_layout(self.capacity, lp.timesteps, lp.sizes[0], lp.sizes[-1]))
        self.header = Shared(HEADER_LAYOUT)
        self.boxes = [Shared(mailbox_layout(lp.sizes[layer], lp.sizes[layer - 1] + 1,
                                            self.capacity)) for layer in range(1, lp.depth + 1)]
        self.cores = [runner._core(layer, lp.epoch_len, feed=self.feed, header=self.header,
                                   mailbox=self.boxes[layer - 1], reads_input=layer == 1,
                                   reads_targets=layer == lp.depth)
                      for layer in range(1, lp.depth + 1)]
        for below, above in zip(self.cores, self.cores[1:]):
            below.s_out.connect(above.s_in)
        for fb in lp.feedback:
            self.cores[fb.source_layer - 1].s_fb_out.connect(self.cores[fb.layer - 1].fb_in)
        self.done = 0  # samples learned since the graph started
        self._totals = np.zeros(lp.depth)
        self._session = LavaSession(self.cores[0], runner.tag)
        self._session.start()
        self._closer = weakref.finalize(self, self._session.close)
        self.start_seconds = time.perf_counter() - t0

    def learn_block(self, spikes: np.ndarray, targets: np.ndarray) -> dict:
        """One learning epoch per sample of ``spikes`` (K, T, n0) with ``targets`` (K, n_out),
        K <= capacity. Returns scores (K, n_out), counts and spike totals per layer, seconds."""
        k = len(spikes)
        self.feed["spikes"][:k] = spikes
        self.feed["targets"][:k] = targets
        self.header["range"][:] = (self.done, self.done + k)
        seconds = self._session.run(k * self.epoch_len)
        self.done += k
        totals = np.array([float(box["spikes_total"][0]) for box in self.boxes])
        new, self._totals = totals - self._totals, totals
        return {"scores": self.boxes[-1]["scores"][:, :k].T.copy(),
                "counts": [box["counts"].copy() for box in self.boxes],
                "spikes_total": list(new), "seconds": seconds}

    def weights_lsb(self) -> dict[int, np.ndarray]:
        """Each layer's weights (LSBs) after the last sample learned."""
        return {layer: self.boxes[layer - 1]["weights"].copy()
                for layer in range(1, self.depth + 1)}

    @property
    def processes(self) -> list:
        return list(self.cores)

    def close(self) -> BaseException | None:
        """Stop Lava (bounded); the error its stop raised, if any. Safe to call twice."""
        self._closer.detach()
        return self._session.close()

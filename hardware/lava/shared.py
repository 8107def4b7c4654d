"""Arrays the host and a Lava process model share: the data handed over between runs.

Lava forks its process models after the graph is built, so an anonymous shared mapping made
before that is the same memory in the host and in the model: the host writes the next chunk
of input (and reads the learned weights back) between two blocking runs, without Lava's
``Var.get``/``set`` (about 25 us per element: 10 s for the weights of a 784-500 layer).
"""

from __future__ import annotations

import mmap

import numpy as np


class Shared:
    """Named numpy arrays in one anonymous shared mapping.

    ``Shared({"spikes": ((C, T, n), np.int8), ...})``; ``shared["spikes"]`` is the array, the
    same memory in every process forked after this object was made.
    """

    def __init__(self, layout: dict[str, tuple[tuple[int, ...], type]]) -> None:
        self.layout = {k: (tuple(int(d) for d in shape), np.dtype(dt))
                       for k, (shape, dt) in layout.items()}
        sizes = [int(np.prod(shape)) * dt.itemsize for shape, dt in self.layout.values()]
        self._map = mmap.mmap(-1, max(1, sum(sizes)))
        self._arrays: dict[str, np.ndarray] = {}
        offset = 0
        for (name, (shape, dt)), size in zip(self.layout.items(), sizes):
            self._arrays[name] = np.frombuffer(self._map, dtype=dt, count=int(np.prod(shape)),
                                               offset=offset).reshape(shape)
            offset += size

    def __getitem__(self, name: str) -> np.ndarray:
        return self._arrays[name]

    def __getstate__(self):  # never pickled: it only makes sense across a fork
        raise TypeError("Shared arrays travel to Lava's workers by fork, not by pickling")

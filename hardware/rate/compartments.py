"""Views of the compartments the generated rate code reads (lazy, derived on first read)."""

from __future__ import annotations

import numpy as np

from neurolocal.symbols import AXON_SIGNALS

RATE_ALIASES = ("s", "x1", "x2", "y1", "y2", "y3")

def _slow(d, key: str):
    """``slow(X)`` in generated code: X's noise-free value where one was computed, else X."""
    base = getattr(d, "comps", d)
    return d[f"{key}~slow"] if f"{key}~slow" in base else d[key]


class Pairwise(dict):
    """Compartments viewed as (batch, post, pre) for terms that couple both ends."""

    def __init__(self, comps: dict, axis: int):
        super().__init__()
        self.comps, self.axis = comps, axis

    def __missing__(self, key):
        v = self.comps[key]
        value = v[:, None, :] if self.axis == 1 else v[:, :, None]
        self[key] = value
        return value


class Compartments(dict):
    """One population's compartments; derived ones (dphi, err, traces) made when first read."""

    def __init__(self, program, kind: str, **values):
        super().__init__(**values)
        self.program, self.kind = program, kind

    def __missing__(self, key):
        if key in RATE_ALIASES:
            value = self["r"]
        elif key == "err":
            value = self["r"] * 0
        elif key == "dphi":
            value = self.program._derivative(self["a"], self["r"], self.kind)
        else:
            raise KeyError(key)
        self[key] = value
        return value


class _Augmented(dict):
    """Pre-synaptic compartments with the always-on bias neuron appended (lazily).

    ``rows`` maps a compartment to the rows the update sums over: the samples (dense layer,
    the default) or the receptive fields, one per (sample, position) (conv layer).
    """

    def __init__(self, comps: dict, xp, rows=None):
        super().__init__()
        self.comps, self.xp, self.rows = comps, xp, rows

    def __missing__(self, key):
        base = self.comps[key]
        if self.rows is not None:
            base = self.rows(base)
        name = key.split("@")[0]
        fill = 1.0 if name in AXON_SIGNALS or name == "r" else 0.0
        col = self.xp.full_like(base[:, :1], fill)
        value = self.xp.cat([base, col], 1) if hasattr(self.xp, "cat") else \
            np.concatenate([base, col], 1)
        self[key] = value
        return value


class _Positions(dict):
    """Post-synaptic compartments of a conv layer: one row per (sample, position)."""

    def __init__(self, comps: dict, spec, ops):
        super().__init__()
        self.comps, self.spec, self.ops = comps, spec, ops

    def __missing__(self, key):
        value = self.ops.positions(self.comps[key], self.spec)
        self[key] = value
        return value

"""The small, strongly driven nets the spiking agreement tests hold every target to."""

from __future__ import annotations

import numpy as np

from neurolocal.hardware.reference import ReferenceSimulator
from neurolocal.hardware.semantics import lower_rule
from neurolocal.network import build_mlp


def driven_setup(rule, config, sizes, epochs: int, *, allow_nonlocal: bool = False,
                 seed: int = 3, ref_seed: int = 0):
    """(net, reference simulator, input spikes (epochs, T, n0), one-hot targets, the rng):
    weights x4 and bias 0.1 so that every layer spikes."""
    net = build_mlp(sizes, rule, seed=seed)
    for layer in range(1, net.depth + 1):
        net.state["W"][layer]["w"] *= 4.0
        net.state["W"][layer]["w"][:, -1] = 0.1
    rng = np.random.default_rng(7)
    spikes = (rng.random((epochs, config.timesteps, sizes[0])) < 0.4).astype(np.float64)
    targets = np.eye(sizes[-1])[rng.integers(0, sizes[-1], epochs)]
    program = lower_rule(rule, config, allow_nonlocal=allow_nonlocal)
    return net, ReferenceSimulator(net, program, seed=ref_seed), spikes, targets, rng

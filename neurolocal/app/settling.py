"""Does a spiking relaxation settle? The settling report of a rule with relax phases.

For every relax phase and every relaxed compartment of every layer: the RMS of dx/dt over
the probe batch at its largest and at the last Euler step of the spiking settling stretch (from
the spiking reference simulator on the target's synced network and lowered program, so
every spiking target reports it the same way), its measured decay per step from the peak,
and whether it settled (the last residual below 1 % of the peak); beside it the eigenvalue
criterion rate mode reports (:meth:`RateRunner.stability`) for the same weights, and the
cosine between each hidden layer's relaxed compartment and dL/dr_l: of the rate network with
the same weights (rate mode's ``relaxed_cosines``: softmax cross-entropy, the rate
nonlinearity), and of the spiking network itself (``surrogate_cosines``: its output error
``r - target`` as dL/da_L, as the rules use it, carried down through the measured rates'
surrogate derivative ``dphi``; what an exact relaxation settles to).
"""

from __future__ import annotations

import math

import numpy as np

from neurolocal.errors import NeurolocalError

from .metrics import activation_gradients, cosine


def surrogate_gradients(net, comps: list[dict], onehot) -> list[np.ndarray]:
    """dL/dr_l of the spiking network, hidden layers 1..L-1: ``r_L - target`` as dL/da_L,
    then ``dL/dr_l = W_(l+1)^T (dL/dr_(l+1) * dphi_(l+1))`` on the measured compartments."""
    from neurolocal.rule import FORWARD

    g = np.asarray(comps[-1]["r"], np.float64) - onehot  # dL/da_L
    out: list[np.ndarray] = []
    for k in range(net.depth, 1, -1):
        dr = g @ np.asarray(net.state[FORWARD][k]["w"], np.float64)[:, :-1]
        out.insert(0, dr)
        g = dr * np.asarray(comps[k - 1]["dphi"], np.float64)
    return out


def spiking_settling(runner, x, y, *, seed: int = 0, stability_samples: int = 8) -> dict:
    """The settling report (see the module docstring); ``{}`` without relax phases."""
    from neurolocal.hardware.encoding import encode_input
    from neurolocal.hardware.rate.runner import RateRunner
    from neurolocal.hardware.reference import ReferenceSimulator

    program = getattr(runner, "program", None)
    program = getattr(program, "spiking", program)
    if program is None and hasattr(runner, "lp"):
        program = runner.lp.spiking
    if program is None or not program.relax:
        return {}
    net = runner.sync()
    ref = ReferenceSimulator(net, program, seed=seed)
    x = np.asarray(x, np.float64)
    onehot = np.eye(net.sizes[-1])[np.asarray(y)]
    spikes = encode_input(x, program.config, seed=np.random.default_rng(seed))
    comps = ref.compartments(ref.simulate(np.asarray(spikes, np.float64)), onehot)
    out: dict = {"phases": {}}
    for name, per in ref.residuals.items():
        rows = {}
        for (comp, layer), r in sorted(per.items(), key=lambda kv: kv[0][1]):
            top = int(np.argmax(r))  # a layer may start at rest and be driven from above
            peak, last = r[top], r[-1]
            steps = len(r) - 1 - top
            decay = (last / peak) ** (1.0 / steps) if peak > 0 and steps > 0 else 0.0
            rows[f"{comp}{layer}"] = {"peak": peak, "peak_step": top + 1, "last": last,
                                      "decay_per_step": decay,
                                      "settles": bool(last <= 0.01 * peak)}
        out["phases"][name] = rows
    relaxed = program.relax[0].relaxed
    grads = list(enumerate(activation_gradients(net, x, y), start=1))
    out["relaxed_cosines"] = {f"{comp}{layer}": cosine(comps[layer][comp], g)
                              for comp in relaxed for layer, g in grads}
    if not net.convs and all("dphi" in c for c in comps[1:-1]):  # (a rule that reads f')
        grads = list(enumerate(surrogate_gradients(net, comps, onehot), start=1))
        out["surrogate_cosines"] = {f"{comp}{layer}": cosine(comps[layer][comp], g)
                                    for comp in relaxed for layer, g in grads}
    try:
        rate = RateRunner(net, backend="numpy", allow_nonlocal=True)
        k = min(stability_samples, len(x))
        st = rate.stability(x[:k].astype(np.float32), onehot[:k].astype(np.float32))
        out["rate_stability"] = {key: (v if not isinstance(v, float) or math.isfinite(v)
                                       else None) for key, v in st.items()}
    except NeurolocalError as exc:  # reported, never fatal to a training run
        out["rate_stability"] = {"error": str(exc)}
    return out

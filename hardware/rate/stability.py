"""Linear stability of a relax phase's dynamics, measured on the generated code."""

from __future__ import annotations

import math

import numpy as np

from neurolocal.errors import LoweringError

from .lower import relaxed_targets


def stability(runner, x, target, phase: str | None = None) -> dict:
    """Linear stability of a relax phase's dynamics at the state they settle to.

    The Jacobian A = d(dx/dt)/dx over every relaxed compartment of every layer is measured
    (one batched evaluation of the generated code per sample, finite differences), for each
    sample in ``x``. Reports the largest real part of A's eigenvalues (the continuous
    dynamics converge iff it is < 0), the spectral radius of the Euler step I + rate*A
    (the iteration converges iff it is < 1), and the largest real part of each layer's own
    block (for dynamic inversion this block is W B - alpha I). Nothing is enforced.
    """
    phases = dict(runner.relax_phases)
    if not phases:
        raise LoweringError(f"rule {runner.rule.name!r} has no relax phase to analyse")
    name = phase or next(iter(phases))
    if name not in phases:
        raise LoweringError(f"rule {runner.rule.name!r} has no relax phase {name!r}; its "
                            f"relax phases: {', '.join(phases)}")
    rate = float(phases[name].params["rate"])
    x = runner.asarray(runner.to_numpy(runner.asarray(x)))  # a float32 copy on the backend
    target = runner.asarray(runner.to_numpy(runner.asarray(target)))
    top = runner.net.depth
    blocks = [(layer, v) for layer in range(1, top)
              for v in relaxed_targets(runner.rule, "neuron")
              if any(e.phase == name and e.target == v for e in runner.rule.neuron)]
    blocks += [(top, v) for v in relaxed_targets(runner.rule, "output")
               if any(e.phase == name and e.target == v for e in runner.rule.output)]
    worst, radius, per_block = -math.inf, 0.0, {}
    eps = 1e-2
    for i in range(x.shape[0]):
        comps = runner.errors(runner.forward(x[i:i + 1]), target[i:i + 1])
        sizes = [int(comps[layer][v].shape[1]) for layer, v in blocks]
        n = sum(sizes)
        tiled = [{k: runner._tile(v, n + 1) for k, v in c.items()} for c in comps]
        offset = 0
        for (layer, v), size in zip(blocks, sizes):
            bump = np.zeros((n + 1, size), np.float32)
            bump[1 + offset + np.arange(size), np.arange(size)] = eps
            tiled[layer][v] = tiled[layer][v] + runner.asarray(bump)
            offset += size
        runner._settle(tiled)
        got = {(id(c), k): runner.to_numpy(d[k]) for c, d in runner._relax_step(tiled, name)
               for k in d}
        vec = np.concatenate([got[(id(tiled[layer]), v)] for layer, v in blocks], 1)
        jac = ((vec[1:] - vec[0]) / eps).T.astype(np.float64)  # A[i, j] = d inc_i / d x_j
        eig = np.linalg.eigvals(jac)
        worst = max(worst, float(eig.real.max()))
        radius = max(radius, float(np.abs(1 + rate * eig).max()))
        offset = 0
        for (layer, v), size in zip(blocks, sizes):
            sub = jac[offset:offset + size, offset:offset + size]
            key = f"{v}{layer}"
            per_block[key] = max(per_block.get(key, -math.inf),
                                 float(np.linalg.eigvals(sub).real.max()))
            offset += size
    return {"phase": name, "samples": int(x.shape[0]), "max_real_eig": worst,
            "euler_radius": radius, "blocks": per_block,
            "stable": worst < 0 and radius < 1}

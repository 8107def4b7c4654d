"""Recurrent networks on the spiking targets from the command line (hardware/timed.py).

``--timesteps E`` is then the spike steps per sequence step (each one learning epoch), the
sample is the whole sequence (T = steps * E), and ``--leak L`` sets the neurons' current
decay du so that the synaptic current keeps L of itself over one sequence step (the spiking
counterpart of a rate layer's leak); without it du = 1 (leak 0: the current is this step's
input).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from neurolocal.errors import NeurolocalError
from neurolocal.network import Network
from neurolocal.rule import FORWARD, RECURRENT

#: spike steps per sequence step unless --timesteps says otherwise
DEFAULT_STEPS_PER_ROW = 10
#: sequences the per-epoch update angles are measured on (the reference is slow)
ANGLE_PROBE = 100


def sequence_config(cfg: Any, meta: dict, base: Any, steps: int) -> Any:
    """The spiking configuration for sequences of ``steps`` steps."""
    from neurolocal.hardware.timed import du_for_leak
    from neurolocal.hardware.timed import sequence_config as _seq

    stored = dict(meta.get("spiking") or {})
    per = cfg.timesteps
    if per is None and stored.get("learning_epochs") == steps:
        per = int(stored["timesteps"]) // steps  # a spiking sequence checkpoint's E
    per = per or DEFAULT_STEPS_PER_ROW
    if cfg.timesteps is None and not stored:
        base = base.with_options(timesteps=per)
    out = _seq(base, steps, per)
    if cfg.leak is not None:
        out = out.with_options(du=du_for_leak(float(cfg.leak), per))
    return out


def check_rule(net: Network, rule: Any, target: str) -> None:
    """A recurrent network on a spiking target needs a rule with time statements."""
    if net.recurrent and "recurrent" not in rule.features():
        raise NeurolocalError(
            f"layer {min(net.recurrent)} of this network is recurrent (R) and rule {rule.name} "
            f"has no time statements (on R, an end phase): on {target} a recurrent network "
            "learns with a recurrent rule (--rule dfa-rnn or sdfa-rnn)")


def spiking_sequence_angles(runner: Any, x, y, *, seed: int = 0) -> dict[str, float]:
    """Angle between the rule's update of each W and R over one presentation of the first
    :data:`ANGLE_PROBE` sequences (the spiking reference on the synced network, weights held)
    and the negative BPTT gradient of the rate network with the same weights."""
    from neurolocal.hardware.reference import ReferenceSimulator
    from neurolocal.hardware.timed import encode_sequence

    from .bptt import bptt_gradients
    from .metrics import angle_degrees

    program = getattr(runner, "program", None)
    net = runner.sync()
    x, y = np.asarray(x[:ANGLE_PROBE], np.float64), np.asarray(y[:ANGLE_PROBE])
    ref = ReferenceSimulator(net, program, seed=seed)
    spikes = encode_sequence(x, program.config, seed=np.random.default_rng(seed))
    onehot = np.eye(net.sizes[-1])[y]
    incs = ref.run_epoch(np.asarray(spikes, np.float64), onehot, apply=False)["increments"]
    grads = bptt_gradients(net, x, y)
    return {f"{proj}{layer}": angle_degrees(incs[(proj, layer)]["w"], -grads[(proj, layer)])
            for proj, layer in grads if (proj, layer) in incs and proj in (FORWARD, RECURRENT)}

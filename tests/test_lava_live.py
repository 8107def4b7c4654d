"""The live graph of cores learns exactly what the graph of separate Lava processes learns.

The graph of parts (``EpochSource``, ``EpochLearningDense``, ``NeuroLIF``, feedback
``Dense``: Lava's own learning models) is the plain mapping; the graph of cores (one process
per layer, Lava's learning models inherited, vectorised trace histories, data through shared
memory, kept running across calls) must end with the same weights, scores and spike counts,
bit for bit, however the samples are split into calls and blocks.
"""

from __future__ import annotations

import copy
import multiprocessing
import time

import numpy as np
import pytest

pytest.importorskip("lava", reason="lava-nc not installed (make install)")

from neurolocal.hardware.base import get_target  # noqa: E402
from neurolocal.hardware.encoding import encode_input  # noqa: E402
from neurolocal.hardware.semantics import SpikingConfig  # noqa: E402
from neurolocal.network import build_mlp  # noqa: E402
from neurolocal.rule import FORWARD  # noqa: E402
from neurolocal.rules import get_rule  # noqa: E402

CFG = SpikingConfig(timesteps=8)


def _case(sizes, k: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    spikes = encode_input(rng.random((k, sizes[0])), CFG, seed=seed + 1)
    y = np.eye(sizes[-1])[rng.integers(0, sizes[-1], k)]
    return spikes, y


def _net(name: str, sizes, lr: float = 0.5):
    net = build_mlp(sizes, get_rule(name).with_globals(lr=lr), seed=1)
    for layer in net.state[FORWARD]:  # every layer spikes within 8 steps
        net.state[FORWARD][layer]["w"] = net.state[FORWARD][layer]["w"] * 3.0
    return net


def _weights(runner) -> dict:
    return {k: np.array(v["w"]) for k, v in runner.net.state[FORWARD].items()}


def _children_gone(before: set, timeout: float = 20) -> bool:
    deadline = time.time() + timeout
    while set(multiprocessing.active_children()) - before and time.time() < deadline:
        time.sleep(0.1)
    return not set(multiprocessing.active_children()) - before


@pytest.mark.parametrize("tag", ["fixed_pt", "floating_pt"])
@pytest.mark.parametrize("name,sizes", [("dfa", [20, 10, 3]), ("fa", [20, 10, 8, 3])])
def test_cores_over_several_calls_equal_the_processes_graph_in_one(tag, name, sizes):
    net = _net(name, sizes)
    spikes, y = _case(sizes, k=7)
    target = get_target(f"lava:{tag}")
    parts = target.runner(copy.deepcopy(net), CFG, graph="processes")
    ref = parts.run(spikes, y, learn=True)
    cores = target.runner(copy.deepcopy(net), CFG, graph="cores", chunk=2)  # blocks of 2
    got = [cores.run(spikes[:, a:b], y[a:b], learn=True) for a, b in ((0, 3), (3, 4), (4, 7))]
    cores.close()
    assert len(cores.last_procs) == len(sizes) - 1  # one process per layer
    moved = 0.0
    for layer, w in _weights(parts).items():
        np.testing.assert_array_equal(_weights(cores)[layer], w)
        moved = max(moved, float(np.abs(w - net.state[FORWARD][layer]["w"]).max()))
    assert moved > 0.05  # it learned
    np.testing.assert_array_equal(np.concatenate([g["scores"] for g in got]), ref["scores"])
    for a, b in zip(got[-1]["counts"], ref["counts"]):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(np.sum([g["spikes_total"] for g in got], axis=0),
                               ref["spikes_total"])
    assert sum(g["events"] for g in got) == pytest.approx(ref["events"])


def test_weights_changed_between_calls_start_a_new_graph():
    net = _net("dfa", [20, 10, 3])
    spikes, y = _case([20, 10, 3], k=4)
    target = get_target("lava:floating_pt")
    runner = target.runner(copy.deepcopy(net), CFG)
    runner.run(spikes[:, :2], y[:2], learn=True)
    first = runner.last_procs
    runner.net.state[FORWARD][1]["w"] = runner.net.state[FORWARD][1]["w"] * 0.5  # from outside
    start = copy.deepcopy(runner.net)
    runner.run(spikes[:, 2:], y[2:], learn=True)
    runner.close()
    assert runner.last_procs is not first and runner.last_procs[0] is not first[0]
    fresh = target.runner(start, CFG, graph="processes")
    fresh.run(spikes[:, 2:], y[2:], learn=True)
    for layer, w in _weights(fresh).items():
        np.testing.assert_array_equal(_weights(runner)[layer], w)


def test_a_call_cut_short_stops_the_graph_and_keeps_the_weights_before_it():
    net = _net("dfa", [20, 10, 3])
    spikes, y = _case([20, 10, 3], k=4)
    runner = get_target("lava:fixed_pt").runner(copy.deepcopy(net), CFG, chunk=1)
    before = set(multiprocessing.active_children())
    w0 = _weights(runner)

    def boom(done, total, seconds):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runner.run(spikes, y, learn=True, progress=boom)
    assert runner._live is None and _children_gone(before)
    for layer, w in w0.items():
        np.testing.assert_array_equal(_weights(runner)[layer], w)
    runner.run(spikes[:, :1], y[:1], learn=True)  # and the runner still works
    runner.close()
    runner.close()  # twice is fine
    assert _children_gone(before)

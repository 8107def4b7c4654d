"""The hand-written throughput baselines compute what the generated programs compute.

The throughput tables (docs/spiking.md, docs/lava.md) compare generated code with a plain
snntorch loop, a plain Brian2 script and a plain Lava graph written by hand. That comparison
means something only if the hand-written programs run the same semantics; these tests pin
that: the same start weights and spike trains give the reference simulator's weights.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from neurolocal.hardware.reference import ReferenceSimulator
from neurolocal.hardware.semantics import SpikingConfig, lower_rule
from neurolocal.network import build_mlp
from neurolocal.rule import FORWARD
from neurolocal.rules import get_rule

CFG = SpikingConfig(timesteps=12)
LR = 0.2


def _setup(seed: int = 1, k: int = 8):
    rule = get_rule("dfa").with_globals(lr=LR)
    net = build_mlp([784, 30, 10], rule, seed=seed)
    rng = np.random.default_rng(seed)
    x = rng.random((k, 784)) * (rng.random((k, 784)) < 0.3)
    y = np.eye(10)[rng.integers(0, 10, k)]
    return rule, net, x, y


def _moved(ref: ReferenceSimulator, net) -> float:
    return max(float(np.abs(ref.state[FORWARD][layer]["w"] - net.state[FORWARD][layer]["w"])
                     .max()) for layer in (1, 2))


def test_handwritten_snntorch_loop_runs_the_reference_semantics():
    torch = pytest.importorskip("torch")
    rule, net, x, y = _setup()
    w1 = torch.tensor(net.state[FORWARD][1]["w"], dtype=torch.float64)
    w2 = torch.tensor(net.state[FORWARD][2]["w"], dtype=torch.float64)
    bfb = torch.tensor(net.state["B"][1]["w"], dtype=torch.float64)
    xt, yt = torch.tensor(x), torch.tensor(y)
    from handwritten.snntorch_dfa import handwritten_snntorch

    handwritten_snntorch(w1, w2, bfb, xt, yt, CFG, LR, 4, torch.Generator().manual_seed(3))
    ref = ReferenceSimulator(copy.deepcopy(net), lower_rule(rule, CFG))
    gen = torch.Generator().manual_seed(3)  # the loop's Poisson draws, replayed
    for i in range(0, len(x), 4):
        spikes = (torch.rand((CFG.timesteps, 4, 784), generator=gen) < xt[i:i + 4]) \
            .numpy().astype(np.float64)
        ref.run_epoch(spikes, y[i:i + 4])
    np.testing.assert_allclose(w1.numpy(), ref.state[FORWARD][1]["w"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(w2.numpy(), ref.state[FORWARD][2]["w"], rtol=0, atol=1e-12)
    assert _moved(ref, net) > 0.01


def test_handwritten_brian2_script_runs_the_reference_semantics():
    pytest.importorskip("brian2")
    rule, net, x, y = _setup(k=6)
    x = (x > 0.5).astype(np.float64)  # p in {0, 1}: Brian2's rand() < p is deterministic
    from handwritten.brian2_dfa import handwritten_brian2

    run, _, weights = handwritten_brian2(
        *(np.array(net.state[p][1 if p == "B" else layer]["w"], dtype=np.float64)
          for p, layer in ((FORWARD, 1), (FORWARD, 2), ("B", 1))), CFG, LR, "numpy")
    run(x, y)
    ref = ReferenceSimulator(copy.deepcopy(net), lower_rule(rule, CFG))
    for i in range(len(x)):
        ref.run_epoch(np.repeat(x[i][None, None], CFG.timesteps, 0), y[i][None])
    for layer, w in zip((1, 2), weights()):
        np.testing.assert_allclose(w, ref.state[FORWARD][layer]["w"], rtol=0, atol=1e-12)
    assert _moved(ref, net) > 0.01


def test_handwritten_lava_dfa_graph_learns_what_the_generated_graph_learns():
    pytest.importorskip("lava", reason="lava-nc not installed (make install)")
    from handwritten.lava_dfa import handwritten_dfa_graph, time_graph

    from neurolocal.hardware.base import get_target
    from neurolocal.hardware.lava.runtime import learning_rule

    cfg = SpikingConfig(timesteps=8)
    rule = get_rule("dfa").with_globals(lr=0.5)
    net = build_mlp([20, 10, 3], rule, seed=0)
    rng = np.random.default_rng(0)
    spikes = (rng.random((cfg.timesteps, 4, 20)) < 0.5).astype(np.int8)
    y = np.eye(3)[rng.integers(0, 3, 4)]
    target = get_target("lava:floating_pt")
    generated = target.runner(copy.deepcopy(net), cfg)
    hand = target.runner(copy.deepcopy(net), cfg)
    rules = [learning_rule(hand.lp, g.layer, "floating_pt") for g in hand.lp.groups]
    procs = handwritten_dfa_graph(hand, spikes, y, rules, "floating_pt")
    dense = [p for p in procs if type(p).__name__ == "EpochLearningDense"]
    hand_w = []

    def read(run):
        run(spikes.shape[1] * hand.lp.epoch_len)
        hand_w.extend(np.asarray(d.weights.get(), dtype=np.float64) for d in dense)

    time_graph(procs, 0, "floating_pt", then=read)
    generated.learn_spikes(spikes, y)
    for g, w in zip(generated.lp.groups, hand_w):
        np.testing.assert_allclose(w * g.weight_step, generated.net.state[FORWARD][g.layer]["w"],
                                   rtol=0, atol=1e-12)
    assert max(float(np.abs(generated.net.state[FORWARD][layer]["w"]
                            - net.state[FORWARD][layer]["w"]).max()) for layer in (1, 2)) > 0.05

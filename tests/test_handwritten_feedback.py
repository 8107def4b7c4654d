"""The hand-written KP and PAL baselines compute what the generated programs compute.

The throughput table of issue 11 (docs/spiking.md, docs/lava.md) compares the generated
snntorch program and Lava graph with plain code written by hand for the same rule; the
comparison means something only if both run the same semantics: the same start weights,
spike trains and noise give the reference simulator's weights (snntorch) and the generated
graph's weights (Lava, floating_pt).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from neurolocal.hardware.reference import ReferenceSimulator
from neurolocal.hardware.semantics import SpikingConfig, lower_rule
from neurolocal.network import build_mlp
from neurolocal.rules import get_rule

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")
CFG = SpikingConfig(timesteps=12)
KEYS = (("W", 1), ("W", 2), ("B", 1))


def _data(k: int = 8):
    rng = np.random.default_rng(1)
    x = rng.random((k, 784)) * (rng.random((k, 784)) < 0.3)
    return x, np.eye(10)[rng.integers(0, 10, k)]


@pytest.mark.parametrize("name", ["kp", "pal"])
def test_handwritten_snntorch_loops_run_the_reference_semantics(name):
    torch = pytest.importorskip("torch")
    from handwritten.snntorch_kp import handwritten_snntorch_kp
    from handwritten.snntorch_pal import handwritten_snntorch_pal

    rule = get_rule(name).with_globals(**({"lr": 0.2, "wd": 0.01} if name == "kp" else
                                          {"lr": 0.2, "lr_b": 0.5}))
    net = build_mlp([784, 30, 10], rule, seed=1)
    program = lower_rule(rule, CFG)
    x, y = _data()
    xt, yt = torch.tensor(x), torch.tensor(y)
    w = [torch.tensor(net.state[p][layer]["w"], dtype=torch.float64) for p, layer in KEYS]
    g = dict(program.globals)
    if name == "kp":
        handwritten_snntorch_kp(*w, xt, yt, CFG, g["lr"], g["wd"], 4,
                                torch.Generator().manual_seed(3))
    else:
        g["sigma"] = program.noise_sources[0].sigma
        handwritten_snntorch_pal(*w, xt, yt, CFG, g, 4, torch.Generator().manual_seed(3),
                                 epochs=program.epochs, tau_slow=float(CFG.timesteps))
    ref = ReferenceSimulator(copy.deepcopy(net), program)
    gen = torch.Generator().manual_seed(3)  # the loops' draws, replayed in their order
    for i in range(0, len(x), 4):
        spikes = (torch.rand((CFG.timesteps, 4, 784), generator=gen) < xt[i:i + 4]) \
            .numpy().astype(np.float64)
        noise = None
        if name == "pal":
            noise = {"xi": {1: np.stack([
                (g["sigma"] * torch.randn((4, 30), generator=gen, dtype=torch.float64)).numpy()
                for _ in range(program.epochs)])}}
        ref.run_epoch(spikes, y[i:i + 4], noise=noise)
    for tensor, (p, layer) in zip(w, KEYS):
        np.testing.assert_allclose(tensor.numpy(), ref.state[p][layer]["w"], rtol=0, atol=1e-12)
    assert np.abs(ref.state["B"][1]["w"] - net.state["B"][1]["w"]).max() > 0.01


@pytest.mark.parametrize("name", ["kp", "pal"])
def test_handwritten_lava_graphs_learn_what_the_generated_graph_learns(name):
    pytest.importorskip("lava", reason="lava-nc not installed (make install)")
    from handwritten.lava_dfa import time_graph
    from handwritten.lava_feedback import handwritten_feedback_graph

    from neurolocal.hardware.base import get_target

    cfg = SpikingConfig(timesteps=8)
    # kp with a decay that runs decimated (every 4 epochs): the bap path is exercised too
    rule = get_rule(name).with_globals(**({"lr": 0.5, "wd": 0.004} if name == "kp" else
                                          {"lr": 0.5, "lr_b": 0.5, "alpha": 1 / 64}))
    net = build_mlp([20, 10, 3], rule, seed=0)
    for layer in net.state["W"]:
        net.state["W"][layer]["w"] *= 3
    rng = np.random.default_rng(0)
    spikes = (rng.random((cfg.timesteps, 4, 20)) < 0.5).astype(np.int8)
    y = np.eye(3)[rng.integers(0, 3, 4)]
    target = get_target("lava:floating_pt")
    generated, hand = target.runner(copy.deepcopy(net), cfg), target.runner(copy.deepcopy(net),
                                                                           cfg)
    lp = generated.lp
    replay = noise = None
    if name == "pal":
        replay = 0.1 * rng.standard_normal((4, lp.epochs, 10))
        noise = [{"xi": {1: replay[i][:, None, :]}} for i in range(4)]
    procs = handwritten_feedback_graph(hand, spikes, y, "floating_pt", name, replay=replay)
    dense = [p for p in procs if type(p).__name__ == "EpochLearningDense"]
    hand_w = []

    def read(run):
        run(spikes.shape[1] * lp.epochs * lp.epoch_len)
        hand_w.extend(np.asarray(d.weights.get(), dtype=np.float64) for d in dense)

    time_graph(procs, 0, "floating_pt", then=read)
    generated.learn_spikes(spikes, y, noise=noise)
    steps = [lp.group(1).weight_step, lp.group(2).weight_step, lp.learned_feedback[0].weight_step]
    for w, step, (p, layer) in zip(hand_w, steps, KEYS):
        np.testing.assert_allclose(w * step, generated.net.state[p][layer]["w"], rtol=0,
                                   atol=1e-12)
        assert np.abs(w * step - net.state[p][layer]["w"]).max() > 0.05

"""The hand-written throughput baselines compute what the generated programs compute.

The throughput tables (docs/spiking.md, docs/lava.md) compare generated code with a plain
snntorch loop, a plain Brian2 script and a plain Lava graph written by hand. That comparison
means something only if the hand-written programs run the same semantics; these tests pin
that: the same start weights and spike trains give the reference simulator's weights.
"""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from neurolocal.hardware.spiking import ReferenceSimulator, SpikingConfig, lower_rule
from neurolocal.network import build_mlp
from neurolocal.rule import FORWARD
from neurolocal.rules import get_rule

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "spiking.py"
CFG = SpikingConfig(timesteps=12)
LR = 0.2


def _bench():
    spec = importlib.util.spec_from_file_location("nl_bench_spiking", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    _bench().handwritten_snntorch(w1, w2, bfb, xt, yt, CFG, LR, 4,
                                  torch.Generator().manual_seed(3))
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
    run, _, weights = _bench().handwritten_brian2(
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
    from neurolocal.hardware.lava_compat import ensure_lava_importable

    ensure_lava_importable()
    from lava.magma.core.learning.learning_rule import Loihi3FLearningRule
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg

    from neurolocal.hardware.lava_target import (
        TRACE_NAMES,
        LavaRunner,
        _handwritten_dfa_graph,
    )

    cfg = SpikingConfig(timesteps=8)
    rule = get_rule("dfa").with_globals(lr=0.5)
    net = build_mlp([20, 10, 3], rule, seed=0)
    rng = np.random.default_rng(0)
    spikes = (rng.random((4, cfg.timesteps, 20)) < 0.5).astype(np.int8)
    y = np.eye(3)[rng.integers(0, 3, 4)]
    generated = LavaRunner(copy.deepcopy(net), cfg, tag="floating_pt")
    hand = LavaRunner(copy.deepcopy(net), cfg, tag="floating_pt")
    rules = []
    for g in hand.lp.groups:
        tp = hand.lp.trace_params("floating_pt", g.layer)
        ys = {n: tp.pop(f"{n}_tau") for n in TRACE_NAMES}
        lr_rule = Loihi3FLearningRule(**g.strings("floating_pt"), **tp)
        for n, tau in ys.items():
            setattr(lr_rule, f"{n}_tau", tau)
        rules.append(lr_rule)
    procs = _handwritten_dfa_graph(hand, spikes, y, rules, "floating_pt")
    dense = [p for p in procs if type(p).__name__ == "EpochLearningDense"]
    try:
        procs[0].create_runtime(run_cfg=Loihi2SimCfg(select_tag="floating_pt"))
        procs[0].run(condition=RunSteps(num_steps=len(spikes) * hand.lp.epoch_len))
        hand_w = [np.asarray(d.weights.get(), dtype=np.float64) for d in dense]
    finally:
        procs[0].stop()
    generated.learn(spikes, y)
    for g, w in zip(generated.lp.groups, hand_w):
        np.testing.assert_allclose(w * g.weight_step, generated.net.state[FORWARD][g.layer]["w"],
                                   rtol=0, atol=1e-12)
    assert max(float(np.abs(generated.net.state[FORWARD][layer]["w"]
                            - net.state[FORWARD][layer]["w"]).max()) for layer in (1, 2)) > 0.05

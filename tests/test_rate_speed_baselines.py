"""The hand-written FA/DFA/KP loops of benchmarks/rate_speed.py compute the generated update.

The speed table compares the generated program with these loops; that means something only
if they do the same arithmetic: from the same weights and batches, the loop, the rate runner
(``neurolocal train``) and ``local_rule`` + a torch optimiser end with the same weights.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from handwritten.rate_loops import STEPS
from rate_speed import copy_into, hand_tensors, sequential, torch_optimiser

from neurolocal.hardware.rate import Optimiser, RateRunner
from neurolocal.network import build_mlp
from neurolocal.rule import FORWARD
from neurolocal.rules import get_rule
from neurolocal.torch import local_rule

SIZES = [30, 20, 16, 5]


@pytest.mark.parametrize("rule_name", ["fa", "dfa", "kp"])
@pytest.mark.parametrize("kind", ["adam", "momentum"])
def test_handwritten_loop_runner_and_local_rule_learn_the_same_weights(rule_name, kind):
    rule = get_rule(rule_name)
    g = rule.scalar_globals()
    rng = np.random.default_rng(1)
    W, b, B = hand_tensors(build_mlp(SIZES, rule, seed=2), rule_name)
    hopt = torch_optimiser(kind, W + b + (B if rule_name == "kp" else []))
    runner = RateRunner(build_mlp(SIZES, rule, seed=2), backend="torch")
    ropt = Optimiser(kind, lr=3e-3 if kind == "adam" else 1.0)
    model = local_rule(copy_into(sequential(SIZES), build_mlp(SIZES, rule, seed=2)), rule,
                       seed=2)
    lopt = torch_optimiser(kind, list(model.parameters()))
    for _ in range(3):
        x = torch.as_tensor(rng.random((8, SIZES[0]), dtype=np.float32))
        labels = torch.as_tensor(rng.integers(0, SIZES[-1], 8))
        onehot = torch.eye(SIZES[-1])[labels]
        args = (g["lr"], g["wd"]) if rule_name == "kp" else (g["lr"],)
        STEPS[rule_name](W, b, B, x, onehot, *args, hopt)
        runner.step(x, onehot, ropt)
        lopt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), labels).backward()
        lopt.step()
    gen, wrapped = runner.sync(), model.network()
    moved = 0.0
    for k in range(1, len(SIZES)):
        for net in (gen, wrapped):
            w = net.state[FORWARD][k]["w"]
            np.testing.assert_allclose(w[:, :-1], W[k - 1].numpy(), atol=2e-6)
            np.testing.assert_allclose(w[:, -1], b[k - 1].numpy(), atol=2e-6)
        moved = max(moved, float(np.abs(gen.state[FORWARD][k]["w"] - build_mlp(
            SIZES, rule, seed=2).state[FORWARD][k]["w"]).max()))
    if rule_name == "kp":  # the learned feedback too
        for k in range(1, len(SIZES) - 1):
            np.testing.assert_allclose(gen.state["B"][k]["w"], B[k - 1].numpy(), atol=2e-6)
            np.testing.assert_allclose(wrapped.state["B"][k]["w"], B[k - 1].numpy(), atol=2e-6)
    assert moved > 1e-3

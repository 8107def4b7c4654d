"""The fused rate program: the same updates as the generic one, for every rule it runs."""

import numpy as np
import pytest
import torch

import neurolocal as nl
from neurolocal.hardware.rate import Optimiser, RateRunner
from neurolocal.hardware.rate.binding import kernel_step
from neurolocal.hardware.rate.fused import chain_of, fusable, generate_fused_source
from neurolocal.network import build_cnn

#: built-in rules the fused program runs; the others need more than one sweep
FUSED = {"bp", "dfa", "fa", "fa-decay", "frsf", "kp", "sdfa", "usf"}


def _batches(n, n_in, n_out, batch=12, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        x = rng.random((batch, n_in), dtype=np.float32)
        yield x, np.eye(n_out, dtype=np.float32)[rng.integers(0, n_out, batch)]


def _max_diff(a, b) -> float:
    return max(float(np.abs(a.state[p][k]["w"] - b.state[p][k]["w"]).max())
               for p in a.state for k in a.state[p])


def test_the_fused_program_runs_exactly_the_one_sweep_rules():
    net = nl.build_mlp([6, 5, 4, 3], nl.get_rule("fa"))
    fused = {name for name in nl.builtin_names()
             if fusable(nl.get_rule(name), chain_of(net)) is None}
    assert fused == FUSED
    assert "phases" in fusable(nl.get_rule("ar"), chain_of(net))
    assert "redrawn every batch" in fusable(nl.get_rule("brsf"), chain_of(net))
    padded = nl.parse_rule("rule p\nglobal lr = 0.01\noutput err = r - target\n"
                           "feedback B = output.err -> err via random\n"
                           "on W: dw = -lr * post.err * (pre.r - 1)\n")
    conv = build_cnn((1, 8, 8), [(2, 3, 1, 1)], [], 3, padded)
    assert "zero padding" in fusable(padded, chain_of(conv))  # the unfolded path runs it
    assert not RateRunner(conv, backend="torch").fused


@pytest.mark.parametrize("name", sorted(FUSED))
@pytest.mark.parametrize("opt", ["sgd", "momentum", "adam"])
def test_fused_and_generic_programs_learn_the_same_weights(name, opt):
    sizes = [20, 16, 12, 5]
    progs = [RateRunner(nl.build_mlp(sizes, nl.get_rule(name), seed=3), backend="torch",
                        allow_nonlocal=True, fused=f) for f in (True, False)]
    assert progs[0].fused and not progs[1].fused
    opts = [Optimiser(opt) for _ in progs]
    for x, y in _batches(4, 20, 5):
        for p, o in zip(progs, opts):
            p.step(x, y, o)
    a, b = (p.sync() for p in progs)
    assert _max_diff(a, b) < 2e-6, name
    assert _max_diff(a, nl.build_mlp(sizes, nl.get_rule(name), seed=3)) > 1e-3  # it learned


@pytest.mark.parametrize("name", ["dfa", "sdfa"])
def test_fused_conv_program_matches_the_generic_one(name):
    def net():
        return build_cnn((1, 10, 10), [(4, 3, 2, 1), (6, 3, 1, 0)], [12], 5,
                         nl.get_rule(name), seed=1)

    progs = [RateRunner(net(), backend="torch", fused=f) for f in (True, False)]
    assert progs[0].fused
    opts = [Optimiser("adam") for _ in progs]
    for x, y in _batches(3, 100, 5, batch=8):
        for p, o in zip(progs, opts):
            p.step(x, y, o)
    assert _max_diff(*(p.sync() for p in progs)) < 2e-6


def test_kolen_pollack_computes_its_shared_outer_product_once():
    rule = nl.get_rule("kp")
    src = generate_fused_source(rule, chain_of(nl.build_mlp([8, 6, 5, 3], rule)))
    # dB_l = dW_{l+1}^T: one product per hidden layer, read transposed by B
    assert src.count("torch.mm(") == 2 + 2  # two shared products, two deliveries
    assert "P0.t()" in src or "P1.t()" in src
    assert "threshold_backward" in src  # err * dphi under ReLU, one kernel


@pytest.mark.parametrize("kind", ["adam", "momentum", "sgd"])
def test_kernel_step_is_torch_optim_bit_for_bit(kind):
    g = torch.Generator().manual_seed(0)
    params = [torch.randn(7, 5, generator=g), torch.randn(3, generator=g)]
    mirror = [torch.nn.Parameter(p.clone()) for p in params]
    opt = Optimiser(kind, lr=3e-3 if kind == "adam" else 0.5)
    grads = [torch.zeros_like(p) for p in params]
    ks = kernel_step(opt, params, grads)
    if kind == "adam":
        ref = torch.optim.Adam(mirror, 3e-3, fused=True)
    else:
        ref = torch.optim.SGD(mirror, 0.5, momentum=0.9 if kind == "momentum" else 0.0,
                              fused=True)
    for _ in range(4):
        for gr, m in zip(grads, mirror):
            gr.copy_(torch.randn(gr.shape, generator=g))
            m.grad = gr.clone()
        ks.step()
        ref.step()
    for p, m in zip(params, mirror):
        assert torch.equal(p, m.detach())


def test_replaced_state_tensors_rebind_the_fused_program():
    prog = RateRunner(nl.build_mlp([6, 5, 3], nl.get_rule("fa")), backend="torch")
    x, y = next(_batches(1, 6, 3))
    prog.step(x, y)
    prog.state["W"][2]["w"] = prog.state["W"][2]["w"].clone() * 0  # replaced, not updated
    prog.step(x, y)
    assert float(prog.state["W"][2]["w"].abs().max()) > 0

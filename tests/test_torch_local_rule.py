"""neurolocal.torch.local_rule: a user's nn.Module trains with a rule through ordinary torch.

Equal to the rate target on the same net for every built-in rule (fused and generic
programs, dense and conv), layers it cannot wrap refused by name, and the torch machinery
users bring (optimisers, state_dict, autocast, torch.compile, DataLoader) working as usual.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

import neurolocal as nl
from neurolocal.errors import LocalityError, NeurolocalError
from neurolocal.hardware.rate import Optimiser, RateRunner
from neurolocal.network import build_cnn
from neurolocal.rule import FORWARD
from neurolocal.torch import LocalRule, local_rule

NONLOCAL = {"bp", "usf", "brsf", "frsf", "ar-exact"}
SIZES = [20, 16, 12, 5]


def mlp_from(net) -> nn.Sequential:
    """A user's nn.Sequential holding ``net``'s forward weights."""
    mods: list[nn.Module] = []
    for k in range(1, net.depth + 1):
        w = torch.as_tensor(net.state[FORWARD][k]["w"])
        spec = net.convs.get(k)
        if spec is None:
            if mods and isinstance(mods[-1], nn.ReLU) and k - 1 in net.convs:
                mods.append(nn.Flatten())
            layer = nn.Linear(w.shape[1] - 1, w.shape[0])
            weight = w[:, :-1]
        else:
            layer = nn.Conv2d(spec.in_channels, spec.out_channels, spec.kernel, spec.stride,
                              spec.padding)
            weight = w[:, :-1].reshape(layer.weight.shape)
        with torch.no_grad():
            layer.weight.copy_(weight)
            layer.bias.copy_(w[:, -1])
        mods.append(layer)
        if k < net.depth:
            mods.append(nn.ReLU())
    return nn.Sequential(*mods)


def _batches(n, n_in, n_out, seed=0, batch=16):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        yield (rng.random((batch, n_in), dtype=np.float32), rng.integers(0, n_out, batch))


def _train_both(net_fn, rule, wrap_kw, opt="sgd", steps=3, n_in=20, n_out=5, seed=3):
    prog = RateRunner(net_fn(), backend="numpy", allow_nonlocal=True, seed=seed)
    model = local_rule(mlp_from(net_fn()), rule, allow_nonlocal=True, seed=seed, **wrap_kw)
    ropt = Optimiser(opt)
    topt = torch.optim.SGD(model.parameters(), lr=1.0) if opt == "sgd" else \
        torch.optim.Adam(model.parameters(), lr=3e-3)
    for x, y in _batches(steps, n_in, n_out):
        prog.step(x, np.eye(n_out, dtype=np.float32)[y], ropt)
        topt.zero_grad()
        nn.functional.cross_entropy(model(torch.as_tensor(x).view(-1, *wrap_kw.get(
            "input_shape", (n_in,)))), torch.as_tensor(y)).backward()
        topt.step()
    return prog.sync(), model.network(), model


def _max_diff(a, b) -> float:
    return max(float(np.abs(a.state[p][k]["w"] - b.state[p][k]["w"]).max())
               for p in a.state for k in a.state[p])


FEED_FORWARD = [n for n in nl.builtin_names() if not nl.get_rule(n).time_statements()]


@pytest.mark.parametrize("name", FEED_FORWARD)
@pytest.mark.parametrize("fused", [True, False])
def test_every_rule_trains_a_torch_model_as_the_rate_target_does(name, fused):
    rule = nl.get_rule(name)
    a, b, model = _train_both(lambda: nl.build_mlp(SIZES, rule, seed=3), rule,
                              {"fused": fused})
    assert _max_diff(a, b) < 2e-6, name
    assert _max_diff(a, nl.build_mlp(SIZES, rule, seed=3)) > 1e-4  # it learned
    assert (model.program is not None) == (fused and name in {
        "bp", "dfa", "fa", "fa-decay", "frsf", "kp", "sdfa", "usf"})


@pytest.mark.parametrize("name", ["fa", "kp"])
def test_adam_through_torch_optim_equals_the_rate_target(name):
    rule = nl.get_rule(name)
    a, b, _ = _train_both(lambda: nl.build_mlp(SIZES, rule, seed=3), rule, {}, opt="adam")
    assert _max_diff(a, b) < 2e-6


@pytest.mark.parametrize("fused", [True, False])
def test_a_conv_net_trains_as_the_rate_target_does(fused):
    rule = nl.get_rule("dfa")

    def net():
        return build_cnn((1, 10, 10), [(4, 3, 2, 1), (6, 3, 1, 0)], [12], 5, rule, seed=3)

    model = mlp_from(net())
    assert any(isinstance(m, nn.Conv2d) for m in model)
    a, b, wrapped = _train_both(net, rule, {"fused": fused, "input_shape": (1, 10, 10)},
                                n_in=100)
    assert (wrapped.program is not None) == fused
    assert _max_diff(a, b) < 2e-6


def test_feedback_is_a_buffer_or_a_parameter_as_the_rule_says():
    fa = local_rule(mlp_from(nl.build_mlp(SIZES, nl.get_rule("fa"))), "fa")
    kp = local_rule(mlp_from(nl.build_mlp(SIZES, nl.get_rule("kp"))), "kp")
    assert {n for n, _ in fa.named_buffers()} == {"feedback.B1", "feedback.B2"}
    assert "feedback.B1" not in dict(fa.named_parameters())
    assert {"feedback.B1", "feedback.B2"} <= set(dict(kp.named_parameters()))
    x, y = next(_batches(1, 20, 5))
    nn.functional.cross_entropy(kp(torch.as_tensor(x)), torch.as_tensor(y)).backward()
    assert kp.feedback.B1.grad is not None and float(kp.feedback.B1.grad.abs().max()) > 0


def test_state_dict_checkpoints_round_trip(tmp_path):
    model = local_rule(mlp_from(nl.build_mlp(SIZES, nl.get_rule("kp"), seed=1)), "kp", seed=1)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for x, y in _batches(2, 20, 5):
        opt.zero_grad()
        nn.functional.cross_entropy(model(torch.as_tensor(x)), torch.as_tensor(y)).backward()
        opt.step()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, tmp_path / "ck.pt")
    fresh = local_rule(mlp_from(nl.build_mlp(SIZES, nl.get_rule("kp"), seed=9)), "kp", seed=9)
    state = torch.load(tmp_path / "ck.pt")
    fresh.load_state_dict(state["model"])
    x = torch.rand(4, 20)
    assert torch.equal(fresh(x), model(x))
    assert torch.equal(fresh.feedback.B2, model.feedback.B2)
    torch.save(model, tmp_path / "whole.pt")  # the whole module pickles too
    whole = torch.load(tmp_path / "whole.pt", weights_only=False)
    assert torch.equal(whole(x), model(x)) and whole.program is not None


def test_layers_it_cannot_wrap_are_refused_by_name():
    cases = [
        (nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2)), "'1' \\(BatchNorm1d"),
        (nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2, 2)),
         "'1' \\(MaxPool2d"),
        (nn.Sequential(nn.Conv2d(1, 2, 3, dilation=2), nn.Flatten(), nn.Linear(2, 2)),
         "dilation"),
        (nn.Sequential(nn.Linear(4, 3), nn.GELU(), nn.Linear(3, 2)), "'1' \\(GELU"),
        (nn.LSTM(4, 3), "recurrent layers are not supported yet"),
    ]
    for model, match in cases:
        with pytest.raises(NeurolocalError, match=match):
            local_rule(model, "fa", input_shape=(1, 6, 6))

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 2)

        def forward(self, x):
            return self.b(torch.relu(self.a(x)) + x)

    with pytest.raises(NeurolocalError, match="not a chain"):
        local_rule(Residual(), "fa")


def test_a_plain_module_with_a_straight_forward_is_traced():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(20, 16), nn.Linear(16, 5)

        def forward(self, x):
            x = torch.flatten(x, 1)
            return self.fc2(nn.functional.relu(self.fc1(x)))

    model = local_rule(Net(), "dfa")
    assert isinstance(model, LocalRule) and model.program is not None
    out = model(torch.rand(3, 1, 4, 5))  # images are flattened as the model says
    assert out.shape == (3, 5)


def test_conv_needs_the_input_shape_and_nonlocal_rules_need_permission():
    conv = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(32, 2))
    with pytest.raises(NeurolocalError, match="input_shape=\\(channels, height, width\\)"):
        local_rule(conv, "dfa")
    with pytest.raises(LocalityError, match="allow_nonlocal=True"):
        local_rule(nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)), "bp")


def test_import_neurolocal_does_not_import_neurolocal_torch():
    code = "import sys, neurolocal; print('neurolocal.torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_autocast_bfloat16_gives_float32_grads_close_to_float32_training():
    net = nl.build_mlp([20, 16, 5], nl.get_rule("fa"), seed=2)
    model = local_rule(mlp_from(net), "fa", seed=2)
    x, y = (torch.as_tensor(v) for v in next(_batches(1, 20, 5)))
    nn.functional.cross_entropy(model(x), y).backward()
    ref = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
        assert out.dtype == torch.bfloat16
    nn.functional.cross_entropy(out.float(), y).backward()
    for r, p in zip(ref, model.parameters()):
        assert p.grad.dtype == torch.float32
        cos = nn.functional.cosine_similarity(r.flatten(), p.grad.flatten(), dim=0)
        assert cos > 0.99


def test_torch_compile_traces_the_wrapped_module():
    model = local_rule(mlp_from(nl.build_mlp([20, 16, 5], nl.get_rule("kp"))), "kp")
    x, y = (torch.as_tensor(v) for v in next(_batches(1, 20, 5)))

    def grads(m):
        model.zero_grad()
        nn.functional.cross_entropy(m(x), y).backward()
        return [p.grad.clone() for p in model.parameters()]

    want = grads(model)
    got = grads(torch.compile(model, backend="aot_eager"))
    for a, b in zip(want, got):
        torch.testing.assert_close(a, b)


def test_dataloader_scheduler_and_optimiser_train_mnist(mnist_arrays):
    x, y, xt, yt = mnist_arrays(2000, 1000)
    torch.manual_seed(0)
    model = local_rule(nn.Sequential(nn.Flatten(), nn.Linear(784, 100), nn.ReLU(),
                                     nn.Linear(100, 10)), "dfa")
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    sched = torch.optim.lr_scheduler.StepLR(opt, 1, 0.8)
    data = torch.utils.data.TensorDataset(torch.as_tensor(x).view(-1, 1, 28, 28),
                                          torch.as_tensor(y))
    for _ in range(2):
        for xb, yb in torch.utils.data.DataLoader(data, batch_size=50, shuffle=True):
            opt.zero_grad()
            nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
        sched.step()
    with torch.no_grad():
        acc = (model(torch.as_tensor(xt)).argmax(1).numpy() == yt).mean()
    assert acc > 0.8, acc  # chance: 0.1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_local_rule_on_cuda_matches_the_cpu():
    net = nl.build_mlp(SIZES, nl.get_rule("kp"), seed=3)
    models = {d: local_rule(mlp_from(net).to(d), "kp", seed=3) for d in ("cpu", "cuda")}
    x, y = (torch.as_tensor(v) for v in next(_batches(1, 20, 5)))
    for d, m in models.items():
        nn.functional.cross_entropy(m(x.to(d)), y.to(d)).backward()
    for a, b in zip(models["cpu"].parameters(), models["cuda"].parameters()):
        torch.testing.assert_close(a.grad, b.grad.cpu(), atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("ending", ["log_softmax", "sigmoid", "linear"])
def test_the_teaching_signal_is_the_label_under_the_matching_loss(ending):
    """target = r - N dL/da: the labels for NLL after LogSoftmax, summed BCE after Sigmoid,
    half the summed squared error of a linear output."""
    act = {"log_softmax": "softmax"}.get(ending, ending)
    net = nl.build_mlp([12, 8, 4], nl.get_rule("fa"), output_activation=act, seed=1)
    prog = RateRunner(nl.build_mlp([12, 8, 4], nl.get_rule("fa"), output_activation=act,
                                   seed=1), backend="numpy")
    seq = mlp_from(net)
    if ending == "log_softmax":
        seq.append(nn.LogSoftmax(1))
    elif ending == "sigmoid":
        seq.append(nn.Sigmoid())
    model = local_rule(seq, "fa", seed=1, output="linear" if ending == "linear" else None)
    topt = torch.optim.SGD(model.parameters(), lr=1.0)
    for x, y in _batches(3, 12, 4, batch=6):
        onehot = np.eye(4, dtype=np.float32)[y]
        prog.step(x, onehot, Optimiser("sgd"))
        out, t = model(torch.as_tensor(x)), torch.as_tensor(onehot)
        if ending == "log_softmax":
            loss = nn.functional.nll_loss(out, torch.as_tensor(y))
        elif ending == "sigmoid":
            loss = nn.functional.binary_cross_entropy(out, t, reduction="sum") / len(t)
        else:
            loss = 0.5 * ((out - t) ** 2).sum(1).mean()
        topt.zero_grad()
        loss.backward()
        topt.step()
    assert _max_diff(prog.sync(), model.network()) < 2e-6


@pytest.mark.parametrize("name", sorted(set(nl.builtin_names()) - set(FEED_FORWARD)))
def test_rules_through_time_are_refused_naming_what_they_need(name):
    from neurolocal.torch import local_rule

    with pytest.raises(NeurolocalError, match=f"rule {name} runs through time.*--recurrent"):
        local_rule(nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)), name,
                   allow_nonlocal=True)

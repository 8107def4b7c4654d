"""Rate lowering: numpy == torch, bp == autograd, rules learn, alignment moves as claimed."""

import numpy as np
import pytest
import torch

import neurolocal as nl
from neurolocal.app.metrics import backprop_gradients, feedback_angles
from neurolocal.errors import DivergenceError, LocalityError, LoweringError, ShapeError
from neurolocal.hardware.rate import Optimiser, RateRunner, generate_rate_source
from neurolocal.rule import FORWARD

NONLOCAL = {"bp", "usf", "brsf", "frsf", "ar-exact"}


def _batches(n_steps, sizes, seed=0, batch=16):
    """Inputs labelled by a fixed random linear teacher: a task with something to learn."""
    rng = np.random.default_rng(seed)
    teacher = rng.standard_normal((sizes[0], sizes[-1]))
    for _ in range(n_steps):
        x = rng.random((batch, sizes[0]), dtype=np.float32)
        y = ((x - 0.5) @ teacher).argmax(1)
        yield x, np.eye(sizes[-1], dtype=np.float32)[y]


@pytest.mark.parametrize("name", [n for n in nl.builtin_names()  # recurrent: test_recurrent.py
                                  if not nl.get_rule(n).time_statements()])
@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_numpy_and_torch_run_the_same_program(name, opt):
    sizes = [20, 16, 12, 5]
    rule = nl.get_rule(name)
    progs = {b: RateRunner(nl.build_mlp(sizes, rule, seed=3), backend=b,
                            allow_nonlocal=name in NONLOCAL, seed=7) for b in ("numpy", "torch")}
    opts = {b: Optimiser(opt) for b in progs}
    for x, y in _batches(5, sizes):
        for b, p in progs.items():
            p.step(x, y, opts[b])
    a, t = progs["numpy"].sync(), progs["torch"].sync()
    for proj, layers in a.state.items():
        for layer, d in layers.items():
            for var, arr in d.items():
                np.testing.assert_allclose(arr, t.state[proj][layer][var], rtol=1e-4,
                                           atol=1e-5, err_msg=f"{name} {proj}{layer}.{var}")
    # the run actually changed the weights
    assert not np.allclose(a.state[FORWARD][1]["w"], nl.build_mlp(sizes, rule, seed=3)
                           .state[FORWARD][1]["w"])


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_bp_rule_update_is_minus_lr_times_the_autograd_gradient(backend):
    rule = nl.get_rule("bp")
    net = nl.build_mlp([30, 20, 10, 4], rule, hidden_activation="tanh", seed=1)
    prog = RateRunner(net, backend=backend, allow_nonlocal=True)
    rng = np.random.default_rng(0)
    x = rng.random((8, 30), dtype=np.float32)
    y = rng.integers(0, 4, 8)
    comps = prog.errors(prog.forward(x), prog.asarray(np.eye(4, dtype=np.float32)[y]))
    ups = prog.updates(comps)
    grads = backprop_gradients(prog.sync(), x, y)
    for k in (1, 2, 3):
        np.testing.assert_allclose(prog.to_numpy(ups[(FORWARD, k)]["w"]), -0.01 * grads[k - 1],
                                   rtol=1e-4, atol=1e-7)


def test_kolen_pollack_aligns_its_feedback_and_fa_does_not():
    sizes = [30, 20, 4]
    angles = {}
    for name in ("fa-decay", "kp"):
        # strong weight decay so that 300 steps are enough to forget the initial weights
        rule = nl.get_rule(name).with_globals(wd=0.1)
        prog = RateRunner(nl.build_mlp(sizes, rule, seed=0), backend="numpy")
        start = feedback_angles(prog.sync())["B1"]
        opt = Optimiser("sgd", lr=20.0)
        for x, y in _batches(300, sizes, batch=32):
            prog.step(x, y, opt)
        angles[name] = (start, feedback_angles(prog.sync())["B1"])
    assert 80 < angles["fa-decay"][0] < 100 and 80 < angles["kp"][0] < 100
    assert angles["kp"][1] < 5, angles  # Kolen-Pollack: B -> W^T
    assert angles["fa-decay"][1] > angles["kp"][1] + 20


def test_weight_mirror_phase_aligns_feedback():
    prog = RateRunner(nl.build_mlp([30, 20, 4], nl.get_rule("wm").with_globals(lr=0.0),
                                    seed=0), backend="numpy")
    start = feedback_angles(prog.sync())["B1"]
    opt = Optimiser("sgd", lr=5.0)
    for x, y in _batches(200, [30, 20, 4], batch=32):
        prog.step(x, y, opt)
    assert start > 80 and feedback_angles(prog.sync())["B1"] < 20


def test_nonlocal_rule_is_refused_unless_allowed():
    net = nl.build_mlp([4, 3, 2], nl.get_rule("bp"))
    with pytest.raises(LocalityError, match="weight-transport"):
        RateRunner(net)
    RateRunner(net, allow_nonlocal=True)


def test_shape_mismatch_names_the_expected_shape():
    prog = RateRunner(nl.build_mlp([4, 3, 2], nl.get_rule("fa")))
    with pytest.raises(ShapeError, match=r"expects \(batch, 4\)"):
        prog.forward(np.zeros((2, 5), np.float32))


def test_global_vector_cannot_be_lowered_to_rate():
    rule = nl.parse_rule("rule gv\nglobal lr = 1\nglobal vector e\n"
                         "on W: dw = -lr * glob.e * pre.r\n")
    with pytest.raises(LoweringError, match="global vector 'e'"):
        RateRunner(nl.build_mlp([4, 3, 2], rule), allow_nonlocal=True)


def test_non_separable_terms_are_evaluated_by_broadcasting():
    rule = nl.parse_rule("rule ns\nglobal lr = 1\n"
                         "on W: dw = -lr * tanh(post.r - pre.r)\n")
    prog = RateRunner(nl.build_mlp([5, 3], rule), backend="numpy")
    x = np.random.default_rng(0).random((4, 5), dtype=np.float32)
    comps = prog.forward(x)
    d = prog.updates(comps)[(FORWARD, 1)]["w"]
    pre = np.concatenate([x, np.ones((4, 1), np.float32)], 1)
    expect = -np.tanh(comps[1]["r"][:, :, None] - pre[:, None, :]).mean(0)
    np.testing.assert_allclose(d, expect, rtol=1e-5)
    assert "tanh" in generate_rate_source(rule)


def test_generated_source_is_printable_and_mentions_each_statement():
    src = generate_rate_source(nl.get_rule("kp"), "torch")
    assert "def update_B(" in src and "def update_W(" in src
    assert "# dw = -lr * pre.delta * post.r - lr * wd * syn.w" in src


def test_dfa_one_epoch_on_mnist_reaches_95_percent():
    from neurolocal.app.training import TrainConfig, train
    torch.manual_seed(0)
    res = train(TrainConfig(rule="dfa", epochs=1, hidden=[500]), progress=False)
    assert res.test_accuracy >= 95.0, res.test_accuracy
    assert res.samples_per_second > 0 and "mnist" in res.data_source.lower() or res.data_source


def test_divergence_stops_with_the_epoch_and_keeps_the_last_checkpoint(tmp_path):
    from neurolocal.app.training import TrainConfig, train
    out = tmp_path / "run.h5"
    cfg = TrainConfig(rule="fa", epochs=2, optimiser="sgd", lr=1.0, globals={"lr": 1e30},
                      limit=2000, test_limit=500, out=str(out))
    with pytest.raises(DivergenceError, match="epoch 1") as err:
        train(cfg, progress=False)
    assert "lower --lr" in str(err.value)
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_held_values_run_when_the_hold_phase_is_declared():
    text = ("rule held\nglobal lr = 0.01\nphase forward = hold()\n"
            "output err = r - target\nfeedback B = output.err -> err via random\n"
            "on W: dw = -lr * post.err * pre.r@forward\n")
    rule = nl.parse_rule(text)
    rep = nl.check_locality(rule)
    assert rep.local and [p["name"] for p in rep.phases] == ["forward"]
    prog = RateRunner(nl.build_mlp([6, 4, 3], rule), backend="numpy")
    x, y = next(_batches(1, [6, 4, 3]))
    comps = prog.errors(prog.forward(x), y)
    d = prog.updates(comps)[(FORWARD, 1)]["w"]
    pre = np.concatenate([x, np.ones((len(x), 1), np.float32)], 1)
    np.testing.assert_allclose(d, -0.01 * comps[1]["err"].T @ pre / len(x), rtol=1e-5)


@pytest.mark.parametrize("spiking", [False, True])
def test_cuda_without_cuda_is_a_clear_error(spiking, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    from neurolocal.app.cli import main

    args = ["train", "--rule", "dfa", "--device", "cuda", "--samples", "20", "--json"]
    assert main(args + (["--spiking"] if spiking else [])) == 2
    assert "torch sees no CUDA device here; use --device cpu" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_torch_program_on_cuda_matches_the_cpu_one():
    sizes = [20, 16, 5]
    rule = nl.get_rule("dfa")
    progs = {d: RateRunner(nl.build_mlp(sizes, rule, seed=3), backend="torch", device=d)
             for d in ("cpu", "cuda")}
    opts = {d: Optimiser("sgd") for d in progs}
    for x, y in _batches(5, sizes):
        for d, p in progs.items():
            p.step(x, y, opts[d])
    a, b = progs["cpu"].sync(), progs["cuda"].sync()
    np.testing.assert_allclose(a.state[FORWARD][1]["w"], b.state[FORWARD][1]["w"], atol=1e-5)

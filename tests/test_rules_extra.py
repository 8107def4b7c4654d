"""Issue 5 rules: pal, ar (+ ar-exact), pc, dyninv, ia, sdfa and the FA analysis.

Checker verdicts and phases from the descriptions, numpy == torch, exact activation
relaxation against autograd, PAL's alignment against FA's, dynamic inversion's stability
report, the relaxation machinery's edge cases, and short MNIST floors.
"""

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import neurolocal as nl
from neurolocal.app.metrics import backprop_gradients, feedback_angles, relaxed_cosines
from neurolocal.errors import LoweringError, RuleSyntaxError
from neurolocal.hardware.rate import Optimiser, RateRunner
from neurolocal.rule import FORWARD
from neurolocal.rules import builtin_text

ROOT = Path(__file__).resolve().parent.parent

#: rule -> (violation kinds, [(phase, kind)], features)
EXPECTED = {
    "ar-exact": ({"weight-transport"}, [("settle", "relax")], {"relax"}),
    "ar": (set(), [("settle", "relax")], {"relax"}),
    "pc": (set(), [("infer", "relax")], {"relax", "lateral"}),
    "dyninv": (set(), [("invert", "relax")], {"relax", "forward-multiplex"}),
    "pal": (set(), [], {"noise-source"}),
    "ia": (set(), [("mirror", "noise")], {"noise-phase"}),
    "sdfa": (set(), [], {"output-feedback"}),
}


def _teacher(n_steps, sizes, seed=0, batch=16):
    rng = np.random.default_rng(seed)
    teacher = rng.standard_normal((sizes[0], sizes[-1]))
    for _ in range(n_steps):
        x = rng.random((batch, sizes[0]), dtype=np.float32)
        y = ((x - 0.5) @ teacher).argmax(1)
        yield x, np.eye(sizes[-1], dtype=np.float32)[y]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_checker_verdict_phases_and_features(name):
    kinds, phases, features = EXPECTED[name]
    rule = nl.get_rule(name)
    rep = nl.check_locality(rule)
    assert {v.kind for v in rep.violations} == kinds
    assert rep.local == (not kinds)
    assert [(p["name"], p["kind"]) for p in rep.phases] == phases
    assert all(p["declared"] for p in rep.phases)
    assert set(rule.features()) == features
    assert rep.crossings[0]["via"].startswith("W")  # the forward axon always crosses


def test_what_crosses_neurons_is_named():
    pal = nl.check_locality(nl.get_rule("pal"))
    assert [c["signal"] for c in pal.crossings] == ["r", "next.up"]
    assert pal.noise[0]["name"] == "xi" and "always on" in pal.noise[0]["note"]
    assert "phases: none" in pal.to_text()
    dyn = nl.check_locality(nl.get_rule("dyninv"))
    up = [c for c in dyn.crossings if c["signal"] == "prev.e"]
    assert up and up[0]["local"] and up[0]["via"] == "F = W"
    assert "forward synapses W themselves" in dyn.to_text()
    pc = nl.check_locality(nl.get_rule("pc"))
    assert any(c["signal"] == "lateral.r" and c["from"] == "the same layer"
               for c in pc.crossings)
    ar = nl.check_locality(nl.get_rule("ar-exact"))
    assert [c["local"] for c in ar.crossings] == [True, False]


def test_the_verdict_comes_from_the_description_not_the_name():
    # exact activation relaxation renamed 'ar' is still weight transport ...
    text = builtin_text("ar-exact").replace("rule ar-exact", "rule ar")
    assert not nl.check_locality(nl.parse_rule(text)).local
    # ... and the local one with its feedback tied to W is not local either
    text = builtin_text("ar").replace("via random", "via transpose(W)")
    rep = nl.check_locality(nl.parse_rule(text))
    assert {v.kind for v in rep.violations} == {"weight-transport"}
    # a forward-direction projection through anything but W itself is refused
    with pytest.raises(RuleSyntaxError, match="feedback comes from"):
        nl.parse_rule(builtin_text("dyninv").replace("prev.e -> up via W",
                                                     "prev.e -> up via random"))


def test_relax_equation_needs_a_declared_relax_phase():
    text = builtin_text("ar").replace("phase settle = relax(steps=30, rate=0.5)\n", "")
    rep = nl.check_locality(nl.parse_rule(text))
    assert {v.kind for v in rep.violations} == {"undeclared-phase"}
    assert "relax(steps=" in rep.violations[0].message
    with pytest.raises(RuleSyntaxError, match="is a noise phase"):
        nl.parse_rule(builtin_text("ar").replace("relax(steps=30, rate=0.5)",
                                                 "noise(sigma=1)"))


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_exact_activation_relaxation_reaches_the_backprop_gradient(activation):
    net = nl.build_mlp([30, 24, 16, 4], nl.get_rule("ar-exact"),
                       hidden_activation=activation, seed=1)
    prog = RateRunner(net, backend="numpy", allow_nonlocal=True)
    rng = np.random.default_rng(0)
    x = rng.random((16, 30), dtype=np.float32)
    y = rng.integers(0, 4, 16)
    cos = relaxed_cosines(prog, x, y)
    assert set(cos) == {"x1", "x2"}
    assert min(cos.values()) > 0.99, cos
    # and the updates it makes from them are backprop's
    comps = prog.errors(prog.forward(x), np.eye(4, dtype=np.float32)[y])
    ups, grads = prog.updates(comps), backprop_gradients(prog.sync(), x, y)
    for k in (1, 2, 3):
        np.testing.assert_allclose(ups[(FORWARD, k)]["w"], -0.01 * grads[k - 1],
                                   rtol=1e-3, atol=1e-6)


def test_simplified_activation_relaxation_is_not_the_gradient_at_init():
    prog = RateRunner(nl.build_mlp([30, 24, 16, 4], nl.get_rule("ar"), seed=1),
                       backend="numpy")
    rng = np.random.default_rng(0)
    cos = relaxed_cosines(prog, rng.random((16, 30), dtype=np.float32), rng.integers(0, 4, 16))
    assert max(abs(c) for c in cos.values()) < 0.5  # random B: it has to learn


def test_relaxed_values_are_held_at_the_end_of_their_phase():
    prog = RateRunner(nl.build_mlp([8, 6, 3], nl.get_rule("ar")), backend="numpy")
    x = np.random.default_rng(0).random((4, 8), dtype=np.float32)
    comps = prog.errors(prog.forward(x), np.eye(3, dtype=np.float32)[[0, 1, 2, 0]])
    np.testing.assert_array_equal(comps[1]["x@settle"], comps[1]["x"])
    # 30 steps at rate 0.5 from x = r: x - B e has shrunk by 0.5^30
    fixed = comps[2]["x"] @ prog.feedback_matrix(nl.get_rule("ar").feedback["B"], 1).T
    start = np.abs(comps[1]["r"] - fixed).max()
    assert np.abs(comps[1]["x"] - fixed).max() <= start * 0.5 ** 30 * 1.01 + 1e-6


def test_pal_aligns_its_feedback_and_fa_does_not():
    sizes = [30, 20, 4]
    angles, accs = {}, {}
    rng = np.random.default_rng(5)
    xt = rng.random((500, 30), dtype=np.float32)
    for name in ("fa", "pal"):
        prog = RateRunner(nl.build_mlp(sizes, nl.get_rule(name), seed=0), backend="numpy",
                           seed=0)
        start = feedback_angles(prog.sync())["B1"]
        opt = Optimiser("adam")
        for x, y in _teacher(400, sizes, batch=32):
            prog.step(x, y, opt)
        angles[name] = (start, feedback_angles(prog.sync())["B1"])
        teacher = np.random.default_rng(0).standard_normal((30, 4))
        accs[name] = float((prog.predict(xt).argmax(1)
                            == ((xt - 0.5) @ teacher).argmax(1)).mean())
    assert 75 < angles["pal"][0] < 105 and angles["fa"][0] == angles["pal"][0]
    assert angles["pal"][1] < 30, angles
    assert angles["pal"][1] < angles["fa"][1] - 25, angles
    assert accs["pal"] > 0.8 and accs["fa"] > 0.8, accs


def test_pal_noise_is_private_always_on_while_learning_and_off_for_inference():
    prog = RateRunner(nl.build_mlp([10, 8, 3], nl.get_rule("pal"), seed=0), backend="numpy")
    x = np.random.default_rng(0).random((64, 10), dtype=np.float32)
    clean, noisy = prog.forward(x), prog.forward(x, noisy=True)
    np.testing.assert_array_equal(clean[1]["xi"], 0)
    np.testing.assert_allclose(noisy[1]["r"] - clean[1]["r"], noisy[1]["xi"], atol=1e-6)
    assert 0.07 < noisy[1]["xi"].std() < 0.13  # sigma = 0.1
    # abar: the drive without noise; a - abar is the layer's response to the noise below
    np.testing.assert_allclose(noisy[2]["abar"], clean[2]["a"], atol=1e-6)
    np.testing.assert_allclose(noisy[2]["a"] - noisy[2]["abar"],
                               noisy[1]["xi"] @ prog.state[FORWARD][2]["w"][:, :-1].T,
                               atol=1e-5)
    np.testing.assert_array_equal(prog.predict(x), clean[-1]["r"])


def test_dynamic_inversion_stability_is_measured_and_reported_not_enforced():
    rule = nl.get_rule("dyninv")
    sizes = [20, 30, 5]
    net = nl.build_mlp(sizes, rule, seed=2)
    rng = np.random.default_rng(0)
    x = rng.random((4, 20), dtype=np.float32)
    y = np.eye(5, dtype=np.float32)[rng.integers(0, 5, 4)]
    prog = RateRunner(net, backend="numpy")
    rep = prog.stability(x, y)
    assert rep["phase"] == "invert" and rep["stable"]
    # the output block is W f' B - alpha I, measured through the generated code
    w, b = net.state[FORWARD][2]["w"][:, :-1], net.state["B"][1]["w"]
    alpha = rule.globals["alpha"].value
    worst = max(np.linalg.eigvals(w @ (d[:, None] * b) - alpha * np.eye(5)).real.max()
                for d in prog.forward(x)[1]["dphi"])
    assert rep["blocks"]["u2"] == pytest.approx(worst, abs=1e-3)
    assert rep["blocks"]["u1"] == pytest.approx(-alpha, abs=1e-3)  # no layer below inverts
    # without the leak some direction grows: reported as unstable, and the run goes on
    leakless = RateRunner(nl.build_mlp(sizes, rule.with_globals(alpha=0.0), seed=2),
                           backend="numpy")
    bad = leakless.stability(x, y)
    assert not bad["stable"] and bad["max_real_eig"] > 0
    leakless.step(x, y, Optimiser("sgd"))  # nothing enforced: it runs


def test_dynamic_inversion_inverts_the_forward_weights_as_alpha_shrinks():
    # W2 f'(a1) e1 -> delta2 at the fixed point when alpha -> 0 (stable: B = -W2^T)
    rule = nl.get_rule("dyninv").with_globals(alpha=0.01)
    text = re.sub(r"relax\([^)]*\)", "relax(steps=3000, rate=0.05)", rule.text)
    assert "relax(steps=3000, rate=0.05)" in text
    rule = nl.parse_rule(text).with_globals(alpha=0.01)
    net = nl.build_mlp([12, 10, 3], rule, hidden_activation="tanh", seed=0)
    net.state["B"][1]["w"] = -net.state[FORWARD][2]["w"][:, :-1].T.copy()
    prog = RateRunner(net, backend="numpy")
    x = np.random.default_rng(1).random((5, 12), dtype=np.float32)
    comps = prog.errors(prog.forward(x), np.eye(3, dtype=np.float32)[[0, 1, 2, 0, 1]])
    produced = comps[1]["e"] @ net.state[FORWARD][2]["w"][:, :-1].T
    rel = np.abs(produced - comps[2]["delta"]).max() / np.abs(comps[2]["delta"]).max()
    assert rel < 0.1, rel


def test_lowering_errors_for_what_the_rate_target_cannot_run():
    bad = builtin_text("dyninv") + "on F: dw = lr * pre.e * post.r\n"
    with pytest.raises(LoweringError, match="no state of its own"):
        RateRunner(nl.build_mlp([4, 3, 2], nl.parse_rule(bad)))
    with pytest.raises(LoweringError, match="no relax phase"):
        RateRunner(nl.build_mlp([4, 3, 2], nl.get_rule("fa"))).stability(
            np.zeros((1, 4), np.float32), np.zeros((1, 2), np.float32))


def test_ia_feedback_learns_to_invert_and_aligns():
    rule = nl.get_rule("ia").with_globals(lr=0.0)  # forward weights held: B chases them
    prog = RateRunner(nl.build_mlp([30, 20, 4], rule, seed=0), backend="numpy")
    start = feedback_angles(prog.sync())["B1"]
    opt = Optimiser("sgd", lr=5.0)
    for x, y in _teacher(200, [30, 20, 4], batch=32):
        prog.step(x, y, opt)
    assert start > 75 and feedback_angles(prog.sync())["B1"] < 25
    # amp + null: B W ~ a projection (B reconstructs the layer from the one above)
    w = prog.state[FORWARD][2]["w"][:, :-1]
    b = prog.feedback_matrix(rule.feedback["B"], 1)
    np.testing.assert_allclose(w @ b, np.eye(4), atol=0.25)


def test_sparse_dfa_keeps_its_sparsity():
    prog = RateRunner(nl.build_mlp([30, 40, 40, 10], nl.get_rule("sdfa"), seed=0))
    for layer in (1, 2):
        b = prog.state["B"][layer]["w"]
        assert 0.03 < (b != 0).mean() < 0.2
    for x, y in _teacher(3, [30, 40, 40, 10]):
        prog.step(x, y, Optimiser("adam"))
    for layer in (1, 2):
        assert 0.03 < (prog.state["B"][layer]["w"] != 0).mean() < 0.2


def _load_benchmark(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_fa_two_layer_error_falls_exponentially_and_aligns_only_with_decay():
    fa = _load_benchmark("fa_analysis")
    plain = fa.run("fa", steps=600, hidden=200)
    decay = fa.run("fa-decay", steps=600, hidden=200, wd=0.1)
    loss = np.array(plain["loss"])
    assert loss[-1] < loss[0] / 100
    # log-linear in the second half: a straight line on a log plot
    half = len(loss) // 2
    logs = np.log(loss[half:])
    fit = np.polyfit(np.arange(len(logs)), logs, 1)
    resid = logs - np.polyval(fit, np.arange(len(logs)))
    assert fit[0] < 0 and np.abs(resid).max() < 0.1 * (logs[0] - logs[-1])
    assert decay["angle"][-1] < 20 < plain["angle"][-1]


# measured (torch CPU, 60 Adam steps on 3000 images): ar 84.2, pc 84.2, dyninv 83.2,
# pal 82.8, ia 84.2, sdfa 85.6 (fa 83.2); floors about 3 points below
@pytest.mark.parametrize("name, floor", [("ar", 81.0), ("pc", 80.0), ("dyninv", 80.0),
                                         ("pal", 79.0), ("ia", 81.0), ("sdfa", 82.0)])
def test_short_mnist_training_floor(name, floor):
    from neurolocal.app.training import TrainConfig, train
    torch.manual_seed(0)
    res = train(TrainConfig(rule=name, epochs=1, limit=3000, test_limit=500), progress=False)
    assert res.test_accuracy >= floor, res.test_accuracy

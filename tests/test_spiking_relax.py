"""Relax phases on the spiking targets: the settling stretch of the learning epoch.

The reference simulator's relaxation is pinned by its fixed point and its first Euler step;
snntorch (float64) is held to the reference on a fixed spike train, like every rule in
test_spiking_agreement.py; what cannot lower yet is refused by name.
"""

import numpy as np
import pytest
from support.driven import driven_setup

from neurolocal.errors import LoweringError
from neurolocal.hardware.base import get_target
from neurolocal.hardware.semantics import SpikingConfig, lower_rule
from neurolocal.network import build_mlp
from neurolocal.parser import parse_rule
from neurolocal.rules import get_rule

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

T, EPOCHS = 12, 6
CONFIGS = {
    "if": SpikingConfig(timesteps=T),
    "lif": SpikingConfig(timesteps=T, du=0.5, dv=0.2, vth=0.7, tau1=6.0, surrogate="spiked",
                         optimiser="momentum"),
}


def _setup(rule, config, sizes, *, allow_nonlocal=False):
    return driven_setup(rule, config, sizes, EPOCHS, allow_nonlocal=allow_nonlocal)[:4]


def _ar(**globals_):
    return get_rule("ar").with_globals(lr=0.5, **globals_)


def _with_steps(rule_name: str, steps: int, rate: float):
    text = get_rule(rule_name).text
    import re
    text = re.sub(r"relax\(steps=\d+, rate=[0-9.]+\)", f"relax(steps={steps}, rate={rate})",
                  text)
    return parse_rule(text)


def test_the_program_has_the_settling_stretch_and_prints_it():
    prog = lower_rule(get_rule("ar"), SpikingConfig(timesteps=T))
    (plan,) = prog.relax
    assert (plan.name, plan.steps, plan.rate, plan.relaxed) == ("settle", 30, 0.5, ("x",))
    assert [e.target for e in plan.hidden_derived] == ["g"]  # x = r is only x's start
    text = get_target("snntorch").compile(get_rule("ar"), config=SpikingConfig(timesteps=T))
    assert "relax settle: 30 Euler steps of rate 0.5" in text
    assert "def relax_settle_hidden(c, g):" in text and "d['x'] = c['err'] - c['x']" in text


def test_reference_relaxation_reaches_the_fixed_point_and_steps_like_euler():
    """ar: x_l relaxes to B_l x_{l+1} (x_L = err, clamped); one step is x + h(-x + err)."""
    config = CONFIGS["if"]
    sizes = [20, 10, 8, 3]
    for steps, rate in ((1, 0.5), (200, 0.5)):
        rule = _with_steps("ar", steps, rate)
        net, ref, spikes, targets = _setup(rule, config, sizes)
        layers = ref.simulate(spikes[0][:, None, :])
        c = ref.compartments(layers, targets[0][None])
        b1, b2 = (ref.state["B"][k]["w"] for k in (1, 2))
        x3 = c[3]["r"] - targets[0][None]
        assert np.abs(x3).max() > 0.1
        if steps == 1:  # x starts at r; err was delivered from the layer above's start
            np.testing.assert_allclose(c[2]["x"], c[2]["r"] + 0.5 * (x3 @ b2.T - c[2]["r"]),
                                       atol=1e-12)
            np.testing.assert_allclose(c[1]["x"], c[1]["r"] + 0.5 * (c[2]["r"] @ b1.T
                                                                     - c[1]["r"]), atol=1e-12)
        else:
            np.testing.assert_allclose(c[2]["x"], x3 @ b2.T, atol=1e-10)
            np.testing.assert_allclose(c[1]["x"], x3 @ b2.T @ b1.T, atol=1e-10)
        # the static equations and the feedback follow the relaxed values
        np.testing.assert_allclose(c[1]["err"], c[2]["x"] @ b1.T, atol=1e-12)
        np.testing.assert_allclose(c[1]["g"], c[1]["x"] * c[1]["dphi"], atol=1e-12)


RELAXING = {"ar": "x", "pc": "mu", "dyninv": "u"}


@pytest.mark.parametrize("rule_name", sorted(RELAXING))
@pytest.mark.parametrize("cfg_name", ["if", "lif"])
def test_snntorch_brian2_and_reference_agree(rule_name, cfg_name):
    """ar (learned B), pc (learned B and lateral E), dyninv (fixed B, prev.e up W)."""
    pytest.importorskip("snntorch")
    pytest.importorskip("brian2")
    config = CONFIGS[cfg_name]
    sizes = [20, 10, 3] if (cfg_name == "if") == (rule_name != "dyninv") else [20, 10, 8, 3]
    rule = get_rule(rule_name)
    if (rule_name, cfg_name) != ("ar", "if"):  # fewer steps: the same code, a faster test
        rule = _with_steps(rule_name, 5, float(rule.phases[next(iter(rule.phases))]
                                               .params["rate"]))
    rule = rule.with_globals(lr=0.5)
    net, ref, spikes, targets = _setup(rule, config, sizes)
    snn = get_target("snntorch").runner(net, config, dtype="float64")
    b2 = get_target("brian2").runner(net, config, codegen="numpy", input_mode="raster")
    relaxed, largest = RELAXING[rule_name], 0.0
    for k in range(EPOCHS):
        out = ref.run_epoch(spikes[k][:, None, :], targets[k][None])
        largest = max(largest, float(np.abs(out["comps"][1][relaxed]).max()))
        snn.run_epoch(spikes[k][:, None, :], targets[k][None])
    assert largest > 1e-3, "the relaxed compartment must move for the test to test anything"
    b2.run(spikes, targets, learn=True)
    b2w, moved = b2.weights(), 0.0
    for proj, layers in ref.state.items():
        for layer, st in layers.items():
            moved += float(np.abs(st["w"] - net.state[proj][layer]["w"]).max())
            np.testing.assert_allclose(snn.state[proj][layer]["w"].numpy(), st["w"],
                                       atol=1e-10, rtol=0, err_msg=f"snntorch {proj}{layer}")
            np.testing.assert_allclose(b2w[proj][layer]["w"], st["w"], atol=1e-10, rtol=0,
                                       err_msg=f"brian2 {proj}{layer}")
    assert moved > 1e-3, "the weights must learn for the test to test anything"


@pytest.mark.parametrize("rule_name", sorted(RELAXING))
def test_spiking_relaxation_is_the_rate_executors_on_the_same_inputs(rule_name):
    """The rate runner's relax (hardware/rate/runner.py), given the spiking measured
    compartments as its forward sweep, relaxes to what the reference relaxes to."""
    from neurolocal.hardware.rate.runner import RateRunner

    config = CONFIGS["if"]
    net, ref, spikes, targets = _setup(get_rule(rule_name), config, [20, 10, 8, 3])
    layers = ref.simulate(spikes[0][:, None, :])
    got = ref.compartments(layers, targets[0][None])
    measured = ref.compartments(layers, None)
    rr = RateRunner(net, backend="numpy")
    cs = [rr._comps(rr.asarray(c["r"]), rr.asarray(c["r"]),
                    rr.asarray(c["dphi"]) if "dphi" in c else None) for c in measured]
    want = rr.errors(cs, rr.asarray(targets[0][None]))
    relaxed = RELAXING[rule_name]
    assert np.abs(got[1][relaxed]).max() > 1e-3
    for layer in range(1, net.depth + 1):
        np.testing.assert_allclose(got[layer][relaxed], want[layer][relaxed], atol=2e-5,
                                   err_msg=f"{rule_name} {relaxed}{layer}")


def test_batched_snntorch_increments_equal_the_reference_batch():
    pytest.importorskip("snntorch")
    config = CONFIGS["if"]
    net, ref, spikes, targets = _setup(_ar(), config, [20, 10, 8, 3])
    batch = np.transpose(spikes, (1, 0, 2))  # (T, B, n)
    want = ref.run_epoch(batch, targets, apply=False)["increments"]
    snn = get_target("snntorch").runner(net, config, dtype="float64", batch_size=EPOCHS)
    got = snn.run_epoch(batch, targets, apply=False)["increments"]
    assert set(got) == set(want)
    for key, d in want.items():
        for var, v in d.items():
            np.testing.assert_allclose(got[key][var].numpy(), v, atol=1e-12, rtol=0)


def test_the_settling_equations_are_checked():
    bad_phase = get_rule("ar").text.replace("neuron x during settle", "neuron x during nope")
    with pytest.raises(Exception, match="nope"):
        lower_rule(parse_rule(bad_phase))
    slow = get_rule("ar").text.replace("= -x + err", "= -x + err + slow(a)")
    with pytest.raises(LoweringError, match=r"reads slow\(\.\.\.\)"):
        lower_rule(parse_rule(slow), check_locality=False)


@pytest.mark.parametrize("rule_name", ["ar", "pc", "dyninv"])
def test_lava_refuses_the_settling_stretch_naming_what_is_missing(rule_name):
    pytest.importorskip("lava")
    from neurolocal.hardware.lava.lower import lower_to_loihi

    with pytest.raises(LoweringError, match=r"relax\(steps=\d+.*Missing: \(1\).*not a Loihi 2 "
                                            "limit"):
        lower_to_loihi(get_rule(rule_name), SpikingConfig(timesteps=T), sizes=(20, 10, 3))


def test_prev_via_w_needs_a_relax_phase_and_lateral_lowers_without_one():
    up = parse_rule("""rule up "prev via W, no relax"
global lr = 0.1
output err = r - target
output e = err
feedback B = next.e -> fb via random
feedback F = prev.e -> up via W
neuron e = (fb + up) * dphi
on W: dw = -lr * post.e * pre.r
""")
    with pytest.raises(LoweringError, match=r"prev\.\* is delivered while the epoch settles"):
        lower_rule(up, check_locality=False)
    lateral = parse_rule("""rule lat "lateral, no relax"
global lr = 0.1
output err = r - target
feedback B = next.err -> err via random
feedback E = lateral.r -> pred via random
neuron delta = (err - pred) * dphi
on W: dw = -lr * post.delta * pre.r
""")
    prog = lower_rule(lateral, check_locality=False)
    assert not prog.relax and {fb.scope for fb in prog.feedback} == {"next", "lateral"}


def test_ar_exact_tied_feedback_relaxes_on_snntorch_and_brian2_like_the_reference():
    """ar-exact (allow_nonlocal: B = transpose(W), copied every epoch) on 20-10-8-3, LIF."""
    pytest.importorskip("snntorch")
    pytest.importorskip("brian2")
    config = CONFIGS["lif"]
    rule = _with_steps("ar-exact", 10, 0.25).with_globals(lr=0.5)
    net, ref, spikes, targets = _setup(rule, config, [20, 10, 8, 3], allow_nonlocal=True)
    assert ref.program.feedback[0].mode == "tied"
    snn = get_target("snntorch").runner(net, config, dtype="float64", allow_nonlocal=True)
    b2 = get_target("brian2").runner(net, config, codegen="numpy", input_mode="raster",
                                      allow_nonlocal=True)
    for k in range(EPOCHS):
        ref.run_epoch(spikes[k][:, None, :], targets[k][None])
        snn.run_epoch(spikes[k][:, None, :], targets[k][None])
    b2.run(spikes, targets, learn=True)
    b2w = b2.weights()
    for layer, st in ref.state["W"].items():
        assert np.abs(st["w"] - net.state["W"][layer]["w"]).max() > 1e-3
        np.testing.assert_allclose(snn.state["W"][layer]["w"].numpy(), st["w"], atol=1e-10,
                                   rtol=0)
        np.testing.assert_allclose(b2w["W"][layer]["w"], st["w"], atol=1e-10, rtol=0)


def test_brian2_refuses_a_stretch_longer_than_its_orders_by_name():
    pytest.importorskip("brian2")
    from neurolocal.hardware.brian2.lower import build_model

    cfg = SpikingConfig(timesteps=T)
    assert build_model(lower_rule(_with_steps("ar", 245, 0.5), cfg), [20, 10, 3])
    with pytest.raises(LoweringError, match=r"at most 245 Euler steps in all, this rule asks "
                                            "for 246"):
        build_model(lower_rule(_with_steps("ar", 246, 0.5), cfg), [20, 10, 3])


def test_the_settling_report_measures_the_decay_beside_the_rate_criterion():
    """dyninv: the spiking relaxation settles where the rate Jacobian says it is stable."""
    pytest.importorskip("snntorch")
    from neurolocal.app.settling import spiking_settling

    config = SpikingConfig(timesteps=T)
    net, _ref, _spikes, _targets = _setup(get_rule("dyninv"), config, [20, 10, 3])
    snn = get_target("snntorch").runner(net, config, dtype="float64")
    x = np.random.default_rng(1).random((6, 20))
    rep = spiking_settling(snn, x, np.arange(6) % 3)
    rows = rep["phases"]["invert"]
    assert set(rows) == {"u1", "u2"}
    u2 = rows["u2"]
    assert u2["peak"] > 1e-3 and u2["settles"] and 0 < u2["decay_per_step"] < 1
    assert u2["last"] < 1e-3 * u2["peak"]
    assert rep["rate_stability"]["stable"] and rep["rate_stability"]["max_real_eig"] < 0
    assert set(rep["relaxed_cosines"]) == {"u1"}
    assert spiking_settling(get_target("snntorch").runner(
        build_mlp([20, 10, 3], get_rule("dfa"), seed=0), config), x, np.arange(6) % 3) == {}


def test_exact_relaxation_settles_to_the_spiking_networks_own_gradient():
    """ar-exact (transported feedback): the relaxed x of every hidden layer is dL/dr of the
    spiking network's own loss through its surrogate derivative (cosine 1 once settled),
    whatever its distance from the rate network's softmax gradient."""
    pytest.importorskip("snntorch")
    from neurolocal.app.settling import spiking_settling, surrogate_gradients

    config = SpikingConfig(timesteps=T)
    net, ref, _spikes, _targets = _setup(get_rule("ar-exact"), config, [20, 12, 10, 3],
                                         allow_nonlocal=True)
    snn = get_target("snntorch").runner(net, config, dtype="float64", allow_nonlocal=True)
    x = np.random.default_rng(1).random((8, 20))
    rep = spiking_settling(snn, x, np.arange(8) % 3)
    assert set(rep["surrogate_cosines"]) == {"x1", "x2"}
    assert min(rep["surrogate_cosines"].values()) > 0.9999, rep["surrogate_cosines"]
    comps = [{"r": np.array([[0.5, 0.0]])}, {"r": np.array([[1.0, 0.0]]),
                                              "dphi": np.array([[1.0, 0.0]])},
             {"r": np.array([[0.25]])}]
    toy = build_mlp([2, 2, 1], get_rule("dfa"), seed=0)
    toy.state["W"][2]["w"] = np.array([[2.0, 3.0, 9.0]])  # bias column ignored
    (g1,) = surrogate_gradients(toy, comps, np.array([[1.0]]))
    np.testing.assert_allclose(g1, [[-1.5, -2.25]])  # (0.25 - 1) * [2, 3]

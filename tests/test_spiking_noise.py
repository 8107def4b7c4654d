"""Noise phases, private noise and slow() on the spiking targets against the reference.

The rules that learn their feedback weights from noise (weight mirror, information alignment,
PAL) run on snntorch and Brian2 from the same lowered program as the reference simulator; with
the noise replayed from one recorded draw, the weights each target ends with agree to float
tolerance (float64). Hand-worked cases pin the noise epoch and the learning epochs themselves.
"""

import numpy as np
import pytest
from support.driven import driven_setup

import neurolocal as nl
from neurolocal.errors import LoweringError
from neurolocal.hardware.base import get_target
from neurolocal.hardware.reference import ReferenceSimulator
from neurolocal.hardware.semantics import SpikingConfig, lower_rule
from neurolocal.network import build_mlp
from neurolocal.rules import get_rule

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
pytest.importorskip("snntorch")
pytest.importorskip("brian2")

EPOCHS = 4
CONFIGS = {
    "if": SpikingConfig(timesteps=12),
    "lif": SpikingConfig(timesteps=12, du=0.5, dv=0.2, vth=0.7, tau1=6.0, surrogate="spiked",
                         optimiser="momentum"),
}


def _rule(name: str):
    rule = get_rule(name).with_globals(lr=0.3)
    steps = {g: 0.3 for g in ("lr_b",) if g in rule.globals}
    steps.update({g: 0.05 for g in ("lr_m",) if g in rule.globals})
    return rule.with_globals(**steps) if steps else rule


def _setup(name: str, config: SpikingConfig, sizes):
    return driven_setup(_rule(name), config, sizes, EPOCHS, ref_seed=1)


@pytest.mark.parametrize("name,cfg_name,sizes", [
    ("wm", "if", [20, 10, 3]), ("ia", "lif", [20, 10, 8, 3]),
    ("pal", "if", [20, 10, 8, 3]), ("pal", "lif", [20, 10, 3]), ("kp", "lif", [20, 10, 3]),
])
def test_noise_rules_agree_with_the_reference_on_snntorch_and_brian2(name, cfg_name, sizes):
    config = CONFIGS[cfg_name]
    net, ref, spikes, targets, rng = _setup(name, config, sizes)
    prog = ref.program
    snn = get_target("snntorch").runner(net, config, dtype="float64")
    b2 = get_target("brian2").runner(net, config, codegen="numpy", input_mode="raster")
    noise, phase_noise = [], []
    for k in range(EPOCHS):  # one recorded draw, replayed on every target
        draw = ref.draw_noise(1) if prog.noise_sources else None
        noise.append(draw)
        ref.run_epoch(spikes[k][:, None], targets[k][None], noise=draw)
        snn.run_epoch(spikes[k][:, None], targets[k][None], noise=draw)
        phase_noise.append([])
        for ph in prog.noise_phases:
            xi = {layer: ph.sigma * rng.standard_normal((1, sizes[layer]))
                  for layer in range(1, net.depth)}
            ref.run_noise_epoch(ph.name, xi)
            snn.run_noise_epoch(ph.name, xi)
            phase_noise[-1].append(xi)
    b2.learn_spikes(np.moveaxis(spikes, 0, 1), targets,
                    noise=noise if prog.noise_sources else None,
                    phase_noise=phase_noise if prog.noise_phases else None)
    b2w = b2.weights()
    for proj, layers in ref.state.items():
        for layer, st in layers.items():
            start = np.asarray(net.state[proj][layer]["w"], np.float64)
            assert np.abs(st["w"] - start).max() > 1e-3, f"{proj}{layer} must have learned"
            np.testing.assert_allclose(snn.state[proj][layer]["w"].numpy(), st["w"],
                                       atol=1e-10, err_msg=f"snntorch {proj}{layer}")
            np.testing.assert_allclose(b2w[proj][layer]["w"], st["w"], atol=1e-10,
                                       err_msg=f"brian2 {proj}{layer}")


def test_batched_noise_epoch_and_learning_epochs_average_like_the_reference():
    config = CONFIGS["if"]
    for name in ("wm", "pal"):
        net, ref, spikes, targets, rng = _setup(name, config, [20, 10, 3])
        snn = get_target("snntorch").runner(net, config, dtype="float64")
        batch = np.moveaxis(spikes, 0, 1)
        draw = ref.draw_noise(EPOCHS) if ref.program.noise_sources else None
        a = ref.run_epoch(batch, targets, noise=draw, apply=False)
        b = snn.run_epoch(batch, targets, noise=draw, apply=False)
        for key, d in a["increments"].items():
            np.testing.assert_allclose(b["increments"][key]["w"].numpy(), d["w"], atol=1e-12)
        for ph in ref.program.noise_phases:
            xi = {1: ph.sigma * rng.standard_normal((EPOCHS, 10))}
            a = ref.run_noise_epoch(ph.name, xi, apply=False)
            b = snn.run_noise_epoch(ph.name, xi, apply=False)
            np.testing.assert_allclose(b["increments"][("B", 1)]["w"].numpy(),
                                       a["increments"][("B", 1)]["w"], atol=1e-12)


def test_noise_epoch_by_hand():
    """1-1-1 IF chain in a noise epoch of T = 6: the hidden neuron's current is its noise
    0.6, so v = .6, 1.2 (spike) ... spikes at steps 1, 3, 5; the layer above receives the
    spikes of steps 0..4 (one step of delay) over steps 1..5: drive = 2 w / 5."""
    rule = get_rule("wm")
    net = build_mlp([1, 1, 1], rule, seed=0)
    net.state["W"][2]["w"][:] = [[0.5, 0.0]]
    ref = ReferenceSimulator(net, lower_rule(rule, SpikingConfig(timesteps=6)))
    snn = get_target("snntorch").runner(net, SpikingConfig(timesteps=6), dtype="float64")
    xi = {1: np.array([[0.6]])}
    a, b = ref.run_noise_epoch("mirror", xi, apply=False), snn.run_noise_epoch(
        "mirror", xi, apply=False)
    assert a["drive"][2][0, 0] == pytest.approx(2 * 0.5 / 5)
    assert float(b["drive"][2][0, 0]) == pytest.approx(2 * 0.5 / 5)
    # dB = lr_m * xi * drive - lr_m * wd * B: the mirror update of the one feedback synapse
    lr_m, wd = rule.scalar_globals()["lr_m"], rule.scalar_globals()["wd"]
    b0 = net.state["B"][1]["w"][0, 0]
    assert a["increments"][("B", 1)]["w"][0, 0] == pytest.approx(
        lr_m * 0.6 * 0.2 - lr_m * wd * b0)


def test_learning_epochs_carry_the_neurons_and_restart_the_traces():
    """dfa with two learning epochs of 6 steps: the neuron state runs on, the second epoch's
    rates are counts over its 6 steps, the first epoch's over its window (6 - layer)."""
    rule = get_rule("dfa")
    cfg = SpikingConfig(timesteps=12, learning_epochs=2)
    net = build_mlp([1, 1, 1], rule, seed=0)
    net.state["W"][1]["w"][:] = [[0.6, 0.0]]
    net.state["W"][2]["w"][:] = [[0.6, 0.0]]
    prog = lower_rule(rule, cfg)
    assert prog.epochs == 2 and prog.epoch_steps == 6
    ref = ReferenceSimulator(net, prog)
    out = ref.run_epoch(np.ones((12, 1, 1)), np.array([[1.0]]), apply=False)
    # layer 1 spikes at 2, 4, 6, 8, 10 (every second step from step 2): 3 in steps 6..11
    assert out["layers"][1]["tr1"][0, 0] == 3
    assert out["comps"][1]["r"][0, 0] == pytest.approx(3 / 6)
    whole = ref.run_epoch(np.ones((12, 1, 1)))  # inference: one epoch of T steps
    assert whole["layers"][1]["tr1"][0, 0] == 5
    snn = get_target("snntorch").runner(net, cfg, dtype="float64")
    b = snn.run_epoch(np.ones((12, 1, 1)), np.array([[1.0]]), apply=False)
    assert float(b["raw"][1]["tr1"][0, 0]) == 3


def test_pal_scores_and_draws_on_every_target():
    """Inference is noise-free and spans the whole sample; while learning each target draws
    its own noise (torch's generator, Brian2's randn()), reproducibly for a seed."""
    cfg = SpikingConfig(timesteps=12)
    net, ref, spikes, targets, _ = _setup("pal", cfg, [20, 10, 3])
    snn = get_target("snntorch").runner(net, cfg, dtype="float64")
    b2 = get_target("brian2").runner(net, cfg, codegen="numpy", input_mode="raster")
    raster = np.moveaxis(spikes, 0, 1)
    want = ref.run_epoch(raster)["layers"][-1]["tr1"]
    np.testing.assert_array_equal(snn.simulate(raster)[-1]["tr1"].numpy(), want)
    scores = b2.predict_spikes(raster)
    np.testing.assert_allclose(scores.argmax(1), snn.predict_spikes(raster).argmax(1))
    runs = []
    for _ in range(2):
        r = get_target("snntorch").runner(net, cfg, dtype="float64", seed=5)
        r.learn_spikes(raster, targets)
        runs.append(r.state["B"][1]["w"].numpy())
    np.testing.assert_array_equal(runs[0], runs[1])
    b2.learn_spikes(raster, targets)  # noise drawn by Brian2
    moved = np.abs(b2.weights()["B"][1]["w"] - net.state["B"][1]["w"]).max()
    assert moved > 1e-4


@pytest.mark.parametrize("text, config, pattern", [
    ("neuron q = slow(delta)", SpikingConfig(timesteps=12), r"slow\(delta\).*after the"),
    ("", SpikingConfig(timesteps=12, learning_epochs=5), r"does not divide T = 12"),
])
def test_refusals_name_the_statement(text, config, pattern):
    base = get_rule("pal").text
    rule = nl.parse_rule(base.replace("neuron up = delta + hp",
                                      "neuron up = delta + hp\n" + text) if text else base)
    with pytest.raises(LoweringError, match=pattern):
        lower_rule(rule, config)
    with pytest.raises(LoweringError, match="noise phase learns once per sample"):
        lower_rule(get_rule("wm"), SpikingConfig(timesteps=12, learning_epochs=2))


def test_spiking_train_reports_rate_modes_angles():
    from neurolocal.app.training import TrainConfig, train

    res = train(TrainConfig(rule="pal", target="snntorch", hidden=[16], limit=60, test_limit=20,
                            timesteps=8), progress=False).to_dict()
    assert set(res["feedback_angles"]) == {"B1"}
    assert set(res["update_angles"]) == {"W1", "W2"}
    assert all(0 <= v <= 180 for v in res["update_angles"].values())
    # the spiking default step: the forward lr is per sample (x batch 20, / the 2 learning
    # epochs of 4 steps a sample of T = 8 has), lr_b is not
    assert res["globals"]["lr"] == pytest.approx(0.1) and res["globals"]["lr_b"] == 0.01


def test_a_rule_learning_several_times_per_sample_takes_its_step_per_sample():
    """PAL learns in 4 learning epochs per sample at T = 16: each takes a quarter of the
    per-sample step, on the batched target (x batch) and the online one; --set is the
    epoch step itself; a rule learning once per sample is unchanged."""
    from neurolocal.app.training import TrainConfig, train
    from neurolocal.hardware.semantics import sample_epochs

    assert sample_epochs(get_rule("pal"), SpikingConfig(timesteps=16)) == 4
    assert sample_epochs(get_rule("dfa"), SpikingConfig(timesteps=16)) == 1

    def lr(**kw):
        cfg = TrainConfig(hidden=[8], limit=20, test_limit=10, timesteps=16, **kw)
        return train(cfg, progress=False).to_dict()["globals"]["lr"]

    assert lr(rule="pal", target="snntorch") == pytest.approx(0.01 * 20 / 4)
    assert lr(rule="pal", target="brian2") == pytest.approx(0.01 / 4)
    assert lr(rule="pal", target="snntorch", globals={"lr": 0.3}) == pytest.approx(0.3)
    assert lr(rule="dfa", target="snntorch") == pytest.approx(0.01 * 20)


def test_init_without_rule_scales_the_step_once(tmp_path):
    """A spiking checkpoint holds the epoch step its run used; --init continues from the
    per-sample step it records, scaled by the new run's batch (not the old lr x batch again)."""
    from neurolocal.app.training import TrainConfig, train

    ck = tmp_path / "a.h5"
    first = train(TrainConfig(rule="dfa", target="snntorch", hidden=[16], limit=40,
                              test_limit=20, timesteps=8, out=str(ck)), progress=False)
    assert first.to_dict()["globals"]["lr"] == pytest.approx(0.2)  # 0.01 x batch 20
    again = train(TrainConfig(rule=None, init=str(ck), target="snntorch", limit=40,
                              test_limit=20, timesteps=8), progress=False).to_dict()
    assert again["globals"]["lr"] == pytest.approx(0.2)
    smaller = train(TrainConfig(rule=None, init=str(ck), target="snntorch", limit=40,
                                test_limit=20, timesteps=8, batch_size=5),
                    progress=False).to_dict()
    assert smaller["globals"]["lr"] == pytest.approx(0.05)  # the per-sample 0.01 x 5
    online = train(TrainConfig(rule=None, init=str(ck), target="brian2", limit=40,
                               test_limit=20, timesteps=8), progress=False).to_dict()
    assert online["globals"]["lr"] == pytest.approx(0.01)  # batch 1: the per-sample step

"""Lava: learned feedback synapses, noise epochs, learning epochs within a sample, private
noise and slow() on the generated graph, against the spiking reference simulator.

* ``floating_pt``: the graph ends with the reference's weights (forward and feedback) to
  1e-12, the noise replayed from one recorded draw;
* ``fixed_pt``: every epoch, from the same start weights on the fixed grid and with the same
  spikes (noise on the neurons' grid), each weight change lies within the per-epoch
  quantisation bound (``fixed_point.epoch_error_bound`` for forward groups,
  ``fixed_point.feedback_epoch_error_bound`` for learned feedback groups).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

pytest.importorskip("lava", reason="lava-nc not installed (make install)")

from neurolocal import parse_rule  # noqa: E402
from neurolocal.hardware.base import get_target  # noqa: E402
from neurolocal.hardware.encoding import encode_input  # noqa: E402
from neurolocal.hardware.lava.fixed_point import (  # noqa: E402
    epoch_error_bound,
    feedback_epoch_error_bound,
    fixed_point_network,
)
from neurolocal.hardware.lava.lower import lower_to_loihi  # noqa: E402
from neurolocal.hardware.lava.runtime import LavaRunner  # noqa: E402
from neurolocal.hardware.reference import ReferenceSimulator  # noqa: E402
from neurolocal.hardware.semantics import SpikingConfig, lower_rule  # noqa: E402
from neurolocal.network import build_mlp  # noqa: E402
from neurolocal.rule import FORWARD  # noqa: E402
from neurolocal.rules import get_rule  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
CFG = SpikingConfig(timesteps=8)
#: decays a Loihi 2 product can take every epoch (lr * wd = 2^-7), learning fast enough to see
GLOBALS = {"kp": {"lr": 0.5, "wd": 1 / 64}, "wm": {"lr": 0.5, "lr_m": 0.5, "wd": 1 / 64},
           "ia": {"lr": 0.5, "lr_m": 0.5, "decay": 1 / 64},
           "pal": {"lr": 0.5, "lr_b": 0.5, "alpha": 1 / 64}}


def _case(name: str, sizes, k: int = 4, config=CFG):
    rule = get_rule(name).with_globals(**GLOBALS[name])
    net = build_mlp(sizes, rule, seed=1)
    for layer in net.state[FORWARD]:  # stronger weights: every layer spikes in 8 steps
        net.state[FORWARD][layer]["w"] = net.state[FORWARD][layer]["w"] * 3.0
    rng = np.random.default_rng(0)
    spikes = encode_input(rng.random((k, sizes[0])), config, seed=1)  # (T, K, n)
    y = np.eye(sizes[-1])[rng.integers(0, sizes[-1], k)]
    return rule, net, spikes, y, rng


@pytest.mark.parametrize("name,sizes", [("kp", [20, 10, 8, 3]), ("ia", [20, 10, 8, 3]),
                                        ("pal", [20, 10, 3])])
def test_floating_pt_graph_agrees_with_reference(name, sizes):
    rule, net, spikes, y, rng = _case(name, sizes)
    program = lower_rule(rule, CFG)
    ref = ReferenceSimulator(copy.deepcopy(net), program, seed=3)
    runner = get_target("lava:floating_pt").runner(copy.deepcopy(net), CFG)
    assert runner.lp.learned_feedback, "the feedback synapses learn on the graph"
    noise, phase_noise = [], []
    for k in range(spikes.shape[1]):  # one recorded draw, replayed on the graph
        draw = ref.draw_noise(1) if program.noise_sources else None
        noise.append(draw)
        ref.run_epoch(spikes[:, k:k + 1], y[k][None], noise=draw)
        phase_noise.append([])
        for ph in program.noise_phases:
            xi = {layer: ph.sigma * rng.standard_normal((1, sizes[layer]))
                  for layer in range(1, net.depth)}
            ref.run_noise_epoch(ph.name, xi)
            phase_noise[-1].append(xi)
    runner.learn_spikes(spikes, y, noise=noise if program.noise_sources else None,
                        phase_noise=phase_noise if program.noise_phases else None)
    for proj, layers in ref.state.items():
        for layer, st in layers.items():
            assert np.abs(st["w"] - net.state[proj][layer]["w"]).max() > 0.05, (proj, layer)
            np.testing.assert_allclose(runner.net.state[proj][layer]["w"], st["w"], rtol=0,
                                       atol=1e-12, err_msg=f"{proj}{layer}")


def _within(runner, lp, ref, start, out, layer_fb_sum) -> float:
    """Max error in weight LSBs; asserts every forward change lies within its bound."""
    worst = 0.0
    for layer in range(1, lp.depth + 1):
        d_lava = runner.net.state[FORWARD][layer]["w"] - start.state[FORWARD][layer]["w"]
        d_ref = ref.state[FORWARD][layer]["w"] - start.state[FORWARD][layer]["w"]
        counts = np.append(out["layers"][layer - 1]["tr1"].ravel(), CFG.timesteps)
        bound = epoch_error_bound(lp, layer, counts, layer_fb_sum if layer == 1 else None)
        err = np.abs(d_lava - d_ref)
        assert (err <= bound + 1e-12).all(), (layer, err.max(), bound.max())
        worst = max(worst, float((err / lp.group(layer).weight_step).max()))
    return worst


def test_fixed_pt_kp_within_the_quantisation_bound():
    rule, net, spikes, y, _ = _case("kp", [20, 10, 3], k=2)
    lp = lower_to_loihi(rule, CFG, net=net)
    fb = lp.learned_feedback[0]
    runner = LavaRunner(fixed_point_network(net, lp), lp, tag="fixed_pt")
    program = lower_rule(rule, CFG)
    worst = 0.0
    for k in range(2):
        start = fixed_point_network(runner.net, lp)  # what the graph loads
        ref = ReferenceSimulator(copy.deepcopy(start), program)
        out = ref.run_epoch(spikes[:, k:k + 1], y[k][None])
        res = runner.learn_spikes(spikes[:, k:k + 1], y[k:k + 1])
        for layer in (1, 2):
            np.testing.assert_array_equal(res["counts"][layer - 1],
                                          out["layers"][layer]["tr1"].ravel())
        b = start.state["B"][1]["w"]
        worst = max(worst, _within(runner, lp, ref, start, out, np.abs(b).sum(1)))
        d_lava = runner.net.state["B"][1]["w"] - b
        d_ref = ref.state["B"][1]["w"] - b
        bound = feedback_epoch_error_bound(lp, fb, out["comps"][2]["delta"][0],
                                           {"y1": out["comps"][1]["r"][0]})
        assert (np.abs(d_lava - d_ref) <= bound + 1e-12).all()
        assert np.abs(d_ref).max() > 2 * fb.weight_step  # B really learned
    assert 0 < worst < 3


def test_fixed_pt_noise_epoch_within_the_quantisation_bound():
    """wm: the sample epoch's forward changes within their bound; the noise epoch's feedback
    changes, from the forward weights the graph holds after the sample epoch (the noise
    epoch does not change them), within the learned group's bound."""
    rule, net, spikes, y, rng = _case("wm", [20, 10, 3], k=1)
    lp = lower_to_loihi(rule, CFG, net=net)
    fb = lp.learned_feedback[0]
    runner = LavaRunner(fixed_point_network(net, lp), lp, tag="fixed_pt")
    program = lower_rule(rule, CFG)
    a_unit = lp.group(1).weight_step  # noise currents on the input grid of layer 1
    fb_range = (127 - 64) / fb.learning.channel_gain["y1"]
    for k in range(1):
        start = fixed_point_network(runner.net, lp)
        # within the channels' ranges (larger values saturate: fixed point's range, reported)
        z = np.clip(0.5 * rng.standard_normal((1, 10)), -fb_range, fb_range)
        xi = {1: np.rint(z / a_unit) * a_unit}
        ref = ReferenceSimulator(copy.deepcopy(start), program)
        out = ref.run_epoch(spikes[:, k:k + 1], y[k][None])
        runner.learn_spikes(spikes[:, k:k + 1], y[k:k + 1], phase_noise=[[xi]])
        _within(runner, lp, ref, start, out, np.abs(start.state["B"][1]["w"]).sum(1))
        ref.state[FORWARD] = copy.deepcopy(runner.net.state[FORWARD])
        ref.state["B"] = copy.deepcopy(start.state["B"])
        noise = ref.run_noise_epoch("mirror", xi)
        assert np.abs(noise["drive"][2]).max() < 63 * fb.x_quantum  # within x1's range
        b = start.state["B"][1]["w"]
        bound = feedback_epoch_error_bound(lp, fb, noise["drive"][2][0], {"y1": xi[1][0]})
        err = np.abs((runner.net.state["B"][1]["w"] - b) - (ref.state["B"][1]["w"] - b))
        assert (err <= bound + 1e-12).all(), (err.max(), bound.max())
        assert np.abs(ref.state["B"][1]["w"] - b).max() > 2 * fb.weight_step


DECAY_ONLY = """rule decays "a decay too small for one epoch's product"
global lr = 0
global wd = 0.002
output err = r - target
output delta = err
feedback B = output.err -> err via random
neuron delta = err * dphi
on W: dw = -lr * post.delta * pre.r - wd * syn.w
"""


def test_a_decay_below_the_smallest_scale_runs_decimated():
    rule = parse_rule(DECAY_ONLY)
    net = build_mlp([20, 10, 3], rule, seed=1)
    lp = lower_to_loihi(rule, CFG, net=net)
    tick = lp.neurons[0].tick
    assert tick == round(2 ** -7 / 0.002) == 4
    assert "y0*w" in lp.group(1).strings("floating_pt")["dw"]
    runner = get_target("lava:floating_pt").runner(copy.deepcopy(net), CFG)
    spikes = encode_input(np.random.default_rng(0).random((6, 20)), CFG, seed=1)
    y = np.eye(3)[[0, 1, 2, 0, 1, 2]]
    w0 = np.asarray(net.state[FORWARD][1]["w"], dtype=np.float64)
    # one decay of 4 x 0.002 = 2^-7 in epoch 4, none in epochs 1-3 and 5 (every epoch's
    # decay would give w0 (1 - 0.002)^5, 2e-3 relative away)
    runner.learn_spikes(spikes[:, :5], y[:5])
    np.testing.assert_allclose(runner.net.state[FORWARD][1]["w"], w0 * (1 - 2 ** -7),
                               rtol=1e-12, atol=1e-12)

"""Lava target: rule -> Loihi 2 strings, and the generated Lava graph against the reference.

Cross-target agreement uses one small network, one fixed input spike train, one rule and a
few learning epochs:

* ``floating_pt``: the Lava graph ends with the reference simulator's weights to float
  tolerance (1e-12; weights are held in power-of-two LSB units, so nothing but float
  rounding differs);
* ``fixed_pt``: every epoch, from the same start weights (on the fixed-point grid) and with
  the same spikes, each weight change differs from the exact one by at most the bound the
  profile predicts (``neurolocal.hardware.lava.fixed_point.epoch_error_bound``)::

      |dw_fixed - dw_exact| <= step * (1                               stochastic rounding
                               + sum_products |m 2^e| x1 (1/2 + Q dv)   7-bit y rounding
                               + sum_products 2^e_fixed)                truncating shift

  where x1 is the pre spike count, Q the y channel gain and dv the post factor's error from
  the 8-bit feedback payload (half a quantum per feedback synapse).
"""

from __future__ import annotations

import copy
import multiprocessing
import time

import numpy as np
import pytest

pytest.importorskip("lava", reason="lava-nc not installed (make install)")

from neurolocal.app.cli import main  # noqa: E402
from neurolocal.errors import LocalityError, LoweringError, ShapeError  # noqa: E402
from neurolocal.hardware.base import get_target  # noqa: E402
from neurolocal.hardware.encoding import encode_input  # noqa: E402
from neurolocal.hardware.lava.fixed_point import (  # noqa: E402
    epoch_error_bound,
    fixed_point_network,
)
from neurolocal.hardware.lava.loihi_rule import validate_loihi_rule  # noqa: E402
from neurolocal.hardware.lava.lower import lower_to_loihi  # noqa: E402
from neurolocal.hardware.lava.runtime import LavaRunner  # noqa: E402
from neurolocal.hardware.reference import ReferenceSimulator  # noqa: E402
from neurolocal.hardware.semantics import (  # noqa: E402
    SpikingConfig,
    feedback_matrix,
    lower_rule,
)
from neurolocal.network import build_mlp  # noqa: E402
from neurolocal.parser import parse_rule  # noqa: E402
from neurolocal.rule import FORWARD  # noqa: E402
from neurolocal.rules import builtin_names, get_rule  # noqa: E402

#: The Lava column of docs/lava.md: "ok", or a phrase of the LoweringError
#: (non-local rules: LocalityError first; with allow_nonlocal the phrase after "|").
EXPECTED = {
    "dfa": "ok",
    "fa": "ok",
    "sdfa": "ok",
    "fa-decay": "ok",
    "kp": "ok",
    "wm": "ok",
    "ia": "ok",
    "ar": "relax phase",
    "dyninv": "relax phase",
    "pc": "relax phase",
    "pal": "ok",
    "bp": "nonlocal|tied to the forward weights",
    "usf": "nonlocal|tied to the forward weights",
    "frsf": "nonlocal|tied to the forward weights",
    "brsf": "nonlocal|'resample' redraws",
    "ar-exact": "nonlocal|tied to the forward weights",
    "dfa-rnn": "does not lower recurrent rules",
    "sdfa-rnn": "does not lower recurrent rules",
    "bptt": "nonlocal|future-in-time",
}

CFG = SpikingConfig(timesteps=8)


def _data(n_in: int = 20, n_out: int = 3, k: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.random((k, n_in))
    spikes = encode_input(x, CFG, seed=seed + 1)  # (T, K, n)
    y = np.eye(n_out)[rng.integers(0, n_out, k)]
    return spikes, y


def _net(rule, sizes, seed: int = 1):
    net = build_mlp(sizes, rule, seed=seed)
    for layer in net.state[FORWARD]:  # stronger weights: every layer spikes in 8 steps
        net.state[FORWARD][layer]["w"] = net.state[FORWARD][layer]["w"] * 3.0
    return net


# --------------------------------------------------------------------------------------------
# Lowering


def test_table_covers_every_builtin_rule():
    assert set(EXPECTED) == set(builtin_names())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_builtin_rule_lowers_or_fails_as_documented(name):
    rule = get_rule(name)
    expected = EXPECTED[name]
    if expected.startswith("nonlocal|"):
        with pytest.raises(LocalityError):
            lower_to_loihi(rule, CFG, sizes=(20, 10, 3))
        with pytest.raises(LoweringError, match=expected.split("|", 1)[1]):
            lower_to_loihi(rule, CFG, sizes=(20, 10, 3), allow_nonlocal=True)
        return
    if expected != "ok":
        with pytest.raises(LoweringError, match=expected):
            lower_to_loihi(rule, CFG, sizes=(20, 10, 3))
        return
    lp = lower_to_loihi(rule, CFG, sizes=(20, 10, 8, 3))
    for g in lp.groups:
        for tag in ("floating_pt", "fixed_pt"):
            strings = g.strings(tag)
            # every string the target hands Lava re-validates to the same product terms
            again = validate_loihi_rule(strings.get("dw"), strings.get("dd"), strings.get("dt"))
            assert again == g.rule_sets[tag]
            assert "u0*x1*y2" in strings["dw"] and "u0*x1*y3" in strings["dw"]


def test_dfa_mapping_is_exact_and_compensates_the_fixed_point_shift():
    rule = get_rule("dfa").with_globals(lr=0.05)
    lp = lower_to_loihi(rule, CFG, sizes=(20, 10, 3))
    for g in lp.groups:
        plus, minus = g.products
        f, x = plus.products["floating_pt"], plus.products["fixed_pt"]
        assert plus.rel_error == 0 and plus.shift == 3  # x1 (7) + y2 (7) + mantissa (4) - 15
        assert (x.scale_mantissa, x.scale_exp) == (f.scale_mantissa, f.scale_exp + 3)
        assert f.scale_mantissa < 0 < minus.products["floating_pt"].scale_mantissa
        # m 2^e (weight LSB per x1 y2) x Q (y2 per unit delta) x step x window x impulse (x1
        # per spike) = lr exactly; the pre layer's window (T - (layer - 1) steps) turns its
        # spike count into a rate
        q, ix = g.channel_gain["y2"], g.x_impulse["x1"]
        assert ix == int(ix) and ix * CFG.timesteps <= 127
        window = CFG.timesteps - (g.layer - 1)
        assert abs(f.scale) * q * g.weight_step * window * ix == pytest.approx(0.05, rel=1e-12)
        assert q * lp.options.third_factor_range <= 127
    assert lp.epoch_len == CFG.timesteps + 2  # lead step + T + one step for B . err
    assert lp.trace_params("floating_pt")["t_epoch"] == lp.epoch_len


FOUR_TRACES = """
rule four "needs four post traces"
global lr = 0.01
output err = r - target
output delta = err
feedback B = output.err -> err via random
neuron delta = err * dphi
neuron q = err * r
neuron p = err - r
on W: dw = -lr * post.delta * pre.r + lr * post.q * pre.x2 + lr * post.p * pre.r
"""

COUPLED = """
rule coupled "pre and post in one factor"
global lr = 0.01
output err = r - target
output delta = err
feedback B = output.err -> err via random
neuron delta = err * dphi
on W: dw = -lr * tanh(post.delta * pre.r)
"""


def test_lowering_errors_name_term_limit_and_nearest_form():
    with pytest.raises(LoweringError) as exc:
        lower_to_loihi(parse_rule(FOUR_TRACES), CFG, sizes=(20, 10, 3))
    msg = str(exc.value)
    assert "more post trace" in msg and "3 post traces y1 y2 y3" in msg and "Nearest" in msg
    with pytest.raises(LoweringError) as exc:
        lower_to_loihi(parse_rule(COUPLED), CFG, sizes=(20, 10, 3))
    msg = str(exc.value)
    assert "tanh" in msg and "couples pre- and post-synaptic" in msg and "Nearest" in msg
    tiny = parse_rule(COUPLED.replace("-lr * tanh(post.delta * pre.r)",
                                      "-lr * post.delta * pre.r - 1e-9 * pre.r * syn.w"))
    with pytest.raises(LoweringError) as exc:
        lower_to_loihi(tiny, CFG, sizes=(20, 10, 3))
    msg = str(exc.value)
    assert "pre.r*syn.w" in msg and "1*2^-7" in msg and "Nearest expressible" in msg
    # a bare decay below the smallest scale runs decimated (tests/test_lava_learned.py);
    # large enough for one 2^-7 step per epoch it is an ordinary product
    lp = lower_to_loihi(get_rule("fa-decay").with_globals(wd=0.8), CFG, sizes=(20, 10, 3))
    decay = [pm for pm in lp.groups[0].products if pm.term.syn]
    assert decay and decay[0].products["floating_pt"].to_lava_string() == "-1*2^-7*u0*w"


# --------------------------------------------------------------------------------------------
# The generated Lava graph against the reference simulator


@pytest.mark.parametrize("name,sizes,reset", [("dfa", [20, 10, 3], "zero"),
                                              ("fa", [20, 10, 8, 3], "zero"),
                                              ("dfa", [20, 10, 3], "subtract")])
def test_floating_pt_graph_agrees_with_reference(name, sizes, reset):
    cfg = CFG if reset == "zero" else CFG.with_options(reset=reset)
    rule = get_rule(name).with_globals(lr=0.5)
    net = _net(rule, sizes)
    spikes, y = _data(n_out=sizes[-1])
    ref = ReferenceSimulator(copy.deepcopy(net), lower_rule(rule, cfg))
    runner = get_target("lava:floating_pt").runner(copy.deepcopy(net), cfg)
    res = runner.learn_spikes(spikes, y)
    for k in range(spikes.shape[1]):
        last = ref.run_epoch(spikes[:, k:k + 1], y[k][None])
    moved = 0.0
    for layer in range(1, len(sizes)):
        w_lava = runner.net.state[FORWARD][layer]["w"]
        w_ref = ref.state[FORWARD][layer]["w"]
        np.testing.assert_allclose(w_lava, w_ref, rtol=0, atol=1e-12)
        moved = max(moved, float(np.abs(w_ref - net.state[FORWARD][layer]["w"]).max()))
        np.testing.assert_array_equal(res["counts"][layer - 1],
                                      last["layers"][layer]["tr1"].ravel())
    assert moved > 0.05  # the run really learned


def test_fixed_pt_graph_within_the_quantisation_bound():
    rule = get_rule("dfa").with_globals(lr=0.5)
    net = _net(rule, [20, 10, 3])
    spikes, y = _data()
    lp = lower_to_loihi(rule, CFG, net=net)
    runner = LavaRunner(fixed_point_network(net, lp), lp, tag="fixed_pt")
    program = lower_rule(rule, CFG)
    worst = 0.0
    for k in range(3):
        start = copy.deepcopy(runner.net)  # what the running graph holds
        ref = ReferenceSimulator(copy.deepcopy(start), program)
        out = ref.run_epoch(spikes[:, k:k + 1], y[k][None])
        res = runner.learn_spikes(spikes[:, k:k + 1], y[k:k + 1])
        b = feedback_matrix(program.feedback[0], start.state["B"][1]["w"])
        for layer in (1, 2):
            np.testing.assert_array_equal(res["counts"][layer - 1],
                                          out["layers"][layer]["tr1"].ravel())
            d_lava = runner.net.state[FORWARD][layer]["w"] - start.state[FORWARD][layer]["w"]
            d_ref = ref.state[FORWARD][layer]["w"] - start.state[FORWARD][layer]["w"]
            counts = np.append(out["layers"][layer - 1]["tr1"].ravel(), CFG.timesteps)
            bound = epoch_error_bound(lp, layer, counts,
                                      np.abs(b).sum(1) if layer == 1 else None)
            err = np.abs(d_lava - d_ref)
            assert (err <= bound + 1e-12).all(), (k, layer, err.max(), bound.max())
            step = lp.group(layer).weight_step
            assert np.array_equal(runner.net.state[FORWARD][layer]["w"] / step,
                                  np.round(runner.net.state[FORWARD][layer]["w"] / step))
            worst = max(worst, float((err / step).max()))
    assert 0 < worst < 3  # stochastic rounding at work, within a few weight LSBs


def test_processes_are_stopped_when_a_run_fails():
    rule = get_rule("dfa")
    net = _net(rule, [20, 10, 3])
    spikes, y = _data(k=3)
    runner = get_target("lava:floating_pt").runner(net, CFG)
    before = set(multiprocessing.active_children())

    def boom(done, total, seconds):
        assert set(multiprocessing.active_children()) - before  # Lava's workers are up
        raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        runner.run(spikes, y, learn=True, chunk=1, progress=boom)
    runtime = runner.last_procs[0].runtime
    assert runtime is not None and not runtime._is_started and not runtime._is_running
    deadline = time.time() + 20
    while set(multiprocessing.active_children()) - before and time.time() < deadline:
        time.sleep(0.1)
    assert not set(multiprocessing.active_children()) - before
    with pytest.raises(ShapeError, match="spikes must have shape"):
        runner.learn_spikes(spikes[:3], y)  # bad input is refused before Lava starts


# --------------------------------------------------------------------------------------------
# CLI and training


def test_cli_compile_prints_strings_traces_graph_and_report(capsys):
    assert main(["compile", "--rule", "dfa", "--target", "lava"]) == 0
    out = capsys.readouterr().out
    for piece in ("Loihi3FLearningRule", "W1 fixed_pt    dw = -", "*u0*x1*y2", "t_epoch=22",
                  "x1_impulse=1", "EpochLearningDense", "NeuroLIF (hidden)",
                  "a_third_factor_in", "resource report", "precision report", "cores"):
        assert piece in out, piece
    assert main(["compile", "--rule", "ar", "--target", "lava"]) == 2
    assert "relax phase" in capsys.readouterr().err


@pytest.mark.parametrize("rule", ["dfa", "pal"])
def test_train_smoke(rule):
    from neurolocal.app.training import TrainConfig, train

    res = train(TrainConfig(rule=rule, target="lava", hidden=[8], limit=12, test_limit=6,
                            timesteps=8, globals={"lr": 0.05}), progress=False).to_dict()
    assert res["target"] == "lava:fixed_pt" and res["mode"] == "spiking"
    assert 0 <= res["test_accuracy"] <= 100 and res["samples"] == 12
    assert res["synaptic_events"] > 0 and res["timesteps"] == 8
    assert set(res["update_angles"]) == {"W1", "W2"} and set(res["feedback_angles"]) == {"B1"}

"""Lowering every built-in rule to the spiking semantics, and the errors that name why not."""

import numpy as np
import pytest

import neurolocal as nl
from neurolocal.errors import LocalityError, LoweringError
from neurolocal.hardware.base import get_target
from neurolocal.hardware.reference import ReferenceSimulator
from neurolocal.hardware.semantics import SYMBOLS, SpikingConfig, lower_rule
from neurolocal.rules import builtin_names, get_rule

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _verdict(name: str) -> str:
    rule = get_rule(name)
    try:
        lower_rule(rule)
        return "runs"
    except LocalityError:
        try:
            lower_rule(rule, allow_nonlocal=True)
            return "runs with --allow-nonlocal"
        except LoweringError:
            return "LoweringError"
    except LoweringError:
        return "LoweringError"


@pytest.mark.parametrize("name", builtin_names())
def test_compile_text_prints_both_targets(name):
    rule = get_rule(name)
    snn, b2t = get_target("snntorch"), get_target("brian2")
    if _verdict(name) == "LoweringError":
        with pytest.raises(LoweringError):
            snn.compile(rule, allow_nonlocal=True)
        return
    text = snn.compile(rule, allow_nonlocal=True)
    compile(text, "<generated>", "exec")  # the snntorch program is Python
    for up in rule.updates:
        assert up.text in text
    b2 = b2t.compile(rule, allow_nonlocal=True)
    assert "on_pre='I_post += w'" in b2 and "run_regularly" in b2
    assert "nl_W1_update" in b2 and "name='nl_L1'" in b2


def test_error_messages_name_the_statement_and_the_reason():
    assert lower_rule(get_rule("ar")).relax[0].steps == 30  # relax phases lower (issue 12)
    assert {fb.scope for fb in lower_rule(get_rule("pc")).feedback} == {"next", "lateral"}
    with pytest.raises(LoweringError, match=r"resample.*redraws"):
        lower_rule(get_rule("brsf"), allow_nonlocal=True)
    with pytest.raises(LocalityError):
        lower_rule(get_rule("bp"))
    with pytest.raises(LoweringError, match="transport"):
        lower_rule(get_rule("bp"), check_locality=False)
    assert lower_rule(get_rule("bp"), allow_nonlocal=True).feedback[0].mode == "tied"


BASE = """rule custom "test"
global lr = 0.1
output err = r - target
output delta = err
feedback B = next.delta -> err via random
"""


@pytest.mark.parametrize("extra, pattern", [
    ("neuron delta = next.delta * dphi\non W: dw = -lr * post.delta * pre.r",
     r"reads next\.delta directly.*feedback B already carries it"),
    ("neuron delta = err * dphi\non W: dw = -lr * post.target * pre.r",
     r"post\.target.*output neurons only"),
    ("neuron r = err\non W: dw = -lr * post.err * pre.r", r"overwrites r.*measure"),
    ("global vector reward\nneuron delta = err\non W: dw = -lr * post.delta * pre.r",
     r"global vector 'reward'"),
])
def test_custom_rules_that_cannot_lower(extra, pattern):
    rule = nl.parse_rule(BASE + extra)
    with pytest.raises(LoweringError, match=pattern):
        lower_rule(rule, check_locality=False)


def test_symbol_table_covers_every_builtin_compartment():
    from neurolocal.symbols import NEURON_COMPARTMENTS
    missing = set(NEURON_COMPARTMENTS) - set(SYMBOLS)
    assert not missing, f"no spiking meaning documented for {missing}"


def test_rates_from_traces_are_normalised():
    cfg = SpikingConfig(timesteps=10, tau1=4.0)
    d = cfg.decay(1)
    always = sum(d ** (9 - t) for t in range(10))
    assert always * cfg.gain(1) == pytest.approx(1.0)  # an always-on neuron has r = 1
    assert SpikingConfig(timesteps=8).gain(1) == 1 / 8  # tau = inf: count / T


def test_config_rejects_bad_values_by_name():
    with pytest.raises(LoweringError, match="timesteps"):
        SpikingConfig(timesteps=0)
    with pytest.raises(LoweringError, match="Adam"):
        SpikingConfig(optimiser="adam")
    with pytest.raises(LoweringError, match="unknown spiking option"):
        SpikingConfig().with_options(tau9=1.0)


ELIG = """rule elig "DFA through a synaptic tag, with a mixed term"
global lr = 0.5
global keep = 0.5
output err = r - target
output delta = err
feedback B = output.err -> err via random
neuron delta = err * dphi
on W: de = -keep * syn.e + post.delta * pre.r
on W: dw = -lr * syn.e - 0.01 * lr * max(pre.r, post.r) * syn.w
"""


def test_tag_and_mixed_terms_agree_on_every_target():
    pytest.importorskip("snntorch")
    pytest.importorskip("brian2")
    from neurolocal.hardware.brian2.lower import syn_name

    assert syn_name("e") != "e"  # Brian2's constant e: renamed
    rule = nl.parse_rule(ELIG)
    cfg = SpikingConfig(timesteps=10)
    net = nl.build_mlp([12, 8, 3], rule, seed=2)
    for layer in (1, 2):
        net.state["W"][layer]["w"] *= 4.0
    rng = np.random.default_rng(1)
    spikes = (rng.random((4, 10, 12)) < 0.5).astype(float)
    targets = np.eye(3)[[0, 1, 2, 0]]
    ref = ReferenceSimulator(net, lower_rule(rule, cfg))
    snn = get_target("snntorch").runner(net, cfg, dtype="float64")
    for k in range(4):
        ref.run_epoch(spikes[k][:, None], targets[k][None])
        snn.run_epoch(spikes[k][:, None], targets[k][None])
    b2 = get_target("brian2").runner(net, cfg, codegen="numpy", input_mode="raster")
    b2.run(spikes, targets)
    w = b2.weights()
    for layer in (1, 2):
        for var in ("w", "e"):
            expect = ref.state["W"][layer][var]
            assert np.abs(expect).max() > 0
            np.testing.assert_allclose(snn.state["W"][layer][var].numpy(), expect, atol=1e-10)
            np.testing.assert_allclose(w["W"][layer][var], expect, atol=1e-10)


def test_brian2_names_are_stable_and_the_cache_is_ours():
    pytest.importorskip("brian2")
    from neurolocal.hardware.brian2.lower import build_model
    from neurolocal.hardware.brian2.runtime import cache_dir

    prog = lower_rule(get_rule("kp"))
    a, b = build_model(prog, [784, 100, 10]), build_model(prog, [784, 100, 10])
    assert a.text() == b.text()
    names = [g.name for g in a.groups] + [s.name for s in a.synapses]
    assert names == ["nl_L0", "nl_L1", "nl_L2", "nl_W1", "nl_W2", "nl_B1"]
    assert cache_dir().parts[-3:] == (".cache", "neurolocal", "brian2")

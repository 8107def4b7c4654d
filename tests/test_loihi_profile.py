"""Loihi 2 profile values and the learning-rule validator (agreement with Lava's own parser)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from neurolocal.errors import LoweringError
from neurolocal.hardware.lava.loihi_rule import (
    Factor,
    LoihiRuleError,
    ProductTerm,
    RuleSet,
    float_to_mantissa_exp,
    rule_set_from_mapping,
    validate_loihi_rule,
)
from neurolocal.hardware.profiles import (
    CPU_FLOAT32,
    GPU_FLOAT32,
    LOIHI2,
    PROFILES,
    get_profile,
)

# --------------------------------------------------------------------------------------------
# Profiles


def test_loihi2_profile_values():
    w, tr, lr, lif, res = LOIHI2.weights, LOIHI2.traces, LOIHI2.learning, LOIHI2.lif, (
        LOIHI2.resources
    )
    assert w and tr and lr and lif and res
    assert (w.magnitude_bits, w.signed, w.range_mixed) == (8, True, (-256, 255))
    assert (w.range_excitatory, w.range_inhibitory) == ((0, 255), (-255, 0))
    assert w.mixed_sign_dropped_lsbs == 1 and not w.learned_weights_retruncated
    assert (tr.bits, tr.range, tr.impulse_fraction_bits) == (7, (0, 127), 8)
    assert lr.scale_mantissa_range == (-8, 7) and lr.scale_exp_range == (-7, 8)
    assert lr.max_dependencies_per_term == 1 and lr.max_uk_per_rule_set == 1
    assert lr.post_traces == ("y1", "y2", "y3") and lr.pre_traces == ("x1", "x2")
    assert lr.sgn_vars == ("w", "d", "t") and lr.accumulator_bits == 15
    assert (lif.u_bits, lif.v_bits, lif.decay_bits) == (24, 24, 12)
    assert lif.vth_range == (0, 2**17 - 1) and lif.vth_shift == 6
    assert lif.bias_mant_range == (-4096, 4095) and lif.bias_exp_range == (0, 7)
    assert res.neurons_per_core == 8192 and res.neuro_cores_per_chip == 128
    assert res.neurons_per_chip == res.neurons_per_core * res.neuro_cores_per_chip
    assert LOIHI2.is_fixed_point


def test_fixed_point_shift_matches_lava_widths():
    lr = LOIHI2.learning
    assert lr is not None
    assert lr.fixed_point_shift(["y1"]) == 0  # 7 + 4 <= 15
    assert lr.fixed_point_shift(["x1", "y1"]) == 3  # 7 + 7 + 4 - 15
    assert lr.fixed_point_shift(["w", "y1"]) == 5  # 9 + 7 + 4 - 15
    term = validate_loihi_rule("x0*y1*y2").dw[0]  # type: ignore[index]
    assert term.fixed_point_shift() == 3


def test_float_profiles_and_lookup():
    for p in (CPU_FLOAT32, GPU_FLOAT32):
        assert p.numeric == "float32" and p.learning is None and not p.is_fixed_point
    assert CPU_FLOAT32.device == "cpu" and GPU_FLOAT32.device == "cuda"
    assert get_profile("loihi2") is LOIHI2 and set(PROFILES) >= {"loihi2", "cpu-float32"}
    with pytest.raises(KeyError, match="known profiles: loihi2"):
        get_profile("loihi3")


def test_profiles_are_frozen():
    with pytest.raises(AttributeError):
        LOIHI2.name = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        LOIHI2.sources["weights.signed"] = "x"  # type: ignore[index]


def test_describe_lists_every_limit_with_its_source():
    text = LOIHI2.describe()
    assert text.splitlines()[0].startswith("loihi2:")
    for key in ("weights.range_mixed", "traces.bits", "learning.scale_mantissa_range",
                "lif.u_bits", "resources.neurons_per_core"):
        assert key in text
    rows = LOIHI2.rows()
    sourced = [r for r in rows if r[0].split(".")[0] in ("weights", "traces", "learning", "lif",
                                                          "resources")]
    assert all(src for _, _, src in sourced), [r for r in sourced if not r[2]]
    assert "[estimate]" in text and "[lava]" in text and "[intel]" in text
    assert "float32" in CPU_FLOAT32.describe()


def test_profile_matches_lava_constants():
    pytest.importorskip("lava", reason="lava-nc not installed (make install)")
    from neurolocal.hardware.lava.compat import ensure_lava_importable

    ensure_lava_importable()
    from lava.magma.core.learning import constants as c
    from lava.magma.core.learning import string_symbols as s

    lr, tr, w = LOIHI2.learning, LOIHI2.traces, LOIHI2.weights
    assert lr and tr and w
    assert tr.bits == c.W_TRACE and tr.impulse_fraction_bits == c.W_TRACE_FRACTIONAL_PART
    assert w.magnitude_bits == c.W_WEIGHTS_U
    assert lr.accumulator_bits == c.W_ACCUMULATOR_U and lr.scale_mantissa_bits == c.W_S_MANT
    assert lr.epoch_time_bits == c.W_EPOCH_TIME
    assert lr.constant_range == (-(2**c.W_CONST), 2**c.W_CONST - 1)
    assert dict(lr.factor_widths) == dict(c.FACTOR_TO_WIDTH_DICT)
    assert set(lr.pre_traces) == s.PRE_TRACES and set(lr.post_traces) == s.POST_TRACES
    assert set(lr.synaptic_vars) == s.SYNAPTIC_VARIABLES
    assert set(lr.targets) == s.LEARNING_RULE_TARGETS


# --------------------------------------------------------------------------------------------
# float_to_mantissa_exp


def test_every_representable_scale_round_trips():
    for e in range(-7, 9):
        for m in range(-8, 8):
            value = m * 2.0**e
            mm, ee, rel = float_to_mantissa_exp(value)
            assert mm * 2.0**ee == value and rel == 0.0
            assert -8 <= mm <= 7 and -7 <= ee <= 8
            # and Lava's own normaliser accepts what we emit
            validate_loihi_rule(ProductTerm(mm, ee, "x0").to_lava_string())


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0.3, (5, -4)), (-0.3, (-5, -4)), (0.5, (1, -1)), (1.125, (5, -2)), (0.0, (0, 0)),
     (5000.0, (7, 8)), (-5000.0, (-8, 8)), (1e-9, (0, 0)), (2.0**-8, (1, -7))],
)
def test_float_to_mantissa_exp_examples(value, expected):
    m, e, rel = float_to_mantissa_exp(value)
    assert (m, e) == expected
    if value:
        assert rel == pytest.approx(abs(m * 2.0**e - value) / abs(value))


@given(st.floats(min_value=2.0**-5, max_value=7 * 2.0**8))
def test_float_to_mantissa_exp_relative_error_bound(value):
    # 4-bit signed mantissa: on [4*2^e, 8*2^e) the grid step is 2^e, so |err| <= 2^(e-1)
    # and the relative error is at most 1/9 (worst at 4.5*2^e).
    for v in (value, -value):
        m, e, rel = float_to_mantissa_exp(v)
        assert rel <= 1 / 9 + 1e-12
        assert math.copysign(1, m) == math.copysign(1, v)


def test_float_to_mantissa_exp_rejects_non_finite():
    with pytest.raises(ValueError, match="non-finite"):
        float_to_mantissa_exp(float("nan"))


# --------------------------------------------------------------------------------------------
# Validator: valid strings agree with Lava's parse

VALID = [
    "2^-2*x1*y0 - 2^-2*y1*x0",
    "x0*y1",
    "-x0*y1",
    "+ 4*x0*(y1-3)*w",
    "16*y0*x1",
    "-8*x0",
    "7*2^8*x0",
    "-8*2^8*y0",
    "y0*(3-x1)",
    "y0*(-x1+3)",
    "y0*(-x1-3)",
    "u2*x1*y1*sgn(w)",
    "x1*u2",
    "2*2^-1*x0*3",
    "7*2^-7*y0*x2*y3",
    "x0*sgn(3+w)*sgn(d-2)",
    "y0*(2^3)",
    "y0*(-3)",
    "y0*(x1+3*2^2)",
    "0*x0",
    "x0*(y2+0)*t",
    "y0*(x1+255)*(y1-256)",
    "x0 * y1 * 2 ^ -3",
    "u0",
    "y0*(3*2^-1)",
    "y0*(x2-2^2)",
    "2^-3*u1*y2*(w-64) - 2^-4*u1*y3",
]


def _lava_signature(rule) -> dict:
    return {
        target: [
            (p.dependency, p.decimate_exponent, p.s_mantissa, p.s_exp - 7,
             [(f.state_var, f.const, f.is_sgn) for f in p.factors])
            for p in ps.products
        ]
        for target, ps in rule.active_product_series.items()
    }


def _our_signature(rs: RuleSet) -> dict:
    return {
        target: [
            ("u" if t.dependency.startswith("u") else t.dependency, t.decimate_exponent,
             t.scale_mantissa, t.scale_exp, [(f.var, f.const, f.sgn) for f in t.factors])
            for t in terms
        ]
        for target, terms in rs.items()
    }


@pytest.fixture(scope="module")
def lava_rule_cls():
    pytest.importorskip("lava", reason="lava-nc not installed (make install)")
    from neurolocal.hardware.lava.compat import ensure_lava_importable

    ensure_lava_importable()
    from lava.magma.core.learning.learning_rule import Loihi2FLearningRule

    return Loihi2FLearningRule


@pytest.mark.parametrize("text", VALID)
def test_valid_rule_agrees_with_lava(text, lava_rule_cls):
    rs = validate_loihi_rule(text, dd=text, dt=text)
    assert _our_signature(rs) == _lava_signature(lava_rule_cls(dw=text, dd=text, dt=text))
    # what we hand to Lava parses to the same thing, and re-validates to an equal RuleSet
    canonical = rs.to_lava_strings()
    assert _lava_signature(lava_rule_cls(**canonical)) == _our_signature(rs)
    assert validate_loihi_rule(**canonical) == rs


def test_rule_set_data_model():
    rs = validate_loihi_rule("2^-2*x1*y0 - 2^-2*y1*x0", dt="u3*y2*sgn(t-1)")
    assert rs.dd is None and rs.decimate_exponent == 3
    t0, t1 = rs.dw  # type: ignore[misc]
    assert t0 == ProductTerm(1, -2, "y0", [Factor("x1")]) and t0.scale == 0.25
    assert t1 == ProductTerm(-1, -2, "x0", (Factor("y1"),))
    assert rs.dt[0].factors == (Factor("y2"), Factor("t", -1, sgn=True))  # type: ignore[index]
    assert rs.to_lava_strings() == {
        "dw": "1*2^-2*y0*x1 - 1*2^-2*x0*y1",
        "dt": "1*2^0*u3*y2*sgn(t-1)",
    }
    assert rule_set_from_mapping({"dw": "x0*y1"}) == validate_loihi_rule("x0*y1")
    assert rule_set_from_mapping(rs) == rs
    with pytest.raises(LoihiRuleError, match="unknown learning target"):
        rule_set_from_mapping({"dx": "x0"})
    with pytest.raises(LoihiRuleError, match="at least one term"):
        RuleSet(dw=[])
    with pytest.raises(LoihiRuleError, match="dependency must be"):
        ProductTerm(1, 0, "x1")


# --------------------------------------------------------------------------------------------
# Validator: each kind of bad string gets a message naming the term and the limit

INVALID = [
    ("9*2^-3*x0*y1", "scale mantissa 9 outside [-8, 7]", "5*2^-2 = 1.25"),
    ("x0*y1 + 8*2^8*y0", "scale mantissa 8 outside [-8, 7]", "7*2^8 = 1792"),
    ("2*2^-8*x0", "scale exponent -8 outside [-7, 8]", "1*2^-7 = 0.0078125 (rel. error 0%)"),
    ("2^9*x0", "scale exponent 9 outside [-7, 8]", "2*2^8 = 512"),
    ("x0*y0*x1", "term has two dependencies x0 and y0", None),
    ("x0*u2", "term has two dependencies x0 and u2", None),
    ("2*x1", "term has no dependency", None),
    ("0.5*x0*y1", "non-integer literal 0.5", "1*2^-1 = 0.5 (rel. error 0%)"),
    ("0.3*x0", "non-integer literal 0.3", "5*2^-4 = 0.3125 (rel. error 4.17%)"),
    ("x0*y4", "unknown variable y4", None),
    ("x3*y0", "unknown variable x3", None),
    ("x0*x12", "unknown variable x12", None),
    ("x0*u10", "unknown variable u10", None),
    ("r1*x0", "unknown variable r1", None),
    ("X0*y1", "unknown variable X0", None),
    ("y0*(x1+y1)", "bracketed factor must be (var ± const)", None),
    ("x0*(3*x1)", "bracketed factor must be (var ± const)", None),
    ("x0*(x1+3+2)", "bracketed factor must be (var ± const)", None),
    ("x0*((x1+1))", "nested brackets", None),
    ("x0*(y0+1)", "dependency y0 cannot be bracketed", None),
    ("x0*(-x1)", "(-x1) loses its minus sign", None),
    ("y0*(x1+2^-1)", "non-integer constant 2^-1", None),
    ("x0*(x1+256)", "constant 256 in (x1+256) outside [-256, 255]", None),
    ("x0*sgn(x1)", "sgn() only on w, d, t", None),
    ("x0*sgn(3-w)", "cannot be negated", None),
    ("x0*sgn(-w)", "cannot be negated", None),
    ("x0*-2*y1", "sign inside a product", None),
    ("x0*y1 +", "empty term", None),
    ("x0 + - y0", "empty term", None),
    ("2x0", "missing '*' before 'x0'", None),
    ("x0/4", "division is not supported", None),
    ("3^2*x0", "not a power of two", None),
    ("2^0.5*x0", "non-integer exponent", None),
    ("x0*(y1", "never closed", None),
    ("x0*y1)", "unbalanced ')'", None),
    ("x0 & y1", "unexpected character '&'", None),
    ("x0*sgn", "sgn must be called with brackets", None),
    ("", "empty rule string", None),
]


@pytest.mark.parametrize(("text", "reason", "suggestion"), INVALID)
def test_invalid_rule_is_named(text, reason, suggestion):
    with pytest.raises(LoihiRuleError) as info:
        validate_loihi_rule(text)
    err = info.value
    assert isinstance(err, LoweringError) and isinstance(err, ValueError)
    msg = str(err)
    assert msg.startswith("dw"), msg
    assert reason in msg, msg
    assert err.target == "dw"
    if err.term_index is None:  # rule-level problems: empty rule, a character Lava cannot lex
        assert text == "" or "at position" in msg, msg
    else:
        assert err.term_text and err.term_text in text.strip(), msg
    if suggestion is not None:
        assert "nearest expressible: " in msg and suggestion in msg, msg


def test_term_index_and_text_point_at_the_bad_term():
    with pytest.raises(LoihiRuleError) as info:
        validate_loihi_rule("2^-2*x1*y0 - 2^-2*y1*x0 + 9*2^-3*x0*y2")
    assert info.value.term_index == 2 and info.value.term_text == "9*2^-3*x0*y2"
    assert "dw term[2] '9*2^-3*x0*y2': scale mantissa 9" in str(info.value)
    with pytest.raises(LoihiRuleError) as info:
        validate_loihi_rule("x0*y1", dd="y0*x1", dt="u1*y9")
    assert info.value.target == "dt" and "unknown variable y9" in str(info.value)


def test_one_uk_per_rule_set():
    with pytest.raises(LoihiRuleError, match=r"u3 and u2 in one rule set \(dw term\[0\] uses u3"):
        validate_loihi_rule("u3*x1", dd="y0*x1 + u2*y1")
    assert validate_loihi_rule("u3*x1", dd="u3*y1").decimate_exponent == 3


def test_no_rule_and_non_string():
    with pytest.raises(LoihiRuleError, match="no learning rule given"):
        validate_loihi_rule(None)
    with pytest.raises(LoihiRuleError, match="must be a string"):
        validate_loihi_rule(0.5)  # type: ignore[arg-type]
    with pytest.raises(LoihiRuleError, match="no sum-of-products learning engine"):
        validate_loihi_rule("x0*y1", profile=CPU_FLOAT32)


@pytest.mark.parametrize(("text", "_r", "_s"), INVALID)
def test_lava_itself_is_unhelpful_or_wrong_on_what_we_reject(text, _r, _s, lava_rule_cls):
    """Documents why the validator exists: Lava either raises (often AttributeError) or accepts
    the string and means something else. Nothing we reject reaches Lava in the runner."""
    try:
        rule = lava_rule_cls(dw=text)
    except Exception as exc:  # noqa: BLE001 - any Lava error is fine here
        assert not isinstance(exc, LoihiRuleError)
    else:
        assert rule.dw is not None  # accepted silently: our error is the only warning

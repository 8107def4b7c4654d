"""Lava compatibility hook and real Lava runs of a LearningDense, checked against numpy.

The expected weights are computed here from Lava's documented trace model (see
``neurolocal/hardware/lava_runner.py``), not by calling Lava: per time step ``t`` (t_epoch = 1)

    x1 <- x1 * exp(-1/tau_x) + I_x * pre[t]        y1 <- y1 * exp(-1/tau_y) + I_y * post[t]
    w  <- w + A * (post[t] x1  -  y1 pre[t])       for dw = A*x1*y0 - A*y1*x0

fixed_pt replaces each multiplication by exp(-1/tau) with stochastic rounding to an integer and
rounds the new weight stochastically; the test tracks the interval every such rounding allows.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("lava", reason="lava-nc not installed (make install)")

from support.lava_runner import (  # noqa: E402
    PostLIF,
    TraceParams,
    run_learning_dense,
)

from neurolocal.errors import ShapeError  # noqa: E402
from neurolocal.hardware.lava import compat as lava_compat  # noqa: E402
from neurolocal.hardware.lava.compat import (  # noqa: E402
    LavaUnavailableError,
    ensure_lava_importable,
    is_hook_installed,
    patch_var_model_source,
)
from neurolocal.hardware.lava.loihi_rule import LoihiRuleError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _python(code: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", **(env_extra or {}))
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )


# --------------------------------------------------------------------------------------------
# lava_compat


def test_plain_import_fails_and_hook_fixes_it_without_touching_site_packages():
    code = """
        import importlib, sys
        try:
            import lava.magma.compiler.var_model
        except ValueError as e:
            assert "mutable default" in str(e), e
            print("PLAIN-FAILS")
        else:
            print("PLAIN-WORKS")
        from neurolocal.hardware.lava.compat import ensure_lava_importable
        ensure_lava_importable()
        import lava.magma.compiler.var_model as vm
        a, b = vm.CoreEncoder(), vm.CoreEncoder()
        assert a.x is not b.x  # default_factory: one ByteEncoder per instance
        print("HOOK-WORKS")
    """
    first = _python(code)
    assert first.returncode == 0, first.stderr
    assert "HOOK-WORKS" in first.stdout
    if "PLAIN-WORKS" in first.stdout:
        pytest.fail("lava's var_model imports without the hook: was site-packages edited?")
    # nothing was persisted (no patched .pyc): a fresh interpreter still fails without the hook
    second = _python("import lava.magma.compiler.var_model")
    assert second.returncode != 0 and "mutable default" in second.stderr


def test_ensure_is_idempotent():
    ensure_lava_importable()
    ensure_lava_importable()
    assert is_hook_installed()
    markers = [f for f in sys.meta_path if getattr(f, "marker", None) == "neurolocal-lava-compat"]
    assert len(markers) == 1 and sys.meta_path[0] is markers[0]


def test_patch_var_model_source_rewrites_only_the_instance_defaults():
    src = textwrap.dedent("""
        @dataclass
        class CoreEncoder:
            x: ByteEncoder = ByteEncoder()
            y : ByteEncoder=ByteEncoder()
            payload: ty.List[ByteEncoder]
    """)
    patched, n = patch_var_model_source(src)
    assert n == 2
    assert patched.count('field(default_factory=ByteEncoder)') == 2
    assert len(patched.splitlines()) == len(src.splitlines())  # line numbers kept


def _fork_child_reimport(queue) -> None:
    # runs in a forked child: drop the patched module and import it again
    sys.modules.pop(lava_compat.VAR_MODEL, None)
    try:
        import lava.magma.compiler.var_model  # noqa: F401

        queue.put(("ok", is_hook_installed()))
    except Exception as exc:  # noqa: BLE001
        queue.put(("fail", repr(exc)))


def test_hook_is_inherited_by_forked_children():
    ensure_lava_importable()
    ctx = multiprocessing.get_context("fork")  # the start method Lava forces on non-Windows
    queue = ctx.Queue()
    proc = ctx.Process(target=_fork_child_reimport, args=(queue,))
    proc.start()
    result = queue.get(timeout=60)
    proc.join(timeout=60)
    assert result == ("ok", True)


def test_lava_import_survives_an_already_set_fork_context():
    # anything that made a multiprocessing Queue first fixes the start method; Lava's own
    # `mp.set_start_method('fork')` would then raise "context has already been set"
    res = _python("""
        import multiprocessing as mp
        mp.Queue()
        from neurolocal.hardware.lava.compat import ensure_lava_importable
        ensure_lava_importable()
        import lava.magma.runtime.message_infrastructure.multiprocessing
        print("OK", mp.get_start_method())
    """)
    assert res.returncode == 0, res.stderr
    assert "OK fork" in res.stdout


def test_spawn_start_method_is_refused_clearly():
    res = _python("""
        import multiprocessing as mp
        mp.set_start_method("spawn")
        from neurolocal.hardware.lava.compat import LavaUnavailableError, ensure_lava_importable
        try:
            ensure_lava_importable()
        except LavaUnavailableError as e:
            print("REFUSED", e)
    """)
    assert res.returncode == 0, res.stderr
    assert "REFUSED" in res.stdout and "'spawn'" in res.stdout and "force=True" in res.stdout


def test_missing_lava_is_a_clear_error(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "lava" else real(name, *a)
    )
    with pytest.raises(LavaUnavailableError, match="lava-nc is not installed.*pip install"):
        ensure_lava_importable()


def test_unrecognised_var_model_is_a_clear_error(tmp_path):
    # a fake 'lava' whose var_model breaks in a way the rewrite does not recognise
    pkg = tmp_path / "lava" / "magma" / "compiler"
    pkg.mkdir(parents=True)
    for d in (tmp_path / "lava", tmp_path / "lava" / "magma", pkg):
        (d / "__init__.py").write_text("")
    (pkg / "var_model.py").write_text(textwrap.dedent("""
        from dataclasses import dataclass
        @dataclass
        class ByteEncoder:
            base: int = 0
        @dataclass
        class CoreEncoder:
            x: "ByteEncoder" = ByteEncoder()
    """))
    res = _python(
        """
        from neurolocal.hardware.lava.compat import LavaUnavailableError, ensure_lava_importable
        try:
            ensure_lava_importable()
        except LavaUnavailableError as e:
            print("CLEAR", e)
        """,
        {"PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"},
    )
    assert res.returncode == 0, res.stderr
    assert "CLEAR" in res.stdout and "were not found in its source" in res.stdout
    assert "Supported: lava-nc==0.10.0" in res.stdout


# --------------------------------------------------------------------------------------------
# Real Lava runs

A = 0.25  # dw = 2^-2*x1*y0 - 2^-2*y1*x0
RULE = {"dw": "2^-2*x1*y0 - 2^-2*y1*x0"}
TAU, IMPULSE = 8.0, 20.0
TRACES = TraceParams(x1_impulse=IMPULSE, x1_tau=TAU, y1_impulse=IMPULSE, y1_tau=TAU)
W0 = np.array([[40.0, -20.0], [0.0, 60.0]])  # (n_post, n_pre); even: survives mixed loading

T = 24
PRE = np.zeros((T, 2), dtype=bool)
POST = np.zeros((T, 2), dtype=bool)
PRE[[1, 6, 12, 13, 20], 0] = True  # pre 0 leads post 0 (potentiation) ...
POST[[3, 8, 14, 21], 0] = True
PRE[[4, 10, 17], 1] = True  # ... pre 1 lags post 1 (depression), with some coincidences
POST[[2, 8, 10, 15], 1] = True


def reference_float(w0, pre, post, a=A, tau=TAU, impulse=IMPULSE):
    decay = np.exp(-1.0 / tau)
    x = np.zeros(pre.shape[1])
    y = np.zeros(post.shape[1])
    w = w0.astype(float).copy()
    for t in range(pre.shape[0]):
        x = x * decay + impulse * pre[t]
        y = y * decay + impulse * post[t]
        w += a * (np.outer(post[t], x) - np.outer(y, pre[t]))
    return w, x, y


def reference_fixed_interval(w0, pre, post, a=A, tau=TAU, impulse=IMPULSE):
    """Bounds on Lava's fixed_pt result whatever its stochastic rounding draws.

    Stochastic rounding of v gives floor(v) or ceil(v); traces saturate at 127 and weights at
    [-256, 255]. Every map used is monotone, so propagating [lo, hi] is exact bookkeeping.
    """
    decay = np.exp(-1.0 / tau)
    xlo = np.zeros(pre.shape[1])
    xhi = xlo.copy()
    ylo = np.zeros(post.shape[1])
    yhi = ylo.copy()
    wlo = w0.astype(float).copy()
    whi = wlo.copy()
    for t in range(pre.shape[0]):
        xlo = np.clip(np.floor(xlo * decay) + impulse * pre[t], 0, 127)
        xhi = np.clip(np.ceil(xhi * decay) + impulse * pre[t], 0, 127)
        ylo = np.clip(np.floor(ylo * decay) + impulse * post[t], 0, 127)
        yhi = np.clip(np.ceil(yhi * decay) + impulse * post[t], 0, 127)
        dlo = a * (np.outer(post[t], xlo) - np.outer(yhi, pre[t]))
        dhi = a * (np.outer(post[t], xhi) - np.outer(ylo, pre[t]))
        wlo = np.clip(np.floor(wlo + dlo), -256, 255)
        whi = np.clip(np.ceil(whi + dhi), -256, 255)
    return wlo, whi, (xlo, xhi), (ylo, yhi)


def test_floating_pt_stdp_matches_numpy():
    res = run_learning_dense(W0, PRE, POST, RULE, TRACES, tag="floating_pt", record_every=6)
    w_ref, x_ref, y_ref = reference_float(W0, PRE, POST)
    np.testing.assert_allclose(res["final_weights"], w_ref, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(res["traces"]["x1"], x_ref, rtol=1e-9)
    np.testing.assert_allclose(res["traces"]["y1"], y_ref, rtol=1e-9)
    assert not np.allclose(w_ref, W0)  # the spike train really changes the weights
    assert w_ref[0, 0] > W0[0, 0] and w_ref[1, 1] < W0[1, 1]  # LTP for pre-before-post, LTD
    # intermediate reads agree with the reference run for that many steps
    assert list(res["record_steps"]) == [0, 6, 12, 18, 24]
    for k, step in enumerate(res["record_steps"]):
        w_k, _, _ = reference_float(W0, PRE[:step], POST[:step])
        np.testing.assert_allclose(res["weights_history"][k], w_k, rtol=1e-9, atol=1e-9)
    assert res["rule_strings"] == {"dw": "1*2^-2*y0*x1 - 1*2^-2*x0*y1"}
    np.testing.assert_array_equal(res["post_spikes"], POST)


def test_fixed_pt_stdp_within_the_quantisation_bound():
    res = run_learning_dense(W0, PRE, POST, RULE, TRACES, tag="fixed_pt")
    w = res["final_weights"]
    wlo, whi, (xlo, xhi), (ylo, yhi) = reference_fixed_interval(W0, PRE, POST)
    w_float, _, _ = reference_float(W0, PRE, POST)
    assert np.array_equal(w, np.round(w)), "fixed_pt weights are integers"
    assert np.all(wlo <= w) and np.all(w <= whi), (wlo, w, whi)
    assert np.all(xlo <= res["traces"]["x1"]) and np.all(res["traces"]["x1"] <= xhi)
    assert np.all(ylo <= res["traces"]["y1"]) and np.all(res["traces"]["y1"] <= yhi)
    # the worst-case interval also holds the exact float answer; it widens by at most
    # A * (trace interval width) + 1 per applied term, here to 18 LSBs over 9 pairings
    assert np.all(wlo <= w_float) and np.all(w_float <= whi)
    assert np.max(whi - wlo) <= 20
    # stochastic rounding is unbiased, so the typical error is far smaller (seed 0: <= 2.1)
    assert np.max(np.abs(w - w_float)) <= 3
    np.testing.assert_array_equal(res["weights_history"][0], W0)
    # same seed, same answer: Lava's stochastic rounding is seeded through TraceParams
    again = run_learning_dense(W0, PRE, POST, RULE, TRACES, tag="fixed_pt")
    np.testing.assert_array_equal(again["final_weights"], w)


def test_fixed_pt_mixed_sign_drops_the_weight_lsb_on_load():
    w0 = np.array([[41.0, -21.0], [1.0, 255.0]])
    res = run_learning_dense(w0, PRE[:3], POST[:3], {"dw": "0*x0"}, TRACES, tag="fixed_pt")
    expected = np.array([[40.0, -22.0], [0.0, 254.0]])  # arithmetic shift: floor to even
    np.testing.assert_array_equal(res["weights_history"][0], expected)
    np.testing.assert_array_equal(res["final_weights"], expected)
    excit = run_learning_dense(np.abs(w0), PRE[:3], POST[:3], {"dw": "0*x0"}, TRACES,
                               tag="fixed_pt", sign_mode="excitatory")
    np.testing.assert_array_equal(excit["final_weights"], np.abs(w0))


def test_post_lif_spikes_drive_the_rule():
    # pre neuron 0 fires every step; its weight drives post LIF 0 above threshold, so the
    # post spikes (read back from the LIF) are the y0 the rule saw in the same step
    pre = np.zeros((16, 2), dtype=bool)
    pre[:, 0] = True
    pre[::5, 1] = True
    w0 = np.array([[30.0, 0.0], [4.0, 20.0]])
    lif = PostLIF(du=1.0, dv=0.5, vth=40.0)
    res = run_learning_dense(w0, pre, lif, RULE, TRACES, tag="floating_pt")
    post = res["post_spikes"]
    assert post.shape == (16, 2) and post[:, 0].any()
    assert not post[0].any()  # Dense delivers its input one step late
    w_ref, _, _ = reference_float(w0, pre, post)
    np.testing.assert_allclose(res["final_weights"], w_ref, rtol=1e-9, atol=1e-9)


def test_runner_rejects_bad_input_before_lava():
    with pytest.raises(LoihiRuleError, match="scale mantissa 9"):
        run_learning_dense(W0, PRE, POST, {"dw": "9*2^-3*x1*y0"}, TRACES)
    with pytest.raises(ShapeError, match=r"shape \(T, 2\)"):
        run_learning_dense(W0, PRE[:, :1], POST, RULE, TRACES)
    with pytest.raises(ShapeError, match="steps"):
        run_learning_dense(W0, PRE, POST[:5], RULE, TRACES)
    with pytest.raises(ValueError, match="must be integers"):
        run_learning_dense(W0 + 0.5, PRE, POST, RULE, TRACES, tag="fixed_pt")
    with pytest.raises(ValueError, match=r"\[-256, 255\]"):
        run_learning_dense(W0 * 10, PRE, POST, RULE, TRACES, tag="fixed_pt")
    with pytest.raises(ValueError, match="tau=0"):
        run_learning_dense(W0, PRE, POST, RULE, TraceParams(x1_impulse=1, y1_tau=4),
                           tag="floating_pt")
    with pytest.raises(ValueError, match="tag must be"):
        run_learning_dense(W0, PRE, POST, RULE, TRACES, tag="bit_accurate")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sign_mode"):
        run_learning_dense(W0, PRE, POST, RULE, TRACES, sign_mode="both")

"""The evaluation benchmark's baselines compute what the tool computes.

``benchmarks/evaluation.py`` times the batched paths against hand-written copies
(``benchmarks/handwritten/copies_eval.py``) and the first version's image-by-image code
(``benchmarks/previous/first_version.py``); the comparison means something only if they run
the same network: these tests pin that on a small one.
"""

from __future__ import annotations

import numpy as np
import pytest

from neurolocal.converters.model import Neuron, Op, SNNLayer, SNNModel

pytestmark = pytest.mark.filterwarnings("ignore:.*deprecated.*:DeprecationWarning")


def _model(reset: str, v_init: float) -> SNNModel:
    rng = np.random.default_rng(0)
    w1, b1 = rng.normal(0, 0.15, (40, 64)), rng.normal(0.02, 0.02, 40)
    w2, b2 = rng.normal(0, 0.3, (10, 40)), rng.normal(0, 0.05, 10)
    return SNNModel((64,), [
        SNNLayer("layer1", [Op("linear", "fc1", (64,), (40,), weight=w1, bias=b1)],
                 Neuron("IF", 1.0, 1.0, reset, "lif1", v_init)),
        SNNLayer("layer2", [Op("linear", "fc2", (40,), (10,), weight=w2, bias=b2)], None)])


def test_handwritten_copies_compute_the_tools_results():
    from handwritten.copies_eval import handwritten_brian2, handwritten_lava, mlp_arrays

    from neurolocal.hardware.brian2.inference import run_brian2
    from neurolocal.hardware.lava.inference import run_lava

    x = np.random.default_rng(1).random((12, 64))
    model = _model("subtract", 0.5)
    w1, b1, w2, b2, theta, v0 = mlp_arrays(model)
    out, counts = handwritten_brian2(w1, b1, w2, b2, x, 20, theta, v0, codegen="numpy")
    ours = run_brian2(model, x, 20, return_counts=True)
    assert counts.sum() > 500
    assert np.mean(counts == ours.spike_counts[0]) >= 0.999  # float order may differ
    np.testing.assert_array_equal(out.argmax(1), ours.predictions)
    zero = _model("zero", 0.0)
    w1, b1, w2, b2, theta, _ = mlp_arrays(zero)
    hand = handwritten_lava(w1, b1, w2, b2, x, 20, theta)
    tool = run_lava(zero, x, 20, tag="floating_pt")
    np.testing.assert_allclose(hand, tool.outputs, rtol=1e-9, atol=1e-9)


def test_the_first_versions_runners_compute_the_tools_results():
    from previous.first_version import run_brian2_v1, run_lava_v1

    from neurolocal.hardware.brian2.inference import run_brian2
    from neurolocal.hardware.lava.inference import run_lava

    x = np.random.default_rng(2).random((10, 64))
    model = _model("subtract", 0.5)
    old, new = run_lava_v1(model, x, 12, record_neurons=True), run_lava(model, x, 12,
                                                                       record_neurons=True)
    np.testing.assert_array_equal(old.outputs, new.outputs)
    np.testing.assert_array_equal(old.spike_counts[0], new.spike_counts[0])
    old, new = run_brian2_v1(model, x, 12, return_counts=True), run_brian2(model, x, 12,
                                                                         return_counts=True)
    np.testing.assert_array_equal(old.spike_counts[0], new.spike_counts[0])
    np.testing.assert_allclose(old.outputs, new.outputs, rtol=1e-12)

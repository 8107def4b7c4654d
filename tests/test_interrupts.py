"""Ctrl-C, SIGTERM and SIGKILL during a Lava run: the run ends fast and leaves nothing behind."""

from __future__ import annotations

import signal
import sys

import pytest

pytest.importorskip("lava", reason="lava-nc not installed (make install)")

from support.processes import interrupt_when_running  # noqa: E402

CMD = [sys.executable, "-m", "neurolocal", "train", "--rule", "dfa", "--spiking", "--target",
       "lava", "--samples", "300", "--test-samples", "20", "--timesteps", "10", "--hidden",
       "30"]


@pytest.mark.parametrize("sig, group, code", [
    (signal.SIGINT, True, 130),    # Ctrl-C: the whole foreground process group gets it
    (signal.SIGTERM, False, 143),  # `kill PID`
    (signal.SIGKILL, False, -9),   # `kill -9 PID`: the workers must notice on their own
])
def test_a_lava_run_ends_within_seconds_and_leaves_no_process(sig, group, code):
    res = interrupt_when_running(CMD, sig, group=group, min_procs=6)
    assert res["peak"] >= 6, "Lava's workers never started: " + res["stderr"][-500:]
    assert res["code"] == code, res["stderr"][-800:]
    assert res["seconds"] < 10
    assert res["left"] == 0

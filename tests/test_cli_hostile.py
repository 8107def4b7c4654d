"""The CLI as a hostile user meets it: exit codes, closed pipes, runaway runs, bad values."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from neurolocal.app import cli
from neurolocal.app.cli import main
from neurolocal.checkpoint import load_checkpoint


def test_an_internal_error_is_exit_3_with_one_line_and_a_log(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("NEUROLOCAL_LOG_DIR", str(tmp_path))

    def broken(args):
        raise TypeError("a bug, not bad input")

    monkeypatch.setattr(cli, "cmd_check", broken)
    assert main(["check", "fa"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "internal error (TypeError: a bug, not bad input)" in err[0]
    logs = list(tmp_path.glob("neurolocal-error-*.log"))
    assert len(logs) == 1 and "Traceback" in logs[0].read_text() and str(logs[0]) in err[0]
    assert main(["--debug", "check", "fa"]) == 3
    assert "Traceback" in capsys.readouterr().err


def test_a_closed_stdout_does_not_end_the_run(tmp_path):
    out = tmp_path / "ck.h5"
    cmd = (f"{sys.executable} -m neurolocal train --rule fa --target numpy --hidden 16 "
           f"--samples 400 --test-samples 100 --epochs 2 --out {out} --json | head -c 1; "
           "exit ${PIPESTATUS[0]}")
    proc = subprocess.run(["bash", "-c", cmd], capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()[-500:]
    assert load_checkpoint(out)[1]["epoch"] == 2  # the whole run happened


def test_runaway_weights_stop_the_run_and_keep_the_last_good_checkpoint(tmp_path, capsys):
    out = tmp_path / "ck.h5"
    code = main(["train", "--rule", "fa", "--target", "numpy", "--hidden", "16", "--samples",
                 "500", "--test-samples", "50", "--epochs", "3", "--optimiser", "sgd",
                 "--lr-decay", "1e7", "--out", str(out), "--json"])
    assert code == 2
    err = capsys.readouterr().err
    assert "diverged in epoch 2" in err and "--lr 1e+07" in err and str(out) in err
    assert load_checkpoint(out)[1]["epoch"] == 1


def test_runaway_on_a_spiking_target_is_caught_too(capsys):
    code = main(["train", "--rule", "dfa", "--spiking", "--target", "snntorch", "--hidden",
                 "20", "--samples", "300", "--test-samples", "20", "--timesteps", "6",
                 "--set", "lr=1e6", "--json"])
    assert code == 2
    err = capsys.readouterr().err
    assert "diverged in epoch 1" in err and "lr 1e+06" in err


def test_more_samples_than_the_data_set_has_is_a_note(capsys):
    assert main(["train", "--rule", "fa", "--target", "numpy", "--hidden", "8", "--samples",
                 "20", "--test-samples", "100000", "--json"]) == 0
    captured = capsys.readouterr()
    assert "--test-samples 100000: mnist has 10000 images" in captured.err
    assert json.loads(captured.out)["test_samples"] == 10000


@pytest.mark.parametrize("argv, fragment", [
    (["train", "--rule", "fa", "--samples", "0"], "--samples must be an integer >= 1"),
    (["train", "--rule", "fa", "--samples", "-5"], "--samples must be an integer >= 1"),
    (["train", "--rule", "fa", "--batch-size", "0"], "--batch-size must be an integer >= 1"),
    (["train", "--rule", "fa", "--out", "/"], "--out /: is a folder"),
    (["train", "--rule", "fa", "--out", "/no/such/dir/ck.h5"], "folder /no/such/dir does not"),
    (["train", "--rule", "nosuchrule"], "no built-in rule 'nosuchrule'"),
    (["train", "--rule", "fa", "--set", "lr"], "--set 'lr': expected NAME=NUMBER"),
    (["train", "--rule", "fa", "--set", "nope=1"], "declares no global 'nope'"),
    (["train"], "train needs --rule NAME"),
    (["train", "--rule", "fa", "--lr-decay", "-1"], "--lr-decay is the step size's factor"),
    (["train", "--rule", "fa", "--lr-decay", "nan"], "must be a positive number"),
    (["check", "/no/such.rule"], "does not exist"),
])
def test_bad_values_name_their_flag_and_exit_2(argv, fragment, capsys):
    assert main(argv) == 2
    assert fragment in capsys.readouterr().err


@pytest.mark.parametrize("sig, code, word", [(signal.SIGINT, 130, "interrupted"),
                                             (signal.SIGTERM, 143, "terminated")])
def test_an_error_while_stopping_after_a_signal_still_ends_as_the_signal(sig, code, word,
                                                                         capsys):
    """A stop that needs its workers killed (an error raised after Ctrl-C) is the signal's
    ending, with the error as a note, not exit 2 (seen under load: Lava's stop timed out)."""
    import argparse

    from neurolocal.app.console import run
    from neurolocal.errors import NeurolocalError

    def command(args):
        try:
            os.kill(os.getpid(), sig)
            time.sleep(1)
        except (KeyboardInterrupt, BaseException):  # the stop path swallows the signal...
            pass
        raise NeurolocalError("Lava failed to stop cleanly")  # ...and then fails

    def parser():
        p = argparse.ArgumentParser()
        p.set_defaults(func=command, command="train")
        return p

    assert run(parser, []) == code
    err = capsys.readouterr().err
    assert "note: Lava failed to stop cleanly" in err and word in err

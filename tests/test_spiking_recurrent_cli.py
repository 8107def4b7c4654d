"""The CLI with recurrent layers on the spiking targets: end to end, and hostile inputs."""

from __future__ import annotations

import json

import pytest

from neurolocal.app.cli import main
from neurolocal.checkpoint import load_checkpoint

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
SMALL = ["--samples", "40", "--test-samples", "20", "--timesteps", "4"]


def test_train_on_snntorch_writes_json_and_a_checkpoint_that_continues(tmp_path, capsys):
    pytest.importorskip("snntorch")
    out = tmp_path / "rnn.h5"
    assert main(["train", "--rule", "dfa-rnn", "--recurrent", "12", "--dataset", "copy-5",
                 "--spiking", "--target", "snntorch", *SMALL, "--out", str(out),
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["mode"] == "spiking" and result["target"] == "snntorch"
    assert result["spiking"]["learning_epochs"] == 5 and result["timesteps"] == 20
    assert set(result["update_angles"]) == {"W1", "W2", "R1"}
    assert result["test_samples"] == 20  # scored on exactly the 20 test sequences asked for
    correct = result["test_accuracy"] * 20 / 100
    assert correct == pytest.approx(round(correct)) and 0 <= round(correct) <= 20
    net, meta = load_checkpoint(out)
    assert sorted(net.recurrent) == [1] and meta["spiking"]["learning_epochs"] == 5
    assert main(["train", "--init", str(out), "--dataset", "copy-5", "--spiking", "--target",
                 "snntorch", "--samples", "20", "--test-samples", "10", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["timesteps"] == 20 and again["rule"] == "dfa-rnn"  # E = 4 from the checkpoint
    # export would drop R: refused by name, nothing written
    assert main(["export", str(out), "--out", str(tmp_path / "rnn.nir")]) == 2
    assert "recurrent (R)" in capsys.readouterr().err
    assert not (tmp_path / "rnn.nir").exists()


def test_leak_sets_the_current_decay_per_sequence_step(capsys):
    pytest.importorskip("snntorch")
    assert main(["train", "--rule", "dfa-rnn", "--recurrent", "8", "--leak", "0.5",
                 "--dataset", "copy-5", "--spiking", *SMALL, "--json"]) == 0
    du = json.loads(capsys.readouterr().out)["spiking"]["du"]
    assert (1 - du) ** 4 == pytest.approx(0.5)


@pytest.mark.parametrize("args,match", [
    (["--rule", "dfa", "--recurrent", "8", "--dataset", "copy-5", "--spiking"],
     "rule dfa has no time statements"),
    (["--rule", "dfa-rnn", "--recurrent", "8", "--dataset", "copy-5", "--spiking", "--target",
      "lava"], "on R: dw (line 24): the lava target does not lower recurrent rules"),
    (["--rule", "bptt", "--allow-nonlocal", "--recurrent", "8", "--dataset", "copy-5",
      "--spiking"], "feedback T = future.delta -> err (line 18) reads the next step"),
    (["--rule", "dfa-rnn", "--recurrent", "8", "--dataset", "copy-5", "--spiking",
      "--timesteps", "2"], "too short for a network with 2 layers"),
    (["--rule", "dfa-rnn", "--recurrent", "8", "--dataset", "copy-5", "--spiking",
      "--timesteps", "0"], "--timesteps must be an integer >= 1"),
    (["--rule", "dfa-rnn", "--recurrent", "8", "--dataset", "copy-5", "--spiking",
      "--optimiser", "adam"], "synapse-local optimiser"),
    (["--rule", "dfa-rnn", "--recurrent", "8", "--dataset", "copy-5", "--spiking",
      "--leak", "1.0"], "leak"),
])
def test_hostile_inputs_get_exit_2_and_a_message_naming_the_input(args, match, capsys):
    pytest.importorskip("snntorch")
    assert main(["train", *args, "--samples", "20", "--test-samples", "10"]) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err

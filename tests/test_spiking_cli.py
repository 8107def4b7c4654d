"""CLI smoke tests: ``compile --target snntorch|brian2`` and ``train --spiking --json``."""

import json

import pytest

from neurolocal.app.cli import main

pytest.importorskip("snntorch")
pytest.importorskip("brian2")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning",
                                        "ignore::UserWarning")


@pytest.mark.parametrize("target, needle", [
    ("snntorch", "def update_W(pre, post, syn, g, n):"),
    ("brian2", "nl_W1.run_regularly('''"),
])
def test_compile_prints_the_generated_program(capsys, target, needle):
    assert main(["compile", "--rule", "dfa", "--target", target]) == 0
    out = capsys.readouterr().out
    assert needle in out
    assert "dw = -lr * post.delta * pre.r" in out
    assert "r      = k1*tr1" in out and "window" in out  # the symbol mapping is printed


def test_compile_refuses_what_cannot_lower(capsys):
    assert main(["compile", "--rule", "brsf", "--target", "brian2", "--allow-nonlocal"]) == 2
    assert "'resample' redraws" in capsys.readouterr().err
    assert main(["compile", "--rule", "ar", "--target", "brian2"]) == 0  # relax (issue 12)
    assert "relax settle: 30 Euler steps" in capsys.readouterr().out
    assert main(["compile", "--rule", "bp", "--target", "snntorch"]) == 2
    assert main(["compile", "--rule", "bp", "--target", "snntorch", "--allow-nonlocal"]) == 0
    assert "weight transport" in capsys.readouterr().out


def test_train_spiking_json_on_snntorch(capsys):
    code = main(["train", "--rule", "dfa", "--spiking", "--target", "snntorch",
                 "--samples", "300", "--hidden", "40", "--timesteps", "6",
                 "--batch-size", "20", "--set", "lr=0.2", "--json"])
    assert code == 0
    res = json.loads(capsys.readouterr().out)
    for key in ("rule", "test_accuracy", "epochs", "seconds", "target"):
        assert key in res
    assert res["rule"] == "dfa" and res["target"] == "snntorch" and res["epochs"] == 1
    assert 0.0 <= res["test_accuracy"] <= 100.0


def test_train_spiking_on_brian2_through_the_target_registry(monkeypatch):
    from neurolocal.app.training import TrainConfig, train

    monkeypatch.setenv("NEUROLOCAL_BRIAN2_CODEGEN", "numpy")
    res = train(TrainConfig(rule="dfa", target="brian2", hidden=[20], batch_size=1, limit=60,
                            test_limit=60, timesteps=5, globals={"lr": 0.05}),
                progress=False).to_dict()
    assert res["target"] == "brian2" and res["codegen"] == "numpy"
    assert res["rule"] == "dfa" and 0.0 <= res["test_accuracy"] <= 100.0
    json.dumps(res)


def test_bad_spiking_input_is_a_clear_error(capsys):
    assert main(["train", "--rule", "dfa", "--spiking", "--target", "snntorch",
                 "--timesteps", "0", "--samples", "10", "--json"]) == 2
    assert "timesteps" in capsys.readouterr().err


def test_train_spiking_cli_flags_reach_brian2(capsys):
    code = main(["train", "--rule", "dfa", "--spiking", "--target", "brian2",
                 "--codegen", "numpy", "--samples", "30", "--test-samples", "25",
                 "--hidden", "20", "--timesteps", "5", "--set", "lr=0.05", "--json"])
    assert code == 0
    res = json.loads(capsys.readouterr().out)
    assert res["codegen"] == "numpy" and res["batch_size"] == 1
    assert res["samples"] == 30 and res["test_samples"] == 25


def test_adam_on_a_spiking_target_is_refused_not_replaced(capsys):
    code = main(["train", "--rule", "dfa", "--spiking", "--target", "snntorch",
                 "--optimiser", "adam", "--samples", "10", "--json"])
    assert code == 2
    err = capsys.readouterr().err
    assert "adam" in err.lower() and "sgd or momentum" in err

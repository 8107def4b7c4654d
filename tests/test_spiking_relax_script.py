"""benchmarks/spiking_relax.py: verdicts from the rows, and an interrupted run continues."""

from __future__ import annotations

import json

import pytest
import spiking_relax


def _row(acc):
    return {"test_accuracy": acc, "history": [{"test_accuracy": acc}], "wall_seconds": 1.0}


def test_full_table_verdicts_follow_each_rules_target():
    table = spiking_relax.full_table({"ar": _row(97.49), "pc": _row(97.0),
                                      "dyninv": {"rule": "dyninv", "diverged": "x"}})
    lines = {line.split(" | ")[0][2:]: line for line in table.splitlines()[2:]}
    assert "**missed**" in lines["ar"]  # 97.49 < 97.5
    assert "| met |" in lines["pc"]  # 97.0 >= 97.0
    assert "diverged" in lines["dyninv"] and "**missed**" in lines["dyninv"]


def test_deep_table_compares_with_bp_of_the_same_run():
    table = spiking_relax.deep_table({"bp": _row(97.8), "ar": _row(96.8), "pc": _row(96.79)})
    lines = {line.split(" | ")[0][2:]: line for line in table.splitlines()[2:]}
    assert "reference" in lines["bp"]
    assert "| met |" in lines["ar"] and "-1.00" in lines["ar"]
    assert "**missed**" in lines["pc"]


def test_rows_already_in_the_json_are_not_run_again(tmp_path, monkeypatch):
    out = tmp_path / "relax.json"
    out.write_text(json.dumps({"deep": {"bp": _row(90.0), "ar": _row(89.5)}}))
    ran = []
    monkeypatch.setattr(spiking_relax, "_train", lambda a, rule, hidden: (
        ran.append((rule, hidden)) or _row(88.0)))
    assert spiking_relax.main(["--sections", "deep", "--json", str(out)]) == 0
    assert ran == [("pc", [256, 256])]
    saved = json.loads(out.read_text())
    assert saved["deep"]["pc"]["test_accuracy"] == 88.0 and "command" in saved
    with pytest.raises(SystemExit, match="unknown"):
        spiking_relax.main(["--sections", "fulll"])

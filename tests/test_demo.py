"""`neurolocal demo --quick`: the main job runs end to end and prints its table."""

import re
import subprocess
import sys


def test_quick_demo_prints_verdicts_and_a_result_table():
    proc = subprocess.run([sys.executable, "-m", "neurolocal", "demo", "--quick"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert re.search(r"bp\s+NOT LOCAL\s+weight-transport", out)
    assert re.search(r"kp\s+LOCAL", out)
    rows = {m.group(1): float(m.group(2)) for m in
            re.finditer(r"^rate\s+(\w+)\s+torch \(rate\)\s+\w+\s+([\d.]+)", out, re.M)}
    assert set(rows) >= {"bp", "fa"}
    # 10,000 images, one epoch: measured bp 93.9 %, fa 90.7 %
    assert rows["bp"] > 88 and rows["fa"] > 85
    # online spiking DFA, 200 images once, 784-100-10, T = 20: one row per spiking target
    # (measured snntorch 61.0 %, brian2 49.0 %, lava fixed_pt 47.5 %; chance 10 %)
    spiking = {m.group(1): float(m.group(2)) for m in
               re.finditer(r"^spiking\s+dfa\s+(snntorch|brian2|lava)\S*(?: \(\w+\)| fixed_pt)?"
                           r"\s+yes\s+([\d.]+)", out, re.M)}
    assert set(spiking) == {"snntorch", "brian2", "lava"}, out
    assert all(acc > 25 for acc in spiking.values()), spiking

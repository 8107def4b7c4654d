"""``neurolocal demo``: the main job end to end, in a few minutes on two cores.

Checks every built-in rule's locality, trains the same MLP on MNIST with local rules
and with backprop, learns online with DFA on every spiking target (snntorch, Brian2, Lava
fixed_pt: one rule description, three generated programs), converts the FA-trained network
to a spiking one and runs it on every target, and prints one table. The spiking targets
are the registry's.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

COLUMNS = ("stage", "rule", "target", "local", "test acc %", "seconds", "note")


def _table(rows: list[dict]) -> str:
    cells = [[str(r.get(c, "")) for c in COLUMNS] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(COLUMNS)]
    line = "  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths))
    out = [line, "-" * len(line)]
    out += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(out)


def run_demo(quick: bool = False) -> int:
    import torch

    from neurolocal.locality import check_locality
    from neurolocal.rules import builtin_names, get_rule

    from .training import TrainConfig, train

    torch.set_num_threads(max(1, torch.get_num_threads()))
    t_start = time.perf_counter()
    print("== 1. locality of every built-in rule ==")
    verdicts = {}
    for name in builtin_names():
        rep = check_locality(get_rule(name))
        verdicts[name] = rep.local
        kinds = ", ".join(sorted({v.kind for v in rep.violations})) or "no violations"
        print(f"  {name:<9} {'LOCAL    ' if rep.local else 'NOT LOCAL'}  {kinds}")
    print("\n  the checker's full report for the demo's rule (fa):")
    print("    " + check_locality(get_rule("fa")).to_text().replace("\n", "\n    "))

    epochs = 1 if quick else 3
    samples = 10000 if quick else None
    rules = ["bp", "fa", "dfa", "kp"] if not quick else ["bp", "fa"]
    print(f"\n== 2. train 784-500-10 on MNIST, {epochs} epoch(s), Adam, same budget ==")
    rows = []
    workdir = Path(tempfile.mkdtemp(prefix="neurolocal-demo-"))
    context: dict = {"checkpoints": {}, "workdir": workdir}
    for name in rules:
        ckpt = workdir / f"{name}.h5"
        res = train(TrainConfig(rule=name, epochs=epochs, limit=samples, out=str(ckpt),
                                allow_nonlocal=not verdicts[name]), progress=True)
        context["checkpoints"][name] = ckpt
        angle = res.update_angles.get("W1")
        rows.append({"stage": "rate", "rule": name, "target": "torch (rate)",
                     "local": "yes" if verdicts[name] else "no",
                     "test acc %": f"{res.test_accuracy:.2f}", "seconds": f"{res.seconds:.1f}",
                     "note": f"update vs BP gradient, layer 1: {angle:.1f} deg"})
    for stage in (spiking_stage, conversion_stage):
        rows += stage(quick, context)
    shutil.rmtree(workdir, ignore_errors=True)
    print("\n== results ==")
    print(_table(rows))
    print(f"\n(total {time.perf_counter() - t_start:.0f} s; full figures: make bench)")
    sys.stdout.flush()
    return 0


def conversion_stage(quick: bool, context: dict) -> list[dict]:
    """Convert the FA-trained rate network to a spiking one and run it on every target."""
    from neurolocal.converters.api import convert

    ckpt = context["checkpoints"].get("fa")
    if ckpt is None:
        return []
    print("\n== 4. convert the FA-trained network to spiking IF neurons (T=32) ==")
    rows = []
    plan = (("snntorch", 200 if quick else 1000), ("lava", 20 if quick else 100),
            ("brian2", 10 if quick else 50))
    for target, n_eval in plan:
        res = convert(str(ckpt), timesteps=32, target=target, n_eval=n_eval)
        ann, snn = 100 * res.ann_accuracy, 100 * res.snn_accuracy
        print(f"  {target}: ANN {ann:.1f}% -> SNN {snn:.1f}% on "
              f"{n_eval} test images, {res.synops_per_inference:.0f} synops/inference")
        rows.append({"stage": "convert", "rule": "fa", "target": target + (
            " fixed_pt" if target == "lava" else ""), "local": "yes",
            "test acc %": f"{snn:.2f}", "seconds": f"{res.seconds:.1f}",
            "note": f"ANN {ann:.2f}% on the same {n_eval} images, T=32"})
    return rows


def spiking_stage(quick: bool, context: dict) -> list[dict]:
    """Online spiking DFA on every spiking target: same subset, budget, lr and seed."""
    from neurolocal.hardware.base import spiking_targets

    from .training import TrainConfig, train

    samples, test_samples = (200, 200) if quick else (1000, 1000)
    print(f"\n== 3. online spiking DFA on every spiking target: 784-100-10, T=20, batch 1, "
          f"{samples} training / {test_samples} test images ==")
    rows = []
    for target in spiking_targets():
        if target == "lava:floating_pt":
            continue  # the demo shows the chip's bit-accurate model; floating_pt is in docs
        cfg = TrainConfig(rule="dfa", target=target, hidden=[100], epochs=1, batch_size=1,
                          limit=samples, test_limit=test_samples, timesteps=20,
                          globals={"lr": 0.02},
                          codegen=("numpy" if quick else None) if target == "brian2" else None)
        res = train(cfg, progress=False).to_dict()
        acc = res["test_accuracy"]
        print(f"  {target}: {acc:.1f}% after one online pass ({res['seconds']:.1f} s)")
        label = f"brian2 ({res.get('codegen', '')})" if target == "brian2" else target
        rows.append({"stage": "spiking", "rule": "dfa", "target": label, "local": "yes",
                     "test acc %": f"{acc:.2f}", "seconds": f"{res['seconds']:.1f}",
                     "note": f"online, {samples} images once; chance 10%"})
    return rows

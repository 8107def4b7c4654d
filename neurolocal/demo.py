"""``neurolocal demo``: the main job end to end, in a few minutes on two cores.

Checks every built-in rule's locality, trains the same MLP on MNIST with local rules
and with backprop, and prints one table. Later stages (spiking targets, conversion)
add their rows through :data:`EXTRA_STAGES`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

#: further demo stages: each returns table rows (dicts with the columns below)
EXTRA_STAGES: list[Callable[[bool], list[dict]]] = []

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

    from .locality import check_locality
    from .rules import builtin_names, get_rule
    from .train import TrainConfig, train

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
    for name in rules:
        res = train(TrainConfig(rule=name, epochs=epochs, limit=samples,
                                allow_nonlocal=not verdicts[name]), progress=True)
        angle = res.update_angles.get("W1")
        rows.append({"stage": "rate", "rule": name, "target": "torch (rate)",
                     "local": "yes" if verdicts[name] else "no",
                     "test acc %": f"{res.test_accuracy:.2f}", "seconds": f"{res.seconds:.1f}",
                     "note": f"update vs BP gradient, layer 1: {angle:.1f} deg"})
    for stage in EXTRA_STAGES:
        rows += stage(quick)
    print("\n== results ==")
    print(_table(rows))
    print(f"\n(total {time.perf_counter() - t_start:.0f} s; full figures: make bench)")
    sys.stdout.flush()
    return 0

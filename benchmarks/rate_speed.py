"""Rate-mode speed: the generated program against FA/DFA/KP loops written by hand, and autograd.

For each row (net, batch, threads, optimiser) and rule (fa, dfa, kp) it times one training
step of

- ``hand``: the rule as an expert writes it, plain matrix products, no autograd, a torch
  optimiser (``benchmarks/handwritten/rate_loops.py``; checked to compute the generated
  program's update by ``tests/test_rate_speed_baselines.py``);
- ``runner``: the rate runner that ``neurolocal train`` runs (the fused program, torch's
  fused optimiser kernels called directly);
- ``local_rule``: the same net as a user's ``nn.Sequential`` wrapped by
  :func:`neurolocal.torch.local_rule`, with ``zero_grad`` / cross-entropy / ``backward`` /
  ``step`` of the same torch optimiser as ``hand``;
- ``autograd``: backprop through torch autograd on the same net and optimiser;

interleaved (every contender once per round, ``--repeats`` rounds, best of them), and
prints generated / hand-written ratios (>= 1: the generated program is at least as fast).
Then, for one rule per row, where the time goes (torch.profiler: GEMMs, the optimiser
kernel, other kernels, the rest = Python and dispatch) and how close a step comes to this
machine's limit: the step's FLOPs over the GEMM throughput measured for the step's own
matrix shapes, plus the optimiser kernel alone.

    python benchmarks/rate_speed.py                  # the three rows, about 5 min
    python benchmarks/rate_speed.py --rows 1 --repeats 3 --no-profile   # a quick look
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from handwritten.rate_loops import STEPS  # noqa: E402

from neurolocal.hardware.rate import Optimiser, RateRunner  # noqa: E402
from neurolocal.network import build_mlp  # noqa: E402
from neurolocal.rule import FORWARD  # noqa: E402
from neurolocal.rules import get_rule  # noqa: E402

#: (sizes, batch, threads, optimiser) of the issue's table
ROWS = {1: ([784, 500, 10], 50, 1, "adam"),
        2: ([784, 500, 500, 10], 100, 2, "momentum"),
        3: ([784, 500, 500, 10], 100, 2, "adam")}
RULES = ("fa", "dfa", "kp")
ADAM_LR = 3e-3


def torch_optimiser(kind: str, params: list, lr_sgd: float = 1.0):
    """The optimiser every contender but ``runner`` steps with (fused kernels)."""
    if kind == "adam":
        return torch.optim.Adam(params, ADAM_LR, fused=True)
    return torch.optim.SGD(params, lr_sgd, momentum=0.9, fused=True)


def _data(sizes, batch, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, sizes[0], generator=g)
    labels = torch.randint(0, sizes[-1], (batch,), generator=g)
    return x, labels, torch.eye(sizes[-1])[labels]


def sequential(sizes) -> torch.nn.Sequential:
    mods = []
    for k in range(1, len(sizes)):
        mods.append(torch.nn.Linear(sizes[k - 1], sizes[k]))
        if k < len(sizes) - 1:
            mods.append(torch.nn.ReLU())
    return torch.nn.Sequential(*mods)


def copy_into(model: torch.nn.Sequential, net) -> torch.nn.Sequential:
    """The network's forward weights into the Linear layers of ``model``."""
    linears = [m for m in model if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for k, lin in enumerate(linears, start=1):
            w = torch.as_tensor(net.state[FORWARD][k]["w"])
            lin.weight.copy_(w[:, :-1])
            lin.bias.copy_(w[:, -1])
    return model


def hand_tensors(net, rule: str):
    """W, b, B as separate contiguous tensors, the hand-written loops' layout."""
    depth = len(net.sizes) - 1
    W = [torch.tensor(net.state[FORWARD][k]["w"][:, :-1]).contiguous()
         for k in range(1, depth + 1)]
    b = [torch.tensor(net.state[FORWARD][k]["w"][:, -1]).contiguous()
         for k in range(1, depth + 1)]
    B = [torch.tensor(net.state["B"][k]["w"]) for k in range(1, depth)]
    return W, b, B


def contenders(rule_name: str, sizes, batch, kind) -> dict:
    """name -> a function running one training step."""
    from neurolocal.torch import local_rule

    rule = get_rule(rule_name)
    x, labels, onehot = _data(sizes, batch)
    lr, wd = rule.scalar_globals()["lr"], rule.scalar_globals().get("wd", 0.0)
    out = {}

    W, b, B = hand_tensors(build_mlp(sizes, rule), rule_name)
    hopt = torch_optimiser(kind, W + b + (B if rule_name == "kp" else []))
    step = STEPS[rule_name]
    if rule_name == "kp":
        out["hand"] = lambda: step(W, b, B, x, onehot, lr, wd, hopt)
    else:
        out["hand"] = lambda: step(W, b, B, x, onehot, lr, hopt)

    runner = RateRunner(build_mlp(sizes, rule), backend="torch")
    ropt = Optimiser(kind, lr=ADAM_LR if kind == "adam" else 1.0)
    out["runner"] = lambda: runner.step(x, onehot, ropt)

    model = local_rule(copy_into(sequential(sizes), build_mlp(sizes, rule)), rule)
    lopt = torch_optimiser(kind, list(model.parameters()))

    def wrapped():
        lopt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), labels).backward()
        lopt.step()

    out["local_rule"] = wrapped
    return out


def autograd_step(sizes, batch, kind):
    x, labels, _ = _data(sizes, batch)
    model = sequential(sizes)
    opt = torch_optimiser(kind, list(model.parameters()), lr_sgd=0.01)

    def step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), labels).backward()
        opt.step()

    return step


def _time(fn, steps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - t0) / steps


def measure(fns: dict, steps: int, repeats: int) -> dict[str, float]:
    """Best seconds per step of each function, interleaved round by round."""
    for fn in fns.values():
        for _ in range(3):
            fn()
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for name, fn in fns.items():
            best[name] = min(best[name], _time(fn, steps))
    return best


# --------------------------------------------------------------------------------------------
# Where the time goes, and how close to the machine's limit


def _categories(fn, steps: int = 20, tries: int = 5) -> dict[str, float]:
    """Seconds per step by category, from torch.profiler's self times (the quickest of
    ``tries`` profiled runs: on a shared machine the others caught someone else's load)."""
    from torch.profiler import ProfilerActivity, profile

    for _ in range(5):
        fn()
    best = None
    for _ in range(tries):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            t0 = time.perf_counter()
            for _ in range(steps):
                fn()
            wall = (time.perf_counter() - t0) / steps
        if best is None or wall < best[0]:
            best = (wall, prof)
    wall, prof = best
    cats = {"GEMM": 0.0, "optimiser kernel": 0.0, "optimiser Python": 0.0, "other kernels": 0.0}
    for ev in prof.key_averages():
        name, us = ev.key, ev.self_cpu_time_total / steps * 1e-6
        if name in ("aten::mm", "aten::addmm", "aten::addmm_", "aten::bmm",
                    "aten::convolution_backward", "aten::mkldnn_convolution"):
            cats["GEMM"] += us
        elif name.startswith(("aten::_fused_adam", "aten::_fused_sgd", "aten::_foreach")):
            cats["optimiser kernel"] += us
        elif name.startswith("Optimizer."):
            cats["optimiser Python"] += us
        elif name.startswith("aten::"):
            cats["other kernels"] += us
    cats["Python, dispatch, autograd"] = max(wall - sum(cats.values()), 0.0)
    cats["step (profiled)"] = wall
    return cats


def gemm_shapes(rule: str, sizes, batch) -> list[tuple[int, int, int]]:
    """(m, k, n) of every matrix product of one step of ``rule`` (KP: dB = dW^T, shared)."""
    shapes = [(batch, sizes[k], sizes[k + 1]) for k in range(len(sizes) - 1)]  # forward
    shapes += [(sizes[k + 1], batch, sizes[k]) for k in range(len(sizes) - 1)]  # dW
    for k in range(1, len(sizes) - 1):  # feedback deliveries into hidden layer k
        src = sizes[-1] if rule == "dfa" else sizes[k + 1]
        shapes.append((batch, src, sizes[k]))
    return shapes


def machine_limit(rule: str, sizes, batch, kind, steps: int = 20, tries: int = 15) -> dict:
    """The step's FLOPs, the GEMMs' own time at this machine's measured throughput, and the
    optimiser kernel's time alone: the floor a step cannot go below on this machine (each
    the best of ``tries``)."""
    gemm_s, flops = 0.0, 0
    for m, k, n in gemm_shapes(rule, sizes, batch):
        a, b = torch.rand(m, k), torch.rand(k, n)
        t = min(_time(lambda a=a, b=b: a @ b, steps) for _ in range(tries))
        gemm_s += t
        flops += 2 * m * k * n
    params = [torch.zeros(sizes[k + 1], sizes[k] + 1) for k in range(len(sizes) - 1)]
    if rule == "kp":
        params += [torch.zeros(sizes[k], sizes[k + 1]) for k in range(1, len(sizes) - 1)]
    grads = [torch.full_like(p, 1e-3) for p in params]
    opt = Optimiser(kind, lr=ADAM_LR if kind == "adam" else 1.0)
    from neurolocal.hardware.rate.binding import kernel_step
    ks = kernel_step(opt, params, grads)
    opt_s = min(_time(ks.step, steps) for _ in range(tries))
    big = torch.rand(1024, 1024)
    peak = max(2 * 1024 ** 3 / _time(lambda: big @ big, 3) for _ in range(tries))
    return {"gflop_per_step": flops / 1e9, "gemm_seconds": gemm_s, "optimiser_seconds": opt_s,
            "floor_seconds": gemm_s + opt_s, "gemm_gflops": flops / gemm_s / 1e9,
            "peak_gflops_1024": peak / 1e9}


# --------------------------------------------------------------------------------------------


def run_row(row: int, args) -> dict:
    sizes, batch, threads, kind = ROWS[row]
    torch.set_num_threads(threads)
    fns = {"autograd": autograd_step(sizes, batch, kind)}
    for rule in args.rules:
        for name, fn in contenders(rule, sizes, batch, kind).items():
            fns[f"{rule}/{name}"] = fn
    best = measure(fns, args.steps, args.repeats)
    out = {"sizes": sizes, "batch": batch, "threads": threads, "optimiser": kind,
           "seconds": best, "ratios": {}}
    for rule in args.rules:
        h = best[f"{rule}/hand"]
        out["ratios"][rule] = {"runner": h / best[f"{rule}/runner"],
                               "local_rule": h / best[f"{rule}/local_rule"],
                               "hand_vs_autograd": best["autograd"] / h}
    if args.profile:
        rule = args.rules[0]
        out["profile_rule"] = rule
        out["profile"] = {name: _categories(fns[f"{rule}/{name}"]) for name in
                          ("hand", "runner", "local_rule")}
        out["profile"]["autograd"] = _categories(fns["autograd"])
        out["limit"] = {r: machine_limit(r, sizes, batch, kind) for r in args.rules}
    return out


def _print_row(row: int, res: dict, rules) -> None:
    net = "-".join(map(str, res["sizes"]))
    print(f"\nrow {row}: {net}, batch {res['batch']}, {res['threads']} thread(s), "
          f"{res['optimiser']}")
    print(f"  {'rule':<5} {'hand us':>8} {'runner us':>9} {'local_rule us':>13}  "
          f"{'runner/hand':>11} {'local_rule/hand':>15} {'hand/autograd':>13}")
    s = res["seconds"]
    for rule in rules:
        r = res["ratios"][rule]
        print(f"  {rule:<5} {s[rule + '/hand'] * 1e6:>8.0f} {s[rule + '/runner'] * 1e6:>9.0f} "
              f"{s[rule + '/local_rule'] * 1e6:>13.0f}  {r['runner']:>10.2f}x "
              f"{r['local_rule']:>14.2f}x {r['hand_vs_autograd']:>12.2f}x")
    print(f"  autograd backprop: {s['autograd'] * 1e6:.0f} us")
    if "profile" in res:
        print(f"  where the time goes ({res['profile_rule']}, us per step, torch.profiler):")
        cats = list(next(iter(res["profile"].values())))
        widths = [len(c) + 2 for c in cats]
        print("    " + f"{'':<12}" + "".join(f"{c:>{w}}" for c, w in zip(cats, widths)))
        for name, c in res["profile"].items():
            print("    " + f"{name:<12}" + "".join(f"{c[k] * 1e6:>{w}.0f}"
                                                 for k, w in zip(cats, widths)))
        for rule, lim in res["limit"].items():
            step = min(s[f"{rule}/runner"], s[f"{rule}/local_rule"], s[f"{rule}/hand"])
            print(f"  {rule}: {lim['gflop_per_step']:.3f} GFLOP/step; its GEMMs alone "
                  f"{lim['gemm_seconds'] * 1e6:.0f} us ({lim['gemm_gflops']:.0f} GFLOP/s; "
                  f"1024^2 GEMM {lim['peak_gflops_1024']:.0f} GFLOP/s), optimiser kernel "
                  f"{lim['optimiser_seconds'] * 1e6:.0f} us: floor "
                  f"{lim['floor_seconds'] * 1e6:.0f} us = {lim['floor_seconds'] / step:.0%} "
                  f"of the fastest step ({step * 1e6:.0f} us)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=list(ROWS), choices=list(ROWS))
    ap.add_argument("--rules", nargs="+", default=list(RULES), choices=list(RULES))
    ap.add_argument("--repeats", type=int, default=5, help="rounds; the best is kept")
    ap.add_argument("--steps", type=int, default=30, help="training steps per timing")
    ap.add_argument("--no-profile", dest="profile", action="store_false")
    ap.add_argument("--json", help="write every number to this file")
    args = ap.parse_args(argv)
    results = {}
    for row in args.rows:
        results[row] = run_row(row, args)
        _print_row(row, results[row], args.rules)
    misses = [(row, rule, path, r[path]) for row, res in results.items()
              for rule, r in res["ratios"].items() for path in ("runner", "local_rule")
              if r[path] < 1.0]
    print("\ntarget generated/hand >= 1.00: " + ("met on every row" if not misses else
          "missed: " + "; ".join(f"row {row} {rule} {path} {v:.2f}x"
                                 for row, rule, path, v in misses)))
    print("command: python benchmarks/rate_speed.py " + " ".join(argv or sys.argv[1:]))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

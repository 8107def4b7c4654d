"""Stress the rule language: every text must get a verdict or a NeurolocalError, fast.

Fuzzes rule texts (random mutations of the built-in rules, rule-shaped texts generated
from the grammar's pieces, and the hostile cases of issue #10), runs each through
``parse_rule`` + ``check_locality`` in this process with a per-case time limit
(``signal.setitimer``), and prints what came out: verdicts, RuleSyntaxError, other
NeurolocalError, other exceptions (tracebacks, must be 0) and cases over the limit
(must be 0). Then it times parsing of 1,000 to 8,000 update lines, which must scale
linearly. Exits 1 if any case raised something else or ran over the limit.

    python benchmarks/stress_rules.py [--cases 10000] [--seed 0] [--json FILE]

Imports only the rule language (no hardware backends).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import signal
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from neurolocal.errors import NeurolocalError, RuleSyntaxError  # noqa: E402
from neurolocal.locality import check_locality  # noqa: E402
from neurolocal.parser import parse_rule  # noqa: E402
from neurolocal.rules import builtin_names, builtin_text  # noqa: E402

SYMBOLS = ["pre.r", "pre.x1", "pre.s", "pre.err", "post.r", "post.err", "post.dphi", "post.a",
           "post.y1", "post.delta", "syn.w", "syn.e", "next.err", "output.err", "lateral.r",
           "glob.lr", "lr", "pre.r@forward", "post.err@mirror", "prev.r", "err", "r", "a"]
NUMBERS = ["0", "1", "2", "0.5", "3", "1e-3", "1e300", "1e-300", "1e301", "9" * 40, "9" * 41,
           "1e999", "1" + "0" * 120, "1e" + "9" * 5000, "0.0\u00b9", "\uff10.\uff10\uff11",
           "1e+300", ".5", "1.", "3e", "64", "65", "1.5e-30", "0" * 60 + "1", "2.5", "7"]
FUNCTIONS = ["exp", "log", "tanh", "sigmoid", "relu", "step", "sign", "abs", "sqrt", "min",
             "max", "slow", "transpose", "bogus"]
OPERATORS = ["+", "-", "*", "/", "**", "^"]
#: Odd pieces a mutation inserts: unicode digits and letters, controls, operators, limits.
PIECES = ["\u00b9", "\uff10", "\u0661", "\u00e9", "\u2028", "\x0c", "\x0b", "\x00", "\t", "\r",
          "(", ")", "((((", "))", "**64", " ** 65", "1e999", "9" * 50, "@", ":", "->", ",", "#",
          '"', "=", " on W: dw = ", "\non W: dw = ", "\nglobal ", "\nneuron ", " via ",
          "transpose(W)", "sign(W)", "random", "exp(", "log(0)", "1/0", "0**-1", "sqrt(-1)",
          "**(syn.w + 64)", "exp(70*log(2))", "-" * 30, "**" * 20, "pre.r", "post.err"]


class CaseTimeout(BaseException):
    """Raised by the interval timer; a BaseException so no ``except Exception`` eats it."""


def _on_alarm(signum, frame):
    raise CaseTimeout()


# -- grammar-aware generation -------------------------------------------------------------
def gen_expr(rng: random.Random, depth: int = 0) -> str:
    """A random expression from the grammar's pieces, sometimes hostile."""
    roll = rng.random()
    if depth > 4 or roll < 0.3:
        return rng.choice(SYMBOLS if rng.random() < 0.6 else NUMBERS)
    if roll < 0.5:
        return f"{gen_expr(rng, depth + 1)} {rng.choice(OPERATORS)} {gen_expr(rng, depth + 1)}"
    if roll < 0.6:
        return f"({gen_expr(rng, depth + 1)})"
    if roll < 0.7:
        args = ", ".join(gen_expr(rng, depth + 1) for _ in range(rng.choice([1, 1, 2, 3])))
        return f"{rng.choice(FUNCTIONS)}({args})"
    if roll < 0.8:
        summands = " + ".join(rng.sample(SYMBOLS[:11], rng.randint(2, 6)))
        exponent = rng.choice(["2", "3", "8", "16", "64", "65", "-3", "0.5", "5/2", "syn.w",
                               "(syn.w + 64)", "((post.r + 1)**2 - post.r**2 - 2*post.r + 63)"])
        return f"({summands})**{exponent}"
    if roll < 0.85:
        return rng.choice("+-") + gen_expr(rng, depth + 1)
    if roll < 0.9:
        n = rng.choice([10, 63, 64, 65, 200])
        return "(" * n + gen_expr(rng, depth + 1) + ")" * n
    if roll < 0.95:
        return "**".join(rng.choice(NUMBERS[:5]) for _ in range(rng.choice([3, 64, 66, 500])))
    n = rng.choice([5, 50, 500])
    return rng.choice([" + ", " * "]).join(rng.choice(SYMBOLS[:11] + NUMBERS[:8])
                                           for _ in range(n))


def gen_rule(rng: random.Random) -> str:
    """A rule-shaped text: header, declarations, equations and updates."""
    lines = ["rule fuzz"]
    if rng.random() < 0.9:
        lines.append(f"global lr = {rng.choice(NUMBERS)}")
    if rng.random() < 0.4:
        lines.append(f"feedback B = next.{rng.choice(['err', 'delta', 'r'])} -> err via "
                     f"{rng.choice(['random', 'transpose(W)', 'sign(transpose(W))', 'W'])}")
    if rng.random() < 0.3:
        lines.append(f"phase {rng.choice(['mirror', 'forward'])} = "
                     f"{rng.choice(['noise(sigma=1)', 'hold()', 'relax(steps=3, rate=0.5)'])}")
    for _ in range(rng.randint(0, 2)):
        lines.append(f"{rng.choice(['neuron', 'output'])} {rng.choice(['delta', 'err', 'g'])} "
                     f"= {gen_expr(rng)}")
    for _ in range(rng.randint(1, 3)):
        proj = rng.choice(["W", "W", "B"])
        var = rng.choice(["dw", "dw", "de"])
        lines.append(f"on {proj}: {var} = {gen_expr(rng)}")
    return "\n".join(lines) + "\n"


# -- mutations of the built-in rules -------------------------------------------------------
def mutate(rng: random.Random, text: str) -> str:
    """One to three random edits of a rule text."""
    for _ in range(rng.randint(1, 3)):
        lines = text.split("\n")
        op = rng.randrange(8)
        pos = rng.randrange(len(text) + 1)
        if op == 0:
            text = text[:pos] + text[pos + rng.randint(1, 12):]
        elif op == 1:
            text = text[:pos] + rng.choice(PIECES) + text[pos:]
        elif op == 2:
            text = text[:pos] + rng.choice(NUMBERS) + text[pos:]
        elif op == 3:
            k = rng.randrange(len(lines))
            lines.insert(k, lines[k])
            text = "\n".join(lines)
        elif op == 4:
            text = text.replace(rng.choice(SYMBOLS[:11]), rng.choice(SYMBOLS), 1)
        elif op == 5:
            text = text[:pos]
        elif op == 6:
            text += f"\non W: dw = {gen_expr(rng)}\n"
        else:
            text = text.replace(" = ", f" = ({gen_expr(rng)})**{rng.choice(['2', '64'])} * ", 1)
    return text


def hostile_cases() -> list[str]:
    """The cases of issue #10, verbatim."""
    head = "rule x\nglobal lr = 1\n"
    return [
        head + "on W: dw = -lr * (pre.r + post.r + pre.x1 + post.err + syn.w)**64\n",
        "rule x\nglobal lr = 1e" + "9" * 5000 + "\n",
        head + "on W: dw = lr * " + "**".join(["1"] * 10000) + "\n",
        head + "on W: dw = lr * 0.0\u00b9\n",
        head + "on W: dw = lr * \uff10.\uff10\uff11\n",
    ]


def generate(n: int, seed: int) -> list[tuple[str, str]]:
    """``n`` (kind, text) cases: the hostile ones, then mutations and generated rules."""
    rng = random.Random(seed)
    sources = [builtin_text(name) for name in builtin_names()]
    cases = [("hostile", t) for t in hostile_cases()]
    cases += [("builtin", t) for t in sources]
    while len(cases) < n:
        if rng.random() < 0.5:
            cases.append(("mutation", mutate(rng, rng.choice(sources))))
        else:
            cases.append(("grammar", gen_rule(rng)))
    return cases[:n]


# -- running -------------------------------------------------------------------------------
def run_case(text: str, limit: float) -> tuple[str, float, str]:
    """(outcome, seconds, detail) of parse_rule + check_locality under a time limit."""
    t0 = time.perf_counter()
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        report = check_locality(parse_rule(text))
        outcome, detail = ("local" if report.local else "not local"), ""
    except CaseTimeout:
        outcome, detail = "timeout", ""
    except RuleSyntaxError as exc:
        outcome, detail = "RuleSyntaxError", str(exc).split("\n")[0][:300]
    except NeurolocalError as exc:
        outcome, detail = f"other NeurolocalError ({type(exc).__name__})", str(exc)[:300]
    except Exception:  # noqa: BLE001 - this is what the stress test counts
        outcome, detail = "traceback", traceback.format_exc()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    return outcome, time.perf_counter() - t0, detail


def scaling_text(n: int) -> str:
    """A rule with ``n`` update lines, each with its own synaptic state variable."""
    lines = ["rule scale", "global lr = 0.01"]
    lines += [f"on W: de{i} = lr * pre.r * post.err - 0.5 * syn.e{i}" for i in range(n)]
    return "\n".join(lines) + "\n"


def scaling(sizes=(1000, 2000, 4000, 8000), repeats: int = 3) -> list[dict]:
    """Parse time (best of ``repeats``: the machine is shared) and check time per size."""
    rows = []
    for n in sizes:
        text = scaling_text(n)
        parse_s = math.inf
        for _ in range(repeats):
            t0 = time.perf_counter()
            rule = parse_rule(text)
            parse_s = min(parse_s, time.perf_counter() - t0)
        t0 = time.perf_counter()
        check_locality(rule)
        rows.append({"lines": n, "parse_s": parse_s, "parse_s_per_line": parse_s / n,
                     "check_s": time.perf_counter() - t0})
    return rows


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=float, default=2.0, help="seconds per case")
    ap.add_argument("--json", type=Path, help="save the summary and every failure here")
    ap.add_argument("--no-scaling", action="store_true", help="skip the parse-time rows")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGALRM, _on_alarm)

    counts: Counter[str] = Counter()
    by_kind: Counter[str] = Counter()
    times, failures = [], []
    slowest = (0.0, "")
    for kind, text in generate(args.cases, args.seed):
        outcome, seconds, detail = run_case(text, args.limit)
        counts[outcome] += 1
        by_kind[f"{kind}: {outcome}"] += 1
        times.append(seconds)
        if seconds > slowest[0]:
            slowest = (seconds, text[:300])
        if outcome in ("traceback", "timeout") or seconds > args.limit:
            failures.append({"kind": kind, "outcome": outcome, "seconds": seconds,
                             "text": text[:2000], "detail": detail})
    over = sum(1 for f in failures if f["outcome"] == "timeout" or f["seconds"] > args.limit)
    other_errors = sum(v for k, v in counts.items() if k.startswith("other NeurolocalError"))
    rows = [("cases", len(times)), ("verdict local", counts["local"]),
            ("verdict not local", counts["not local"]),
            ("RuleSyntaxError", counts["RuleSyntaxError"]),
            ("other NeurolocalError", other_errors),
            ("other exceptions (tracebacks)", counts["traceback"]),
            (f"cases over {args.limit:g} s", over),
            ("max time", f"{max(times):.3f} s"), ("p99 time", f"{percentile(times, 0.99):.3f} s")]
    print(f"stress_rules: seed {args.seed}, limit {args.limit:g} s per case")
    for name, value in rows:
        print(f"  {name:<32} {value:>10}")
    print(f"  slowest case ({slowest[0]:.3f} s): {slowest[1][:120]!r}")
    for f in failures[:10]:
        print(f"\nFAILED ({f['outcome']}, {f['seconds']:.2f} s, {f['kind']}): {f['text'][:200]!r}")
        print(f["detail"][-1500:])

    scale = [] if args.no_scaling else scaling()
    if scale:
        print("\nparse-time scaling (one update per line; parse: best of 3)")
        print(f"  {'lines':>6} {'parse s':>9} {'s/line':>10} {'check s':>9}")
        for r in scale:
            print(f"  {r['lines']:>6} {r['parse_s']:>9.3f} {r['parse_s_per_line']:>10.2e} "
                  f"{r['check_s']:>9.3f}")
    if args.json:
        args.json.write_text(json.dumps({
            "seed": args.seed, "limit_s": args.limit, "counts": dict(counts),
            "by_kind": dict(by_kind), "over_limit": over, "max_s": max(times),
            "p99_s": percentile(times, 0.99), "scaling": scale, "failures": failures},
            indent=2))
    return 1 if counts["traceback"] or over else 0


if __name__ == "__main__":
    sys.exit(main())

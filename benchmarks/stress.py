"""The hostile-user stress run (``make stress``): every count in its table must be 0.

    python benchmarks/stress.py [--sections rules,cli,interrupts,kill9,corrupt,modes]
                                [--rule-cases 10000 --kill-trials 50 --seed 0 --json FILE]

* ``rules``: fuzzed rule texts (``stress_rules.py``): tracebacks and cases over 2 s;
* ``cli``: bad invocations of the command line (wrong flags, values out of range, missing,
  empty, binary and foreign files): tracebacks, internal errors (exit 3), wrong exit codes;
* ``interrupts``: SIGINT to the group, SIGTERM and SIGKILL during Lava training: runs not
  ended within 10 s, processes left behind;
* ``kill9``: ``kill -9`` in the middle of checkpoint writes: files lost, corrupt or older
  than the last write that was reported done, and temporaries a later write leaves;
* ``corrupt``: flipped, truncated, zeroed and padded checkpoints: loads that accept other
  data than what was written;
* ``modes``: output files against the umask (0644 at umask 022, 0600 at 077).

Exits 1 if any count is not 0.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(HERE))

SECTIONS = ("rules", "cli", "interrupts", "kill9", "corrupt", "modes")
CLI = [sys.executable, "-m", "neurolocal"]


# -- rules --

def rules(args) -> dict:
    import stress_rules

    folder = Path(tempfile.mkdtemp(prefix="neurolocal-stress-"))
    out = folder / "rules.json"
    code = stress_rules.main(["--cases", str(args.rule_cases), "--seed", str(args.seed),
                              "--json", str(out), "--no-scaling"])
    res = json.loads(out.read_text())
    counts = res["counts"]
    return {"cases": sum(counts.values()), "verdicts": counts.get("local", 0) +
            counts.get("not local", 0), "tracebacks": int(counts.get("traceback", 0)),
            "over 2 s": int(res["over_limit"]), "max seconds": round(res["max_s"], 3),
            "script exit": code}


# -- cli --

def _files(folder: Path) -> dict[str, Path]:
    """Foreign and broken inputs a user might hand the tool."""
    files = {"empty": folder / "empty.h5", "text": folder / "notes.txt",
             "binary": folder / "random.bin", "json": folder / "result.json",
             "png": folder / "plot.png", "dir": folder / "a_folder"}
    files["empty"].write_bytes(b"")
    files["text"].write_text("not a network\n" * 10)
    files["binary"].write_bytes(np.random.default_rng(0).bytes(4096))
    files["json"].write_text(json.dumps({"test_accuracy": 97.0}))
    files["png"].write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    files["dir"].mkdir(exist_ok=True)
    import h5py
    with h5py.File(folder / "other_tool.h5", "w") as fh:
        fh.create_dataset("weights", data=np.ones((3, 3)))
    files["h5"] = folder / "other_tool.h5"
    return files


def bad_invocations(f: dict[str, Path]) -> list[list[str]]:
    """At least 45 invocations that must end with exit 2 and a message, never a traceback."""
    tr = ["train", "--rule", "fa", "--hidden", "8", "--samples", "20", "--test-samples", "10"]
    bad = [
        ["--bogus"], ["nosuchcommand"], ["train"], ["train", "--rule"],
        ["train", "--rule", "nosuchrule"], ["train", "--rule", str(f["binary"])],
        ["train", "--rule", str(f["empty"])], ["train", "--rule", str(f["dir"])],
        [*tr, "--samples", "0"], [*tr, "--samples", "-5"], [*tr, "--samples", "abc"],
        [*tr, "--samples", "1e99"], [*tr, "--test-samples", "0"], [*tr, "--epochs", "0"],
        [*tr, "--epochs", "-1"], [*tr, "--epochs", "nan"], [*tr, "--hidden", "0"],
        [*tr, "--hidden", "-4"], [*tr, "--hidden", "x"], [*tr, "--batch-size", "0"],
        [*tr, "--target", "nosuch"], [*tr, "--target", "lava:nope"],
        [*tr, "--set", "lr"], [*tr, "--set", "lr=abc"], [*tr, "--set", "nope=1"],
        [*tr, "--set", "lr=nan"], [*tr, "--set", "lr=inf"], [*tr, "--out", "/"],
        [*tr, "--out", "/no/such/dir/ck.h5"], [*tr, "--init", "/no/such/ck.h5"],
        [*tr, "--init", str(f["text"])], [*tr, "--init", str(f["empty"])],
        [*tr, "--init", str(f["binary"])], [*tr, "--init", str(f["h5"])],
        [*tr, "--init", str(f["dir"])], [*tr, "--dataset", "nosuch"],
        [*tr, "--spiking", "--target", "numpy"], [*tr, "--spiking", "--timesteps", "0"],
        [*tr, "--spiking", "--timesteps", "-3"], [*tr, "--lr-decay", "-1"],
        ["check", "/no/such.rule"], ["check", str(f["binary"])], ["check", str(f["empty"])],
        ["check", str(f["dir"])], ["compile", "--rule", "dfa", "--target", "nosuch"],
        ["compile", "--rule", "nosuch", "--target", "lava"],
        ["run", "/no/such.nir"], ["run", str(f["text"])], ["run", str(f["binary"])],
        ["run", str(f["h5"])], ["run", str(f["json"])], ["run", str(f["empty"])],
        ["export", "/no/such/ck.h5", "--out", str(f["dir"] / "x.nir")],
        ["export", str(f["h5"]), "--out", str(f["dir"] / "x.nir")],
        ["convert", "--model", "/no/such.pt"], ["convert", "--model", str(f["text"])],
        ["convert", "--model", str(f["binary"])], ["convert", "--model", str(f["png"])],
        ["rules", "--bogus"],
    ]
    return bad


def cli(args) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="neurolocal-stress-cli-"))
    invocations = bad_invocations(_files(folder))
    env = dict(os.environ, NEUROLOCAL_LOG_DIR=str(folder / "logs"), PYTHONDONTWRITEBYTECODE="1")
    tracebacks, internal, wrong, slow, rows = 0, 0, 0, 0, []
    for argv in invocations:
        t0 = time.perf_counter()
        try:
            res = subprocess.run([*CLI, *argv], capture_output=True, text=True, timeout=120,
                                 env=env, cwd=folder)
            code, err = res.returncode, res.stderr
        except subprocess.TimeoutExpired:
            code, err = "timeout", ""
        took = time.perf_counter() - t0
        tb = "Traceback (most recent call last)" in err
        tracebacks += tb
        internal += code == 3
        wrong += code != 2
        slow += took > 60
        if tb or code != 2:
            rows.append({"argv": argv, "code": code, "stderr": err[-300:]})
    return {"invocations": len(invocations), "tracebacks": tracebacks,
            "internal errors (exit 3)": internal, "exit code not 2": wrong,
            "over 60 s": slow, "failures": rows}


# -- interrupts --

def interrupts(args) -> dict:
    from support.processes import interrupt_when_running

    cmd = [*CLI, "train", "--rule", "dfa", "--spiking", "--target", "lava", "--samples", "300",
           "--test-samples", "20", "--timesteps", "10", "--hidden", "30"]
    plan = [(signal.SIGINT, True, 130)] * 4 + [(signal.SIGTERM, False, 143)] * 3 + \
        [(signal.SIGKILL, False, -9)] * 3
    rng = random.Random(args.seed)
    late, left, wrong, trials = 0, 0, 0, []
    for sig, group, code in plan:
        res = interrupt_when_running(cmd, sig, group=group, min_procs=6,
                                     extra_wait=rng.uniform(0, 3))
        late += res["seconds"] >= 10
        left += res["left"]
        wrong += res["code"] != code
        trials.append({"signal": signal.Signals(sig).name, "code": res["code"],
                       "seconds": round(res["seconds"], 2), "left": res["left"]})
    return {"trials": len(plan), "not ended within 10 s": late, "processes left": left,
            "wrong exit code": wrong, "max seconds": max(t["seconds"] for t in trials),
            "runs": trials}


# -- kill -9 during writes --

WRITER = """
import sys
from neurolocal.checkpoint import save_checkpoint
from neurolocal.network import build_mlp
from neurolocal.rule import FORWARD
from neurolocal.rules import get_rule
net = build_mlp([784, 500, 10], get_rule("dfa"), seed=0)
i = int(sys.argv[2])
while True:
    i += 1
    net.state[FORWARD][1]["w"][0, 0] = float(i)
    save_checkpoint(sys.argv[1], net, meta={"counter": i})
    print(i, flush=True)
"""


def kill9(args) -> dict:
    from neurolocal.checkpoint import load_checkpoint
    from neurolocal.rule import FORWARD

    folder = Path(tempfile.mkdtemp(prefix="neurolocal-stress-kill-"))
    path = folder / "run.nlck"
    rng = random.Random(args.seed)
    lost = corrupt = older = 0
    done = 0
    for _ in range(args.kill_trials):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(done)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = proc.stdout.readline()  # one write is done: the file must exist from now on
        if not first:
            raise RuntimeError("the checkpoint writer failed before its first write: "
                               + proc.communicate()[1][-1000:])
        time.sleep(rng.uniform(0.0, 0.4))
        proc.send_signal(signal.SIGKILL)
        rest, _ = proc.communicate()
        reported = [int(x) for x in (first + rest).split()]
        last = max(reported) if reported else done
        if not path.exists():
            lost += 1
            continue
        try:
            net, meta = load_checkpoint(path)
        except Exception:  # noqa: BLE001 - counted: a checkpoint that does not load
            corrupt += 1
            continue
        counter = int(meta["counter"])
        if counter < last or float(net.state[FORWARD][1]["w"][0, 0]) != counter:
            older += 1
        done = max(counter, last)
    # a later write removes the temporaries kill -9 left
    subprocess.run([sys.executable, "-c", WRITER.replace("while True:", "for _ in [0]:"),
                    str(path), str(done)], capture_output=True, timeout=120)
    stale = len([p for p in folder.iterdir() if p.name != path.name])
    return {"trials": args.kill_trials, "lost": lost, "corrupt": corrupt,
            "older than reported": older, "temporaries left after the next write": stale}


# -- corrupt files --

def corrupt(args) -> dict:
    from neurolocal.checkpoint import load_checkpoint, save_checkpoint
    from neurolocal.errors import NeurolocalError
    from neurolocal.network import build_mlp
    from neurolocal.rules import get_rule

    folder = Path(tempfile.mkdtemp(prefix="neurolocal-stress-corrupt-"))
    good = folder / "good.nlck"
    net = build_mlp([20, 10, 3], get_rule("dfa"), seed=0)
    save_checkpoint(good, net, meta={"note": "original"})
    data = good.read_bytes()
    rng = np.random.default_rng(args.seed)
    accepted_other = refused = same = 0
    unclear: list[str] = []
    for i in range(args.corrupt_cases):
        b = bytearray(data)
        kind = i % 4
        if kind == 0:  # flip bytes
            for pos in rng.integers(0, len(b), int(rng.integers(1, 4))):
                b[pos] ^= int(rng.integers(1, 256))
        elif kind == 1:  # truncate
            b = b[:int(rng.integers(0, len(b)))]
        elif kind == 2:  # zero a block
            a, n = int(rng.integers(0, len(b))), int(rng.integers(1, 512))
            b[a:a + n] = bytes(len(b[a:a + n]))
        else:  # junk appended
            b += rng.bytes(int(rng.integers(1, 256)))
        bad = folder / f"bad{i}.nlck"
        bad.write_bytes(bytes(b))
        try:
            got, meta = load_checkpoint(bad)
        except NeurolocalError:  # refused with a message, as it should be
            refused += 1
            continue
        except Exception as exc:  # noqa: BLE001 - counted: refused, but not with a message
            unclear.append(f"bad{i}.nlck: {type(exc).__name__}: {exc}"[:200])
            continue
        identical = meta.get("note") == "original" and all(
            np.array_equal(got.state[p][k][v], net.state[p][k][v])
            for p in net.state for k in net.state[p] for v in net.state[p][k])
        same += identical
        accepted_other += not identical
        bad.unlink()
    return {"cases": args.corrupt_cases, "refused": refused,
            "accepted, data intact (bytes HDF5 does not read)": same,
            "accepted with other data": accepted_other,
            "refused by an exception that is not NeurolocalError": len(unclear),
            "failures": unclear[:10]}


# -- file modes --

def modes(args) -> dict:
    from neurolocal.checkpoint import save_checkpoint
    from neurolocal.network import build_mlp
    from neurolocal.rules import get_rule

    folder = Path(tempfile.mkdtemp(prefix="neurolocal-stress-modes-"))
    net = build_mlp([20, 10, 3], get_rule("dfa"), seed=0)
    wrong = 0
    seen = {}
    for umask, want in ((0o022, 0o644), (0o077, 0o600), (0o002, 0o664)):
        old = os.umask(umask)
        try:
            path = save_checkpoint(folder / f"ck{umask:o}.nlck", net)
        finally:
            os.umask(old)
        mode = path.stat().st_mode & 0o777
        seen[f"umask {umask:03o}"] = f"{mode:04o}"
        wrong += mode != want
    return {"files": len(seen), "mode not 0666 & ~umask": wrong, **seen}


# -- main --

CHECKS = {"rules": ("tracebacks", "over 2 s", "script exit"),
          "cli": ("tracebacks", "internal errors (exit 3)", "exit code not 2", "over 60 s"),
          "interrupts": ("not ended within 10 s", "processes left", "wrong exit code"),
          "kill9": ("lost", "corrupt", "older than reported",
                    "temporaries left after the next write"),
          "corrupt": ("accepted with other data",
                      "refused by an exception that is not NeurolocalError"),
          "modes": ("mode not 0666 & ~umask",)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/stress.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sections", default=",".join(SECTIONS))
    p.add_argument("--rule-cases", type=int, default=10000)
    p.add_argument("--kill-trials", type=int, default=50)
    p.add_argument("--corrupt-cases", type=int, default=400)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the results to this file")
    args = p.parse_args(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        p.error(f"--sections: unknown {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    print("command: python benchmarks/stress.py " + " ".join(argv if argv is not None
                                                       else sys.argv[1:]), flush=True)
    results, failed = {}, False
    for name in sections:
        t0 = time.perf_counter()
        results[name] = res = globals()[name](args)
        res["seconds"] = round(time.perf_counter() - t0, 1)
        print(f"\n{name} ({res['seconds']} s)")
        for key, value in res.items():
            if isinstance(value, (int, float, str)):
                bad = key in CHECKS[name] and value != 0
                failed |= bad
                print(f"  {key:<48} {value}{'   <-- must be 0' if bad else ''}")
        for row in res.get("failures", []):
            print(f"    {row}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    print("\nall counts 0" if not failed else "\nSOME COUNTS ARE NOT 0")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

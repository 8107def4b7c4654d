"""Counting the processes a command leaves behind: everything in its session (Linux /proc)."""

from __future__ import annotations

import os
import signal
import subprocess
import time


def session_processes(sid: int) -> list[int]:
    """Live (non-zombie) processes whose session id is ``sid``."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[3]) == sid and fields[0] != "Z":
            out.append(int(pid))
    return out


def interrupt_when_running(cmd: list[str], sig: int, *, group: bool, min_procs: int = 5,
                           start_timeout: float = 60.0, extra_wait: float = 0.0,
                           env: dict | None = None) -> dict:
    """Start ``cmd`` in its own session, wait until it has ``min_procs`` processes (Lava's
    workers are up), send ``sig`` (to the group: as Ctrl-C does), and report the exit code,
    the seconds it took to exit and how many of its processes are left 10 s later."""
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=env)
    deadline = time.time() + start_timeout
    peak = 0
    while time.time() < deadline and proc.poll() is None:
        peak = max(peak, len(session_processes(proc.pid)))
        if peak >= min_procs:
            break
        time.sleep(0.05)
    time.sleep(extra_wait)
    t0 = time.time()
    if proc.poll() is None:
        (os.killpg if group else os.kill)(proc.pid, sig)
    try:
        code = proc.wait(30)
    except subprocess.TimeoutExpired:
        code = "hung"
        proc.kill()
    took = time.time() - t0
    deadline = time.time() + 10
    while session_processes(proc.pid) and time.time() < deadline:
        time.sleep(0.1)
    left = session_processes(proc.pid)
    for pid in left:  # never leave them to the next test
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    return {"code": code, "seconds": took, "peak": peak, "left": len(left), "stderr": stderr}

"""Forked worker processes (Lava's, Brian2's evaluation shards): they stop with the run,
and die with their parent.

Lava forks one process per process model, a runtime service and a shared-memory manager;
batched Brian2 evaluation forks one process per shard of the images. Three things go wrong
without care: Ctrl-C reaches every process of the terminal's process group, so workers die
half-way while the parent waits for their replies (the run hangs); a parent killed outright
leaves its workers running (about 400 MB each); and a second signal during clean-up
interrupts the clean-up itself. So, while a session is open (:func:`guarded`):

* every process forked from here ignores SIGINT (the parent stops them) and asks the kernel
  to kill it when its parent dies (Linux ``PR_SET_PDEATHSIG``), checking that the parent is
  still there after asking;
* stopping is bounded: Lava's own ``stop()`` gets :data:`STOP_TIMEOUT` seconds, with SIGINT
  and SIGTERM held until it is done (then delivered), and any worker still alive is killed.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator

STOP_TIMEOUT = 3.0  #: seconds Lava's stop() may take before its workers are killed
_PR_SET_PDEATHSIG = 1

_HELD = (signal.SIGINT, signal.SIGTERM)
_state: dict = {"active": False, "parent": None, "pending": [], "saved": None}


def _record(signum, frame) -> None:
    _state["pending"].append(signum)


def _before_fork() -> None:
    """SIGINT and SIGTERM are recorded, not acted on, across a fork (Python would raise them
    inside the fork hooks of threading/logging, which swallow them): a child inherits the
    recorder, so it cannot die before it ignores Ctrl-C, and the parent re-raises them after.
    """
    if _state["active"] and threading.current_thread() is threading.main_thread():
        _state["saved"] = {s: signal.signal(s, _record) for s in _HELD}


def _in_parent() -> None:
    if _state["saved"] is not None:
        for s, handler in _state["saved"].items():
            signal.signal(s, handler)
        _state["saved"] = None


def _in_child() -> None:
    """Run in every process forked while a session is open (``os.register_at_fork``)."""
    if _state["saved"] is None:
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _state.update(saved=None, active=False, pending=[])
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))
        if os.getppid() != _state["parent"]:  # the parent died before prctl took effect
            os._exit(1)


os.register_at_fork(before=_before_fork, after_in_parent=_in_parent, after_in_child=_in_child)


def raise_pending() -> None:
    """A signal that arrived while Lava forked its workers takes effect now."""
    pending, _state["pending"] = _state["pending"], []
    for s in dict.fromkeys(pending):
        signal.raise_signal(s)


@contextlib.contextmanager
def guarded() -> Iterator[set]:
    """While open, forked workers ignore SIGINT and die with this process; yields the
    processes that existed before (so :func:`stop_bounded` knows which are Lava's)."""
    before = set(multiprocessing.active_children())
    _state.update(active=True, parent=os.getpid(), pending=[])
    try:
        yield before
    finally:
        _state["active"] = False


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the clean-up is done, then take effect (main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    old = {s: signal.signal(s, lambda signum, frame: pending.append(signum))
           for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        for s in dict.fromkeys(pending):
            signal.raise_signal(s)  # delivered now, to the handler that was there before


def stop_bounded(stop: Callable[[], None], before: set, timeout: float = STOP_TIMEOUT
                 ) -> BaseException | None:
    """Call Lava's ``stop``; kill whatever it leaves running after ``timeout`` s.

    Returns the exception ``stop`` raised, if any (the workers are gone either way).
    """
    errors: list[BaseException] = []

    def run() -> None:
        try:
            stop()
        except BaseException as exc:  # noqa: BLE001 - returned after the workers are gone
            errors.append(exc)

    with _signals_held():
        worker = threading.Thread(target=run, name="lava-stop", daemon=True)
        worker.start()
        worker.join(timeout)
        leftovers = [p for p in multiprocessing.active_children() if p not in before]
        for proc in leftovers:
            # the base class's join/kill: Lava's SystemProcess.join takes no timeout
            with contextlib.suppress(Exception):
                multiprocessing.Process.join(proc, 0.2 if worker.is_alive() else 1.0)
                if proc.is_alive():
                    multiprocessing.Process.kill(proc)
                    multiprocessing.Process.join(proc, 1.0)
    if worker.is_alive():
        return TimeoutError(f"Lava's stop() did not return within {timeout:g} s; its workers "
                            "were killed")
    return errors[0] if errors else None

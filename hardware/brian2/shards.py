"""Batched Brian2 evaluation on several cores: contiguous shards of the images, one forked
worker each, every worker with its own network of copies.

Why processes: Brian2's runtime device runs one thread, and building a network of copies
(connecting millions of synapses, preparing their spike queues) is as much of the time as
running it, so both parallelise only across processes. Each image's input draw and dynamics
are its own, so per-image results do not depend on the split (tests check counts equal).
Workers are forked under :func:`..workers.guarded`: they ignore Ctrl-C (the parent stops
them) and die with the parent.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from typing import Any

from neurolocal.errors import NeurolocalError

from ..workers import guarded

#: fewest images per worker worth a process (its fork, code objects and spike queues)
MIN_SHARD = 250


def worker_count(n: int, requested: int | None) -> int:
    """Workers for ``n`` images: ``requested``, or (None) one per core with at least
    :data:`MIN_SHARD` images each; 1 where processes cannot be forked."""
    if requested is not None:
        if isinstance(requested, bool) or int(requested) != requested or requested < 1:
            raise NeurolocalError(f"workers must be an integer >= 1, got {requested!r}")
    if "fork" not in multiprocessing.get_all_start_methods():
        return 1  # (Windows) the workers are forks of this process
    if requested is not None:
        return int(min(requested, n))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        (os.cpu_count() or 1)
    return max(1, min(cores, n // MIN_SHARD))


def bounds(n: int, workers: int) -> list[tuple[int, int]]:
    """``workers`` contiguous shards of ``range(n)``, sizes differing by at most one."""
    edges = [n * k // workers for k in range(workers + 1)]
    return [(lo, hi) for lo, hi in zip(edges, edges[1:]) if hi > lo]


def _child(fn: Callable[[int, int], Any], lo: int, hi: int, conn: Any) -> None:
    try:
        reply: tuple = ("ok", fn(lo, hi))
    except BaseException as exc:  # noqa: BLE001 - re-raised in the parent
        reply = ("error", exc)
    try:
        conn.send(reply)
    except Exception as exc:  # noqa: BLE001 - an unpicklable result or exception
        conn.send(("error", NeurolocalError(f"a Brian2 worker could not send its result: "
                                            f"{exc!r}")))
    finally:
        conn.close()


def run_shards(fn: Callable[[int, int], Any], shards: list[tuple[int, int]]) -> list[Any]:
    """``[fn(lo, hi) for lo, hi in shards]``, each call in its own forked process."""
    ctx = multiprocessing.get_context("fork")
    procs: list[tuple[Any, Any]] = []
    done = False
    with guarded():
        try:
            for k, (lo, hi) in enumerate(shards):
                recv, send = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_child, args=(fn, lo, hi, send), daemon=True,
                                   name=f"neurolocal-brian2-shard-{k}")
                proc.start()
                send.close()
                procs.append((proc, recv))
            out = []
            for (proc, recv), (lo, hi) in zip(procs, shards):
                try:
                    kind, value = recv.recv()
                except EOFError:
                    proc.join(1.0)
                    raise NeurolocalError(
                        f"the Brian2 worker for images {lo}..{hi - 1} died (exit code "
                        f"{proc.exitcode}; killed for memory?); pass workers=1 or a smaller "
                        "batch_size") from None
                if kind == "error":
                    raise value
                out.append(value)
            done = True
            return out
        finally:
            for proc, recv in procs:
                if done:  # each has sent its result: let it exit
                    proc.join(2.0)
                if proc.is_alive():
                    proc.kill()
                proc.join(1.0)
                recv.close()

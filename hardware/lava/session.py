"""The one Lava lifecycle: compile, start, run in chunks, stop in bounded time.

Every Lava graph of the project (learning graphs, converted inference, the hand-written
baselines) is started and stopped here: compile and run errors become
:class:`LavaGraphError`, Lava is stopped on every way out, and its workers cannot outlive
the run (:mod:`.workers`). :class:`LavaSession` stays open across calls (a learning graph that
keeps its weights between chunks of samples); :func:`session` is the one-shot form.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

from neurolocal.errors import NeurolocalError

from ..workers import guarded, raise_pending, stop_bounded


class LavaGraphError(NeurolocalError):
    """Lava could not build or run the generated graph (the message says which step)."""


def import_lava() -> None:
    """Make Lava importable on this Python (the project's compatibility hook)."""
    from .compat import ensure_lava_importable

    ensure_lava_importable()


class LavaSession:
    """A compiled, started graph of ``anchor``'s processes; :meth:`run` steps it."""

    def __init__(self, anchor: Any, tag: str, *, exceptions: dict | None = None) -> None:
        import_lava()
        from lava.magma.core.run_configs import Loihi2SimCfg

        self.anchor = anchor
        self._cfg = Loihi2SimCfg(select_tag=tag, exception_proc_model_map=exceptions or {})
        self._guard: contextlib.AbstractContextManager | None = None
        self._before: set = set()

    def start(self) -> LavaSession:
        self._guard = guarded()
        self._before = self._guard.__enter__()
        try:
            try:
                self.anchor.create_runtime(run_cfg=self._cfg)
            except Exception as exc:
                raise LavaGraphError(f"Lava failed to compile the graph "
                                     f"({type(exc).__name__}: {exc})") from exc
            raise_pending()
        except BaseException:
            self.close()
            raise
        return self

    def run(self, steps: int) -> float:
        """Run ``steps`` time steps (blocking); the seconds they took."""
        from lava.magma.core.run_conditions import RunSteps

        raise_pending()
        t0 = time.perf_counter()
        try:
            self.anchor.run(condition=RunSteps(num_steps=int(steps)))
        except Exception as exc:
            raise LavaGraphError(f"Lava failed while running the graph "
                                 f"({type(exc).__name__}: {exc})") from exc
        return time.perf_counter() - t0

    def close(self) -> BaseException | None:
        """Stop Lava (bounded); the error its stop raised, if any. Safe to call twice."""
        if self._guard is None:
            return None
        try:
            return stop_bounded(self.anchor.stop, self._before)
        finally:
            guard, self._guard = self._guard, None
            guard.__exit__(None, None, None)


@contextlib.contextmanager
def session(anchor: Any, tag: str, *, exceptions: dict | None = None
            ) -> Iterator[Callable[[int], float]]:
    """Compile and start the graph of ``anchor``; yield ``run(steps) -> seconds``; stop it.

    ``exceptions``: ``exception_proc_model_map`` of the run configuration.
    """
    live = LavaSession(anchor, tag, exceptions=exceptions).start()
    ok = False
    try:
        yield live.run
        ok = True
    finally:
        failed = live.close()
    if ok and failed is not None:
        raise LavaGraphError(f"Lava failed to stop cleanly ({type(failed).__name__}: "
                             f"{failed}); its worker processes were ended") from failed

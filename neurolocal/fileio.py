"""Atomic file writes with the user's permissions and recognisable temporary files.

Why one helper: every output neurolocal writes (NIR graphs, rule sidecars, checkpoints) must
appear complete or not at all, with the permissions any other tool would give it, and an
interrupted write must not leave anonymous debris. :func:`atomic_write` writes into
``.NAME.neurolocal-tmp-PID-SUFFIX`` beside the destination, flushes it to disk, gives it the
mode a plain ``open()`` would (``0o666 & ~umask``: 0644 under umask 022; ``mkstemp`` alone
gives 0600), and renames it over the destination. Temporary files of the same destination
left by a process that no longer runs are removed at the next write there.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path

__all__ = ["TMP_MARK", "atomic_write", "stale_temporaries", "temporary_name", "umask"]

TMP_MARK = ".neurolocal-tmp-"


def umask() -> int:
    """The process's umask (read from /proc where it can be, without changing it)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    old = os.umask(0o022)  # no /proc: the classic read-by-setting (not thread-safe)
    os.umask(old)
    return old


def temporary_name(path: Path) -> Path:
    """``.NAME.neurolocal-tmp-PID-RANDOM`` in the destination's folder."""
    return path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def stale_temporaries(path: Path) -> list[Path]:
    """Temporary files of ``path`` whose writing process has gone."""
    prefix = f".{path.name}{TMP_MARK}"
    out = []
    with contextlib.suppress(OSError):
        for p in path.parent.iterdir():
            if not p.name.startswith(prefix):
                continue
            pid = p.name[len(prefix):].split("-", 1)[0]
            if not pid.isdigit() or not _alive(int(pid)):
                out.append(p)
    return sorted(out)


def atomic_write(path: str | os.PathLike[str], write: Callable[[str], object], *,
                 mode: int | None = None) -> Path:
    """Write ``path`` atomically: ``write(tmp_path)`` fills a temporary file, then it replaces
    ``path``. ``mode`` defaults to ``0o666 & ~umask``. On any error (or Ctrl-C) the old file
    stays as it was and the temporary file is removed. Returns ``path``.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    for old in stale_temporaries(dest):
        with contextlib.suppress(OSError):
            old.unlink()
    tmp = temporary_name(dest)
    try:
        write(str(tmp))
        if not tmp.exists():
            raise FileNotFoundError(f"the writer left no file at {tmp}")
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, (0o666 & ~umask()) if mode is None else mode)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    with contextlib.suppress(OSError):  # the rename itself reaches the disk too
        folder = os.open(dest.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    return dest

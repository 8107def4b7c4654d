"""Writing output files so that a crash never leaves a half-written or mismatched one.

Every output (checkpoints, NIR graphs, result files) goes through :func:`atomic_write`: the
content is written to a temporary file beside the destination, flushed to disk, given the
permissions a plain ``open(path, "w")`` would give under the user's umask, and renamed over
the destination in one step. Temporary files carry a recognisable name,
``.NAME.neurolocal-tmp-PID-XXXX``; one left behind by a killed writer is removed the next time
anything writes to that destination.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

TMP_TAG = ".neurolocal-tmp-"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def temp_prefix(path: Path) -> str:
    return f".{path.name}{TMP_TAG}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(path: Path) -> list[Path]:
    """Temporary files of ``path`` whose writer is gone (removed; returned)."""
    gone = []
    for tmp in path.parent.glob(temp_prefix(path) + "*"):
        pid = tmp.name[len(temp_prefix(path)):].split("-", 1)[0]
        if pid.isdigit() and _alive(int(pid)) and int(pid) != os.getpid():
            continue  # another writer at work
        with contextlib.suppress(OSError):
            tmp.unlink()
            gone.append(tmp)
    return gone


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` to produce the file, then move it to ``path`` atomically."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f"{temp_prefix(path)}{os.getpid()}-", dir=folder)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # the rename itself on disk
        dirfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)
    return path

"""How a command ends: exit codes, closed pipes, signals, internal errors.

A closed stdout or stderr (``neurolocal train ... | head -c 100``) must not end an unfinished
run: output to a closed stream is discarded and the command goes on. SIGTERM is turned into
an exception so that ``finally`` blocks (stopping Lava, removing temporary files) run.
"""

from __future__ import annotations

import datetime
import os
import signal
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path

from neurolocal.errors import NeurolocalError

EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_TERMINATED = 2, 3, 130, 143


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM (a BaseException, like KeyboardInterrupt)."""


class _Discarding:
    """A text stream that becomes a sink when its reader has gone (EPIPE)."""

    def __init__(self, stream):
        self._stream, self._closed = stream, False

    def write(self, text: str) -> int:
        if not self._closed:
            try:
                return self._stream.write(text)
            except (BrokenPipeError, ValueError, OSError):
                self._closed = True
        return len(text)

    def flush(self) -> None:
        if not self._closed:
            try:
                self._stream.flush()
            except (BrokenPipeError, ValueError, OSError):
                self._closed = True

    def isatty(self) -> bool:
        return not self._closed and self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    def __getattr__(self, name):
        return getattr(self._stream, name)


#: signals seen during the command: a library that swallows the KeyboardInterrupt or
#: Terminated it raised (a clean-up handler, a callback) cannot turn the run into exit 0
_seen: set[int] = set()


def _on_sigterm(signum, frame) -> None:
    _seen.add(signal.SIGTERM)
    raise Terminated()


def _on_sigint(signum, frame) -> None:
    _seen.add(signal.SIGINT)
    raise KeyboardInterrupt


def log_dir() -> Path:
    """Where internal-error tracebacks go: ``$NEUROLOCAL_LOG_DIR`` or the temp folder."""
    return Path(os.environ.get("NEUROLOCAL_LOG_DIR") or tempfile.gettempdir())


def _report_internal(command: str, exc: BaseException, debug: bool) -> None:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    where = "above"
    if debug:
        print(text, file=sys.stderr)
    else:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = log_dir() / f"neurolocal-error-{stamp}-{os.getpid()}.log"
        try:
            path.write_text(text, encoding="utf-8")
            where = f"in {path}"
        except OSError:
            print(text, file=sys.stderr)
    print(f"neurolocal {command}: internal error ({type(exc).__name__}: {exc}); please "
          f"report it -- the traceback is {where} (or rerun with --debug)", file=sys.stderr)


def _signal_ending(command: str) -> int:
    """The exit code of a run a signal ended (SIGTERM wins over SIGINT)."""
    if signal.SIGTERM in _seen:
        print(f"neurolocal {command}: terminated", file=sys.stderr)
        return EXIT_TERMINATED
    print(f"neurolocal {command}: interrupted", file=sys.stderr)
    return EXIT_INTERRUPTED


def run(make_parser: Callable, argv: list[str]) -> int:
    """Parse ``argv`` and run the command it names; map every ending to an exit code."""
    sys.stdout, sys.stderr = _Discarding(sys.stdout), _Discarding(sys.stderr)
    previous: dict = {}
    _seen.clear()
    try:
        previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, _on_sigterm),
                    signal.SIGINT: signal.signal(signal.SIGINT, _on_sigint)}
    except ValueError:  # not the main thread (e.g. called from a test runner's worker)
        pass
    parser = make_parser()
    args = parser.parse_args(argv)
    command = getattr(args, "command", "?")
    try:
        code = int(args.func(args))
        if signal.SIGTERM in _seen:
            raise Terminated()
        if signal.SIGINT in _seen:
            raise KeyboardInterrupt
        return code
    except NeurolocalError as exc:
        if _seen:  # the error came while the run was being stopped: the stop is the ending
            print(f"neurolocal {command}: note: {exc}", file=sys.stderr)
            return _signal_ending(command)
        print(f"neurolocal {command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"neurolocal {command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated:
        print(f"neurolocal {command}: terminated", file=sys.stderr)
        return EXIT_TERMINATED
    except Exception as exc:  # noqa: BLE001 - the last line of defence, reported as internal
        _report_internal(command, exc, bool(getattr(args, "debug", False)))
        return EXIT_INTERNAL
    finally:
        sys.stdout.flush()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sys.stdout = sys.stdout._stream if isinstance(sys.stdout, _Discarding) else sys.stdout
        sys.stderr = sys.stderr._stream if isinstance(sys.stderr, _Discarding) else sys.stderr

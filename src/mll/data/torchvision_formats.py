"""Offline readers for the files torchvision's CIFAR-10, CIFAR-100 and STL-10 datasets keep on disk.

No download and no unrestricted pickle: CIFAR python batches go through `safe_unpickle`, which only
rebuilds plain containers and numpy arrays. torchvision's own dataset classes (0.29) are not used,
for reasons tests/test_torchvision_formats.py demonstrates:
- `CIFAR10`/`CIFAR100` read each batch with `pickle.load`, which runs any code a tampered batch
  carries; torchvision guards it only by the MD5 of the official downloads, so it cannot read
  anything else either (a subset, the official binary version, one batch file by itself).
- `STL10` reads with `numpy.fromfile` (safe), but its MD5 check hashes all five files, the 2.6 GB
  `unlabeled_X.bin` included, before it reads even the test split, and it loads whole files into
  memory; here images are addressed one at a time (`file#index`) from memory-mapped files.
On the same files both decode to the same pixels, labels and class names (tested).
"""

from __future__ import annotations

import codecs
import functools
import os
import pickle
import re
from pathlib import Path

import numpy as np

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct

CIFAR10_CLASSES: tuple[str, ...] = tuple(
    ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
)
STL10_CLASSES: tuple[str, ...] = tuple(
    ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
)

_CIFAR_BYTES = 3 * 32 * 32
_STL_BYTES = 3 * 96 * 96


class UnsafePickleError(ValueError):
    """A pickle asked for something other than plain data or numpy arrays."""


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """How Python 3 pickles `bytes` at protocol < 3; only the latin-1 codec is allowed."""
    if codecs.lookup(encoding).name != "iso8859-1":
        raise UnsafePickleError(f"pickle asked for codec {encoding!r}; only latin-1 is allowed")
    return text.encode("latin1")


_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class _SafeUnpickler(pickle.Unpickler):
    def __init__(self, file, path: str) -> None:
        super().__init__(file, encoding="bytes")
        self._path = path

    def find_class(self, module: str, name: str) -> object:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self._path}: refusing to load {module}.{name}; dataset pickles may only hold "
                "plain containers and numpy arrays"
            ) from None


def safe_unpickle(path: str | os.PathLike[str]) -> object:
    """Unpickle a dataset batch allowing only plain containers and numpy arrays (never arbitrary callables).

    Python 2 strings come back as bytes (`encoding="bytes"`), so keys look like b"data".
    """
    path = Path(path)
    with path.open("rb") as f:
        return _SafeUnpickler(f, str(path)).load()


def _missing(path: Path, what: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"{what} not found: expected {path}. The files must be placed there (e.g. by torchvision's "
        "download=True on a machine with internet); mll never downloads them."
    )


def _need(path: Path, what: str) -> Path:
    if not path.is_file():
        raise _missing(path, what)
    return path


def _check(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    if len(labels) != len(images):
        raise ValueError(f"{path}: {len(labels)} labels for {len(images)} images")


def _records(path: Path, record: int, mmap: bool = False) -> np.ndarray:
    """The file's bytes as (N, record) uint8 rows, checking the size is a whole number of records."""
    size = path.stat().st_size
    if size % record:
        raise ValueError(f"{path}: {size} bytes is not a multiple of the {record}-byte record size")
    if mmap and size:
        return np.memmap(path, dtype=np.uint8, mode="r").reshape(-1, record)
    return np.fromfile(path, dtype=np.uint8).reshape(-1, record)


def _cifar_images(rows: np.ndarray, path: Path) -> np.ndarray:
    if rows.ndim != 2 or rows.shape[1] != _CIFAR_BYTES:
        raise ValueError(f"{path}: image rows have shape {rows.shape}, expected (N, {_CIFAR_BYTES})")
    return rows.astype(np.uint8, copy=False).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def _text_names(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def _pickle_batch(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    d = safe_unpickle(path)
    if not isinstance(d, dict) or b"data" not in d or label_key not in d:
        raise ValueError(f"{path}: expected a dict with keys b'data' and {label_key!r}")
    images = _cifar_images(np.asarray(d[b"data"]), path)
    labels = np.asarray(d[label_key], dtype=np.int64).reshape(-1)
    _check(path, images, labels)
    return images, labels


def _bin_batch(path: Path, label_bytes: int, mmap: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rows = _records(path, label_bytes + _CIFAR_BYTES, mmap)
    labels = rows[:, label_bytes - 1].astype(np.int64)  # cifar-100: (coarse, fine) -> fine
    return _cifar_images(rows[:, label_bytes:], path), labels


def read_cifar(root: str | os.PathLike[str], kind: str, part: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(images uint8 N x 32 x 32 x 3, labels int64, class names) from torchvision's CIFAR layout.

    kind is "cifar10" or "cifar100", part "train" or "test"; the python pickles are preferred and the
    official binary version is used when they are absent.
    """
    if kind not in ("cifar10", "cifar100") or part not in ("train", "test"):
        raise ValueError(f"kind must be cifar10|cifar100 and part train|test, got {kind!r}, {part!r}")
    root = Path(root)
    ten = kind == "cifar10"
    py_dir = root / ("cifar-10-batches-py" if ten else "cifar-100-python")
    bin_dir = root / ("cifar-10-batches-bin" if ten else "cifar-100-binary")
    if ten:
        stems = [f"data_batch_{i}" for i in range(1, 6)] if part == "train" else ["test_batch"]
    else:
        stems = [part]
    if py_dir.is_dir():
        key = b"labels" if ten else b"fine_labels"
        batches = [_pickle_batch(_need(py_dir / s, f"{kind} {part} batch"), key) for s in stems]
        meta = safe_unpickle(_need(py_dir / ("batches.meta" if ten else "meta"), f"{kind} metadata"))
        raw = meta.get(b"label_names" if ten else b"fine_label_names") if isinstance(meta, dict) else None
        if raw is None:
            raise ValueError(f"{py_dir}: metadata file has no label names")
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in raw]
    elif bin_dir.is_dir():
        label_bytes = 1 if ten else 2
        what = f"{kind} {part} batch"
        batches = [_bin_batch(_need(bin_dir / f"{s}.bin", what), label_bytes) for s in stems]
        meta = bin_dir / ("batches.meta.txt" if ten else "fine_label_names.txt")
        names = _text_names(_need(meta, f"{kind} label names"))
    else:
        raise _missing(py_dir, f"{kind} folder (or its binary version {bin_dir})")
    images = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches])
    return images, labels, names


def _stl_images(path: Path, mmap: bool = False) -> np.ndarray:
    # Each image is stored column-major: (C, W, H) in C order -> transpose to (H, W, C).
    return _records(path, _STL_BYTES, mmap).reshape(-1, 3, 96, 96).transpose(0, 3, 2, 1)


def read_stl10(root: str | os.PathLike[str], part: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(images uint8 N x 96 x 96 x 3, labels int64 0..9, class names) from root/stl10_binary."""
    if part not in ("train", "test"):
        raise ValueError(f"part must be train|test, got {part!r}")
    folder = Path(root) / "stl10_binary"
    if not folder.is_dir():
        raise _missing(folder, "STL-10 folder")
    x_path = _need(folder / f"{part}_X.bin", f"STL-10 {part} images")
    y_path = _need(folder / f"{part}_y.bin", f"STL-10 {part} labels")
    images = _stl_images(x_path)
    labels = np.fromfile(y_path, dtype=np.uint8).astype(np.int64) - 1
    _check(y_path, images, labels)
    names_path = folder / "class_names.txt"
    names = _text_names(names_path) if names_path.is_file() else list(STL10_CLASSES)
    return images, labels, names


@functools.lru_cache(maxsize=8)
def _container(resolved: str) -> np.ndarray:
    """All images of one batch/bin file (binary files are memory-mapped, so this stays lazy)."""
    path = Path(resolved)
    name = path.name
    if name.endswith("_X.bin"):
        return _stl_images(path, mmap=True)
    if re.fullmatch(r"(data_batch_\d+|test_batch)\.bin", name):
        return _bin_batch(path, 1, mmap=True)[0]
    if name in ("train.bin", "test.bin"):
        return _bin_batch(path, 2, mmap=True)[0]
    if re.fullmatch(r"data_batch_\d+|test_batch", name):
        return _pickle_batch(path, b"labels")[0]
    if name in ("train", "test"):
        return _pickle_batch(path, b"fine_labels")[0]
    raise ValueError(f"{path}: not a CIFAR batch or STL-10 *_X.bin file")


def read_container_item(path: str | os.PathLike[str], index: int) -> np.ndarray:
    """One image (H x W x C uint8, a fresh copy) from a single batch/bin file by index."""
    path = Path(path)
    if not path.is_file():
        raise _missing(path, "image container")
    return np.ascontiguousarray(_container(str(path.resolve()))[index])


def read_container(path: str | os.PathLike[str]) -> np.ndarray:
    """All images of one batch/bin file as (N, H, W, 3) uint8 (lazy for binary files)."""
    path = Path(path)
    if not path.is_file():
        raise _missing(path, "image container")
    return _container(str(path.resolve()))


def cifar_files(root: str | os.PathLike[str], kind: str, part: str) -> list[tuple[Path, np.ndarray]]:
    """(batch file, labels) for each file of a CIFAR part, so images can be addressed as `file#i`."""
    root = Path(root)
    ten = kind == "cifar10"
    py_dir = root / ("cifar-10-batches-py" if ten else "cifar-100-python")
    bin_dir = root / ("cifar-10-batches-bin" if ten else "cifar-100-binary")
    stems = ([f"data_batch_{i}" for i in range(1, 6)] if part == "train" else ["test_batch"]) if ten else [part]
    if py_dir.is_dir():
        key = b"labels" if ten else b"fine_labels"
        return [(p, _pickle_batch(p, key)[1]) for p in (_need(py_dir / s, f"{kind} {part} batch") for s in stems)]
    if bin_dir.is_dir():
        lb = 1 if ten else 2
        return [
            (p, _bin_batch(p, lb, mmap=True)[1])
            for p in (_need(bin_dir / f"{s}.bin", f"{kind} {part} batch") for s in stems)
        ]
    raise _missing(py_dir, f"{kind} folder (or its binary version {bin_dir})")


def stl10_files(root: str | os.PathLike[str], part: str) -> tuple[Path, np.ndarray]:
    """(image file, labels 0..9) of an STL-10 part."""
    folder = Path(root) / "stl10_binary"
    if not folder.is_dir():
        raise _missing(folder, "STL-10 folder")
    x_path = _need(folder / f"{part}_X.bin", f"STL-10 {part} images")
    labels = np.fromfile(_need(folder / f"{part}_y.bin", f"STL-10 {part} labels"), dtype=np.uint8).astype(np.int64) - 1
    return x_path, labels

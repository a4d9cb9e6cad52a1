"""Deterministic, disjoint splits: expert_train / probe (node data) / target_test.

Datasets with an official train/test split draw `expert_train` and `probe` from train and
`target_test` from test; pooled datasets (MNIST-5k, digits) carve all three from one shuffled pool
per class; Tux Paint (about one photo per concept) goes to probe and target_test only, since it is
too small to train on. Tux Paint is split by near-duplicate group (`ImageSet.groups`: one folder's
files whose names differ by a numbering suffix, `pig_golden`/`pig_golden2`, `flower1..10`, or
identical bytes), whole groups to one side, and stratified by class: each class with two or more
groups has one in probe and one in target_test; single-group classes are split whole, by the same
probe fraction (`_split_groups`). The seed of each dataset mixes the global seed with the dataset's
name, so adding a dataset never reshuffles another.
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from mll.config import DataParams, SplitSizes
from mll.data.datasets import ImageSet

SPLITS = ("expert_train", "probe", "target_test")
COLUMNS = ["uri", "dataset", "part", "label", "class_name", "synset", "split"]


def _rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def _take(rng: np.random.Generator, idx: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    idx = rng.permutation(idx)
    return np.sort(idx[:n]), idx[n:]


def _prefix_closest(rng: np.random.Generator, units: list[np.ndarray], target: float, lo: int, hi: int):
    """Shuffle `units` (index arrays) and cut them after k in [lo, hi] units, the k whose image
    count is closest to `target` (the smaller k on a tie); returns (head, tail) index arrays."""
    order = rng.permutation(len(units))
    units = [units[i] for i in order]
    sizes = np.cumsum([0] + [len(u) for u in units])
    k = lo + int(np.argmin(np.abs(sizes[lo : hi + 1] - target)))
    cat = lambda us: np.concatenate(us) if us else np.empty(0, dtype=np.int64)  # noqa: E731
    return cat(units[:k]), cat(units[k:])


def _split_groups(ds: ImageSet, rng: np.random.Generator, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Probe and target_test indices of a dataset split by near-duplicate group and class.

    Whole groups (`ds.groups`; each image alone when None) go to one side. A group is filed under
    its most common class (the lowest index on a tie). A class with two or more groups puts at
    least one in probe and one in target_test, as close to `fraction` of its images in probe as
    whole groups allow. A class with a single group cannot be on both sides: these classes are
    pooled and split whole, `fraction` of their images to probe. Sending them all to target_test
    would shrink Tux Paint's probe from about 110 of 316 images to 28 (230 of its 257 synsets have
    one group) and leave most of its WordNet nodes without node data; as it is, a single-group
    class is either tested in target_test or gives node data in probe for its synset and every
    ancestor (tasks test at ancestors such as bird.n.01, so both sides still see its kind).
    """
    groups = np.asarray(ds.groups if ds.groups is not None else range(len(ds)))
    _, gid = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(gid == g) for g in range(gid.max() + 1)] if len(ds) else []
    home = np.array([np.bincount(ds.labels[m]).argmax() for m in members], dtype=np.int64)
    probe, test, singles = [], [], []
    for c in np.unique(home):
        units = [members[g] for g in np.flatnonzero(home == c)]
        if len(units) == 1:
            singles.append(units[0])
            continue
        n = sum(len(u) for u in units)
        head, tail = _prefix_closest(rng, units, fraction * n, 1, len(units) - 1)
        probe.append(head)
        test.append(tail)
    n = sum(len(u) for u in singles)
    head, tail = _prefix_closest(rng, singles, fraction * n, 0, len(singles))
    probe.append(head)
    test.append(tail)
    return np.sort(np.concatenate(probe)), np.sort(np.concatenate(test))


def split_dataset(ds: ImageSet, sizes: SplitSizes | None, seed: int, probe_fraction: float = 0.35) -> pd.DataFrame:
    """Assign images of `ds` to splits; returns a manifest frame (unused images are left out)."""
    rng = _rng(seed, ds.name)
    parts = np.asarray(ds.parts)
    assign: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    if sizes is None:  # photo stamps: a fraction of images becomes node data, the rest test data
        probe, test = _split_groups(ds, rng, probe_fraction)
        assign["probe"].append(probe)
        assign["target_test"].append(test)
    else:
        official = {"train", "test"} <= set(parts)
        for c in range(len(ds.class_names)):
            in_class = ds.labels == c
            if official:
                pool, test_pool = (
                    np.flatnonzero(in_class & (parts == "train")),
                    np.flatnonzero(in_class & (parts == "test")),
                )
            else:
                pool = test_pool = None
                pool = np.flatnonzero(in_class)
            tr, pool = _take(rng, pool, sizes.expert_train)
            pr, pool = _take(rng, pool, sizes.probe)
            te, _ = _take(rng, test_pool if official else pool, sizes.target_test)
            assign["expert_train"].append(tr)
            assign["probe"].append(pr)
            assign["target_test"].append(te)
    frames = []
    for split, chunks in assign.items():
        idx = np.concatenate(chunks) if chunks else np.empty(0, dtype=np.int64)
        idx = idx.astype(np.int64)
        frames.append(
            pd.DataFrame(
                {
                    "uri": [ds.uris[i] for i in idx],
                    "dataset": ds.name,
                    "part": parts[idx] if len(idx) else [],
                    "label": ds.labels[idx],
                    "class_name": [ds.class_names[ds.labels[i]] for i in idx],
                    "synset": [ds.synsets[ds.labels[i]] for i in idx],
                    "split": split,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)[COLUMNS]


def make_splits(params: DataParams, datasets: dict[str, ImageSet]) -> pd.DataFrame:
    """Split every dataset named in `params` and return one frame with a `split` column."""
    frames = []
    for name, ds in datasets.items():
        sizes = params.datasets.get(name)
        frames.append(split_dataset(ds, sizes, params.seed, params.tuxpaint_probe_fraction))
    return pd.concat(frames, ignore_index=True)


def write_manifests(frame: pd.DataFrame, out_dir: Path) -> dict[str, Path]:
    """One parquet manifest per split in `out_dir`, each written atomically."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split in SPLITS:
        path = out_dir / f"{split}.parquet"
        tmp = path.with_name(f".{path.name}.tmp")
        frame[frame["split"] == split].reset_index(drop=True).to_parquet(tmp, index=False)
        os.replace(tmp, path)
        paths[split] = path
    return paths


def read_manifest(path: Path) -> pd.DataFrame:
    """Read one split manifest (FileNotFoundError naming the stage that writes it)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path} not found; run `dvc repro data` (or `mll data split`)")
    return pd.read_parquet(path)


def summarize(frame: pd.DataFrame) -> dict:
    """Per dataset and split: number of images and classes (the `data_summary.json` metric)."""
    out: dict = {}
    for (ds, split), g in frame.groupby(["dataset", "split"], sort=True):
        out.setdefault(ds, {})[split] = {"images": len(g), "classes": int(g["synset"].nunique())}
    out["total"] = {s: int((frame["split"] == s).sum()) for s in SPLITS}
    return out


def write_summary(frame: pd.DataFrame, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summarize(frame), indent=2) + "\n")
    return path

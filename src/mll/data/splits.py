"""Deterministic, disjoint splits: expert_train / probe (node data) / target_test.

Datasets with an official train/test split draw `expert_train` and `probe` from train and
`target_test` from test; pooled datasets (MNIST-5k, digits) carve all three from one shuffled pool
per class; Tux Paint (about one photo per concept) goes to probe and target_test only, since it is
too small to train on. The seed of each dataset mixes the global seed with the dataset's name, so
adding a dataset never reshuffles another.
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


def split_dataset(ds: ImageSet, sizes: SplitSizes | None, seed: int, probe_fraction: float = 0.35) -> pd.DataFrame:
    """Assign images of `ds` to splits; returns a manifest frame (unused images are left out)."""
    rng = _rng(seed, ds.name)
    parts = np.asarray(ds.parts)
    assign: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    if sizes is None:  # photo stamps: a fraction of images becomes node data, the rest test data
        idx = rng.permutation(len(ds))
        n_probe = round(probe_fraction * len(ds))
        assign["probe"].append(np.sort(idx[:n_probe]))
        assign["target_test"].append(np.sort(idx[n_probe:]))
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

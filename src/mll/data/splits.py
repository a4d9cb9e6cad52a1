"""Deterministic, disjoint splits: expert_train / probe (node data) / target_test / final_test.

Datasets with an official train/test split draw `expert_train` and `probe` from train and
`target_test` from test; pooled datasets (MNIST-5k, digits) carve all three from one shuffled pool
per class; Tux Paint (about one photo per concept) goes to probe and target_test only, since it is
too small to train on. Tux Paint is split by near-duplicate group (`ImageSet.groups`: one folder's
files whose names differ by a numbering suffix, `pig_golden`/`pig_golden2`, `flower1..10`, or
identical bytes), whole groups to one side, and stratified by class: each class with two or more
groups has one in probe and one in target_test; single-group classes are split whole, by the same
probe fraction (`_split_groups`). The seed of each dataset mixes the global seed with the dataset's
name, so adding a dataset never reshuffles another. `final_test` (the frozen final evaluation; the
benchmark's target_test is its development data) is drawn last, per `data.final_test`, from images
no other split and no variant took.

Two more kinds of rows follow the datasets': corrupted variants (`mll.data.variants`, drawn from
what their parent's split left, so the parent's rows are the same with or without them) and
clipart (`mll.data.clipart`, split by emoji style). Every row names its `domain` (clothing, digits,
photos, clipart; a dataset outside `DOMAINS` is a domain of its own) and `style` ("" for original
images, the corruption kind of a variant, the emoji style of clipart).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mll.config import DataParams, SplitSizes
from mll.data.clipart import Clipart, assign_clipart
from mll.data.corruptions import corrupt_uri
from mll.data.datasets import ImageSet
from mll.data.sampling import SPLITS, seeded_rng, take
from mll.data.variants import split_variants, variant_name

COLUMNS = ["uri", "dataset", "part", "label", "class_name", "synset", "split", "domain", "style"]
# what a dataset's images show; tasks that hold a domain out remove every dataset of it
DOMAINS = {
    "fashion_mnist": "clothing",
    "mnist": "digits",
    "digits": "digits",
    "tuxpaint": "photos",
    "clipart": "clipart",
}


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


def assign_dataset(
    ds: ImageSet, sizes: SplitSizes | None, seed: int, probe_fraction: float = 0.35
) -> dict[str, np.ndarray]:
    """split -> indices into `ds` (unused images are in none)."""
    rng = seeded_rng(seed, ds.name)
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
            tr, pool = take(rng, pool, sizes.expert_train)
            pr, pool = take(rng, pool, sizes.probe)
            te, _ = take(rng, test_pool if official else pool, sizes.target_test)
            assign["expert_train"].append(tr)
            assign["probe"].append(pr)
            assign["target_test"].append(te)
    return {s: np.concatenate(v).astype(np.int64) if v else np.empty(0, dtype=np.int64) for s, v in assign.items()}


def manifest_frame(
    ds: ImageSet,
    assign: dict[str, np.ndarray],
    name: str | None = None,
    corruption: str = "",
    styles: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Manifest rows of `ds`'s images in `assign` (split -> indices). `name`: the dataset name to
    write (default `ds.name`); `corruption`: a kind whose variant the rows name (URIs wrapped in
    `corrupt:<kind>:`, style = the kind); `styles`: each image's style otherwise (default "")."""
    name = name or ds.name
    parts = np.asarray(ds.parts)
    domain = DOMAINS.get(ds.name, ds.name)
    frames = []
    for split in SPLITS:
        idx = assign.get(split, np.empty(0, dtype=np.int64)).astype(np.int64)
        uris = [ds.uris[i] for i in idx]
        frames.append(
            pd.DataFrame(
                {
                    "uri": [corrupt_uri(corruption, u) for u in uris] if corruption else uris,
                    "dataset": name,
                    "part": parts[idx] if len(idx) else [],
                    "label": ds.labels[idx],
                    "class_name": [ds.class_names[ds.labels[i]] for i in idx],
                    "synset": [ds.synsets[ds.labels[i]] for i in idx],
                    "split": split,
                    "domain": domain,
                    "style": corruption if corruption or styles is None else [styles[i] for i in idx],
                }
            )
        )
    return pd.concat(frames, ignore_index=True)[COLUMNS]


def _final_test(ds: ImageSet, used: list[np.ndarray], per_class: int, seed: int) -> np.ndarray:
    """Up to `per_class` images a class for the final test, from its official test part (or the
    whole pool) minus every image another split or a variant took; its own generator, so the other
    splits are the same with or without it."""
    rng = seeded_rng(seed, f"{ds.name}/final_test")
    parts = np.asarray(ds.parts)
    free = np.ones(len(ds), dtype=bool)
    for idx in used:
        free[idx] = False
    side = parts == "test" if {"train", "test"} <= set(parts) else np.ones(len(ds), dtype=bool)
    pools = [np.flatnonzero(free & side & (ds.labels == c)) for c in range(len(ds.class_names))]
    picks = [take(rng, pool, per_class)[0] for pool in pools]
    return np.sort(np.concatenate(picks)).astype(np.int64) if picks else np.empty(0, np.int64)


def split_dataset(ds: ImageSet, sizes: SplitSizes | None, seed: int, probe_fraction: float = 0.35) -> pd.DataFrame:
    """Assign images of `ds` to splits; returns a manifest frame (unused images are left out)."""
    return manifest_frame(ds, assign_dataset(ds, sizes, seed, probe_fraction))


def make_splits(params: DataParams, datasets: dict[str, ImageSet], clipart: Clipart | None = None) -> pd.DataFrame:
    """Split every dataset named in `params`, then the corrupted variants of `params.corruptions`
    and the clipart of `params.clipart` (`clipart`: loaded with the styles it names), and return
    one frame with a `split` column. The datasets' own rows do not depend on the other two."""
    frames, assigned = [], {}
    for name, ds in datasets.items():
        sizes = params.datasets.get(name)
        assigned[name] = assign_dataset(ds, sizes, params.seed, params.tuxpaint_probe_fraction)
        frames.append(manifest_frame(ds, assigned[name]))
    uses = {name: [*a.values()] for name, a in assigned.items()}  # every index a split or variant took
    for parent, kinds in params.corruptions.items():
        if parent not in datasets or params.datasets.get(parent) is None:
            raise ValueError(
                f"data.corruptions.{parent}: variants are drawn from their parent's split; add {parent} "
                "under data.datasets with per-class sizes"
            )
        if params.corrupted is None:
            raise ValueError("data.corruptions is set but data.corrupted (images per class of each variant) is not")
        for kind, assign in split_variants(
            datasets[parent], assigned[parent], kinds, params.corrupted, params.seed
        ).items():
            uses[parent] += assign.values()
            frames.append(manifest_frame(datasets[parent], assign, variant_name(parent, kind), corruption=kind))
    for name, n in params.final_test.items():
        if name not in assigned or params.datasets.get(name) is None:
            raise ValueError(f"data.final_test.{name}: add {name} under data.datasets with per-class sizes first")
        final = _final_test(datasets[name], uses[name], n, params.seed)
        frames.append(manifest_frame(datasets[name], {"final_test": final}))
    if params.clipart:
        if clipart is None:
            raise ValueError("data.clipart is set but no clipart was loaded (mll.data.clipart.load_clipart)")
        assign = assign_clipart(clipart, params.clipart, params.seed)
        frames.append(manifest_frame(clipart.images, assign, styles=clipart.images.parts))
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
    frame = pd.read_parquet(path)
    # manifests written before the domain/style columns: every row there is an original image
    if "domain" not in frame.columns:
        frame["domain"] = [DOMAINS.get(d, d) for d in frame["dataset"]]
    if "style" not in frame.columns:
        frame["style"] = ""
    return frame


def summarize(frame: pd.DataFrame) -> dict:
    """Per dataset (variants and clipart included) and split: number of images and classes, per
    domain and split the images, and the totals (the `data_summary.json` metric)."""
    out: dict = {}
    for (ds, split), g in frame.groupby(["dataset", "split"], sort=True):
        out.setdefault(ds, {})[split] = {"images": len(g), "classes": int(g["synset"].nunique())}
    if "domain" in frame.columns:
        domains: dict = {}
        for (dom, split), g in frame.groupby(["domain", "split"], sort=True):
            domains.setdefault(dom, {})[split] = len(g)
        out["domains"] = domains
    out["total"] = {s: int((frame["split"] == s).sum()) for s in SPLITS}
    return out


def write_summary(frame: pd.DataFrame, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summarize(frame), indent=2) + "\n")
    return path

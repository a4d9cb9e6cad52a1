"""Corrupted variants of a dataset (`fashion_mnist-rotate`, `mnist-blur`, ...) as datasets of their own.

A variant's rows name images of its parent through `corrupt:<kind>:<uri>` URIs
(`mll.data.corruptions`), so nothing is stored. The parent is split first, exactly as it would be
alone; its variants then draw from what that split left, so that every underlying image keeps one
split across the parent and all its variants (a corrupted copy is a near-duplicate of the original):

- probe: from the parent's train part (a pooled dataset: its one pool), never an image the parent
  or another variant already uses;
- target_test: from the parent's test part (pooled: the pool), never an image already used;
- expert_train: from the train part (pooled: the pool), never an image that is in any probe or
  target_test of the parent or a variant. Images of the parent's expert_train may be reused: a
  training image seen clean and corrupted is still only ever training data.

Each variant draws with its own generator (seed + variant name). The evaluation draws run in the
configured order of kinds, so appending a kind leaves the earlier kinds' probe and target_test
rows as they were; their expert_train rows can change (the new kind's evaluation images leave the
pool), the parent's rows never do.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mll.config import SplitSizes
from mll.data.corruptions import check_kind
from mll.data.datasets import ImageSet
from mll.data.sampling import SPLITS, seeded_rng, take


def variant_name(parent: str, kind: str) -> str:
    """The dataset name of a corrupted variant, e.g. `fashion_mnist-rotate`."""
    return f"{parent}-{kind}"


def _draw(rng: np.random.Generator, pool: np.ndarray, n: int, what: str, name: str, cls: str) -> np.ndarray:
    idx = np.flatnonzero(pool)
    if len(idx) < n:
        raise ValueError(
            f"{name}: class {cls!r} has {len(idx)} unused images left for {what}, needs {n}; lower "
            f"data.corrupted.{what}, the parent's sizes under data.datasets, or the kinds in data.corruptions"
        )
    return take(rng, idx, n)[0]


def split_variants(
    ds: ImageSet, parent: dict[str, np.ndarray], kinds: Sequence[str], sizes: SplitSizes, seed: int
) -> dict[str, dict[str, np.ndarray]]:
    """kind -> split -> indices into `ds` of that variant's images, given the parent's own
    assignment `parent` (split -> indices). ValueError when a pool runs short or a kind repeats."""
    for kind in kinds:
        check_kind(kind)
    if len(set(kinds)) != len(kinds):
        raise ValueError(f"data.corruptions.{ds.name} lists a kind twice: {list(kinds)}")
    parts = np.asarray(ds.parts)
    official = {"train", "test"} <= set(parts)
    used = np.zeros(len(ds), dtype=bool)  # in any row of the parent or a variant
    evaluation = np.zeros(len(ds), dtype=bool)  # in any probe or target_test
    for split, idx in parent.items():
        used[idx] = True
        if split != "expert_train":
            evaluation[idx] = True
    # two generators per kind: the number of draws a permutation takes depends on the pool's size,
    # and the training pool shrinks when a kind is appended; its evaluation draws must not move
    rngs = {k: seeded_rng(seed, variant_name(ds.name, k)) for k in kinds}
    train_rngs = {k: seeded_rng(seed, variant_name(ds.name, k) + "/expert_train") for k in kinds}
    chunks: dict[str, dict[str, list[np.ndarray]]] = {k: {s: [] for s in SPLITS} for k in kinds}
    for c, cls in enumerate(ds.class_names):
        in_class = ds.labels == c
        train_side = in_class & (parts == "train") if official else in_class
        test_side = in_class & (parts == "test") if official else in_class
        for k in kinds:  # evaluation images first, so no kind trains on another's
            name = variant_name(ds.name, k)
            for split, side, n in (("probe", train_side, sizes.probe), ("target_test", test_side, sizes.target_test)):
                got = _draw(rngs[k], side & ~used, n, split, name, cls)
                used[got] = evaluation[got] = True
                chunks[k][split].append(got)
        for k in kinds:
            name = variant_name(ds.name, k)
            chunks[k]["expert_train"].append(
                _draw(train_rngs[k], train_side & ~evaluation, sizes.expert_train, "expert_train", name, cls)
            )
    return {
        k: {s: np.concatenate(v).astype(np.int64) if v else np.empty(0, np.int64) for s, v in by_split.items()}
        for k, by_split in chunks.items()
    }


__all__ = ["split_variants", "variant_name"]

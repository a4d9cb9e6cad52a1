"""Corrupted variants in the splits, on small synthetic datasets (no files are read)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from mll.config import DataParams, SplitSizes
from mll.data.datasets import ImageSet
from mll.data.splits import COLUMNS, make_splits
from mll.data.variants import split_variants

KINDS = ("rotate", "invert", "noise", "blur")


def _official(name="fashion_mnist", per_class=(60, 30)) -> ImageSet:
    """Two classes, each with `per_class` = (train, test) images: an official train/test split."""
    uris, labels, parts = [], [], []
    for c in range(2):
        for part, n in zip(("train", "test"), per_class):
            for i in range(n):
                uris.append(f"/fake/{name}/{part}/{c}/{i}.png")
                labels.append(c)
                parts.append(part)
    return ImageSet(name, ("a", "b"), ("n00000001", "n00000002"), tuple(uris), np.asarray(labels), tuple(parts))


def _pooled(name="mnist", per_class=50) -> ImageSet:
    n = 2 * per_class
    labels = np.arange(n) % 2
    return ImageSet(
        name, ("0", "1"), ("n00000003", "n00000004"), tuple(f"/fake/{name}/{i}" for i in range(n)), labels, ("all",) * n
    )


BASE = DataParams(seed=5, datasets={"fashion_mnist": SplitSizes(20, 5, 8), "mnist": SplitSizes(20, 5, 5)})
WITH = dataclasses.replace(
    BASE, corruptions={"fashion_mnist": KINDS, "mnist": ("noise", "blur")}, corrupted=SplitSizes(15, 3, 4)
)


@pytest.fixture(scope="module")
def sets():
    return {"fashion_mnist": _official(), "mnist": _pooled()}


def _underlying(uri: str) -> str:
    while uri.startswith("corrupt:"):
        uri = uri.split(":", 2)[2]
    return uri


def test_parents_rows_unchanged_when_corruptions_are_added(sets):
    plain = make_splits(BASE, sets)
    mixed = make_splits(WITH, sets)
    parents = mixed[mixed["dataset"].isin(sets)].reset_index(drop=True)
    pd.testing.assert_frame_equal(plain, parents)
    assert list(mixed.columns) == COLUMNS
    assert set(mixed["dataset"]) - set(sets) == {f"fashion_mnist-{k}" for k in KINDS} | {"mnist-noise", "mnist-blur"}


def test_variants_are_sized_and_labelled(sets):
    f = make_splits(WITH, sets)
    v = f[f["dataset"] == "fashion_mnist-rotate"]
    assert v.groupby(["split", "label"]).size().to_dict() == {
        (s, c): n for s, n in (("expert_train", 15), ("probe", 3), ("target_test", 4)) for c in (0, 1)
    }
    assert v["uri"].str.startswith("corrupt:rotate:").all()
    assert set(v["style"]) == {"rotate"} and set(v["domain"]) == {"clothing"}
    assert set(f.loc[f["dataset"] == "mnist-blur", "domain"]) == {"digits"}
    assert set(f.loc[f["dataset"].isin(sets), "style"]) == {""}
    # a variant keeps its image's class
    parent = dict(zip(sets["fashion_mnist"].uris, sets["fashion_mnist"].labels))
    assert all(parent[_underlying(u)] == y for u, y in zip(v["uri"], v["label"]))


def test_every_underlying_image_keeps_one_split(sets):
    f = make_splits(WITH, sets)
    f = f.assign(base=[_underlying(u) for u in f["uri"]])
    assert f["uri"].is_unique
    assert f.groupby("base")["split"].nunique().max() == 1
    # evaluation images are fresh per variant: no underlying image is evaluated twice
    evaluation = f[f["split"] != "expert_train"]
    assert not evaluation["base"].duplicated().any()


def test_variants_draw_from_the_parents_parts(sets):
    f = make_splits(WITH, sets)
    fm = f[f["dataset"].str.startswith("fashion_mnist-")]
    assert set(fm.loc[fm["split"] == "target_test", "part"]) == {"test"}
    assert set(fm.loc[fm["split"] != "target_test", "part"]) == {"train"}
    parent_train = set(f.loc[(f["dataset"] == "fashion_mnist") & (f["split"] == "expert_train"), "uri"])
    probe = {_underlying(u) for u in fm.loc[fm["split"] == "probe", "uri"]}
    assert not probe & parent_train
    # expert_train may reuse the parent's training images (only ever training data)
    train = {_underlying(u) for u in fm.loc[fm["split"] == "expert_train", "uri"]}
    assert train <= {u for u, p in zip(sets["fashion_mnist"].uris, sets["fashion_mnist"].parts) if p == "train"}


def test_variants_are_deterministic_and_appending_a_kind_keeps_earlier_evaluation_rows(sets):
    a = make_splits(WITH, sets)
    pd.testing.assert_frame_equal(a, make_splits(WITH, sets))
    fewer = dataclasses.replace(WITH, corruptions={"fashion_mnist": KINDS[:2], "mnist": ("noise", "blur")})
    b = make_splits(fewer, sets)

    def evaluation(f: pd.DataFrame, name: str) -> pd.DataFrame:
        return f[(f["dataset"] == name) & (f["split"] != "expert_train")].reset_index(drop=True)

    for kind in KINDS[:2]:
        pd.testing.assert_frame_equal(evaluation(a, f"fashion_mnist-{kind}"), evaluation(b, f"fashion_mnist-{kind}"))


def test_short_pools_and_bad_settings_name_the_fix(sets):
    ds = _pooled(per_class=40)  # 40 a class: the parent takes 30, 10 are left
    parent = {"expert_train": np.arange(0), "probe": np.arange(0), "target_test": np.arange(0)}
    with pytest.raises(ValueError, match=r"mnist-noise: class '0' has \d+ unused images left for target_test"):
        split_variants(ds, parent, ("noise",), SplitSizes(5, 20, 30), seed=0)
    with pytest.raises(ValueError, match="lists a kind twice"):
        split_variants(ds, parent, ("noise", "noise"), SplitSizes(1, 1, 1), seed=0)
    with pytest.raises(ValueError, match="known kinds"):
        split_variants(ds, parent, ("sepia",), SplitSizes(1, 1, 1), seed=0)
    with pytest.raises(ValueError, match=r"add digits under data\.datasets"):
        make_splits(dataclasses.replace(WITH, corruptions={"digits": ("noise",)}), sets)
    with pytest.raises(ValueError, match=r"data\.corrupted"):
        make_splits(dataclasses.replace(WITH, corrupted=None), sets)


def test_final_test_takes_only_what_no_split_or_variant_took(sets):
    """The final test is drawn last: every other row is the same with or without it, its images are
    in no other split (as themselves or under a variant), and a pool that runs short gives fewer."""
    final = dataclasses.replace(WITH, final_test={"fashion_mnist": 6, "mnist": 100})
    plain, f = make_splits(WITH, sets), make_splits(final, sets)
    rest = f[f["split"] != "final_test"].reset_index(drop=True)
    pd.testing.assert_frame_equal(rest, plain)
    ft = f[f["split"] == "final_test"]
    assert set(ft["dataset"]) == {"fashion_mnist", "mnist"} and not ft["uri"].str.startswith("corrupt:").any()
    others = {_underlying(u) for u in plain["uri"]}
    assert not set(ft["uri"]) & others and ft["uri"].is_unique
    fm = ft[ft["dataset"] == "fashion_mnist"]
    assert fm.groupby("class_name").size().tolist() == [6, 6] and fm["part"].eq("test").all()
    # mnist asks for 100 a class: it gets every image its split and variants left, and no more
    left = [u for u in sets["mnist"].uris if u not in others]
    assert sorted(ft.loc[ft["dataset"] == "mnist", "uri"]) == sorted(left) and len(left) < 100
    with pytest.raises(ValueError, match=r"data\.final_test\.cifar"):
        make_splits(dataclasses.replace(WITH, final_test={"cifar": 5}), sets)

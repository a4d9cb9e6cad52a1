"""Tux Paint split: near-duplicate groups never cross probe/target_test; classes are stratified."""

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mll.config import SplitSizes
from mll.data.datasets import TUXPAINT_ROOT, ImageSet, load_dataset, near_duplicate_groups, series_key
from mll.data.splits import split_dataset

HAVE_STAMPS = (TUXPAINT_ROOT / "animals").is_dir()


def test_series_key_strips_numbering_suffixes_only():
    same = [
        ("a/pig_golden.png", "a/pig_golden2.png"),
        ("p/flower1.png", "p/flower10.png"),
        ("x/frog.png", "x/frog-1.png"),
        ("m/cep.png", "m/cep-2.png"),
        ("h/grave-a.png", "h/grave-j.png"),
        ("f/Strawberry2.png", "f/strawberry.png"),
        ("c/Candy_cane_photo_1.png", "c/Candy_cane_photo_2.png"),
        ("z/zebra_foal_07.png", "z/zebra_foal.png"),  # a name the stamps do not have
        ("q/teapot 3.jpg", "q/teapot.jpg"),
    ]
    for a, b in same:
        assert series_key(a) == series_key(b), (a, b)
    different = [
        ("a/pig.png", "a/pig_golden.png"),
        ("s/1_mercury.png", "s/2_venus.png"),  # a leading number is not a suffix
        ("v/747.png", "v/737.png"),  # a stem that is all digits stays whole
        ("b/gnu-baby.png", "b/gnu-baby-stand.png"),
        ("one/frog.png", "two/frog-1.png"),  # another folder is another series
        ("t/moon_3qt.png", "t/moon.png"),
    ]
    for a, b in different:
        assert series_key(a) != series_key(b), (a, b)


def test_identical_bytes_join_one_group_across_folders(tmp_path):
    for rel, data in [("a/cat.png", b"x"), ("b/kitten.png", b"x"), ("b/dog.png", b"y"), ("a/cat2.png", b"z")]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(data)
    paths = [str(tmp_path / r) for r in ("b/kitten.png", "b/dog.png", "a/cat2.png", "a/cat.png")]
    g = near_duplicate_groups(paths)
    assert g[0] == g[2] == g[3] != g[1]  # kitten = cat by bytes, cat2 = cat by name
    assert near_duplicate_groups(paths[::-1]) == g[::-1]  # ids do not depend on file order
    assert len(set(near_duplicate_groups(paths, content=False))) == 3
    assert near_duplicate_groups([str(tmp_path / "gone.png")]) == (str(tmp_path / "gone"),)


def _toy() -> ImageSet:
    """Class 0: groups of 1, 2, 4 images; class 1: two groups; class 2: one group of 3 images
    that also holds one image of class 3 (filed under class 2); classes 3..12: one image each."""
    spec = [(0, "a", 1), (0, "b", 2), (0, "c", 4), (1, "d", 1), (1, "e", 1), (2, "f", 3), (3, "f", 1)]
    spec += [(c, f"s{c}", 1) for c in range(4, 13)] + [(3, "s3", 1)]
    uris, labels, groups = [], [], []
    for c, g, n in spec:
        for i in range(n):
            uris.append(f"/toy/{g}{c}_{i}.png")
            labels.append(c)
            groups.append(g)
    k = 13
    return ImageSet(
        "toy",
        tuple(map(str, range(k))),
        (None,) * k,
        tuple(uris),
        np.asarray(labels),
        ("all",) * len(uris),
        tuple(groups),
    )


def _check_grouped(ds: ImageSet, frame: pd.DataFrame, fraction: float, tol: float):
    group = dict(zip(ds.uris, ds.groups or ds.uris))
    frame = frame.assign(group=frame["uri"].map(group))
    assert sorted(frame["uri"]) == sorted(ds.uris) and set(frame["split"]) <= {"probe", "target_test"}
    assert frame.groupby("group")["split"].nunique().max() == 1  # no group on both sides
    home = {g: Counter(rows["label"]).most_common()[0][0] for g, rows in frame.groupby("group")}
    n_groups = Counter(home.values())
    sides = frame.groupby("label")["split"].nunique()
    for c, n in n_groups.items():
        if n >= 2:
            assert sides[c] == 2, f"class {c} with {n} groups is on one side only"
    assert abs((frame["split"] == "probe").mean() - fraction) <= tol


@pytest.mark.parametrize("seed", range(20))
def test_toy_split_keeps_groups_whole_and_stratifies(seed):
    ds = _toy()
    frame = split_dataset(ds, None, seed, probe_fraction=0.35)
    _check_grouped(ds, frame, 0.35, tol=0.2)
    f = frame.set_index("uri")["split"]
    assert f["/toy/f2_0.png"] == f["/toy/f3_0.png"]  # class 3's image stays with its group (class 2)


def test_toy_split_is_deterministic_and_seeded():
    ds = _toy()
    a, b = split_dataset(ds, None, 5), split_dataset(ds, None, 5)
    pd.testing.assert_frame_equal(a, b)
    probes = {tuple(split_dataset(ds, None, s).query("split == 'probe'")["uri"]) for s in range(10)}
    assert len(probes) > 1


def test_without_groups_each_image_is_its_own_group():
    ds = _toy()
    ds = ImageSet(ds.name, ds.class_names, ds.synsets, ds.uris, ds.labels, ds.parts)
    frame = split_dataset(ds, None, 0)
    _check_grouped(ds, frame, 0.35, tol=0.15)
    sides = frame.groupby("label")["split"].nunique()
    assert (sides[[0, 1, 2, 3]] == 2).all()  # every class with two or more images is on both sides
    assert len(split_dataset(ds.subset(np.array([], dtype=np.int64)), None, 0)) == 0


# sha256 over "uri|part|label|split" rows of the manifests written before Tux Paint was grouped
# (seed 0, params.yaml sizes): grouping Tux Paint must not move one image of another dataset.
PINNED = {
    "fashion_mnist": (SplitSizes(1000, 30, 100), "35eceefaa415db3a"),
    "mnist": (SplitSizes(300, 30, 50), "15a93c287713b08d"),
    "digits": (SplitSizes(100, 20, 30), "49aab6f5e8ec7fcb"),
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_other_datasets_split_unchanged(name):
    sizes, digest = PINNED[name]
    t = split_dataset(load_dataset(name), sizes, seed=0)
    rows = "\n".join(f"{u}|{p}|{lab}|{s}" for u, p, lab, s in zip(t.uri, t.part, t.label, t.split))
    assert hashlib.sha256(rows.encode()).hexdigest()[:16] == digest


@pytest.mark.skipif(not HAVE_STAMPS, reason="tuxpaint-stamps-default is not installed")
def test_real_tuxpaint_split_by_group_and_class():
    ds = load_dataset("tuxpaint")
    groups = Counter(ds.groups)
    assert groups["animals/mammals/pig_golden"] == 2 and groups["plants/flowers/flower"] == 10
    assert groups["animals/amphibians/frog"] == 2 and groups["seasonal/halloween/grave"] == 9
    frame = split_dataset(ds, None, 0, probe_fraction=0.35)
    _check_grouped(ds, frame, 0.35, tol=0.03)
    pd.testing.assert_frame_equal(frame, split_dataset(ds, None, 0, probe_fraction=0.35))
    assert Path(ds.uris[0]).is_relative_to(TUXPAINT_ROOT)

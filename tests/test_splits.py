import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mll.config import DataParams, SplitSizes, load_section
from mll.data.datasets import load_dataset
from mll.data.splits import SPLITS, make_splits, read_manifest, split_dataset
from mll.data.stages import data_stage
from mll.data.validation import ValidationError, check_manifests

SMALL = DataParams(
    seed=3,
    datasets={"fashion_mnist": SplitSizes(20, 5, 10), "mnist": SplitSizes(10, 5, 5), "digits": SplitSizes(10, 5, 5)},
    tuxpaint_probe_fraction=0.35,
)


@pytest.fixture(scope="module")
def sets():
    return {n: load_dataset(n) for n in ("fashion_mnist", "mnist", "digits", "tuxpaint")}


@pytest.fixture(scope="module")
def frame(sets):
    return make_splits(SMALL, sets)


def test_splits_are_disjoint_and_sized(frame):
    assert frame["uri"].is_unique  # no image in two splits (or twice in one)
    counts = frame.groupby(["dataset", "split", "label"]).size()
    assert counts["fashion_mnist", "expert_train"].eq(20).all()
    assert counts["fashion_mnist", "probe"].eq(5).all()
    assert counts["mnist", "target_test"].eq(5).all()
    assert set(frame.loc[frame.dataset == "tuxpaint", "split"]) == {"probe", "target_test"}


def test_official_test_part_feeds_target_test_only(frame):
    fm = frame[frame.dataset == "fashion_mnist"]
    assert set(fm.loc[fm.split == "target_test", "part"]) == {"test"}
    assert set(fm.loc[fm.split != "target_test", "part"]) == {"train"}


def test_splits_are_deterministic_and_seeded(sets, frame):
    again = make_splits(SMALL, sets)
    pd.testing.assert_frame_equal(frame, again)
    other = split_dataset(sets["mnist"], SMALL.datasets["mnist"], seed=4)
    assert set(other["uri"]) != set(frame.loc[frame.dataset == "mnist", "uri"])


def test_great_expectations_pass_on_real_manifests(frame):
    check_manifests(frame, lambda s: True, min_per_class=1, max_per_class=20)


def test_great_expectations_name_the_failure(frame):
    dup = pd.concat([frame, frame.iloc[[0]].assign(split="probe")], ignore_index=True)
    with pytest.raises(ValidationError, match="expect_column_values_to_be_unique"):
        check_manifests(dup, lambda s: True)
    bad = frame.copy()
    bad.loc[0, "synset"] = "dog"
    with pytest.raises(ValidationError, match="expect_column_values_to_match_regex"):
        check_manifests(bad, lambda s: True)
    gone = frame.copy()
    gone.loc[0, "uri"] = "/nonexistent/file.png"
    with pytest.raises(ValidationError, match="path_exists"):
        check_manifests(gone, lambda s: True)
    with pytest.raises(ValidationError, match="expect_column_values_to_be_between"):
        check_manifests(frame, lambda s: True, min_per_class=1, max_per_class=3)


def test_data_docs_show_the_manifest_checks(frame, tmp_path):
    """GX's own Data Docs site builder renders the checks of this process: an index with each
    validation's status, a page per validation naming the offending values."""
    from mll.data.validation import build_data_docs, validate_manifests

    bad = frame.copy()
    bad.loc[0, "synset"] = "not-a-synset"
    assert not all(o.success for o in validate_manifests(bad, lambda s: True))
    index = build_data_docs(tmp_path / "docs")
    assert index == (tmp_path / "docs" / "index.html").resolve() and "class_counts" in index.read_text()
    pages = {p.read_text() for p in (tmp_path / "docs" / "validations" / "manifests").rglob("*.html")}
    assert any("not-a-synset" in page for page in pages)  # the failing value, on the failed run's page
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("x")
    with pytest.raises(ValueError, match="not a Data Docs site"):  # never wipes a folder it did not write
        build_data_docs(tmp_path / "other")


def test_data_stage_writes_manifests_and_summary(tmp_path):
    out, summary = tmp_path / "splits", tmp_path / "data_summary.json"
    paths = data_stage(SMALL, out, summary, log=lambda *_: None)
    assert set(paths) == set(SPLITS)
    probe = read_manifest(paths["probe"])
    assert set(probe["split"]) == {"probe"} and len(probe) > 0
    s = json.loads(summary.read_text())
    assert s["fashion_mnist"]["expert_train"] == {"images": 200, "classes": 10}
    assert s["tuxpaint"]["probe"]["images"] > 50
    assert s["domains"]["clothing"]["expert_train"] == 200 and set(s["domains"]) == {"clothing", "digits", "photos"}
    assert set(probe["style"]) == {""}
    assert (tmp_path / "data_docs" / "manifests" / "index.html").is_file()  # the checks, browsable
    with pytest.raises(FileNotFoundError, match="dvc repro data"):
        read_manifest(tmp_path / "none.parquet")


def test_old_manifests_without_domain_and_style_still_read(tmp_path):
    old = pd.DataFrame(
        {
            "uri": ["a#0", "b.png", "c#1"],
            "dataset": ["fashion_mnist", "tuxpaint", "cifar10"],
            "part": ["train", "all", "test"],
            "label": [0, 1, 2],
            "class_name": ["x", "y", "z"],
            "synset": ["n00000001"] * 3,
            "split": ["probe"] * 3,
        }
    )
    old.to_parquet(tmp_path / "probe.parquet", index=False)
    f = read_manifest(tmp_path / "probe.parquet")
    assert list(f["domain"]) == ["clothing", "photos", "cifar10"] and list(f["style"]) == ["", "", ""]


def test_params_file_loads_and_rejects_typos(tmp_path):
    p = load_section("data")
    assert p.datasets["fashion_mnist"].probe > 0
    assert set(p.corruptions) <= set(p.datasets) and p.corrupted is not None
    assert set(p.clipart.values()) == {"google", "twitter"}
    bad = tmp_path / "params.yaml"
    bad.write_text("data:\n  seed: 0\n  datsets: {}\n")
    with pytest.raises(ValueError, match=r"unknown key.*data\.datsets"):
        load_section("data", bad)

    bad.write_text("data:\n  seed: zero\n")
    with pytest.raises(ValueError, match=r"data\.seed must be int"):
        load_section("data", bad)


def test_every_params_section_is_typed():
    from mll.config import Params, load_params

    p = load_params()
    raw = yaml.safe_load(Path("params.yaml").read_text())
    assert set(raw) == {f for f in Params.__dataclass_fields__}  # no untyped section
    assert p.experts.trained["fmnist-footwear"].dataset == "fashion_mnist"
    assert p.experts.imagenet["imagenet-lite0"].input_size == 128
    assert p.benchmark.oracles["digits"].input_size == 16 and p.solve.patch.model is None

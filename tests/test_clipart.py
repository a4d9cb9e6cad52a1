"""The emoji clipart loader on a tiny fake package layout, and the committed synset table."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from mll.data.clipart import EXPECTED_ROOTS, emoji
from mll.data.datasets import DatasetMissingError
from mll.paths import data_dir

ENTRIES = [  # (unified, short_name, category, image exists)
    ("1F415", "dog2", "Animals & Nature"),
    ("1F32E", "taco", "Food & Drink"),
    ("1F600", "grinning", "Smileys & Emotion"),  # not a concrete category
    ("1F385-1F3FB", "santa_light", "Objects"),  # a skin-tone variant listed at top level
    ("1F528", "hammer", "Objects"),
]
TABLE = [("1F415", "n02084071", "dog.n.01"), ("1F32E", "n07880968", "taco.n.02"),
         ("1F600", "n02084071", "dog.n.01"), ("1F385-1F3FB", "n03481172", "hammer.n.02")]  # fmt: skip


def _fake(tmp_path, twitter_lacks=("1F32E",)):
    root = tmp_path / "emoji"
    for style in ("google", "twitter"):
        img = root / style / "img" / style / "64"
        img.mkdir(parents=True)
        entries = []
        for unified, short, cat in ENTRIES:
            has = not (style == "twitter" and unified in twitter_lacks)
            e = {"unified": unified, "short_name": short, "category": cat, "subcategory": "x",
                 "image": f"{unified.lower()}.png", f"has_img_{style}": has}  # fmt: skip
            if unified == "1F385-1F3FB":
                e["skin_variations"] = {"1F3FC": {"unified": "1F385-1F3FC", "image": "1f385-1f3fc.png"}}
            entries.append(e)
            if has:
                Image.new("RGBA", (64, 64), (200, 10, 10, 255)).save(img / e["image"])
        (root / style / "emoji.json").write_text(json.dumps(entries))
    table = tmp_path / "emoji_synsets.csv"
    with open(table, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["unified", "short_name", "category", "subcategory", "synset", "synset_name", "checked", "note"])
        w.writerows([u, "", "", "", s, n, "hand", ""] for u, s, n in TABLE)
    return root, table


def test_loader_filters_categories_skin_tones_and_unmapped(tmp_path):
    root, table = _fake(tmp_path)
    ds = emoji(root, table)
    files = sorted((p, u.rsplit("/", 1)[1]) for u, p in zip(ds.uris, ds.parts))
    # grinning: not concrete; the skin-tone row: excluded; hammer: not in the table;
    # taco: twitter has no image for it
    assert files == [("google", "1f32e.png"), ("google", "1f415.png"), ("twitter", "1f415.png")]
    assert set(ds.parts) == {"google", "twitter"}
    by_file = {u.rsplit("/", 1)[1]: ds.synsets[y] for u, y in zip(ds.uris, ds.labels)}
    assert by_file == {"1f32e.png": "n07880968", "1f415.png": "n02084071"}
    assert ds.class_names[ds.synsets.index("n07880968")] == "taco"
    assert not any("1f3f" in u for u in ds.uris)
    assert len(emoji(root, table, styles=("twitter",))) == 1


def test_missing_files_name_the_fix(tmp_path):
    _, table = _fake(tmp_path)
    with pytest.raises(DatasetMissingError, match="make clipart"):
        emoji(tmp_path / "nowhere", table)
    root, table = _fake(tmp_path / "b")
    (root / "google" / "img" / "google" / "64" / "1f415.png").unlink()
    with pytest.raises(DatasetMissingError, match="make clipart"):
        emoji(root, table)


def test_committed_table_is_valid_wordnet_under_category_roots():
    from mll.data.wordnet import get_wordnet, synset_from_wnid

    wn = get_wordnet()
    with open(data_dir() / "emoji_synsets.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) > 500
    assert len({r["unified"] for r in rows}) == len(rows), "an emoji is listed twice"
    assert len({r["short_name"] for r in rows}) == len(rows)
    assert {r["checked"] for r in rows} <= {"hand", "auto"}
    bad = []
    for r in rows:
        s = synset_from_wnid(r["synset"])
        assert s.name() == r["synset_name"], r
        roots = {wn.synset(n) for n in EXPECTED_ROOTS[r["category"]]}
        if not any(roots & set(p) for p in s.hypernym_paths()):
            bad.append((r["short_name"], r["synset_name"]))
    assert not bad, f"synsets not under their category's roots: {bad}"


def _styled(tmp_path, subcategories=(("animal-mammal", 5), ("food-fruit", 4)), styles=("google", "twitter")):
    """A fake package per style with `n` emoji in each subcategory, every emoji its own synset."""
    root, rows = tmp_path / "emoji", []
    for sub, n in subcategories:
        for _ in range(n):
            code = f"1F{len(rows):03X}"
            rows.append((code, sub, f"n{10_000_000 + len(rows):08d}", f"thing{len(rows)}.n.01"))
    for style in styles:
        img = root / style / "img" / style / "64"
        img.mkdir(parents=True)
        entries = []
        for code, sub, _, _ in rows:
            entries.append({"unified": code, "category": "Objects", "subcategory": sub, "image": f"{code.lower()}.png"})
            Image.new("RGB", (8, 8), (len(entries), 0, 0)).save(img / f"{code.lower()}.png")
        (root / style / "emoji.json").write_text(json.dumps(entries))
    table = tmp_path / "table.csv"
    with open(table, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["unified", "short_name", "category", "subcategory", "synset", "synset_name", "checked", "note"])
        w.writerows([c, c, "Objects", sub, s, n, "hand", ""] for c, sub, s, n in rows)
    return root, table


ASSIGN = {"expert_train": "google", "probe": "google", "target_test": "twitter"}


def test_clipart_splits_by_style_and_shares_a_style_within_each_subcategory(tmp_path):
    from mll.data.clipart import assign_clipart, load_clipart

    root, table = _styled(tmp_path)
    c = load_clipart(root, table)
    assert c.images.name == "clipart" and len(c.images) == 18
    assign = assign_clipart(c, ASSIGN, seed=0)
    parts, codes, subs = np.asarray(c.images.parts), np.asarray(c.emoji), np.asarray(c.subcategories)
    assert set(parts[assign["target_test"]]) == {"twitter"} and len(assign["target_test"]) == 9
    train, probe = assign["expert_train"], assign["probe"]
    assert set(parts[train]) == set(parts[probe]) == {"google"}
    assert not set(codes[train]) & set(codes[probe]) and len(train) + len(probe) == 9
    for sub, n in (("animal-mammal", 5), ("food-fruit", 4)):  # half of each subcategory, an odd one either way
        k = int((subs[train] == sub).sum())
        assert k in (n // 2, n - n // 2) and int((subs[probe] == sub).sum()) == n - k
    again = assign_clipart(c, ASSIGN, seed=0)
    assert all(np.array_equal(assign[s], again[s]) for s in assign)
    # one style per split: each goes whole
    whole = assign_clipart(c, {"probe": "google", "target_test": "twitter"}, seed=0)
    assert len(whole["expert_train"]) == 0 and len(whole["probe"]) == len(whole["target_test"]) == 9


def test_clipart_rows_in_the_manifests(tmp_path):
    from mll.config import DataParams
    from mll.data.clipart import load_clipart
    from mll.data.splits import make_splits

    root, table = _styled(tmp_path)
    f = make_splits(DataParams(clipart=ASSIGN), {}, load_clipart(root, table))
    assert set(f["dataset"]) == {"clipart"} and set(f["domain"]) == {"clipart"}
    assert f.groupby("split")["style"].unique().map(list).to_dict() == {
        "expert_train": ["google"],
        "probe": ["google"],
        "target_test": ["twitter"],
    }
    assert f["uri"].is_unique
    with pytest.raises(ValueError, match="no clipart was loaded"):
        make_splits(DataParams(clipart=ASSIGN), {})


def test_clipart_settings_and_missing_artwork_name_the_fix(tmp_path):
    from mll.config import DataParams
    from mll.data.clipart import check_assignment, load_clipart
    from mll.data.stages import check_clipart_fetched, data_stage

    with pytest.raises(ValueError, match="known styles: google, twitter"):
        check_assignment({"probe": "openmoji"})
    with pytest.raises(ValueError, match="unknown split"):
        check_assignment({"node": "google"})
    assert check_assignment(ASSIGN) == ["google", "twitter"]
    root, table = _styled(tmp_path, styles=("google",))
    check_clipart_fetched(DataParams(clipart={"probe": "google"}), root)
    with pytest.raises(DatasetMissingError, match=r"style\(s\) twitter not found .* `make clipart`"):
        check_clipart_fetched(DataParams(clipart=ASSIGN), root)
    with pytest.raises(DatasetMissingError, match="make clipart"):
        load_clipart(root, table, styles=("google", "twitter"))
    # the stage checks before loading anything (the real cache is not touched: MLL_CACHE points away)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLL_CACHE", str(tmp_path / "empty"))
        with pytest.raises(DatasetMissingError, match="make clipart"):
            data_stage(DataParams(clipart=ASSIGN), tmp_path / "out", tmp_path / "s.json", log=lambda *_: None)


def test_committed_table_follows_the_hand_review():
    """Rows checked by hand carry the synset the review in scripts/make_emoji_synsets.py gives them,
    and emoji dropped there are not in the table (the loader reads only the table's rows)."""
    import importlib.util

    from mll.data.wordnet import get_wordnet
    from mll.paths import project_root

    path = project_root() / "scripts" / "make_emoji_synsets.py"
    spec = importlib.util.spec_from_file_location("make_emoji_synsets", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    wn = get_wordnet()
    reviewed = [line.split()[0] for line in script.REVIEWED.strip().splitlines() if not line.startswith("#")]
    assert len(reviewed) == len(set(reviewed)), "a short_name is reviewed twice"
    assert not set(reviewed) & script.DROP, "a short_name is both reviewed and dropped"
    with open(data_dir() / "emoji_synsets.csv", newline="") as fh:
        rows = {r["short_name"]: r for r in csv.DictReader(fh)}
    assert not script.DROP & set(rows), "a dropped emoji is still in the table"
    for name, (synset, note) in script.REVIEW.items():
        if synset is None:
            continue
        row = rows[name]
        assert (row["checked"], row["synset_name"], row["note"]) == ("hand", wn.synset(synset).name(), note), row
    assert all(rows[n]["checked"] == "auto" for n in set(rows) - set(script.REVIEW))

"""Clipart domain: emoji artwork in two openly licensed styles, labelled with WordNet synsets.

`make clipart` (`scripts/fetch_emoji.sh`) unpacks npm `emoji-datasource-google` and
`emoji-datasource-twitter` (16.0.0) into `.cache/emoji/<style>/`: `emoji.json` and
`img/<style>/64/*.png`. Google's artwork is Noto emoji (Apache-2.0), Twitter's is Twemoji
(CC-BY-4.0); the packages' MIT licence covers their code and metadata only, and the Apple and
Facebook artwork of the same project is not used. Only the concrete categories are loaded, without
skin-tone variants, through the curated table `data/emoji_synsets.csv` (one row per emoji;
`scripts/make_emoji_synsets.py` wrote the draft, doubtful rows were checked by hand).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from mll.data.datasets import DatasetMissingError, ImageSet
from mll.paths import cache_dir, data_dir

STYLES = ("google", "twitter")
# Emoji categories that depict things; each maps to the WordNet nouns its synsets must lie under.
EXPECTED_ROOTS: dict[str, tuple[str, ...]] = {
    "Animals & Nature": ("animal.n.01", "plant.n.02", "plant_part.n.01", "fungus.n.01"),
    "Food & Drink": ("food.n.01", "food.n.02", "plant_part.n.01", "artifact.n.01"),
    "Travel & Places": (
        "artifact.n.01",
        "geological_formation.n.01",
        "natural_object.n.01",
        "body_of_water.n.01",
        "atmospheric_phenomenon.n.01",
        "fire.n.01",
    ),
    "Activities": ("artifact.n.01",),
    "Objects": ("artifact.n.01",),
}
CONCRETE = tuple(EXPECTED_ROOTS)
# Fitzpatrick skin-tone modifiers U+1F3FB..U+1F3FF (variants are also listed apart, under
# `skin_variations`, which the loader never reads).
SKIN_TONES = {f"1F3F{c}" for c in "BCDEF"}


def default_root() -> Path:
    return cache_dir() / "emoji"


def read_emoji_json(root: Path, style: str) -> list[dict]:
    """The package's `emoji.json` for `style`; DatasetMissingError naming `make clipart` if absent."""
    path = Path(root) / style / "emoji.json"
    if not path.is_file():
        raise DatasetMissingError(f"emoji artwork not found: {path} is missing; fetch it with `make clipart`")
    with open(path) as fh:
        return json.load(fh)


def concrete_emoji(entries: list[dict]) -> list[dict]:
    """Entries of the concrete categories, skin-tone variants left out."""
    return [
        e
        for e in entries
        if e.get("category") in EXPECTED_ROOTS and not SKIN_TONES & set(e["unified"].upper().split("-"))
    ]


def read_table(table: Path | None = None) -> list[dict]:
    """Rows of the curated emoji -> synset table (columns: unified, short_name, category,
    subcategory, synset, synset_name, checked, note)."""
    path = Path(table or data_dir() / "emoji_synsets.csv")
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing; it is a committed file, restore it with `git checkout {path.name}`"
        )
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def emoji(root: Path | None = None, table: Path | None = None, styles: tuple[str, ...] = STYLES) -> ImageSet:
    """Emoji artwork of the concrete categories in each style, one class per distinct synset of the
    curated table. `parts` holds each image's style (`google`, `twitter`): one image per emoji and
    style, so splits go by style. An emoji a style has no image for is skipped in that style."""
    root = Path(root or default_root())
    rows = {r["unified"].upper(): r for r in read_table(table)}
    synsets = sorted({r["synset"] for r in rows.values()})
    index = {s: i for i, s in enumerate(synsets)}
    names = {r["synset"]: r["synset_name"].split(".")[0].replace("_", " ") for r in rows.values()}
    uris, labels, parts = [], [], []
    for style in styles:
        img_dir = root / style / "img" / style / "64"
        for e in concrete_emoji(read_emoji_json(root, style)):
            row = rows.get(e["unified"].upper())
            if row is None or not e.get(f"has_img_{style}", True):
                continue
            path = img_dir / e["image"]
            if not path.is_file():
                raise DatasetMissingError(f"emoji image {path} is missing; fetch the artwork again with `make clipart`")
            uris.append(str(path))
            labels.append(index[row["synset"]])
            parts.append(style)
    return ImageSet(
        "emoji",
        tuple(names[s] for s in synsets),
        tuple(synsets),
        tuple(uris),
        np.asarray(labels, dtype=np.int64),
        tuple(parts),
    )


__all__ = ["CONCRETE", "EXPECTED_ROOTS", "STYLES", "concrete_emoji", "emoji", "read_emoji_json", "read_table"]

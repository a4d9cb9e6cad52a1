"""Clipart domain: emoji artwork in two openly licensed styles, labelled with WordNet synsets.

`make clipart` (`scripts/fetch_emoji.sh`) unpacks npm `emoji-datasource-google` and
`emoji-datasource-twitter` (16.0.0) into `.cache/emoji/<style>/`: `emoji.json` and
`img/<style>/64/*.png`. Google's artwork is Noto emoji (Apache-2.0), Twitter's is Twemoji
(CC-BY-4.0); the packages' MIT licence covers their code and metadata only, and the Apple and
Facebook artwork of the same project is not used. Only the concrete categories are loaded, without
skin-tone variants, through the curated table `data/emoji_synsets.csv` (one row per emoji;
`scripts/make_emoji_synsets.py` wrote the draft, doubtful rows were checked by hand).

npm `openmoji` (17.0.0, CC-BY-SA-4.0) would be a third style, but its package ships SVG artwork
only (no PNGs), so it is not fetched.

Splits go by style, never by image within a style (`assign_clipart`, `data.clipart` in
params.yaml: split -> style): with google -> expert_train and probe and twitter -> target_test, every
target_test image is in a style no expert trained on and no node data shows. A style named for
two splits shares its emoji (concepts) between them, evenly within each Unicode subcategory
(`animal-mammal`, `food-fruit`, ...: hypernym-like groups), so both sides see every kind of thing.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mll.data.datasets import DatasetMissingError, ImageSet
from mll.data.sampling import SPLITS, seeded_rng
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


@dataclass(frozen=True)
class Clipart:
    """Emoji images with what the split needs beside the ImageSet: per image, its emoji (the
    unified code, one concept across styles) and its Unicode subcategory."""

    images: ImageSet  # parts: each image's style
    emoji: tuple[str, ...]
    subcategories: tuple[str, ...]


def load_clipart(root: Path | None = None, table: Path | None = None, styles: tuple[str, ...] = STYLES) -> Clipart:
    """Emoji artwork of the concrete categories in each of `styles`, one class per distinct synset
    of the curated table. An emoji a style has no image for is skipped in that style.
    DatasetMissingError naming `make clipart` when a style's artwork is not fetched."""
    unknown = [s for s in styles if s not in STYLES]
    if unknown:
        raise ValueError(f"unknown emoji style(s) {unknown}; known styles: {', '.join(STYLES)}")
    root = Path(root or default_root())
    rows = {r["unified"].upper(): r for r in read_table(table)}
    synsets = sorted({r["synset"] for r in rows.values()})
    index = {s: i for i, s in enumerate(synsets)}
    names = {r["synset"]: r["synset_name"].split(".")[0].replace("_", " ") for r in rows.values()}
    uris, labels, parts, codes, subcats = [], [], [], [], []
    for style in styles:
        img_dir = root / style / "img" / style / "64"
        for e in concrete_emoji(read_emoji_json(root, style)):
            code = e["unified"].upper()
            row = rows.get(code)
            if row is None or not e.get(f"has_img_{style}", True):
                continue
            path = img_dir / e["image"]
            if not path.is_file():
                raise DatasetMissingError(f"emoji image {path} is missing; fetch the artwork again with `make clipart`")
            uris.append(_uri(path))
            labels.append(index[row["synset"]])
            parts.append(style)
            codes.append(code)
            subcats.append(row.get("subcategory") or e.get("subcategory") or "")
    images = ImageSet(
        "clipart",
        tuple(names[s] for s in synsets),
        tuple(synsets),
        tuple(uris),
        np.asarray(labels, dtype=np.int64),
        tuple(parts),
    )
    return Clipart(images, tuple(codes), tuple(subcats))


def _uri(path: Path) -> str:
    """`cache:<path under the scratch folder>` when it is there, so a manifest names the same image
    in every checkout (an absolute path would make the splits, and every label key, differ by
    folder); any other root (tests) keeps its path."""
    try:
        return f"cache:{path.resolve().relative_to(cache_dir().resolve()).as_posix()}"
    except ValueError:
        return str(path)


def emoji(root: Path | None = None, table: Path | None = None, styles: tuple[str, ...] = STYLES) -> ImageSet:
    """The clipart images alone (`load_clipart(...).images`): `parts` holds each image's style."""
    return load_clipart(root, table, styles).images


def check_assignment(assignment: Mapping[str, str]) -> list[str]:
    """The styles `data.clipart` (split -> style) names, in split order; ValueError naming the
    known splits or styles when a key or value is neither."""
    bad = sorted(set(assignment) - set(SPLITS))
    if bad:
        raise ValueError(f"data.clipart: unknown split(s) {bad}; use {', '.join(SPLITS)}")
    for split, style in assignment.items():
        if style not in STYLES:
            raise ValueError(
                f"data.clipart.{split}: unknown emoji style {style!r}; known styles: {', '.join(STYLES)} "
                "(npm openmoji ships SVG artwork only)"
            )
    return list(dict.fromkeys(assignment[s] for s in SPLITS if s in assignment))


def assign_clipart(c: Clipart, assignment: Mapping[str, str], seed: int) -> dict[str, np.ndarray]:
    """split -> indices into `c.images`. A style named for one split goes there whole; a style
    named for several shares its emoji between them, within each subcategory as evenly as whole
    emoji allow (which split gets an odd one out is drawn, so no split is favoured)."""
    check_assignment(assignment)
    parts = np.asarray(c.images.parts)
    codes = np.asarray(c.emoji)
    subcats = np.asarray(c.subcategories)
    out: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for style in dict.fromkeys(assignment.values()):
        targets = [s for s in SPLITS if assignment.get(s) == style]
        mine = parts == style
        if len(targets) == 1:
            out[targets[0]].append(np.flatnonzero(mine))
            continue
        rng = seeded_rng(seed, f"clipart-{style}")
        for sub in sorted(set(subcats[mine])):
            concepts = rng.permutation(sorted(set(codes[mine & (subcats == sub)])))
            order = rng.permutation(len(targets))
            for j, share in enumerate(np.array_split(concepts, len(targets))):
                out[targets[order[j]]].append(np.flatnonzero(mine & np.isin(codes, share)))
    return {s: np.sort(np.concatenate(v)).astype(np.int64) if v else np.empty(0, np.int64) for s, v in out.items()}


__all__ = [
    "CONCRETE",
    "EXPECTED_ROOTS",
    "STYLES",
    "Clipart",
    "assign_clipart",
    "check_assignment",
    "concrete_emoji",
    "emoji",
    "load_clipart",
    "read_emoji_json",
    "read_table",
]

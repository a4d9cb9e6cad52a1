"""Head classes and their WordNet synsets: ImageNet heads in timm's order, and user class names
mapped to synsets (explicit `name=synset` overrides first, then a clear WordNet sense).

A name that is ambiguous or unknown stops the import with the candidates, to be settled with
explicit `name=synset` pairs.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Sequence

from mll.data.wordnet import get_wordnet, is_wnid, resolve_synset, wnid
from mll.hub.cards import HeadClass


class AmbiguousClassError(ValueError):
    """A class name maps to no synset or to several plausible ones."""


def imagenet_head() -> tuple[HeadClass, ...]:
    """The 1,000 ImageNet-1k classes in timm's index order, each with its synset and first lemma."""
    info = importlib.resources.files("timm") / "data" / "_info"
    synsets = info.joinpath("imagenet_synsets.txt").read_text().split()
    lemmas = {}
    for line in info.joinpath("imagenet_synset_to_lemma.txt").read_text().splitlines():
        k, _, v = line.partition("\t")
        lemmas[k] = v.split(",")[0].strip()
    if len(synsets) != 1000:
        raise RuntimeError(f"timm's imagenet_synsets.txt lists {len(synsets)} classes, expected 1000")
    return tuple(HeadClass(lemmas.get(s, s), s) for s in synsets)


def map_class_names(names: Sequence[str], overrides: dict[str, str] | None = None) -> list[HeadClass]:
    """Map class names to synsets: explicit overrides first, then a clear WordNet sense.

    A name resolves on its own when it is a synset id / name, or when WordNet's most frequent noun
    sense clearly dominates (3x the tagged frequency of the next). Everything else raises
    AmbiguousClassError listing every problem name with its candidates as `name=synset` pairs.
    """
    wn = get_wordnet()
    overrides = dict(overrides or {})
    unknown_overrides = sorted(set(overrides) - set(names))
    if unknown_overrides:
        raise ValueError(f"--map names classes that are not in the head: {', '.join(unknown_overrides)}")
    out, problems = [], []
    for name in names:
        if name in overrides:
            try:
                out.append(HeadClass(name, wnid(resolve_synset(overrides[name]))))
            except ValueError as exc:
                problems.append(f"{name}: {exc}")
            continue
        key = name.strip()
        if is_wnid(key) or key.count(".n.") == 1:
            out.append(HeadClass(name, wnid(resolve_synset(key))))
            continue
        lemma = key.lower().replace(" ", "_").replace("-", "_")
        senses = wn.synsets(lemma, pos="n")
        if len(senses) == 1:
            out.append(HeadClass(name, wnid(senses[0])))
            continue
        if senses:
            counts = [sum(lm.count() for lm in s.lemmas() if lm.name().lower() == lemma) for s in senses]
            if counts[0] > 0 and counts[0] >= 3 * max(counts[1:], default=0):
                out.append(HeadClass(name, wnid(senses[0])))
                continue
            cands = ", ".join(f"{name}={s.name()} ({s.definition()[:40]})" for s in senses[:6])
            problems.append(f"{name!r} is ambiguous: {cands}")
        else:
            problems.append(f"{name!r} is not a WordNet noun; give it as {name}=<synset id or name>")
    if problems:
        raise AmbiguousClassError("map these classes with --map name=synset: " + "; ".join(problems))
    return out

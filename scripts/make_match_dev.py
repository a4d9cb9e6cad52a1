"""Write the ImageNet-derived part of `tests/data/match_dev_names.tsv`: class names as users type them.

The development list for name matching (`scripts/match_dev.py` measures it) has two parts. The first is
made here from ImageNet-1k as timm ships it (`imagenet_synsets.txt` gives the 1,000 class ids and
`imagenet_synset_to_lemma.txt` their lemmas, so every name's correct synset is known): every second
class, its first lemma rewritten in one of the ways people type class names (lowercase, plural, folder
style, compounds joined or split, hyphens, an added modifier such as "baby" or "photo of", a common
abbreviation, a one-key typo), chosen by a seeded generator. Ten consecutive classes form one task,
so each name is matched with related names as context, as in a real request. Names the benchmark
uses as user-typed names (`data/user_names.yaml`) are left out, so tuning here never tunes on them. The second part,
names from other public label sets with the synset judged right, is written by hand below the
marker line and kept as it is when this script rewrites the first part.

    python scripts/make_match_dev.py [--out tests/data/match_dev_names.tsv]
"""

from __future__ import annotations

import argparse
import random
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "tests" / "data" / "match_dev_names.tsv"
MARKER = "# --- hand-written ---"
SEED = 0
TASK_SIZE = 10
# (kind, weight): how often each rewriting is tried (one that does not apply falls back to "lower")
KINDS = [
    ("lower", 3),
    ("plural", 4),
    ("title", 1),
    ("folder", 1),
    ("compound", 2),
    ("hyphen", 2),
    ("modifier", 3),
    ("abbrev", 1),
    ("typo", 3),
]
ABBREV = {"saint": "st.", "mount": "mt.", "mountain": "mtn", "street": "st.", "chocolate": "choc", "and": "&"}
KEYBOARD = "qwertyuiop asdfghjkl zxcvbnm"
IRREGULAR = {"mouse": "mice", "goose": "geese", "fish": "fish", "sheep": "sheep", "deer": "deer", "man": "men"}


def _timm_info() -> Path:
    import timm

    return Path(timm.__file__).parent / "data" / "_info"


def _plural(word: str) -> str:
    if word in IRREGULAR:
        return IRREGULAR[word]
    if word.endswith("man"):
        return word[:-3] + "men"
    if re.search(r"[^aeiou]y$", word):
        return word[:-1] + "ies"
    if re.search(r"(s|x|z|ch|sh)$", word):
        return word + "es"
    return word + "s"


def _neighbour(ch: str, rng: random.Random) -> str:
    for row in KEYBOARD.split():
        i = row.find(ch)
        if i >= 0:
            return rng.choice([row[j] for j in (i - 1, i + 1) if 0 <= j < len(row)])
    return ch


def _typo(name: str, rng: random.Random) -> str | None:
    words = name.split(" ")
    k = max(range(len(words)), key=lambda i: len(words[i]))
    w = words[k]
    if len(w) < 6 or not w.isalpha():
        return None
    i = rng.randrange(1, len(w) - 1)  # never the first letter: people rarely miss that one
    op = rng.choice(["delete", "swap", "double", "neighbour"])
    if op == "delete":
        w = w[:i] + w[i + 1 :]
    elif op == "swap":
        w = w[:i] + w[i + 1] + w[i] + w[i + 2 :]
    elif op == "double":
        w = w[:i] + w[i] + w[i:]
    else:
        w = w[:i] + _neighbour(w[i], rng) + w[i + 1 :]
    words[k] = w
    return " ".join(words)


def _modifier(name: str, synset, rng: random.Random) -> str:
    if synset.lexname() == "noun.animal":
        hyper = {h.name() for path in synset.hypernym_paths() for h in path}
        if "canine.n.02" in hyper or "pinniped_mammal.n.01" in hyper:
            young = "pup"
        elif "bear.n.01" in hyper or "feline.n.01" in hyper:
            young = "cub"
        elif "bird.n.01" in hyper:
            young = "chick"
        else:
            return rng.choice(["baby {}", "wild {}", "juvenile {}"]).format(name)
        return rng.choice([f"{name} {young}", f"baby {name}"])
    return rng.choice(["a photo of a {}", "{} photo", "vintage {}", "old {}", "{} close-up"]).format(name)


def rewrite(name: str, synset, kind: str, wn, rng: random.Random) -> str | None:
    """`name` (a lemma with spaces) typed the way `kind` says, or None when `kind` does not apply."""
    low = name.lower()
    words = low.split(" ")
    if kind == "lower":
        return low
    if kind == "plural":
        return " ".join([*words[:-1], _plural(words[-1])])
    if kind == "title":
        return " ".join(w.capitalize() for w in words)
    if kind == "folder":
        return "_".join(words)
    if kind == "compound":
        if len(words) == 2 and len(low) <= 11:  # short compounds only: "sea lion" -> "sealion"
            return "".join(words)
        if len(words) == 1 and "-" not in low:
            w = words[0]
            for i in range(3, len(w) - 2):
                if wn.synsets(w[:i], pos="n") and wn.synsets(w[i:], pos="n"):
                    return f"{w[:i]} {w[i:]}"
        return None
    if kind == "hyphen":
        if "-" in low:
            return rng.choice([low.replace("-", " "), low.replace("-", "")])
        if len(words) >= 2:
            return "-".join(words)
        return None
    if kind == "modifier":
        return _modifier(low, synset, rng)
    if kind == "abbrev":
        hits = [w for w in words if w in ABBREV]
        return " ".join(ABBREV.get(w, w) for w in words) if hits else None
    if kind == "typo":
        return _typo(low, rng)
    raise ValueError(kind)


def _benchmark_names() -> set[str]:
    """The benchmark's user-typed names (data/user_names.yaml): never tuned on, so never in this list."""
    import yaml

    tasks = yaml.safe_load((REPO / "data" / "user_names.yaml").read_text())
    return {str(v).lower() for t in tasks.values() for naming in t.values() for v in naming.values()}


def imagenet_part(wn) -> list[str]:
    info = _timm_info()
    ids = info.joinpath("imagenet_synsets.txt").read_text().split()
    lemma_file = info.joinpath("imagenet_synset_to_lemma.txt").read_text().splitlines()
    lemmas = dict(line.split("\t", 1) for line in lemma_file)
    rng = random.Random(SEED)
    kinds, weights = zip(*KINDS)
    benchmark = _benchmark_names()
    lines = ["# ImageNet-1k classes (every second one) as users type them: scripts/make_match_dev.py, seed 0"]
    for n, wnid in enumerate(ids[::2]):
        if n % TASK_SIZE == 0:
            lines.append("")
        synset = wn.synset_from_pos_and_offset("n", int(wnid[1:]))
        base = lemmas[wnid].split(",")[0].strip()
        kind = rng.choices(kinds, weights)[0]
        typed = rewrite(base, synset, kind, wn, rng)
        # a rewriting that is itself a lemma of other synsets only ("tiger cub") means something else
        senses = wn.synsets(typed.replace(" ", "_"), pos="n") if typed else []
        if typed is None or (senses and synset not in senses):
            typed = base.lower()
        if typed.lower() not in benchmark:
            lines.append(f"{typed}\t{synset.name()}")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args()
    from mll.data.wordnet import get_wordnet

    wn = get_wordnet()
    kept = ""
    if a.out.is_file():
        text = a.out.read_text()
        if MARKER in text:
            kept = text[text.index(MARKER) :]
    header = [
        "# Class names as people type them for photo classifiers, with the synset a person would mean.",
        "# name<TAB>expected synset (alternatives joined by |); a blank line ends a task (the names",
        "# matched together, as context for each other). Held out from tuning: names whose sha1 is",
        "# 0 mod 3 (scripts/match_dev.py --split heldout).",
    ]
    body = "\n".join(header + imagenet_part(wn)) + "\n\n"
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(body + (kept or MARKER + "\n"))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()

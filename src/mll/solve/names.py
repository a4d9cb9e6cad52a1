"""Class names as people type them -> WordNet lemmas: the lexical half of matching.

Names arrive in any case, plural, as folder names (`_`, `-`, CamelCase), with words run together or
split apart ("tea pot", "sealion"), abbreviated ("St. Bernard", "mtn bike"), one key off
("stinhray"), wrapped in prompt words ("a photo of a ...") or around a modifier ("sea lion pup").
`Lexicon.lookup` tries readings that keep more of the name before readings that keep less, and
stops at the first that names a lemma of the SDAG:

1. the name itself, normalised (case, separators, plurals, prompt words)    via "lemma"
2. the name with its word breaks and punctuation ignored ("tea pot")         via "compound"
3. one short or dotted word as an abbreviation of a lemma's word, or the
   first words of exactly one longer lemma ("pit bull")                      via "abbreviation"
4. one edit (a key deleted, doubled, swapped or replaced) from exactly one
   lemma, for names of five letters or more                                  via "spelling"
5. the longest runs of words that are lemmas ("sea lion" in "sea lion pup")  via "sub-phrase" (the
   run that ends the name) or "modifier" (one before it)

Which sense of the lemma is meant is left to `mll.solve.matching` (frequency, context, coverage).
"""

from __future__ import annotations

import functools
import re
import string
from collections import Counter
from collections.abc import Sequence
from typing import NamedTuple

from mll.data.sdag import SDAG

DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
_SHOT = r"(?:photo|photograph|picture|image|pic|snapshot|close-?up)s?"
STOP = {"a", "an", "the", "of", "and", "in", "on", "with", "for", "or", "to", "my", "some"}
MAX_NAME = 200  # characters in one class name
MIN_SPELL = 5  # letters a name needs before a one-edit neighbour counts as what was meant
# weights of the readings that keep only part of the name (see `Reading`)
W_SUB, W_MODIFIER, W_YOUNG, W_SPELL = 0.8, 0.75, 0.6, 0.9
_YOUNG = re.compile(r"^(?:\((?:usually |often )?informal\)\s*)?(?:especially\s+)?(?:an?\s+)?(?:very\s+)?young\b")
_GENERIC = re.compile(
    r"^(?:\((?:usually |often )?informal\)\s*)?(?:especially\s+)?"
    r"(?:(?:informal|familiar|general|colloquial)\s+terms?\s+(?:for|referring\s+to|used\s+for)"
    r"|(?:an?\s+|the\s+)?(?:very\s+)?young(?:\s+of)?)\s+(?P<x>.+)"
)


class MatchError(ValueError):
    """A class name could not be matched; the message lists the nearest candidates."""


def parse_override(text: str) -> tuple[str, str] | None:
    """`name=synset` -> (name, synset); None when `text` has no override."""
    name, sep, syn = text.rpartition("=")
    if not sep:
        return None
    if not name.strip() or not syn.strip():
        raise MatchError(f"{text!r}: an override is name=synset, e.g. sneaker=n04120489 or sneaker=gym_shoe.n.01")
    return name.strip(), syn.strip()


def bad_name(n: str) -> str | None:
    """Why `n` cannot be a class name at all (empty, overlong, control characters), or None."""
    if not n:
        return "empty class name"
    if len(n) > MAX_NAME:
        return f"{len(n)} characters long; at most {MAX_NAME}"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in n):
        return "holds control characters"
    return None


def name_key(name: str) -> str:
    """A class name as hub head names are compared: lowercase, separators as single spaces."""
    return re.sub(r"[\s_\-/]+", " ", name.strip().lower())


class Reading(NamedTuple):
    """One lemma a typed name may stand for, how it was found, and how much of the name it keeps.

    The weight is 1 for the whole name and less for a part of it: a sub-phrase is a more general
    concept than the name, a modifier less likely the concept than the head word, and a word that
    only says "young" or "baby" least likely.
    """

    lemma: str
    weight: float
    via: str
    group: str = ""  # readings of one typed word share a group: their senses compete as one word's


def normalise(name: str) -> list[str]:
    """Lemma-form variants of a typed class name, most literal first ("T-shirt/top" -> t-shirt, top...)."""
    out: list[str] = []

    def add(v: str) -> None:
        v = re.sub(r"\s+", "_", v.strip().lower())
        if v and v not in out:
            out.append(v)

    raw = name.strip()
    if len(raw) == 1 and raw in "0123456789":  # str.isdigit is also true for "²", which int() refuses
        add(DIGIT_WORDS[int(raw)])
    parts = [p for p in re.split(r"[/,;|]", raw) if p.strip()] or [raw]
    for part in parts:
        spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", part.strip())  # CamelCase -> words
        for v in (part, spaced, spaced.replace("-", " "), spaced.replace("_", " "), spaced.replace("-", "")):
            add(v)
    for part in parts:  # prompt words and punctuation: "a photo of a St. Bernard" -> st bernard
        add(clean(part))
    for v in list(out):  # singular forms
        for s in _singulars(v):
            add(s)
    return out


def clean(text: str) -> str:
    """`text` without prompt words ("a photo of a", "... close-up") and punctuation other than `-`/`'`."""
    t = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", text.strip())
    t = re.sub(r"\s*[&+]\s*", " and ", t)
    t = re.sub(r"[_\s]+", " ", re.sub(r"[.()\"!?:]", " ", t)).strip()
    for _ in range(2):
        t = re.sub(r"^(?:a|an|the|some|my)\s+", "", t, flags=re.I)
        t = re.sub(rf"^{_SHOT}\s+of\s+", "", t, flags=re.I)
    t = re.sub(rf"\s+{_SHOT}$", "", t, flags=re.I)
    return t.lower() or text.strip().lower()


@functools.lru_cache(maxsize=1)
def _noun_exceptions() -> dict[str, str]:
    """WordNet's irregular plurals (geese -> goose) from noun.exc, when the file is present."""
    from mll.data.wordnet import DEBIAN_WORDNET

    path = DEBIAN_WORDNET / "noun.exc"
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2:
            out.setdefault(parts[0], parts[1])
    return out


def _singulars(v: str) -> list[str]:
    words = v.split("_")
    last = words[-1]
    cands = []
    exc = _noun_exceptions().get(last)
    if exc:
        cands.append(exc)
    for suf, rep in (
        ("ies", "y"),
        ("ves", "f"),
        ("ses", "s"),
        ("xes", "x"),
        ("ches", "ch"),
        ("shes", "sh"),
        ("men", "man"),
        ("es", ""),
        ("s", ""),
    ):
        if last.endswith(suf) and len(last) > len(suf) + 1:
            cands.append(last[: -len(suf)] + rep)
    return ["_".join([*words[:-1], c]) for c in cands]


def squash(text: str) -> str:
    """Letters and digits only: "tea pot", "teapot", "tea-pot" and "Tea_Pot" are one key."""
    return re.sub(r"[^a-z0-9]", "", text.lower())


def edits1(word: str) -> set[str]:
    """Every string one deletion, adjacent swap, replacement or insertion away from `word`."""
    letters = string.ascii_lowercase
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    out = {a + b[1:] for a, b in splits if b}
    out |= {a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1}
    out |= {a + c + b[1:] for a, b in splits if b for c in letters if c != b[0]}
    out |= {a + c + b for a, b in splits for c in letters}
    out.discard(word)
    return out


def _is_abbreviation(short: str, word: str) -> bool:
    """`short` abbreviates `word`: same first letter, shorter, its letters in order ("mtn", "mountain")."""
    if not short or len(short) >= len(word) or short[0] != word[0]:
        return False
    it = iter(word)
    return all(ch in it for ch in short)


class Lexicon:
    """The SDAG's lemmas, indexed for the readings of a typed name that `lookup` tries."""

    def __init__(self, sdag: SDAG):
        self.sdag = sdag
        self._squashed: dict[str, list[str]] | None = None
        self._by_token: dict[str, list[str]] | None = None
        self._words: set[str] | None = None

    def has(self, key: str) -> bool:
        return bool(key) and bool(self.sdag.lookup(key))

    def squashed(self) -> dict[str, list[str]]:
        if self._squashed is None:
            idx: dict[str, list[str]] = {}
            for k in self.sdag.lemma_keys():
                idx.setdefault(squash(k), []).append(k)
            self._squashed = idx
        return self._squashed

    def by_token(self) -> dict[str, list[str]]:
        """Multiword lemma keys by each of their words."""
        if self._by_token is None:
            idx: dict[str, list[str]] = {}
            for k in self.sdag.lemma_keys():
                words = k.split("_")
                if len(words) > 1:
                    for w in set(words):
                        idx.setdefault(w, []).append(k)
            self._by_token = idx
        return self._by_token

    # --- the readings, in the order `lookup` tries them ---------------------------------------------
    def lookup(self, name: str) -> list[Reading]:
        """The readings of `name` that name lemmas of the SDAG, from the first step that finds any
        (see the module docstring); empty when none does."""
        variants = normalise(name)
        for v in variants:
            if self.has(v):
                # a plural may be a lemma of its own or stem two ways: "pants" are bloomers and trousers
                # (pant), "booties" booty and bootie; all are senses of the typed word, context decides
                src = next((b for b in variants if v == b or v in _singulars(b)), v)
                forms = [f for f in [src, *_singulars(src)] if f != v and len(f.split("_")[-1]) >= 3]
                return [Reading(f, 1.0, "lemma", "name") for f in [v, *forms] if f == v or self.has(f)]
        words = clean(name).split()
        for v in variants:
            keys = self.squashed().get(squash(v), [])
            if keys:
                return [Reading(keys[0], 1.0, "compound")]
        key = self._abbreviation(words)
        if key:
            return [Reading(key, 1.0, "abbreviation")]
        if any(not self.is_word(w) for w in words):  # a name of common words is not a typo
            near = self.spellings(name)
            if len(near) == 1:  # only when the neighbour is the only one is it clearly what was meant
                return [Reading(near[0], W_SPELL, "spelling")]
        return self._sub_phrases(words)

    def is_word(self, word: str) -> bool:
        """`word` (or its singular) is a common word of the SDAG's lemmas: in two lemmas or more.

        A typo often makes a rare word ("aghan", a month); a real name of common words that WordNet
        lacks ("russian blue", "car side") must not be bent into the lemma one edit away.
        """
        if self._words is None:
            counts = Counter(w for k in self.sdag.lemma_keys() for w in set(re.split(r"[_-]", k)))
            self._words = {w for w, c in counts.items() if c >= 2}
        w = word.lower().strip("'")
        return w in self._words or any(s in self._words for s in _singulars(w)) or w in STOP or w.isdigit()

    def _abbreviation(self, words: Sequence[str]) -> str | None:
        """One word as an abbreviation (st, mt, mtn, choc) of a lemma's word, all other words equal;
        or the words as the first words of exactly one lemma one word longer ("pit bull")."""
        if len(words) < 2:
            return None
        words = [w.rstrip("'") for w in words]
        found: set[str] = set()
        for i, short in enumerate(words):
            if len(short) > 4 or not short.isalpha():
                continue
            rest = [w for j, w in enumerate(words) if j != i]
            if not any(w.isalpha() and len(w) > 2 and w not in STOP for w in rest):
                continue  # digits and stop words say too little: "no. 1" is not November 1
            pool = min((self.by_token().get(w, []) for w in rest), key=len)
            for k in pool:
                kw = k.split("_")
                same = len(kw) == len(words) and all(kw[j] == w for j, w in enumerate(words) if j != i)
                if same and _is_abbreviation(short, kw[i]):
                    found.add(k)
        if not found:
            prefix = "_".join(words) + "_"
            pool = min((self.by_token().get(w, []) for w in words), key=len)
            found = {k for k in pool if k.startswith(prefix) and k.count("_") == len(words)}
        return found.pop() if len({squash(k) for k in found}) == 1 else None

    def spellings(self, name: str) -> list[str]:
        """Lemma keys one edit away from the whole name, letters only ("black grrouse" -> black_grouse);
        names shorter than MIN_SPELL letters have too many neighbours to say."""
        hits: set[str] = set()
        for v in normalise(name):
            q = squash(v)
            if len(q) >= MIN_SPELL and not q.isdigit():
                hits |= {e for e in edits1(q) if e in self.squashed()}
        return [self.squashed()[h][0] for h in sorted(hits)]

    def _sub_phrases(self, words: Sequence[str]) -> list[Reading]:
        """The longest runs of words that are lemmas, each weighted (see `Reading`)."""
        n = len(words)
        for size in range(n - 1, 0, -1):
            hits = []
            for i in range(n - size + 1):
                span = words[i : i + size]
                if all(w in STOP or (len(w) < 2 and w.isalpha()) for w in span):
                    continue
                key = self._span_key(span, last=i + size == n)
                if key:
                    hits.append((key, i + size == n))
            if len(hits) == 1:  # the one run of this length: whichever place it holds, it is the reading
                return [Reading(hits[0][0], W_SUB, "sub-phrase")]
            if hits:
                return [
                    Reading(k, W_SUB * self._span_weight(k, head), "sub-phrase" if head else "modifier")
                    for k, head in hits
                ]
        return []

    def _span_key(self, span: Sequence[str], last: bool) -> str | None:
        key = "_".join(span)
        cands = [key, *(_singulars(key) if last else [])]
        for c in cands:
            if self.has(c):
                return c
        for c in cands:
            keys = self.squashed().get(squash(c))
            if keys:
                return keys[0]
        return None

    def _span_weight(self, key: str, head: bool) -> float:
        """The head (last) run counts most; a run that only says "young" or "baby" counts least."""
        if any(_YOUNG.match(self.sdag.node(n)["definition"]) for n in self.sdag.lookup(key)):
            return W_YOUNG
        return 1.0 if head else W_MODIFIER

    # --- narrow senses ---------------------------------------------------------------------------
    def generic_of(self, node: str) -> str | None:
        """The concept a narrow sense stands for, read from its WordNet definition, or None.

        "pooch" is "informal terms for dogs", "puppy" "a young dog", "kitty" "informal terms referring
        to a domestic cat": a photo-classifier user who types them means dogs and cats. The concept
        is the longest lemma that opens the rest of the definition, kept when it is an ancestor of
        `node` or lies in the same lexicographer file (animal, artifact, ...); "young" counts only
        for animals ("a very young child" stays a baby).
        """
        a = self.sdag.node(node)
        m = _GENERIC.match(a["definition"].lower())
        if not m or ("young" in m.group(0)[: m.start("x")] and a["lexname"] != "noun.animal"):
            return None
        words = [w for w in re.split(r"[^a-z'-]+", m.group("x")) if w]
        while words and words[0] in {"a", "an", "the", "any", "some", "various", "of", "especially", "young"}:
            words = words[1:]
        ancestors = self.sdag.ancestors(node)
        for size in range(min(len(words), 4), 0, -1):
            key = "_".join(words[:size])
            for k in (key, *_singulars(key)):
                hits = [h for h in self.sdag.lookup(k) if h != node]
                for h in sorted(hits, key=lambda h: h not in ancestors):
                    if h in ancestors or self.sdag.node(h)["lexname"] == a["lexname"]:
                        return h
        return None

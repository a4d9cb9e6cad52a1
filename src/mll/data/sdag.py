"""The Semantic DAG: WordNet noun synsets as concept nodes, hypernym -> hyponym edges.

Nodes are keyed by ImageNet-style ids (`n02084071`) and carry `name` (`dog.n.01`), `lemmas`,
`definition`, `depth` (shortest hop count from `entity`, WordNet's min_depth) and `lexname`
(WordNet's lexicographer file, e.g. `noun.animal`: a coarse domain for display). Edges point from
parent to child and include instance hypernyms, so every node reaches the root. The graph is saved as
one columnar JSON file (parents as index lists), which loads in a fraction of a second even for all
82,115 nouns; parquet was tried and lost (pyarrow's first read alone costs about 0.5 s).
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from mll.data.wordnet import get_wordnet, is_wnid, wnid

if TYPE_CHECKING:  # networkx is imported where it is used: loading and querying do without it
    import networkx as nx

ROOT = "n00001740"  # entity.n.01
_FILE = "sdag.json"


class SDAG:
    """Synset nodes, parent -> child edges and the queries the rest of mll needs.

    Internally nodes are integer positions with parallel attribute lists and adjacency lists of
    positions, which is exactly what the JSON file holds, so loading is one `json.loads`. `graph`
    builds the equivalent networkx DiGraph (with node attributes) on first use.
    """

    def __init__(
        self,
        ids: list[str],
        names: list[str],
        lemmas: list[str],
        definitions: list[str],
        depth: list[int],
        parents: list[list[int]],
        meta: dict | None = None,
        lexnames: list[str] | None = None,
        counts: list[str] | None = None,
    ):
        self._ids, self._names, self._lemmas, self._defs, self._depth = ids, names, lemmas, definitions, depth
        self._lex = lexnames or [""] * len(ids)
        self._counts = counts or [""] * len(ids)  # "|"-joined tagged frequencies, aligned with lemmas
        self._par = parents
        self._pos = {n: i for i, n in enumerate(ids)}
        self.meta = dict(meta or {})
        self._chi: list[list[int]] | None = None
        self._graph: nx.DiGraph | None = None
        self._by_name: dict[str, int] | None = None
        self._by_lemma: dict[str, list[int]] | None = None

    @classmethod
    def from_edges(cls, nodes: dict[str, dict], edges: list[tuple[str, str]], meta: dict | None = None) -> SDAG:
        """Build from `{id: {name, lemmas (list), definition, depth, lexname}}` and (parent, child) pairs."""
        ids = list(nodes)
        pos = {n: i for i, n in enumerate(ids)}
        parents: list[list[int]] = [[] for _ in ids]
        for p, c in edges:
            parents[pos[c]].append(pos[p])
        return cls(
            ids,
            [nodes[n]["name"] for n in ids],
            ["|".join(nodes[n]["lemmas"]) for n in ids],
            [nodes[n]["definition"] for n in ids],
            [int(nodes[n]["depth"]) for n in ids],
            parents,
            meta,
            [nodes[n].get("lexname", "") for n in ids],
            ["|".join(str(c) for c in nodes[n].get("counts", ())) for n in ids],
        )

    # --- basic access -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, node: str) -> bool:
        return node in self._pos

    def __iter__(self):
        return iter(self._ids)

    def _i(self, node: str) -> int:
        try:
            return self._pos[node]
        except KeyError:
            raise KeyError(f"{node} is not in the SDAG ({len(self)} nodes); rebuild it with `mll sdag build`") from None

    def node(self, node: str) -> dict:
        """Attributes of `node`: name, lemmas, definition, depth, lexname (KeyError naming the id if absent)."""
        i = self._i(node)
        return {
            "name": self._names[i],
            "lemmas": self._lemmas[i].split("|"),
            "definition": self._defs[i],
            "depth": self._depth[i],
            "lexname": self._lex[i],
        }

    def lemma_count(self, node: str, lemma: str) -> int:
        """WordNet's tagged frequency of `lemma` in synset `node` (0 when unknown)."""
        i = self._i(node)
        lemmas = self._lemmas[i].lower().split("|")
        counts = self._counts[i].split("|") if self._counts[i] else []
        key = lemma.lower().replace(" ", "_")
        for lm, c in zip(lemmas, counts):
            if lm == key:
                return int(c)
        return 0

    def name(self, node: str) -> str:
        return self._names[self._i(node)]

    def depth(self, node: str) -> int:
        return self._depth[self._i(node)]

    def _children_idx(self) -> list[list[int]]:
        if self._chi is None:
            chi: list[list[int]] = [[] for _ in self._ids]
            for c, ps in enumerate(self._par):
                for p in ps:
                    chi[p].append(c)
            self._chi = chi
        return self._chi

    def parents(self, node: str) -> list[str]:
        return sorted(self._ids[p] for p in self._par[self._i(node)])

    def children(self, node: str) -> list[str]:
        return sorted(self._ids[c] for c in self._children_idx()[self._i(node)])

    def edges(self) -> list[tuple[str, str]]:
        """(parent, child) pairs."""
        return [(self._ids[p], self._ids[c]) for c, ps in enumerate(self._par) for p in ps]

    @property
    def graph(self) -> nx.DiGraph:
        """The SDAG as a networkx DiGraph (parent -> child), with node attributes."""
        if self._graph is None:
            import networkx as nx

            g = nx.DiGraph()
            g.add_nodes_from((n, self.node(n)) for n in self._ids)
            g.add_edges_from(self.edges())
            self._graph = g
        return self._graph

    # --- hierarchy queries --------------------------------------------------------------------
    def _reach(self, start: int, adj: list[list[int]]) -> set[int]:
        seen: set[int] = set()
        stack = list(adj[start])
        while stack:
            n = stack.pop()
            if n not in seen:
                seen.add(n)
                stack.extend(adj[n])
        return seen

    def ancestors(self, node: str) -> set[str]:
        """All hypernyms of `node` up to the root (excluding `node`)."""
        return {self._ids[i] for i in self._reach(self._i(node), self._par)}

    def descendants(self, node: str) -> set[str]:
        """All hyponyms of `node` (excluding `node`)."""
        return {self._ids[i] for i in self._reach(self._i(node), self._children_idx())}

    def is_ancestor(self, a: str, b: str) -> bool:
        """True if `a` is a proper ancestor of `b`."""
        return a != b and self._i(a) in self._reach(self._i(b), self._par)

    def lca(self, a: str, b: str) -> str:
        """Lowest common ancestor: the deepest node that is an ancestor-or-self of both."""
        ia, ib = self._i(a), self._i(b)
        common = (self._reach(ia, self._par) | {ia}) & (self._reach(ib, self._par) | {ib})
        if not common:
            raise ValueError(f"{a} and {b} share no ancestor")
        return self._ids[max(common, key=lambda n: (self._depth[n], self._ids[n]))]

    def path_to_root(self, node: str) -> list[str]:
        """One shortest hypernym chain from `node` up to the root, `node` first."""
        path = [self._i(node)]
        while self._par[path[-1]]:
            # the shallowest parent keeps the chain shortest, ties by id for determinism
            path.append(min(self._par[path[-1]], key=lambda p: (self._depth[p], self._ids[p])))
        return [self._ids[i] for i in path]

    def nearest_covered(self, node: str, covered: Iterable[str]) -> tuple[str, int] | None:
        """The covered node closest to `node` in undirected hops, with the distance.

        Ties prefer a descendant (a more specific concept the user's class contains), then an
        ancestor, then the deeper node. Returns None when nothing covered is reachable.
        """
        start = self._i(node)
        cov = {self._pos[c] for c in covered if c in self._pos}
        if start in cov:
            return node, 0
        chi = self._children_idx()
        anc, desc = self._reach(start, self._par), self._reach(start, chi)
        seen, frontier, dist = {start}, [start], 0
        while frontier:
            dist += 1
            nxt = []
            for n in frontier:
                for m in (*chi[n], *self._par[n]):
                    if m not in seen:
                        seen.add(m)
                        nxt.append(m)
            hits = [m for m in nxt if m in cov]
            if hits:
                best = min(hits, key=lambda m: (m not in desc, m not in anc, -self._depth[m], self._ids[m]))
                return self._ids[best], dist
            frontier = nxt
        return None

    # --- lookup by text -----------------------------------------------------------------------
    def lookup(self, text: str) -> list[str]:
        """Node ids for a wnid, a synset name (`dog.n.01`) or a lemma (`dog`, all senses in the graph)."""
        text = text.strip()
        if is_wnid(text):
            return [text] if text in self._pos else []
        if self._by_name is None:
            with _no_gc():
                self._by_name = {nm: i for i, nm in enumerate(self._names)}
                by_lemma: dict[str, list[int]] = {}
                for i, lm in enumerate(self._lemmas):
                    for lemma in lm.lower().split("|"):
                        by_lemma.setdefault(lemma, []).append(i)
                self._by_lemma = by_lemma
        if text in self._by_name:
            return [self._ids[self._by_name[text]]]
        key = text.lower().replace(" ", "_")
        # sense order: synsets whose head word is the lemma first, then by WordNet sense number
        hits = sorted(self._by_lemma.get(key, []), key=lambda i: _sense_rank(self._names[i], key))
        return [self._ids[i] for i in hits]

    def lemma_keys(self) -> list[str]:
        """Every lemma of the graph as `lookup` keys it (lowercase, `_` between words)."""
        self.lookup("entity")  # builds the lemma index
        return list(self._by_lemma or {})

    def resolve(self, text: str) -> str:
        """The single node for `text` (first sense for a lemma); KeyError with a hint otherwise."""
        hits = self.lookup(text)
        if not hits:
            raise KeyError(f"{text!r} names no node of the SDAG; try a synset id (n02084071) or name (dog.n.01)")
        return hits[0]

    # --- persistence --------------------------------------------------------------------------
    def save(self, out_dir: Path) -> Path:
        """Write the graph as columnar JSON (`sdag.json`) into `out_dir`, replaced atomically."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        doc = {
            "format": "mll-sdag/1",
            "meta": {**self.meta, "nodes": len(self), "edges": sum(map(len, self._par))},
            "id": self._ids,
            "name": self._names,
            "lemmas": self._lemmas,
            "definition": self._defs,
            "depth": self._depth,
            "lexname": self._lex,
            "counts": self._counts,
            "parents": self._par,  # per node, the positions of its parents
        }
        tmp = out_dir / f".{_FILE}.tmp"
        tmp.write_text(json.dumps(doc, separators=(",", ":")))
        os.replace(tmp, out_dir / _FILE)
        return out_dir

    @classmethod
    def load(cls, in_dir: Path) -> SDAG:
        """Load a graph written by `save` (FileNotFoundError naming the fix when absent)."""
        path = Path(in_dir) / _FILE
        if not path.is_file():
            raise FileNotFoundError(f"no SDAG at {path}; build it with `mll sdag build --out {in_dir}`")
        with _no_gc():  # hundreds of thousands of small lists would trigger useless collections
            doc = json.loads(path.read_bytes())
        if doc.get("format") != "mll-sdag/1":
            raise ValueError(f"{path} is not an mll SDAG file (format {doc.get('format')!r}); rebuild it")
        return cls(
            doc["id"],
            doc["name"],
            doc["lemmas"],
            doc["definition"],
            doc["depth"],
            doc["parents"],
            doc["meta"],
            doc.get("lexname"),
            doc.get("counts"),
        )


@contextlib.contextmanager
def _no_gc():
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _sense_rank(name: str, lemma: str) -> tuple[int, str]:
    word, _, num = name.rpartition(".n.")
    return (0 if word.lower() == lemma else 1, int(num) if num.isdigit() else 99), name


def _ancestor_closure(synsets: Iterable) -> dict:
    """Map wnid -> synset for `synsets` and every (instance) hypernym above them."""
    todo, out = list(synsets), {}
    while todo:
        s = todo.pop()
        k = wnid(s)
        if k in out:
            continue
        out[k] = s
        todo.extend(s.hypernyms() + s.instance_hypernyms())
    return out


def build_sdag(vocabulary: Iterable[str] | None = None) -> SDAG:
    """Build the SDAG for all WordNet nouns, or for the ancestor closure of `vocabulary` (wnids).

    Args:
        vocabulary: synset ids to cover; None builds the full noun graph (82,115 nodes).
    """
    wn = get_wordnet()
    if vocabulary is None:
        synsets = {wnid(s): s for s in wn.all_synsets("n")}
        scope = "all"
    else:
        from mll.data.wordnet import synset_from_wnid

        synsets = dict(sorted(_ancestor_closure(synset_from_wnid(v) for v in vocabulary).items()))
        scope = "closure"
    nodes = {
        k: {
            "name": s.name(),
            "lemmas": [lm.name() for lm in s.lemmas()],
            "definition": s.definition(),
            "lexname": s.lexname(),
            "counts": [lm.count() for lm in s.lemmas()],
        }
        for k, s in synsets.items()
    }
    # parents sorted by id: NLTK keeps a synset's pointers in a set, whose order changes from process
    # to process (string hashing), so unsorted the saved parent lists differed between two builds
    edges = [
        (p, k) for k, s in synsets.items() for p in sorted(wnid(p) for p in s.hypernyms() + s.instance_hypernyms())
    ]
    children: dict[str, list[str]] = {}
    has_parent = set()
    for p, c in edges:
        children.setdefault(p, []).append(c)
        has_parent.add(c)
    # depth = shortest distance from the root(s), by BFS (the closure holds every ancestor)
    depth = {n: 0 for n in nodes if n not in has_parent}
    queue = deque(depth)
    while queue:
        n = queue.popleft()
        for c in children.get(n, ()):
            if c not in depth:
                depth[c] = depth[n] + 1
                queue.append(c)
    for k, d in depth.items():
        nodes[k]["depth"] = d
    # nothing volatile here (no timing): the saved file is a DVC output and must be byte-identical
    # for the same WordNet, so `sdag_stage` logs the build time instead
    meta = {"wordnet": wn.get_version(), "scope": scope}
    g = SDAG.from_edges(nodes, edges, meta)
    import networkx as nx

    if not nx.is_directed_acyclic_graph(g.graph):
        raise RuntimeError("WordNet hypernym graph has a cycle; the WordNet files are corrupt")
    return g

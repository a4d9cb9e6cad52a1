"""CHCO, Classification Head Combination Optimization: which models' heads answer which target classes.

Decided from the labels alone (no target images, no model run), in two stages:

1. **Prune** with the summary statistics: for each target class t_k keep the P heads with the best
   gated recall minus gated false alarm at node t_k (what scales to a huge hub).
2. **Choose** one option per class (a set of 1..k_max of its candidate heads) maximising the
   estimated accuracy on the target classes' node data, simulated from the stored outputs, minus a
   cost per distinct model run:

       max  (1/K) Σ_k acc_k(o_k) − λ · |∪_k models(o_k)|

   acc_k(o) is the AUROC of class k's gated score s_k^o(x) = mean_{m∈o} g_m(x) P_m(t_k|x) on the
   node data, separating the class's own node images from the other target classes' node images: a
   threshold-free balanced accuracy of the class's detector (P(t_k|x) leaves out the mass of nested
   target classes below t_k). The objective decomposes over classes given the
   model-use indicators, so it is an integer program: solved exactly with HiGHS, and by a greedy +
   local-search heuristic for very large candidate sets.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mll.labels.index import LabelIndex
from mll.labels.scores import auroc, gate_score
from mll.data.sdag import SDAG


# --- the selection ---------------------------------------------------------------------------------
@dataclass
class ClassChoice:
    name: str
    synset: str | None
    target_node: str | None  # the node actually answered (the synset, or its backoff relative)
    models: list[str] = field(default_factory=list)
    head_classes: dict[str, list[str]] = field(default_factory=dict)  # model -> its head classes under the node
    estimated_accuracy: float | None = None  # balanced accuracy of the class's score on node data
    node_images: int = 0
    candidates: list[dict] = field(default_factory=list)  # pruned candidates with their label statistics
    why: str = ""
    exclude: list[str] = field(default_factory=list)  # nested target nodes below this one (their mass is theirs)
    backoff: str | None = None  # set when no head covers the class and it backs off to a relative
    patched: bool = False  # answered by the vision-language patch


@dataclass
class Selection:
    classes: list[ClassChoice]
    models: list[str]
    objective: float
    estimated_accuracy: float | None  # simulated argmax accuracy of the whole combination on node data
    solver: str
    seconds: float
    cost_per_model: float
    combiner: str = "pending"  # stacking | statistics (set by reuse)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self, path: Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2, default=float)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    def by_class(self) -> dict[str, list[str]]:
        return {c.name: c.models for c in self.classes}

    @property
    def uncovered(self) -> list[str]:
        return [c.name for c in self.classes if not c.models]


# --- node data and simulated scores ---------------------------------------------------------------
def task_node_data(index: LabelIndex, targets: list[str], sdag: SDAG) -> tuple[list[str], np.ndarray]:
    """Probe images under the target nodes: (uris, class index); an image under two nested targets
    belongs to the more specific one. Costs the size of the targets' subtrees, not probe x targets."""
    if not index.models:
        return [], np.empty(0, dtype=int)
    lab = index.label(index.models[0])
    uris = lab.uris
    rows_of: dict[str, list[int]] = {}
    for i, s in enumerate(lab.synsets):
        rows_of.setdefault(s, []).append(i)
    y = np.full(len(uris), -1)
    best_depth = np.full(len(uris), -1)
    for k, t in enumerate(targets):
        if not t or t not in sdag:
            continue
        d = sdag.depth(t)
        for node in (sdag.descendants(t) | {t}) & rows_of.keys():
            for i in rows_of[node]:
                if d > best_depth[i]:
                    y[i], best_depth[i] = k, d
    keep = np.flatnonzero(y >= 0)
    return [uris[i] for i in keep], y[keep]


class ScoreBank:
    """Gated subtree probabilities g_m(x) P_m(t|x) of candidate models on node-data images (cached)."""

    def __init__(self, index: LabelIndex, sdag: SDAG, uris: list[str], hub_cards: dict):
        self.index, self.sdag, self.cards = index, sdag, hub_cards
        self.uris = uris
        self._rows: dict[str, np.ndarray] = {}
        self._cache: dict = {}

    def _row_index(self, model: str) -> np.ndarray:
        if model not in self._rows:
            # labels measured on the same probe set share one row map
            key = self.index.summaries.get(model, {}).get("probe_hash") or model
            if key not in self._rows:
                pos = {u: i for i, u in enumerate(self.index.label(model).uris)}
                self._rows[key] = np.asarray([pos[u] for u in self.uris], dtype=int)
            self._rows[model] = self._rows[key]
        return self._rows[model]

    def logp(self, model: str) -> np.ndarray:
        key = ("logp", model)
        if key not in self._cache:
            lab = self.index.label(model)
            self._cache[key] = lab.dense_logp(self.cards[model].num_classes)[self._row_index(model)]
        return self._cache[key]

    def gate(self, model: str) -> np.ndarray:
        key = ("gate", model)
        if key not in self._cache:
            lab = self.index.label(model)
            rows = self._row_index(model)
            self._cache[key] = gate_score(lab.summary["gate"], self.logp(model), lab.lse[rows])
        return self._cache[key]

    def subtree_prob(self, model: str, node: str, exclude: tuple[str, ...] = ()) -> np.ndarray:
        key = ("p", model, node, exclude)
        if key not in self._cache:
            cols = head_columns(self.cards[model], node, self.sdag, exclude)
            self._cache[key] = np.exp(self.logp(model)[:, cols]).sum(1) if cols else np.zeros(len(self.uris))
        return self._cache[key]

    def lse(self, model: str) -> np.ndarray:
        """Logit log-sum-exp of `model` on the node images (for domain features)."""
        return self.index.label(model).lse[self._row_index(model)]

    def score(self, model: str, node: str, exclude: tuple[str, ...] = ()) -> np.ndarray:
        return self.gate(model) * self.subtree_prob(model, node, exclude)


_COLS_CACHE: dict = {}


def head_columns(card, node: str, sdag: SDAG, exclude: tuple[str, ...] | list[str] = ()) -> list[int]:
    """Indices of a card's head classes under `node`, minus those under nested targets `exclude`."""
    # a 1000-class head walks 1000 ancestor sets per call; baselines and sub-hubs repeat the same calls
    key = (id(sdag), card.name, card.weights_sha256, len(card.synsets), node, tuple(exclude))
    hit = _COLS_CACHE.get(key)
    if hit is None:
        if len(_COLS_CACHE) > 100_000:
            _COLS_CACHE.clear()
        hit = _COLS_CACHE[key] = _head_columns(card, node, sdag, exclude)
    return list(hit)


def _head_columns(card, node: str, sdag: SDAG, exclude) -> list[int]:
    if node not in sdag:
        return []
    out = []
    for i, s in enumerate(card.synsets):  # walk up from each head class: cheap, unlike node's subtree
        if s not in sdag:
            continue
        up = _up(sdag, s)
        if node in up and not any(e in up for e in exclude):
            out.append(i)
    return out


_UP_CACHE: dict = {}


def _up(sdag: SDAG, s: str) -> frozenset:
    """{s} and its ancestors, cached per SDAG object."""
    key = (id(sdag), s)
    hit = _UP_CACHE.get(key)
    if hit is None:
        if len(_UP_CACHE) > 200_000:
            _UP_CACHE.clear()
        hit = _UP_CACHE[key] = frozenset(sdag.ancestors(s) | {s})
    return hit


# --- the optimisation ------------------------------------------------------------------------------
@dataclass
class Problem:
    """Per class k, options o (tuples of model names) with their estimated accuracy acc[k][o]."""

    options: list[list[tuple[str, ...]]]
    acc: list[list[float]]
    cost: float

    def objective(self, choice: list[int]) -> float:
        k = len(self.options)
        used = set()
        total = 0.0
        for c, o in enumerate(choice):
            if o < 0:
                continue
            total += self.acc[c][o]
            used |= set(self.options[c][o])
        return total / max(k, 1) - self.cost * len(used)


def solve_exact(p: Problem, time_limit: float = 30.0) -> tuple[list[int], str]:
    """Exact optimum of the CHCO integer program with HiGHS (exhaustive search when tiny)."""
    sizes = [len(o) for o in p.options]
    if np.prod([max(s, 1) for s in sizes], dtype=float) <= 4096:
        best, best_v = None, -np.inf
        for choice in itertools.product(*[range(s) if s else [-1] for s in sizes]):
            v = p.objective(list(choice))
            if v > best_v + 1e-12:
                best, best_v = list(choice), v
        return best, "exhaustive"
    import highspy

    models = sorted({m for opts in p.options for o in opts for m in o})
    mi = {m: i for i, m in enumerate(models)}
    h = _silent_highs(highspy)
    h.setOptionValue("time_limit", float(time_limit))
    k = len(p.options)
    var = []  # (class, option) -> column
    inf = highspy.kHighsInf
    for c, opts in enumerate(p.options):
        for o in range(len(opts)):
            h.addVar(0.0, 1.0)
            h.changeColCost(h.getNumCol() - 1, -p.acc[c][o] / k)  # HiGHS minimises
            var.append((c, o))
    y0 = h.getNumCol()
    for _ in models:
        h.addVar(0.0, 1.0)
        h.changeColCost(h.getNumCol() - 1, p.cost)
    n = h.getNumCol()
    h.changeColsIntegrality(n, np.arange(n, dtype=np.int32), np.ones(n, dtype=np.uint8))
    col = 0
    for c, opts in enumerate(p.options):  # exactly one option per coverable class
        if opts:
            idx = np.arange(col, col + len(opts), dtype=np.int32)
            h.addRow(1.0, 1.0, len(idx), idx, np.ones(len(idx)))
        col += len(opts)
    for j, (c, o) in enumerate(var):  # option uses model -> model is paid for
        for m in p.options[c][o]:
            h.addRow(-inf, 0.0, 2, np.array([j, y0 + mi[m]], dtype=np.int32), np.array([1.0, -1.0]))
    h.run()
    x = h.getSolution().col_value
    choice = [-1] * k
    for j, (c, o) in enumerate(var):
        if x[j] > 0.5:
            choice[c] = o
    return choice, "highs"


def _silent_highs(highspy):
    """A HiGHS instance without its banner (printed at construction, straight to file descriptor 1)."""
    import os
    import sys

    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        h = highspy.Highs()
        h.setOptionValue("output_flag", False)
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)
    return h


def solve_heuristic(p: Problem, rounds: int = 3) -> tuple[list[int], str]:
    """Greedy (best option per class) then coordinate ascent accounting for shared model costs."""
    choice = [int(np.argmax(a)) if a else -1 for a in p.acc]
    best = p.objective(choice)
    for _ in range(rounds):
        improved = False
        for c, opts in enumerate(p.options):
            for o in range(len(opts)):
                if o == choice[c]:
                    continue
                trial = choice.copy()
                trial[c] = o
                v = p.objective(trial)
                if v > best + 1e-12:
                    choice, best, improved = trial, v, True
        if not improved:
            break
    return choice, "greedy+local"


def select(index: LabelIndex, sdag: SDAG, names: list[str], targets: list[str | None], hub_cards: dict,
           prune: int = 3, max_heads: int = 2, cost: float = 0.01, solver: str = "auto",
           backoffs: dict[str, str] | None = None, fixed: list[list[str]] | None = None,
           weights: np.ndarray | None = None) -> tuple[Selection, ScoreBank, np.ndarray]:
    """Run CHCO for a task: names with their matched nodes (None = unmatched) -> Selection.

    `fixed` skips the optimisation: class k is answered by the models in fixed[k] whose heads cover
    its node (the baselines use it). `weights` (one per node image, `mll.solve.adaptation`) weight the
    node images in the accuracy estimates. Returns the selection, the score bank on the node data and the
    node-data labels, which reuse fits its combiner on.
    """
    t0 = time.perf_counter()
    backoffs = backoffs or {}
    answer = [backoffs.get(n, t) for n, t in zip(names, targets)]
    uris, y = task_node_data(index, [a or "" for a in answer], sdag)
    if weights is not None and len(weights) != len(uris):
        raise ValueError(f"node weights: {len(weights)} given for {len(uris)} node images (plan again)")
    bank = ScoreBank(index, sdag, uris, hub_cards)
    # nested targets: a parent class answers only for what its nested children do not
    anc = {o: sdag.ancestors(o) for o in set(answer) if o and o in sdag}  # K reachability queries, not K^2
    excl = [tuple(o for j, o in enumerate(answer) if j != k and a and o in anc and o != a and a in anc[o])
            for k, a in enumerate(answer)]
    options, accs, cand_info = [], [], []
    for k, node in enumerate(answer):
        rows = index.rows(node) if node else index.nodes.iloc[0:0]
        rows = rows[rows["head_classes"] > 0]
        # a head class strictly above the target cannot tell it from its siblings: it does not cover it
        stat = (rows["gated_recall"].fillna(rows["soft_recall"]).fillna(0.0)
                - rows["gated_false_alarm"].fillna(rows["false_alarm"]).fillna(0.0))
        rows = rows.assign(prune_score=stat).sort_values("prune_score", ascending=False)
        if fixed is not None:
            rows = rows[rows["model"].isin(fixed[k])]
        else:
            rows = rows.head(prune)
        cands = list(rows["model"])
        cand_info.append(rows[["model", "prune_score", "gated_recall", "gated_false_alarm", "top1_hit", "support",
                               "measured"]].to_dict("records"))
        if fixed is not None:
            opts = [tuple(sorted(cands))] if cands else []
        else:
            opts = [o for r in range(1, max_heads + 1) for o in itertools.combinations(cands, r)]
        pos, neg = y == k, (y != k) & (y >= 0)
        acc = []
        for o in opts:
            if pos.any():
                s = np.mean([bank.score(m, node, excl[k]) for m in o], axis=0)
                acc.append(auroc(s[pos], s[neg]) if weights is None else
                           auroc(s[pos], s[neg], weights[pos], weights[neg]))
            else:  # no node images: fall back to the label statistics
                acc.append(float(np.mean([stat.loc[rows.index[cands.index(m)]] for m in o])) / 2 + 0.5)
        options.append(opts)
        accs.append(acc)
    problem = Problem(options, accs, cost)
    use = solver if solver != "auto" else ("exact" if sum(len(o) for o in options) <= 3000 else "heuristic")
    if fixed is not None:
        choice, how = [0 if o else -1 for o in options], "fixed"
    else:
        choice, how = solve_exact(problem) if use == "exact" else solve_heuristic(problem)
    classes = []
    for k, (n, t) in enumerate(zip(names, targets)):
        c = ClassChoice(n, t, answer[k], candidates=cand_info[k], node_images=int((y == k).sum()),
                        backoff=backoffs.get(n), exclude=list(excl[k]))
        if choice[k] >= 0:
            ms = list(options[k][choice[k]])
            c.models = ms
            c.head_classes = {m: [hub_cards[m].class_names[i]
                                  for i in head_columns(hub_cards[m], answer[k], sdag, excl[k])] for m in ms}
            c.estimated_accuracy = round(accs[k][choice[k]], 4)
            alts = len(options[k])
            c.why = (f"best of {alts} option(s) over {len(cand_info[k])} pruned head(s): AUROC (balanced accuracy) "
                     f"{c.estimated_accuracy:.3f} on {c.node_images} node images" if c.node_images else
                     f"best of {alts} option(s) by label statistics (no node images for this class)")
            if c.backoff:
                c.why += f"; no head covers {n!r}, backed off to {sdag.name(c.backoff)}"
        else:
            c.why = "no hub head covers this class"
        classes.append(c)
    models = sorted({m for c in classes for m in c.models})
    sel = Selection(classes, models, round(problem.objective(choice), 5), None, how,
                    round(time.perf_counter() - t0, 4), cost)
    return sel, bank, y

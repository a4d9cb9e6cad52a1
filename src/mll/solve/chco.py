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

from mll.data.sdag import SDAG
from mll.labels.index import LabelIndex
from mll.labels.scores import auroc
from mll.solve.nodedata import ScoreBank, head_columns, task_node_data


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
    mode: str | None = None  # how the combiner answers it: stacking | statistics | patch (None: unanswered)


@dataclass
class Selection:
    classes: list[ClassChoice]
    models: list[str]
    objective: float
    estimated_accuracy: float | None  # simulated argmax accuracy of the whole combination on node data
    solver: str
    seconds: float
    cost_per_model: float
    combiner: str = "pending"  # stacking | statistics | hybrid, "-ungated" without gates (set by reuse)

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
    for opts in p.options:  # exactly one option per coverable class
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


def select(
    index: LabelIndex,
    sdag: SDAG,
    names: list[str],
    targets: list[str | None],
    hub_cards: dict,
    prune: int = 3,
    max_heads: int = 2,
    cost: float = 0.01,
    solver: str = "auto",
    backoffs: dict[str, str] | None = None,
    fixed: list[list[str]] | None = None,
    weights: np.ndarray | None = None,
    temperature: str = "none",
) -> tuple[Selection, ScoreBank, np.ndarray]:
    """Run CHCO for a task: names with their matched nodes (None = unmatched) -> Selection.

    `fixed` skips the optimisation: class k is answered by the models in fixed[k] whose heads cover
    its node (the baselines use it). `weights` (one per node image, `mll.solve.adaptation`) weight the
    node images in the accuracy estimates; `temperature` (none | full | all) scores with the labels' fitted temperatures
    (`ScoreBank`).
    Returns the selection, the score bank on the node data and the
    node-data labels, which reuse fits its combiner on.
    """
    t0 = time.perf_counter()
    backoffs = backoffs or {}
    answer = [backoffs.get(n, t) for n, t in zip(names, targets)]
    uris, y = task_node_data(index, [a or "" for a in answer], sdag)
    if weights is not None and len(weights) != len(uris):
        raise ValueError(f"node weights: {len(weights)} given for {len(uris)} node images (plan again)")
    bank = ScoreBank(index, sdag, uris, hub_cards, temperature=temperature)
    # nested targets: a parent class answers only for what its nested children do not
    anc = {o: sdag.ancestors(o) for o in set(answer) if o and o in sdag}  # K reachability queries, not K^2
    excl = [
        tuple(o for j, o in enumerate(answer) if j != k and a and o in anc and o != a and a in anc[o])
        for k, a in enumerate(answer)
    ]
    options, accs, cand_info = [], [], []
    for k, node in enumerate(answer):
        rows = index.rows(node) if node else index.nodes.iloc[0:0]
        rows = rows[rows["head_classes"] > 0]
        # a head class strictly above the target cannot tell it from its siblings: it does not cover it
        stat = rows["gated_recall"].fillna(rows["soft_recall"]).fillna(0.0) - rows["gated_false_alarm"].fillna(
            rows["false_alarm"]
        ).fillna(0.0)
        rows = rows.assign(prune_score=stat).sort_values("prune_score", ascending=False)
        if fixed is not None:
            rows = rows[rows["model"].isin(fixed[k])]
        else:
            rows = rows.head(prune)
        cands = list(rows["model"])
        cand_info.append(
            rows[
                ["model", "prune_score", "gated_recall", "gated_false_alarm", "top1_hit", "support", "measured"]
            ].to_dict("records")
        )
        if fixed is not None:
            opts = [tuple(sorted(cands))] if cands else []
        else:
            opts = [o for r in range(1, max_heads + 1) for o in itertools.combinations(cands, r)]
        pos, neg = y == k, (y != k) & (y >= 0)
        acc = []
        for o in opts:
            if pos.any():
                s = np.mean([bank.score(m, node, excl[k]) for m in o], axis=0)
                acc.append(
                    auroc(s[pos], s[neg]) if weights is None else auroc(s[pos], s[neg], weights[pos], weights[neg])
                )
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
        c = ClassChoice(
            n,
            t,
            answer[k],
            candidates=cand_info[k],
            node_images=int((y == k).sum()),
            backoff=backoffs.get(n),
            exclude=list(excl[k]),
        )
        if choice[k] >= 0:
            ms = list(options[k][choice[k]])
            c.models = ms
            c.head_classes = {
                m: [hub_cards[m].class_names[i] for i in head_columns(hub_cards[m], answer[k], sdag, excl[k])]
                for m in ms
            }
            c.estimated_accuracy = round(accs[k][choice[k]], 4)
            alts = len(options[k])
            c.why = (
                f"best of {alts} option(s) over {len(cand_info[k])} pruned head(s): AUROC (balanced accuracy) "
                f"{c.estimated_accuracy:.3f} on {c.node_images} node images"
                if c.node_images
                else f"best of {alts} option(s) by label statistics (no node images for this class)"
            )
            if c.backoff:
                c.why += f"; no head covers {n!r}, backed off to {sdag.name(c.backoff)}"
        else:
            c.why = "no hub head covers this class"
        classes.append(c)
    models = sorted({m for c in classes for m in c.models})
    sel = Selection(
        classes, models, round(problem.objective(choice), 5), None, how, round(time.perf_counter() - t0, 4), cost
    )
    return sel, bank, y

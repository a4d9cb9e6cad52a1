"""CHCO, Classification Head Combination Optimization: which models' heads answer which target classes.

Decided from the labels alone (no target images, no model run), in two stages:

1. **Prune** with the summary statistics: for each target class t_k keep the P heads with the best
   gated recall minus gated false alarm at node t_k (what scales to a huge hub).
2. **Choose** one option per class (a set of 1..k_max of its candidate heads) maximising the
   estimated accuracy on the target classes' node data, simulated from the stored outputs, minus
   the cost of the computation the chosen models need, each shared piece counted once:

       max  (1/K) Σ_k acc_k(o_k) − Σ_{j ∈ U} c_j,    U = ∪_k ∪_{m ∈ o_k} units(m)

   A standalone model is one cost unit, c = λ; a head on a shared backbone (`ExpertCard.backbone`)
   is two: the backbone's forward pass on its input config (c = λ, shared by every head on it) and
   its own head (c = λ · head_cost_ratio); see `cost_units`.

   acc_k(o) is the AUROC of class k's gated score s_k^o(x) = mean_{m∈o} g_m(x) P_m(t_k|x) on the
   node data, separating the class's own node images from the other target classes' node images: a
   threshold-free balanced accuracy of the class's detector (P(t_k|x) leaves out the mass of nested
   target classes below t_k). The objective decomposes over classes given the
   model-use indicators, so it is an integer program: solved exactly with HiGHS, and by a greedy +
   local-search heuristic for very large candidate sets (both in `mll.solve.solvers`).

The proxy decomposes by class, so it cannot see that two classes' heads confuse each other once
combined. With a `rerank` (`mll.solve.rerank`), a few candidate selections around the proxy optimum
are scored by the combined, cross-fitted objective (the real combiner's accuracy on held-out node
data) and the best one is used. The selection records each stage's seconds (`Selection.timings`):
node data, prune, proxy (the option accuracies from stored outputs), solve and rerank.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mll.data.sdag import SDAG
from mll.labels.index import LabelIndex
from mll.labels.scores import auroc, auroc_rows
from mll.solve.heuristic import solve_heuristic
from mll.solve.nodedata import ScoreBank, head_columns, task_node_data
from mll.solve.problem import Problem
from mll.solve.solvers import solve_exact

if TYPE_CHECKING:  # rerank fits combiners (mll.solve.reuse), which import this module
    from mll.solve.rerank import Rerank


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
    solver_note: str = ""  # why the exact solver's answer was not used (e.g. HiGHS hit its time limit)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage (see the module doc)
    rerank: dict = field(default_factory=dict)  # the re-ranked candidates and their scores (mll.solve.rerank)
    # the cost units paid, each with the selected models that need it (a shared backbone lists its
    # heads; a standalone model or a head's own unit, itself) and the head's cost as a share of λ
    cost_units: dict[str, list[str]] = field(default_factory=dict)
    head_cost_ratio: float = 0.1

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


def select(
    index: LabelIndex,
    sdag: SDAG,
    names: list[str],
    targets: list[str | None],
    hub_cards: dict,
    prune: int = 3,
    max_heads: int = 2,
    cost: float = 0.01,
    head_cost_ratio: float = 0.1,
    solver: str = "auto",
    backoffs: dict[str, str] | None = None,
    fixed: list[list[str]] | None = None,
    weights: np.ndarray | None = None,
    time_limit: float = 30.0,
    temperature: str = "none",
    rerank: Rerank | None = None,
    masked: dict[str, list[int]] | None = None,
    drop_classes: tuple[int, ...] = (),
) -> tuple[Selection, ScoreBank, np.ndarray]:
    """Run CHCO for a task: names with their matched nodes (None = unmatched) -> Selection.

    `fixed` skips the optimisation: class k is answered by the models in fixed[k] whose heads cover
    its node (the baselines use it). `weights` (one per node image, `mll.solve.adaptation`) weight the
    node images in the accuracy estimates; `temperature` (none | full | all) scores with the labels'
    fitted temperatures (`ScoreBank`). `time_limit`: seconds HiGHS may take before the heuristic
    answers instead (said in `Selection.solver_note`). `rerank` re-scores candidate selections
    around the proxy optimum with the combined, cross-fitted objective (not with `fixed`).
    `masked` ({model: head columns}) and `drop_classes` (classes whose node images are removed) hide
    coverage for the masked-coverage family (`mll.solve.masking`).
    `cost` is λ, what a standalone model or a shared backbone's forward pass costs; a head on a
    backbone costs `head_cost_ratio` x λ on top of its backbone, which is paid once (`cost_units`).
    Returns the selection, the score bank on the node data and the node-data labels, which reuse
    fits its combiner on.
    """
    t0 = time.perf_counter()
    backoffs = backoffs or {}
    answer = [backoffs.get(n, t) for n, t in zip(names, targets)]
    uris, y = task_node_data(index, [a or "" for a in answer], sdag)
    if drop_classes:
        keep = ~np.isin(y, list(drop_classes))
        uris, y = [u for u, k in zip(uris, keep) if k], y[keep]
    if weights is not None and len(weights) != len(uris):
        raise ValueError(f"node weights: {len(weights)} given for {len(uris)} node images (plan again)")
    bank = ScoreBank(index, sdag, uris, hub_cards, temperature=temperature, masked=masked)
    # nested targets: a parent class answers only for what its nested children do not
    anc = {o: sdag.ancestors(o) for o in set(answer) if o and o in sdag}  # K reachability queries, not K^2
    excl = [
        tuple(o for j, o in enumerate(answer) if j != k and a and o in anc and o != a and a in anc[o])
        for k, a in enumerate(answer)
    ]
    timings = {"node_data": time.perf_counter() - t0, "prune": 0.0, "proxy": 0.0}
    options, accs, cand_info = [], [], []
    for k, node in enumerate(answer):
        t1 = time.perf_counter()
        # a head class strictly above the target cannot tell it from its siblings: it does not cover it
        rows, stat = _pruned_rows(index, node)
        if fixed is not None:
            keep = np.flatnonzero(np.isin(rows["model"], list(fixed[k])))
        else:
            keep = np.arange(min(prune, len(stat)))
        rows, stat = {c: a[keep] for c, a in rows.items()}, stat[keep]
        cands = rows["model"].tolist()
        cand_info.append(
            [
                {c: _native(stat[i] if c == "prune_score" else rows[c][i]) for c in _CANDIDATE_FIELDS}
                for i in range(len(cands))
            ]
        )
        if fixed is not None:
            opts = [tuple(sorted(cands))] if cands else []
        else:
            opts = [o for r in range(1, max_heads + 1) for o in itertools.combinations(cands, r)]
        t2 = time.perf_counter()
        pos, neg = y == k, (y != k) & (y >= 0)
        if opts and pos.any():
            s = np.stack([_mean_score(bank, o, node, excl[k]) for o in opts])
            if weights is None:
                acc = auroc_rows(s[:, pos], s[:, neg])
            else:
                acc = [auroc(r[pos], r[neg], weights[pos], weights[neg]) for r in s]
        else:  # no node images: fall back to the label statistics
            acc = [float(np.mean([stat[cands.index(m)] for m in o])) / 2 + 0.5 for o in opts]
        options.append(opts)
        accs.append(acc)
        t3 = time.perf_counter()
        timings["prune"] += t2 - t1
        timings["proxy"] += t3 - t2
    t4 = time.perf_counter()
    units, unit_costs = cost_units({m for opts in options for o in opts for m in o}, hub_cards, cost, head_cost_ratio)
    problem = Problem(options, accs, cost, units, unit_costs)
    use = solver if solver != "auto" else ("exact" if sum(len(o) for o in options) <= 3000 else "heuristic")
    notes: list[str] = []
    if fixed is not None:
        choice, how = [0 if o else -1 for o in options], "fixed"
    else:
        choice, how = solve_exact(problem, time_limit, notes=notes) if use == "exact" else solve_heuristic(problem)
    timings["solve"] = time.perf_counter() - t4

    def build(choice: list[int]) -> list[ClassChoice]:
        return _class_choices(
            choice, names, targets, answer, options, accs, cand_info, y, backoffs, excl, hub_cards, sdag
        )

    record: dict = {}
    t5 = time.perf_counter()
    if rerank is not None and rerank.candidates > 0 and fixed is None:

        def resolve(p: Problem) -> list[int]:  # the same solver, for the optima at other model costs
            return solve_exact(p, time_limit)[0] if use == "exact" else solve_heuristic(p)[0]

        choice, record = rerank.choose(problem, choice, build, bank, y, weights, sdag, hub_cards, resolve)
    timings["rerank"] = time.perf_counter() - t5
    classes = build(choice)
    if record.get("winner"):  # the proxy's "best of ..." no longer holds for the classes it changed
        won = record["candidates"][record["winner"]]
        for c in classes:
            if c.name in won["changed"]:
                c.why += (
                    f"; re-ranked ({won['how']}): the combiner's cross-fitted node-data accuracy "
                    f"{won['accuracy']:.3f} vs {record['candidates'][0]['accuracy']:.3f} for the proxy's choice"
                )
    models = sorted({m for c in classes for m in c.models})
    paid = {u: sorted(m for m in models if u in problem.model_units(m)) for u in sorted(problem.units_of(models))}
    sel = Selection(
        classes,
        models,
        round(problem.objective(choice), 5),
        None,
        how,
        round(time.perf_counter() - t0, 4),
        cost,
        solver_note="; ".join(notes),
        timings={k: round(v, 4) for k, v in timings.items()},
        rerank=record,
        cost_units=paid,
        head_cost_ratio=head_cost_ratio,
    )
    return sel, bank, y


def cost_units(
    models: set[str] | list[str], hub_cards: dict, cost: float, head_cost_ratio: float
) -> tuple[dict[str, tuple[str, ...]], dict[str, float]]:
    """The cost units of these models, as `Problem` takes them: (model -> its units, unit -> cost).

    A standalone model (a card with no `backbone`, or a card type without the field, as in the
    synthetic hubs) is left out: it is one unit named after itself, costing `cost`. A head on a
    backbone needs the backbone's forward pass on its input config, named `backbone@size` (with a
    short hash of the input config when two configs of one backbone share a size), costing `cost`
    and shared with every head on that backbone and input, plus its own head, named after itself,
    costing `cost * head_cost_ratio`. Identity is (backbone, input config), as in the feature
    cache's key, without reading the backbone's weights file.
    """
    heads = {}
    for m in sorted(models):
        card = hub_cards[m]
        bb = getattr(card, "backbone", "") or ""
        if bb:
            heads[m] = (bb, card.input)
    labels: dict[tuple, str] = {}
    for key in sorted(set(heads.values()), key=repr):
        bb, inp = key
        label = f"{bb}@{inp.size}"
        if any(k != key and k[0] == bb and k[1].size == inp.size for k in heads.values()):
            label += "-" + hashlib.sha256(repr(inp).encode()).hexdigest()[:8]
        if label in models:  # a model named like the unit: keep the two apart
            label += "#backbone"
        labels[key] = label
    units = {m: (labels[key], m) for m, key in heads.items()}
    unit_costs = {labels[key]: cost for key in set(heads.values())}
    unit_costs.update({m: cost * head_cost_ratio for m in heads})
    return units, unit_costs


def _class_choices(
    choice: list[int],
    names: list[str],
    targets: list[str | None],
    answer: list[str | None],
    options: list[list[tuple[str, ...]]],
    accs: list[list[float]],
    cand_info: list[list[dict]],
    y: np.ndarray,
    backoffs: dict[str, str],
    excl: list[tuple[str, ...]],
    hub_cards: dict,
    sdag: SDAG,
) -> list[ClassChoice]:
    """The per-class part of a selection for one option choice (-1: the class has none)."""
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
    return classes


def _mean_score(bank: ScoreBank, option: tuple[str, ...], node: str, exclude: tuple[str, ...]) -> np.ndarray:
    """An option's score on the node images: the mean of its heads' gated scores, with the very
    arithmetic of `np.mean(..., axis=0)` (one head: itself; two: (a + b) / 2), without its overhead."""
    scores = [bank.score(m, node, exclude) for m in option]
    if len(scores) == 1:
        return scores[0]
    if len(scores) == 2 and scores[0].dtype == scores[1].dtype == np.float64:
        return (scores[0] + scores[1]) / 2
    return np.mean(scores, axis=0)


_CANDIDATE_FIELDS = ("model", "prune_score", "gated_recall", "gated_false_alarm", "top1_hit", "support", "measured")


def _pruned_rows(index: LabelIndex, node: str | None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Label rows of the models with a head class under `node`, best prune score first, with the scores.

    prune score = gated recall (else soft recall, else 0) − gated false alarm (else false alarm,
    else 0). Ordered as pandas' `sort_values(ascending=False)` orders it (quicksort over the reversed
    rows, reversed; NaN last), which this replaced: ties keep the order they always had.
    """
    rows = index.row_arrays(node) if node else {}
    if not rows or not len(rows["model"]):
        return {c: np.empty(0, dtype=object) for c in _CANDIDATE_FIELDS}, np.empty(0)
    keep = np.asarray(rows["head_classes"]) > 0
    rows = {c: np.asarray(a)[keep] for c, a in rows.items()}

    def filled(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        a = np.where(np.isnan(a), b, a)
        return np.where(np.isnan(a), 0.0, a)

    stat = filled(rows["gated_recall"], rows["soft_recall"]) - filled(rows["gated_false_alarm"], rows["false_alarm"])
    nan = np.isnan(stat)
    idx = np.flatnonzero(~nan)[::-1]
    order = np.concatenate([idx[stat[idx].argsort(kind="quicksort")][::-1], np.flatnonzero(nan)])
    return {c: a[order] for c, a in rows.items()}, stat[order]


def _native(v):
    """A numpy scalar as the Python value pandas' `to_dict("records")` gave."""
    return v.item() if isinstance(v, np.generic) else v

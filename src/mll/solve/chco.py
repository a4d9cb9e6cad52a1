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

The selection records each stage's seconds (`Selection.timings`): node data, prune, proxy (the
option accuracies from stored outputs) and solve, so a later stage over the top candidates can be
timed on its own.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from mll.data.sdag import SDAG
from mll.labels.index import LabelIndex
from mll.labels.scores import auroc, auroc_rows
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
    solver_note: str = ""  # why the exact solver's answer was not used (e.g. HiGHS hit its time limit)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage (see the module doc)

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
        used: set[str] = set()
        total = 0.0
        for c, o in enumerate(choice):
            if o < 0:
                continue
            total += self.acc[c][o]
            used.update(self.options[c][o])
        return total / max(k, 1) - self.cost * len(used)


def solve_exact(p: Problem, time_limit: float = 30.0, notes: list[str] | None = None) -> tuple[list[int], str]:
    """Exact optimum of the CHCO integer program with HiGHS (exhaustive search when tiny).

    When HiGHS ends without a proven optimum (time limit, numerical trouble), its answer is not used:
    the heuristic answers instead, and the reason is appended to `notes` (`select` records it in the
    selection) and shown in the returned solver name.
    """
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
    h = _quiet_highs(highspy)
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
    with _HIGHS_LOCK:  # one HiGHS solve at a time per process (its task scheduler is process-wide)
        h.run()
    status = h.getModelStatus()
    if status != highspy.HighsModelStatus.kOptimal:
        reason = f"HiGHS ended with status '{h.modelStatusToString(status)}' (time limit {time_limit:g} s)"
        choice, how = solve_heuristic(p)
        if notes is not None:
            notes.append(f"{reason}: not a proven optimum, the heuristic answered")
        return choice, f"{how} (HiGHS fallback)"
    x = h.getSolution().col_value
    choice = [-1] * k
    for j, (c, o) in enumerate(var):
        if x[j] > 0.5:
            choice[c] = o
    return choice, "highs"


_HIGHS_LOCK = threading.Lock()


def _quiet_highs(highspy):
    """A HiGHS instance that prints nothing, safe to make from any thread.

    `highspy.Highs()` prints HiGHS's banner to file descriptor 1 while it is constructed (when it
    installs its Python callbacks), before any option can be set; silencing that by redirecting
    descriptor 1 would also swallow whatever another thread writes meanwhile. The core class
    `highspy._Highs` (the base of `Highs`, without the callbacks, which we do not use) logs nothing
    until asked to, so output is switched off before its first log line. Without that class (another
    highspy), the public one is used and its banner printed once.
    """
    core = getattr(highspy, "_Highs", None)
    h = core() if core is not None else highspy.Highs()
    h.setOptionValue("output_flag", False)
    return h


def solve_heuristic(p: Problem, rounds: int = 3) -> tuple[list[int], str]:
    """Greedy, then local search in two neighbourhoods, from two starts; the best answer found.

    1. Best option per class, then coordinate ascent over the options (one class at a time),
       accounting for shared model costs.
    2. Local search over the set U of models paid for (`_model_set_search`): given U each class takes
       its best option inside U, so the objective is a function of U alone (its maximum over U is the
       optimum); moves add a model, drop one, or swap one for another that serves a common class.
       Started from the answer of 1 and from "every candidate paid".
    3. Each start then goes through large-neighbourhood search (`_group_search`): small groups of
       classes that share candidate models are re-solved exactly, all their option combinations at
       once, with the other classes' choices fixed; repeated until no group improves.
    """
    choice = _coordinate_ascent(p, [int(np.argmax(a)) if a else -1 for a in p.acc], rounds)
    starts = [choice] + [_coordinate_ascent(p, u, rounds) for u in _model_set_search(p, choice)]
    best, best_v = None, -np.inf
    for start in starts:
        cand = _group_search(p, start)
        v = p.objective(cand)
        if v > best_v + 1e-12:
            best, best_v = cand, v
    return best, "greedy+local"


def _coordinate_ascent(p: Problem, choice: list[int], rounds: int) -> list[int]:
    """One class at a time, take any option that raises the objective (shared model costs counted).

    A change is screened with its objective difference from per-model use counts and confirmed
    with the full objective, so the moves taken are exactly those a full evaluation of every trial
    would take."""
    k = max(len(p.options), 1)
    count: dict[str, int] = {}
    for c, o in enumerate(choice):
        for m in p.options[c][o] if o >= 0 else ():
            count[m] = count.get(m, 0) + 1
    best = p.objective(choice)
    for _ in range(rounds):
        improved = False
        for c, opts in enumerate(p.options):
            for o in range(len(opts)):
                cur = choice[c]
                if o == cur:
                    continue
                old = opts[cur] if cur >= 0 else ()
                freed = sum(1 for m in old if count.get(m, 0) == 1 and m not in opts[o])
                added = sum(1 for m in opts[o] if count.get(m, 0) == 0)
                d = (p.acc[c][o] - (p.acc[c][cur] if cur >= 0 else 0.0)) / k - p.cost * (added - freed)
                if d <= 1e-12 - 1e-9:  # clearly no gain (rounding differences are far below 1e-9)
                    continue
                trial = choice.copy()
                trial[c] = o
                v = p.objective(trial)
                if v > best + 1e-12:
                    for m in old:
                        count[m] -= 1
                    for m in opts[o]:
                        count[m] = count.get(m, 0) + 1
                    choice, best, improved = trial, v, True
        if not improved:
            break
    return choice


class _Encoded:
    """A problem with models as integers: per class, its options' accuracies (/K) and member lists."""

    def __init__(self, p: Problem):
        self.models = sorted({m for opts in p.options for o in opts for m in o})
        mi = {m: i for i, m in enumerate(self.models)}
        k = max(len(p.options), 1)
        self.acc = [[a / k for a in accs] for accs in p.acc]
        self.members = [[tuple(mi[m] for m in o) for o in opts] for opts in p.options]
        self.classes = [c for c, opts in enumerate(self.members) if opts]
        self.cands = [sorted({i for o in opts for i in o}) for opts in self.members]
        self.users: list[list[int]] = [[] for _ in self.models]  # model -> classes it is a candidate of
        for c in self.classes:
            for i in self.cands[c]:
                self.users[i].append(c)


def _model_set_search(p: Problem, choice: list[int], max_sweeps: int = 100) -> list[list[int]]:
    """Local search over paid model sets (see `solve_heuristic`): one answer per start, each a
    choice of options (the best inside the final set, per class)."""
    e = _Encoded(p)
    if not e.models:
        return []
    n = len(e.models)
    masks = [[sum(1 << i for i in o) for o in opts] for opts in e.members]
    partners = [sorted({j for c in e.users[i] for j in e.cands[c]} - {i}) for i in range(n)]

    def best_in(c: int, u: int) -> float:
        return max((a for a, m in zip(e.acc[c], masks[c]) if m & u == m), default=-np.inf)

    def search(u: int) -> int:  # first improvement, sweep after sweep
        val = {c: best_in(c, u) for c in e.classes}
        for _ in range(max_sweeps):
            improved = False
            for i in range(n):
                for j in (-1, *partners[i]):  # i alone (add or drop), or swap paid i for unpaid j
                    if j >= 0 and (not u >> i & 1 or u >> j & 1):
                        continue
                    v = u ^ (1 << i) if j < 0 else (u & ~(1 << i)) | (1 << j)
                    touched = set(e.users[i]) if j < 0 else {*e.users[i], *e.users[j]}
                    new = {c: best_in(c, v) for c in touched}
                    d = sum(new[c] - val[c] for c in touched) - p.cost * (v.bit_count() - u.bit_count())
                    if d > 1e-12:
                        u, improved = v, True
                        val.update(new)
            if not improved:
                break
        return u

    greedy = 0
    for c, o in enumerate(choice):
        if o >= 0:
            greedy |= masks[c][o]
    out = []
    for u in (search(greedy), search((1 << n) - 1)):
        pick = [-1] * len(p.options)
        for c in e.classes:
            inside = [o for o, m in enumerate(masks[c]) if m & u == m]
            pick[c] = max(inside, key=lambda o, c=c: (e.acc[c][o], -o))  # best inside u; ties: first option
        out.append(pick)
    return out


def _group_search(p: Problem, choice: list[int], max_combos: int = 4096, max_sweeps: int = 50) -> list[int]:
    """Large-neighbourhood search (see `solve_heuristic`): groups are each class with its neighbours
    (classes sharing a candidate model; breadth first) and each shared model's classes with theirs,
    as many as keep a group's option combinations <= `max_combos`."""
    e = _Encoded(p)
    choice = list(choice)
    count = np.zeros(len(e.models), dtype=np.int64)  # chosen options using each model
    for c, o in enumerate(choice):
        if o >= 0:
            for i in e.members[c][o]:
                count[i] += 1
    nbrs = [sorted({d for i in e.cands[c] for d in e.users[i]} - {c}) for c in range(len(p.options))]

    def grow(seed: list[int]) -> tuple[int, ...]:
        group, size, queue, seen, local = [], 1, list(seed), set(), set()
        while queue:
            c = queue.pop(0)
            if c in seen:
                continue
            seen.add(c)
            if len(e.members[c]) < 2:  # no choice to make: walk through it to its neighbours
                queue.extend(nbrs[c])
                continue
            # within the combination budget, and with at most 62 models (one bit each in an int64)
            if size * len(e.members[c]) <= max_combos and len(local | set(e.cands[c])) <= 62:
                group.append(c)
                size *= len(e.members[c])
                local |= set(e.cands[c])
                queue.extend(nbrs[c])
        return tuple(sorted(group))

    seeds = [[c] for c in e.classes] + [u for u in e.users if len(u) > 1]
    groups = [g for g in dict.fromkeys(grow(s) for s in seeds) if len(g) > 1]

    def resolve(g: tuple[int, ...]) -> list[int] | None:
        local = sorted({i for c in g for i in e.cands[c]})
        bit = {i: b for b, i in enumerate(local)}
        mine = np.zeros(len(e.models), dtype=np.int64)
        for c in g:
            for i in e.members[c][choice[c]]:
                mine[i] += 1
        others = sum(1 << bit[i] for i in local if count[i] > mine[i])  # paid for by classes outside g
        shape = [len(e.members[c]) for c in g]
        grid = np.indices(shape).reshape(len(g), -1)
        mask = np.zeros(grid.shape[1], dtype=np.int64)
        total = np.zeros(grid.shape[1])
        for r, c in enumerate(g):
            om = np.array([sum(1 << bit[i] for i in o) for o in e.members[c]], dtype=np.int64)
            mask |= om[grid[r]]
            total += np.asarray(e.acc[c])[grid[r]]
        val = total - p.cost * np.bitwise_count(mask & ~np.int64(others))
        now = int(np.ravel_multi_index([choice[c] for c in g], shape))
        best = int(np.argmax(val))
        return [int(x) for x in grid[:, best]] if val[best] > val[now] + 1e-12 else None

    # a group's best answer depends only on its classes and their neighbours (the classes that pay
    # for its models): one re-solved since the last change among them is skipped, result unchanged
    touch = {g: {*g, *(d for c in g for d in nbrs[c])} for g in groups}
    changed = [0] * len(p.options)
    checked = dict.fromkeys(groups, -1)
    clock = 0
    for _ in range(max_sweeps):
        improved = False
        for g in groups:
            if checked[g] >= max(changed[c] for c in touch[g]):
                continue
            new = resolve(g)
            clock += 1
            if new is not None:
                improved = True
                for c, o in zip(g, new):
                    if o == choice[c]:
                        continue
                    for i in e.members[c][choice[c]]:
                        count[i] -= 1
                    choice[c] = o
                    for i in e.members[c][o]:
                        count[i] += 1
                    changed[c] = clock
            checked[g] = clock
        if not improved:
            break
    return choice


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
    time_limit: float = 30.0,
) -> tuple[Selection, ScoreBank, np.ndarray]:
    """Run CHCO for a task: names with their matched nodes (None = unmatched) -> Selection.

    `fixed` skips the optimisation: class k is answered by the models in fixed[k] whose heads cover
    its node (the baselines use it). `weights` (one per node image, `mll.solve.adaptation`) weight the
    node images in the accuracy estimates. `time_limit`: seconds HiGHS may take before the heuristic
    answers instead (said in `Selection.solver_note`). Returns the selection, the score bank on the
    node data and the node-data labels, which reuse fits its combiner on.
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
    problem = Problem(options, accs, cost)
    use = solver if solver != "auto" else ("exact" if sum(len(o) for o in options) <= 3000 else "heuristic")
    notes: list[str] = []
    if fixed is not None:
        choice, how = [0 if o else -1 for o in options], "fixed"
    else:
        choice, how = solve_exact(problem, time_limit, notes=notes) if use == "exact" else solve_heuristic(problem)
    timings["solve"] = time.perf_counter() - t4
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
        classes,
        models,
        round(problem.objective(choice), 5),
        None,
        how,
        round(time.perf_counter() - t0, 4),
        cost,
        solver_note="; ".join(notes),
        timings={k: round(v, 4) for k, v in timings.items()},
    )
    return sel, bank, y


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

"""The CHCO integer program and its two solvers: exact (HiGHS, or exhaustive when tiny) and the
scalable heuristic (greedy, coordinate ascent, model-set moves, group re-solves).

Per class k the options o (tuples of model names) carry an estimated accuracy acc[k][o]; the
objective is the mean accuracy of the chosen options minus a cost per distinct model paid for.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass

import numpy as np


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

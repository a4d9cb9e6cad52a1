"""The scalable CHCO solver: greedy, coordinate ascent, model-set moves and group re-solves over
`mll.solve.problem.Problem`, accounting for shared cost units."""

from __future__ import annotations

import numpy as np

from mll.solve.problem import Encoded, Problem


def solve_heuristic(p: Problem, rounds: int = 3) -> tuple[list[int], str]:
    """Greedy, then local search in two neighbourhoods, from two starts; the best answer found.

    1. Best option per class, then coordinate ascent over the options (one class at a time),
       accounting for shared unit costs.
    2. Local search over the set U of models paid for (`_model_set_search`): given U each class takes
       its best option inside U, so the objective is a function of U alone (its maximum over U is the
       optimum); moves add a model, drop one, or swap one for another that serves a common class,
       each priced by the units it adds or frees. Started from the answer of 1 and from "every
       candidate paid".
    3. Each start then goes through large-neighbourhood search (`_group_search`): small groups of
       classes that share candidate cost units are re-solved exactly, all their option combinations
       at once, with the other classes' choices fixed; repeated until no group improves.
    """
    e = Encoded(p)
    choice = _coordinate_ascent(p, [int(np.argmax(a)) if a else -1 for a in p.acc], rounds, e)
    starts = [choice] + [_coordinate_ascent(p, u, rounds, e) for u in _model_set_search(p, choice, e=e)]
    best, best_v = None, -np.inf
    for start in starts:
        cand = _group_search(p, start, e=e)
        v = p.objective(cand)
        if v > best_v + 1e-12:
            best, best_v = cand, v
    return best, "greedy+local"


def _coordinate_ascent(p: Problem, choice: list[int], rounds: int, e: Encoded | None = None) -> list[int]:
    """One class at a time, take any option that raises the objective (shared unit costs counted).

    A change is screened with its objective difference from per-unit use counts and confirmed
    with the full objective, so the moves taken are exactly those a full evaluation of every trial
    would take."""
    e = e or Encoded(p)
    k = max(len(p.options), 1)
    cost = e.unit_cost
    count = [0] * len(e.units)  # chosen options needing each unit
    for c, o in enumerate(choice):
        for j in e.opt_units[c][o] if o >= 0 else ():
            count[j] += 1
    best = p.objective(choice)
    for _ in range(rounds):
        improved = False
        for c, opts in enumerate(e.opt_units):
            for o in range(len(opts)):
                cur = choice[c]
                if o == cur:
                    continue
                old = opts[cur] if cur >= 0 else ()
                freed = sum(cost[j] for j in old if count[j] == 1 and j not in opts[o])
                added = sum(cost[j] for j in opts[o] if count[j] == 0)
                d = (p.acc[c][o] - (p.acc[c][cur] if cur >= 0 else 0.0)) / k - (added - freed)
                if d <= 1e-12 - 1e-9:  # clearly no gain (rounding differences are far below 1e-9)
                    continue
                trial = choice.copy()
                trial[c] = o
                v = p.objective(trial)
                if v > best + 1e-12:
                    for j in old:
                        count[j] -= 1
                    for j in opts[o]:
                        count[j] += 1
                    choice, best, improved = trial, v, True
        if not improved:
            break
    return choice


def _model_set_search(
    p: Problem, choice: list[int], max_sweeps: int = 100, e: Encoded | None = None
) -> list[list[int]]:
    """Local search over paid model sets (see `solve_heuristic`): one answer per start, each a
    choice of options (the best inside the final set, per class). A move's cost is that of the units
    it adds (needed by no paid model yet) minus those it frees (needed by no paid model after).
    Besides single models, a unit that several models need (a shared backbone) is a move of its own:
    when unpaid, add its models one at a time, best first, while the gain of the whole move grows
    (one head alone may not pay for the backbone that two heads do); when paid, drop all its models,
    or drop them and pay another such unit whose models serve a common class in the same way."""
    e = e or Encoded(p)
    if not e.models:
        return []
    n = len(e.models)
    cost, mu = e.unit_cost, e.model_units
    masks = [[sum(1 << i for i in o) for o in opts] for opts in e.members]
    partners = [sorted({j for c in e.users[i] for j in e.cands[c]} - {i}) for i in range(n)]

    def best_in(c: int, u: int) -> float:
        return max((a for a, m in zip(e.acc[c], masks[c]) if m & u == m), default=-np.inf)

    def search(u: int) -> int:  # first improvement, sweep after sweep
        val = {c: best_in(c, u) for c in e.classes}
        paid = [0] * len(e.units)  # paid models needing each unit
        for i in range(n):
            if u >> i & 1:
                for x in mu[i]:
                    paid[x] += 1
        for _ in range(max_sweeps):
            improved = False
            for i in range(n):
                for j in (-1, *partners[i]):  # i alone (add or drop), or swap paid i for unpaid j
                    if j >= 0 and (not u >> i & 1 or u >> j & 1):
                        continue
                    v = u ^ (1 << i) if j < 0 else (u & ~(1 << i)) | (1 << j)
                    if j < 0 and u >> i & 1:  # drop i
                        dc = -sum(cost[x] for x in mu[i] if paid[x] == 1)
                    elif j < 0:  # add i
                        dc = sum(cost[x] for x in mu[i] if paid[x] == 0)
                    else:  # i out, j in
                        freed = sum(cost[x] for x in mu[i] if paid[x] == 1 and x not in mu[j])
                        added = sum(cost[x] for x in mu[j] if paid[x] == 0)  # a unit i paid alone stays if j needs it
                        dc = added - freed
                    touched = set(e.users[i]) if j < 0 else {*e.users[i], *e.users[j]}
                    new = {c: best_in(c, v) for c in touched}
                    d = sum(new[c] - val[c] for c in touched) - dc
                    if d > 1e-12:
                        for x in mu[i]:
                            paid[x] += 1 if v >> i & 1 else -1
                        if j >= 0:
                            for x in mu[j]:
                                paid[x] += 1
                        u, improved = v, True
                        val.update(new)
            for x, heads in shared.items():  # a shared unit: drop its heads, pay it, or both for another
                if paid[x]:
                    without = u & ~heads
                    steps = [(*move(u, without, val, paid), without)]
                    steps += [pay(u, without, shared[z], val, paid) for z in unit_partners[x] if not paid[z]]
                    d, new, dp, v = max(steps, key=lambda t: t[0])
                else:
                    d, new, dp, v = pay(u, u, heads, val, paid)
                if d > 1e-12:
                    for y, dy in dp.items():
                        paid[y] += dy
                    u, improved = v, True
                    val.update(new)
            if not improved:
                break
        return u

    def bits(mask: int) -> list[int]:
        return [i for i in range(mask.bit_length()) if mask >> i & 1]

    def move(u: int, v: int, val: dict, paid: list[int]) -> tuple[float, dict, dict]:
        """Any move u -> v: (objective gain, the touched classes' new values, unit count changes)."""
        changed = bits(u ^ v)
        dp: dict[int, int] = {}
        for i in changed:
            for x in mu[i]:
                dp[x] = dp.get(x, 0) + (1 if v >> i & 1 else -1)
        dc = sum(cost[x] for x, dx in dp.items() if paid[x] == 0 and dx > 0) - sum(
            cost[x] for x, dx in dp.items() if paid[x] > 0 and paid[x] + dx == 0
        )
        touched = {c for i in changed for c in e.users[i]}
        new = {c: best_in(c, v) for c in touched}
        return sum(new[c] - val[c] for c in touched) - dc, new, dp

    def pay(u: int, v: int, heads: int, val: dict, paid: list[int]) -> tuple[float, dict, dict, int]:
        """From u -> v, add `heads` one at a time, best first, while the whole move's gain grows."""
        best = (*move(u, v, val, paid), v) if v != u else (-np.inf, {}, {}, u)
        while True:
            v = best[3]
            step = max(
                ((*move(u, v | 1 << i, val, paid), v | 1 << i) for i in bits(heads & ~v)),
                key=lambda t: t[0],
                default=None,
            )
            if step is None or step[0] <= best[0]:
                return best
            best = step

    # units two or more candidate models need (shared backbones), with those models as a bit mask,
    # and per such unit the others whose models serve a class that one of its models serves
    needs: dict[int, int] = {}
    for i in range(n):
        for x in mu[i]:
            needs[x] = needs.get(x, 0) | 1 << i
    shared = {x: m for x, m in sorted(needs.items()) if m & (m - 1)}
    unit_partners = {
        x: sorted({z for i in bits(m) for c in e.users[i] for j in e.cands[c] for z in mu[j] if z in shared} - {x})
        for x, m in shared.items()
    }

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


def _group_search(
    p: Problem, choice: list[int], max_combos: int = 4096, max_sweeps: int = 50, e: Encoded | None = None
) -> list[int]:
    """Large-neighbourhood search (see `solve_heuristic`): groups are each class with its neighbours
    (classes sharing a candidate cost unit; breadth first) and each shared unit's classes with theirs,
    as many as keep a group's option combinations <= `max_combos`."""
    e = e or Encoded(p)
    choice = list(choice)
    count = np.zeros(len(e.units), dtype=np.int64)  # chosen options needing each unit
    for c, o in enumerate(choice):
        if o >= 0:
            for j in e.opt_units[c][o]:
                count[j] += 1
    nbrs = [sorted({d for j in e.cand_units[c] for d in e.unit_users[j]} - {c}) for c in range(len(p.options))]

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
            # within the combination budget, and with at most 62 units (one bit each in an int64)
            if size * len(e.members[c]) <= max_combos and len(local | set(e.cand_units[c])) <= 62:
                group.append(c)
                size *= len(e.members[c])
                local |= set(e.cand_units[c])
                queue.extend(nbrs[c])
        return tuple(sorted(group))

    seeds = [[c] for c in e.classes] + [u for u in e.unit_users if len(u) > 1]
    groups = [g for g in dict.fromkeys(grow(s) for s in seeds) if len(g) > 1]

    def resolve(g: tuple[int, ...]) -> list[int] | None:
        local = sorted({j for c in g for j in e.cand_units[c]})
        bit = {j: b for b, j in enumerate(local)}
        mine = np.zeros(len(e.units), dtype=np.int64)
        for c in g:
            for j in e.opt_units[c][choice[c]]:
                mine[j] += 1
        others = sum(1 << bit[j] for j in local if count[j] > mine[j])  # paid for by classes outside g
        by_cost: dict[float, int] = {}  # unit cost -> the local units' bits with that cost
        for j in local:
            by_cost[e.unit_cost[j]] = by_cost.get(e.unit_cost[j], 0) | 1 << bit[j]
        shape = [len(e.members[c]) for c in g]
        grid = np.indices(shape).reshape(len(g), -1)
        mask = np.zeros(grid.shape[1], dtype=np.int64)
        total = np.zeros(grid.shape[1])
        for r, c in enumerate(g):
            om = np.array([sum(1 << bit[j] for j in o) for o in e.opt_units[c]], dtype=np.int64)
            mask |= om[grid[r]]
            total += np.asarray(e.acc[c])[grid[r]]
        unpaid = mask & ~np.int64(others)
        if len(by_cost) == 1:  # one cost for every unit (e.g. one unit per model): cost x the count
            val = total - next(iter(by_cost)) * np.bitwise_count(unpaid)
        else:
            val = total - sum(c * np.bitwise_count(unpaid & np.int64(b)) for c, b in sorted(by_cost.items()))
        now = int(np.ravel_multi_index([choice[c] for c in g], shape))
        best = int(np.argmax(val))
        return [int(x) for x in grid[:, best]] if val[best] > val[now] + 1e-12 else None

    # a group's best answer depends only on its classes and their neighbours (the classes that pay
    # for its units): one re-solved since the last change among them is skipped, result unchanged
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
                    for j in e.opt_units[c][choice[c]]:
                        count[j] -= 1
                    choice[c] = o
                    for j in e.opt_units[c][o]:
                        count[j] += 1
                    changed[c] = clock
            checked[g] = clock
        if not improved:
            break
    return choice

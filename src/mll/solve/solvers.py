"""The exact CHCO solver: HiGHS on the integer program (`mll.solve.problem.Problem`), exhaustive
search when the problem is tiny, the heuristic (`mll.solve.heuristic`) when HiGHS is missing or
does not prove optimality.

Per class k the options o (tuples of model names) carry an estimated accuracy acc[k][o]; the
objective is the mean accuracy of the chosen options minus the cost of the *cost units* they need.
"""

from __future__ import annotations

import itertools
import threading

import numpy as np

from mll.solve.heuristic import solve_heuristic
from mll.solve.problem import Encoded, Problem


def solve_exact(p: Problem, time_limit: float = 30.0, notes: list[str] | None = None) -> tuple[list[int], str]:
    """Exact optimum of the CHCO integer program with HiGHS (exhaustive search when tiny).

    The program: binary x_{k,o} (one option per coverable class) and u_j per cost unit j, with
    x_{k,o} <= u_j for every unit j of a model of option o; maximise Σ acc·x / K − Σ_j cost_j u_j.
    (Linking options to units directly is the same program as model columns z_m >= x_{k,o} with
    u_j >= z_m and no cost on z, with fewer rows; with one unit per model it is the per-model program.)

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

    e = Encoded(p)
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
    for c in e.unit_cost:  # one column per cost unit, carrying the unit's cost (options carry none)
        h.addVar(0.0, 1.0)
        h.changeColCost(h.getNumCol() - 1, c)
    n = h.getNumCol()
    h.changeColsIntegrality(n, np.arange(n, dtype=np.int32), np.ones(n, dtype=np.uint8))
    col = 0
    for opts in p.options:  # exactly one option per coverable class
        if opts:
            idx = np.arange(col, col + len(opts), dtype=np.int32)
            h.addRow(1.0, 1.0, len(idx), idx, np.ones(len(idx)))
        col += len(opts)
    for j, (c, o) in enumerate(var):  # option uses a unit (through any of its models) -> unit is paid for
        for u in e.opt_units[c][o]:
            h.addRow(-inf, 0.0, 2, np.array([j, y0 + u], dtype=np.int32), np.array([1.0, -1.0]))
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

"""The benchmark's numbers: the cells document -> the metrics of `reports/benchmark.json`.

Per-task and mean accuracy per method, MLL against the oracle expert, which zero-shot baselines MLL
beats, which methods were skipped and why, the accuracy-against-hub-size curve, and the user-name
tasks against their base tasks (what naming costs; kept out of the main table and its means). Only numbers are
stored where a value exists (a skipped cell is absent, never null), so `dvc metrics` stays numeric.
Methods, their order and which of them are zero-shot baselines come from the registry
(`mll.bench.methods`); a method the registry does not know still gets its numbers, after the others.
"""

from __future__ import annotations

import math
import zlib
from itertools import pairwise
from typing import Any

import numpy as np

from mll.bench.families import protocol_blocks
from mll.bench.masked import summarize_masked
from mll.bench.methods import find_method, order_methods
from mll.bench.quality import growth_coverage, growth_fixed_coverage, selection_quality
from mll.bench.studies import summarize_studies

# A growth curve may dip this much between consecutive sizes and still count as non-decreasing
# (sub-hub sampling noise at the third decimal is not a trend).
GROWTH_TOLERANCE = 0.005
SCHEMA_VERSION = 1  # reports/benchmark.schema.json; bump when a key changes meaning or goes away
DIGITS = 4


def zero_shot(method: str) -> bool:
    """A baseline MLL competes with: it sees neither the task's test labels nor its training data."""
    m = find_method(method)
    return m is not None and method != "mll" and not m.reference


def _r(x: float | None) -> float | None:
    return None if x is None else round(float(x), DIGITS)


def cell_value(cell: dict) -> float | None:
    """The cell's accuracy, or None when it was skipped / failed / not a finite number."""
    if cell.get("status", "ok") != "ok":
        return None
    acc = cell.get("accuracy")
    if acc is None or not isinstance(acc, (int, float)) or not math.isfinite(acc):
        return None
    return float(acc)


def _std(values: list[float]) -> float:
    # Sample std (ddof=1): seeds are a sample of the possible draws; 0 for a single draw.
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def checked_cells(cells: dict) -> list[dict]:
    """The document's cells, each checked to name its task and method."""
    rows = cells.get("cells")
    if not isinstance(rows, list):
        raise ValueError("the benchmark cells document has no 'cells' list")
    for n, c in enumerate(rows):
        if not isinstance(c, dict) or "task" not in c or "method" not in c:
            raise ValueError(f"benchmark cell #{n} has no 'task' and 'method'")
    return rows


def task_names(cells: dict) -> list[str]:
    """Tasks in the order of the document's 'tasks', then any task that only appears in a cell."""
    names = list((cells.get("tasks") or {}).keys())
    return list(dict.fromkeys(names + [c["task"] for c in checked_cells(cells)]))


def _task_values(cells: dict) -> dict[str, dict[str, list[float]]]:
    """{task: {method: [accuracy per ok cell (one per seed)]}}, unrounded."""
    out: dict[str, dict[str, list[float]]] = {t: {} for t in task_names(cells)}
    for c in checked_cells(cells):
        v = cell_value(c)
        if v is not None:
            out[c["task"]].setdefault(c["method"], []).append(v)
    return out


def user_tasks(cells: dict) -> dict[str, dict]:
    """The user-name tasks of the document (task info with a `base`): {task: its info}."""
    return {t: d for t, d in (cells.get("tasks") or {}).items() if isinstance(d, dict) and d.get("base")}


def _seeded(cells: dict) -> set[str]:
    """Methods run with seeds (a std over seeds is reported for them)."""
    return {c["method"] for c in checked_cells(cells) if c.get("seed") is not None}


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


# --- summary ----------------------------------------------------------------------------------------
def _per_task(cells: dict, methods: list[str]) -> dict[str, dict[str, float]]:
    """{task: {method: mean over seeds}} unrounded, skipped cells absent."""
    values = _task_values(cells)
    return {t: {m: float(np.mean(values[t][m])) for m in methods if m in values[t]} for t in values}


def _tasks_block(cells: dict, methods: list[str]) -> dict[str, dict[str, float]]:
    """Per task and method: the accuracy (mean over seeds), `<m>_std` over seeds, and `<m>_ci_low` /
    `<m>_ci_high`, a 95% bootstrap over the task's images (from the cells' per-image hits)."""
    from mll.bench.families import task_hits
    from mll.bench.stats import bootstrap_ci

    values = _task_values(cells)
    seeded = _seeded(cells)
    hits = task_hits(cells.get("cells") or [])
    out: dict[str, dict[str, float]] = {}
    for task, by_method in values.items():
        row: dict[str, float] = {}
        for m in methods:
            if m not in by_method:
                continue
            row[m] = _r(np.mean(by_method[m]))
            if m in seeded or len(by_method[m]) > 1:
                row[f"{m}_std"] = _r(_std(by_method[m]))
            if (task, m) in hits:
                lo, hi = bootstrap_ci(hits[(task, m)], seed=zlib.crc32(f"{task}/{m}".encode()))
                row[f"{m}_ci_low"], row[f"{m}_ci_high"] = _r(lo), _r(hi)
        out[task] = row
    return out


def _oracle_block(per_task: dict[str, dict[str, float]]) -> dict[str, Any]:
    tasks = [t for t, row in per_task.items() if "mll" in row and "oracle" in row]
    mll = _mean([per_task[t]["mll"] for t in tasks])
    oracle = _mean([per_task[t]["oracle"] for t in tasks])
    ratio = mll / oracle if tasks and oracle else None
    return {"tasks": tasks, "mll_mean": _r(mll), "oracle_mean": _r(oracle), "ratio": _r(ratio)}


def _baselines(per_task: dict[str, dict[str, float]], methods: list[str]) -> tuple[dict[str, bool], list[dict]]:
    """MLL against each zero-shot baseline, on the tasks both have: mean comparison and per-task losses."""
    beaten: dict[str, bool] = {}
    losses: list[dict] = []
    for b in (m for m in methods if zero_shot(m)):
        common = [t for t, row in per_task.items() if "mll" in row and b in row]
        if not common:  # nothing to compare (e.g. skipped everywhere): listed under "skipped" instead
            continue
        beaten[b] = bool(np.mean([per_task[t]["mll"] for t in common]) > np.mean([per_task[t][b] for t in common]))
        for t in common:
            if per_task[t][b] > per_task[t]["mll"]:
                losses.append({"task": t, "method": b, "mll": _r(per_task[t]["mll"]), "baseline": _r(per_task[t][b])})
    return beaten, losses


def _skipped(cells: dict, methods: list[str], per_task: dict[str, dict[str, float]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for m in methods:
        if any(m in row for row in per_task.values()):
            continue
        reasons = [c.get("reason") or "" for c in checked_cells(cells) if c["method"] == m]
        out[m] = "; ".join(dict.fromkeys(r for r in reasons if r)) or "no reason given"
    return out


def _cell_of(cells: dict, task: str, method: str) -> dict | None:
    return next((c for c in checked_cells(cells) if c["task"] == task and c["method"] == method), None)


def _other_synsets(cells: dict, task: str, info: dict) -> dict[str, dict]:
    """Classes of a user-name task that MLL matched to another synset than the base task's class."""
    mine, base = _cell_of(cells, task, "mll"), _cell_of(cells, info["base"], "mll")
    if not mine or not base or not mine.get("matched") or not base.get("matched"):
        return {}
    base_classes = list((cells.get("tasks") or {}).get(info["base"], {}).get("classes") or [])
    out = {}
    for user, dataset in zip(info.get("classes") or [], base_classes):
        got, want = mine["matched"].get(user), base["matched"].get(dataset)
        if got != want:
            names, bnames = mine.get("matched_names") or {}, base.get("matched_names") or {}
            out[user] = {
                "class": dataset,
                "synset": got,
                "name": names.get(user),
                "base_synset": want,
                "base_name": bnames.get(dataset),
                "accuracy": _r((mine.get("per_class") or {}).get(user)),
                "base_accuracy": _r((base.get("per_class") or {}).get(dataset)),
            }
    return out


def _user_names_block(cells: dict, methods: list[str], per_task: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Per user-name task: each method's accuracy and its gap to the same method on the base task,
    the matcher's failure if any, and the classes matched elsewhere than the base task's; mean gaps."""
    users = {t: d for t, d in user_tasks(cells).items() if d.get("split") != "test"}  # families show the test's
    if not users:
        return {}
    rows: dict[str, dict[str, Any]] = {}
    gaps: dict[str, list[float]] = {}
    for t, info in users.items():
        row: dict[str, Any] = {"base": info["base"], "naming": info.get("naming")}
        for m in methods:
            if m not in per_task.get(t, {}):
                continue
            row[m] = _r(per_task[t][m])
            if m in per_task.get(info["base"], {}):
                row[f"{m}_gap"] = _r(per_task[t][m] - per_task[info["base"]][m])
                gaps.setdefault(m, []).append(per_task[t][m] - per_task[info["base"]][m])
        bad = [c for c in checked_cells(cells) if c["task"] == t and c.get("status") == "failed"]
        if bad:
            row["failed"] = bad[0].get("reason") or "failed"
        if other := _other_synsets(cells, t, info):
            row["other_synsets"] = other
        rows[t] = row
    return {
        "tasks": rows,
        "mean_gap": {m: _r(np.mean(v)) for m, v in gaps.items()},
        "n_tasks": len(rows),
        "failed": [t for t, r in rows.items() if "failed" in r],
    }


def growth_points(cells: dict) -> dict[str, dict[int, list[float]]]:
    """{method: {size: [one value per sub-hub (seed), averaged over tasks first]}}, unrounded."""
    per_hub: dict[tuple[str, int, Any], list[float]] = {}
    for g in cells.get("growth") or []:
        v = cell_value(g)
        if v is not None:
            per_hub.setdefault((g["method"], int(g["size"]), g.get("seed")), []).append(v)
    out: dict[str, dict[int, list[float]]] = {}
    for (method, size, _seed), vals in per_hub.items():
        out.setdefault(method, {}).setdefault(size, []).append(float(np.mean(vals)))
    return {m: dict(sorted(out[m].items())) for m in order_methods(list(out))}


def _growth_block(cells: dict) -> tuple[dict, dict[str, bool]]:
    points = growth_points(cells)
    growth: dict[str, dict[str, dict[str, float | int]]] = {}
    monotone: dict[str, bool] = {}
    for method, by_size in points.items():
        growth[method] = {
            str(size): {"mean": _r(np.mean(v)), "std": _r(_std(v)), "min": _r(min(v)), "max": _r(max(v)), "n": len(v)}
            for size, v in by_size.items()
        }
        means = [float(np.mean(v)) for v in by_size.values()]
        monotone[method] = all(b >= a - GROWTH_TOLERANCE for a, b in pairwise(means))
    return growth, monotone


def summarize(cells: dict) -> dict:
    """The metrics document (`reports/benchmark.json`) from the benchmark cells; floats to 4 decimals."""
    methods = order_methods([c["method"] for c in checked_cells(cells)])
    everything = _per_task(cells, methods)
    users = user_tasks(cells)
    # the per-task blocks are the development tasks' (a final-test run shows in `families` only)
    final = {t for t, d in (cells.get("tasks") or {}).items() if isinstance(d, dict) and d.get("split") == "test"}
    users = {**users, **{t: {} for t in final}}
    everything = {t: row for t, row in everything.items() if t not in final}
    per_task = {t: row for t, row in everything.items() if t not in users}  # the main table: base tasks
    # the means, the oracle ratio and the baseline comparisons keep their meaning: the in_domain tasks
    # (the other families have their own numbers in `families` and `paired`)
    info = cells.get("tasks") or {}
    core = {t: row for t, row in per_task.items() if (info.get(t) or {}).get("family", "in_domain") == "in_domain"}
    tasks = list(core)
    mean = {m: _r(np.mean(v)) for m in methods if (v := [row[m] for row in core.values() if m in row])}
    mean_all = {m: mean[m] for m in mean if all(m in core[t] for t in tasks)}
    beaten, losses = _baselines(core, methods)
    growth, monotone = _growth_block(cells)
    return {
        "schema_version": SCHEMA_VERSION,
        "methods": methods,
        "tasks": {t: row for t, row in _tasks_block(cells, methods).items() if t not in users},
        "mean": mean,
        "mean_all_tasks": mean_all,
        "oracle": _oracle_block(core),
        "zero_shot_baselines_beaten": beaten,
        "per_task_losses": losses,
        "skipped": _skipped(cells, methods, core),
        "growth": growth,
        "growth_non_decreasing": monotone,
        "growth_coverage": growth_coverage(cells),
        "growth_fixed_coverage": growth_fixed_coverage(cells),
        "selection_quality": selection_quality(cells),
        **summarize_studies(cells.get("studies")),
        "patch": summarize_masked(cells.get("masked") or []),
        "user_names": _user_names_block(cells, methods, everything),
        **protocol_blocks(cells, methods),
    }

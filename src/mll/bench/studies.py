"""Studies beside the benchmark grid, on the development tasks: how much node data MLL needs (the
node-data budget) and how sensitive it is to its knobs (the sweeps), each with selection time.

- **Node-data budget**: every hub model is labeled again on a probe set thinned to at most n images
  per synset (`mll.bench.folds.Fold(per_synset=n)`: the labels' statistics, gates and stored outputs
  all come from the thinned set), then `benchmark.budget_methods` (MLL and the node-data classifier)
  solve the dev tasks of the `in_domain` family.
- **Sweeps**: one solve setting varied at a time (`benchmark.sweep: {prune: [...], ...}`), the others
  as in params.yaml, MLL (inductive) on the same tasks. A full `dvc exp` sweep reruns the whole
  benchmark per value; this one reruns only MLL's cells, from the cached outputs.

The rows go to `reports/benchmark/studies.json`; `mll.bench.report` summarises them.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

SWEEPABLE = ("prune", "max_heads", "cost_per_model", "rerank", "min_node_images")


def study_tasks(state: dict) -> list:
    """The dev tasks the studies run on: the `in_domain` family's (whole hub, no user-name variants)."""
    return [t for t in state["tasks"].values() if t.family == "in_domain" and not t.base and t.fold is None]


def budget_context(state: dict, n: int, log=print):
    """The solve context with every model labeled on at most `n` probe images per synset (cached per
    process and, as fold labels, on disk)."""
    from mll.bench.folds import Fold
    from mll.bench.run import state_fold_context

    return state_fold_context(state, Fold((), per_synset=n), log)


def _row(cell: dict, **extra: Any) -> dict:
    return {
        "task": cell["task"],
        "method": cell["method"],
        "status": cell["status"],
        "accuracy": cell["accuracy"],
        "plan_seconds": cell.get("plan_seconds"),
        "node_images": cell.get("node_images"),
        **extra,
    }


def run_budget(state: dict, budgets: tuple[int, ...], methods: tuple[str, ...], log=print) -> list[dict]:
    """Rows {budget, task, method, accuracy, ...} of the node-data budget study."""
    from mll.bench.run import run_cell

    rows = []
    for n in budgets:
        ctx = budget_context(state, n, log=log)
        for t in study_tasks(state):
            for m in methods:
                c = run_cell(ctx, t, m, state["cache"], probe=Path(state["paths"]["probe"]))
                rows.append(_row(c, budget=n))
        log(f"node-data budget {n}/synset: {_means(rows, 'budget', n)}")
    return rows


def run_sweeps(state: dict, sweep: dict[str, list], log=print) -> list[dict]:
    """Rows {knob, value, task, method: mll, accuracy, plan_seconds} of the one-knob-at-a-time sweeps."""
    from mll.bench.methods import CellRun
    from mll.bench.run import new_cell

    unknown = set(sweep) - set(SWEEPABLE)
    if unknown:
        raise ValueError(f"benchmark.sweep: {', '.join(sorted(unknown))} cannot be swept; choose from {SWEEPABLE}")
    ctx = state["ctx"]
    rows = []
    for knob, values in sweep.items():
        for v in values:
            cfg = replace(ctx.cfg, adapt=False, **{knob: v})
            for t in study_tasks(state):
                cell = new_cell(t, "mll")
                t0 = time.perf_counter()
                run = CellRun(ctx, t, state["cache"], cell)
                run.fill(run.solve(cfg=cfg))
                cell["seconds"] = round(time.perf_counter() - t0, 3)
                rows.append(_row(cell, knob=knob, value=v))
            log(f"sweep {knob}={v}: {_means([r for r in rows if r['knob'] == knob], 'value', v)}")
    return rows


def _means(rows: list[dict], key: str, value: Any) -> dict[str, float]:
    by: dict[str, list[float]] = {}
    for r in rows:
        if r.get(key) == value and r["accuracy"] is not None:
            by.setdefault(r["method"], []).append(r["accuracy"])
    return {m: round(float(np.mean(v)), 4) for m, v in by.items()}


def summarize_studies(studies: dict | None) -> dict[str, Any]:
    """`node_budget: {method: {n: mean accuracy}}` and `sweeps: {knob: {value: {accuracy, plan_seconds}}}`
    for `reports/benchmark.json` (empty when the studies did not run)."""
    studies = studies or {}
    budget: dict[str, dict[str, float]] = {}
    for r in studies.get("budget") or []:
        if r["accuracy"] is not None:
            budget.setdefault(r["method"], {}).setdefault(str(r["budget"]), []).append(r["accuracy"])
    sweeps: dict[str, dict[str, dict]] = {}
    for r in studies.get("sweeps") or []:
        if r["accuracy"] is None:
            continue
        e = sweeps.setdefault(r["knob"], {}).setdefault(str(r["value"]), {"accuracy": [], "plan_seconds": []})
        e["accuracy"].append(r["accuracy"])
        e["plan_seconds"].append(r.get("plan_seconds") or 0.0)
    return {
        "node_budget": {m: {n: round(float(np.mean(v)), 4) for n, v in by.items()} for m, by in budget.items()},
        "sweeps": {
            k: {
                v: {
                    "accuracy": round(float(np.mean(e["accuracy"])), 4),
                    "plan_seconds": round(float(np.mean(e["plan_seconds"])), 3),
                    "n_tasks": len(e["accuracy"]),
                }
                for v, e in by.items()
            }
            for k, by in sweeps.items()
        },
    }


# --- the report's tables ----------------------------------------------------------------------------
def budget_table(summary: dict, label) -> str:
    """Markdown: mean accuracy on the dev in_domain tasks per method against node images per synset."""
    nb = summary.get("node_budget") or {}
    sizes = sorted({int(n) for by in nb.values() for n in by})
    if not sizes:
        return "_The studies did not run (dvc repro studies)._"
    lines = ["| method | " + " | ".join(f"{n}/synset" for n in sizes) + " |", "|---|" + "---|" * len(sizes)]
    for m, by in nb.items():
        vals = [f"{by[str(n)]:.3f}" if str(n) in by else "-" for n in sizes]
        lines.append(f"| {label(m)} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def sweep_table(summary: dict) -> str:
    """Markdown: MLL's mean accuracy and selection time (plan: matching, CHCO, combiner) per knob value."""
    sw = summary.get("sweeps") or {}
    if not sw:
        return "_No sweep configured (benchmark.sweep)._"
    lines = ["| knob | value | MLL accuracy | selection s per task | tasks |", "|---|---|---|---|---|"]
    for knob, by in sw.items():
        for v, e in by.items():
            lines.append(f"| {knob} | {v} | {e['accuracy']:.3f} | {e['plan_seconds']:.2f} | {e['n_tasks']} |")
    return "\n".join(lines)

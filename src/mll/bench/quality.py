"""Selection quality the way the field measures it (LOVM), and growth at fixed coverage.

Selection quality asks whether the labels rank a task's models the way their measured accuracies
do. A single model's accuracy on a task is its accuracy on the classes it covers, the quantity its
label predicts; the `single` cells record both per covering model (`per_model`). Per task with at
least `MIN_MODELS` ranked models, LOVM's metrics (definitions in docs/method.md section 9b):

- R5: |true top-5 ∩ predicted top-5| / 5;
- Kendall tau between true and predicted accuracies over the true top-5 models that are also in the
  predicted top-5 (0 when fewer than 3 overlap);
- L1: |mean(predicted - true)| over the predicted top-5.

`ranking_mll` predicts with the label's estimate for the task (CHCO's simulated accuracy of that
model alone on the task's node data); `ranking_inb` with the label's task-agnostic in-domain
accuracy, the analogue of LOVM's ImageNet-best ranking. A model covering one class of a task is
not ranked: alone it answers that class for every image, so its accuracy there is 1 by construction.
`self_estimate_l1` is the mean |MLL's estimated - measured accuracy| of its own selection.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import kendalltau

from mll.bench.families import task_family, task_split

MIN_MODELS = 8  # ranked models a task needs for its ranking metrics (as the protocol asks)
TOP = 5


def lovm_metrics(predicted: dict[str, float], true: dict[str, float], top: int = TOP) -> dict[str, float]:
    """R5, tau and L1 of one task's ranking (LOVM's definitions); ties broken by model name."""
    models = sorted(set(predicted) & set(true))
    pred_top = sorted(models, key=lambda m: (-predicted[m], m))[:top]
    true_top = sorted(models, key=lambda m: (-true[m], m))[:top]
    both = [m for m in true_top if m in pred_top]
    tau = 0.0
    if len(both) >= 3:
        t = kendalltau([predicted[m] for m in both], [true[m] for m in both]).statistic
        tau = 0.0 if t != t else float(t)  # constant accuracies: no order to agree with
    l1 = abs(float(np.mean([predicted[m] - true[m] for m in pred_top])))
    return {"r5": len(both) / top, "tau": tau, "l1": l1}


def _mean_metrics(rows: list[dict[str, float]]) -> dict[str, Any]:
    if not rows:
        return {"r5": None, "tau": None, "l1": None, "n_tasks": 0}
    return {k: round(float(np.mean([r[k] for r in rows])), 4) for k in ("r5", "tau", "l1")} | {"n_tasks": len(rows)}


def selection_quality(cells: dict) -> dict[str, dict]:
    """`selection_quality` of `reports/benchmark.json`: {split: {ranking_mll, ranking_inb,
    self_estimate_l1, per_task}} from the `single` and `mll` cells."""
    tasks: dict[str, dict] = cells.get("tasks") or {}
    out: dict[str, dict] = {}
    rankings: dict[str, dict[str, list]] = {}
    self_err: dict[str, list[float]] = {}
    per_task: dict[str, dict[str, dict]] = {}
    for c in cells.get("cells") or []:
        if c.get("status", "ok") != "ok" or c["task"] not in tasks:
            continue
        split = task_split(tasks[c["task"]], tasks)
        if c["method"] == "mll" and c.get("estimated_accuracy") is not None and c.get("accuracy") is not None:
            self_err.setdefault(split, []).append(abs(c["estimated_accuracy"] - c["accuracy"]))
        if c["method"] != "single":
            continue
        ranked = {
            m: v
            for m, v in (c.get("per_model") or {}).items()
            if v.get("classes", 0) >= 2 and v.get("measured") is not None and v.get("estimated") is not None
        }
        if len(ranked) < MIN_MODELS:
            continue
        true = {m: v["measured"] for m, v in ranked.items()}
        mll = lovm_metrics({m: v["estimated"] for m, v in ranked.items()}, true)
        inb = lovm_metrics({m: v.get("in_domain") or 0.0 for m, v in ranked.items()}, true)
        rankings.setdefault(split, {}).setdefault("mll", []).append(mll)
        rankings[split].setdefault("inb", []).append(inb)
        per_task.setdefault(split, {})[c["task"]] = {
            "family": task_family(tasks[c["task"]]),
            "models": len(ranked),
            "mll": {k: round(v, 4) for k, v in mll.items()},
            "inb": {k: round(v, 4) for k, v in inb.items()},
        }
    for split in sorted(set(rankings) | set(self_err)):
        errs = self_err.get(split, [])
        out[split] = {
            "ranking_mll": _mean_metrics(rankings.get(split, {}).get("mll", [])),
            "ranking_inb": _mean_metrics(rankings.get(split, {}).get("inb", [])),
            "self_estimate_l1": round(float(np.mean(errs)), 4) if errs else None,
            "per_task": per_task.get(split, {}),
        }
    return out


def growth_fixed_coverage(cells: dict) -> dict[str, dict[str, dict[str, float]]]:
    """{family: {method: {size: mean accuracy}}} over the (task, sub-hub) pairs whose sub-hub covers
    every class of the task: what growing the hub does to ability, with coverage held fixed."""
    tasks: dict[str, dict] = cells.get("tasks") or {}
    acc: dict[tuple[str, str, int], list[float]] = {}
    for g in cells.get("growth") or []:
        if g.get("coverage") != 1.0 or g.get("accuracy") is None or g["task"] not in tasks:
            continue
        acc.setdefault((task_family(tasks[g["task"]]), g["method"], int(g["size"])), []).append(float(g["accuracy"]))
    out: dict[str, dict[str, dict[str, float]]] = {}
    for (fam, method, size), vals in sorted(acc.items()):
        out.setdefault(fam, {}).setdefault(method, {})[str(size)] = round(float(np.mean(vals)), 4)
    return out


def growth_coverage(cells: dict) -> dict[str, dict[str, float]]:
    """{size: {coverage: mean fraction of a task's classes some head covers, independent: mean
    independent experts}} over the growth curve's sub-hubs and tasks (accuracy is reported apart)."""
    cov: dict[int, list[float]] = {}
    ind: dict[int, list[float]] = {}
    for g in cells.get("growth") or []:
        if g.get("coverage") is None:
            continue
        cov.setdefault(int(g["size"]), []).append(float(g["coverage"]))
        if g.get("independent") is not None:
            ind.setdefault(int(g["size"]), []).append(float(g["independent"]))
    return {
        str(s): {"coverage": round(float(np.mean(v)), 4), "independent": round(float(np.mean(ind.get(s, [0]))), 2)}
        for s, v in sorted(cov.items())
    }


# --- the report's tables ----------------------------------------------------------------------------
def quality_table(summary: dict) -> str:
    """Markdown: ranking quality per split (MLL's labels vs the INB ranking) and MLL's self-estimate error."""
    q = summary.get("selection_quality") or {}
    if not q:
        return "_No task had enough ranked covering models._"

    def f(x) -> str:
        return "-" if x is None else f"{x:.3f}"

    lines = [
        "| split | ranking by | R5 | Kendall tau | L1 | tasks |",
        "|---|---|---|---|---|---|",
    ]
    for split, block in q.items():
        for key, label in (
            ("ranking_mll", "MLL's labels (task estimate)"),
            ("ranking_inb", "INB (label in-domain accuracy)"),
        ):
            r = block[key]
            lines.append(f"| {split} | {label} | {f(r['r5'])} | {f(r['tau'])} | {f(r['l1'])} | {r['n_tasks']} |")
    lines.append("")
    lines.append(
        "MLL's estimate of its own selection's accuracy, mean |estimated - measured|: "
        + "; ".join(f"{split} {f(b['self_estimate_l1'])}" for split, b in q.items())
        + f". Targets: tau >= 0.6, R5 >= 0.7, L1 <= 0.05 (LOVM's INB: 0.177 / 0.452 / 0.220). Tasks with at least "
        f"{MIN_MODELS} covering models that answer 2+ of their classes."
    )
    return "\n".join(lines)


def fixed_coverage_table(summary: dict, label) -> str:
    """Markdown: accuracy against hub size over the sub-hubs that cover every class of a task, per family,
    with the mean coverage and independent experts per size."""
    fixed = summary.get("growth_fixed_coverage") or {}
    cov = summary.get("growth_coverage") or {}
    sizes = sorted({int(s) for fam in fixed.values() for m in fam.values() for s in m} | {int(s) for s in cov}, key=int)
    if not sizes:
        return "_No growth curve in this run._"
    head = "| family | method | " + " | ".join(str(s) for s in sizes) + " |"
    lines = [head, "|---|---|" + "---|" * len(sizes)]
    lines.append(
        "| (all) | coverage | "
        + " | ".join(f"{cov[str(s)]['coverage']:.2f}" if str(s) in cov else "-" for s in sizes)
        + " |"
    )
    lines.append(
        "| (all) | independent experts | "
        + " | ".join(f"{cov[str(s)]['independent']:.1f}" if str(s) in cov else "-" for s in sizes)
        + " |"
    )
    for fam, by_method in fixed.items():
        for m, by_size in by_method.items():
            cells = [f"{by_size[str(s)]:.3f}" if str(s) in by_size else "-" for s in sizes]
            lines.append(f"| {fam} | {label(m)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)

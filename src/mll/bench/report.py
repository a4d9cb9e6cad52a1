"""Benchmark report: the cells document -> metrics JSON, Markdown tables, plots and the README block.

The benchmark writes one "cell" per (task, method[, seed]) into a JSON document; this module turns
it into what people read and what DVC tracks:

- `reports/benchmark.json` (`summarize`): per-task and mean accuracy per method, MLL against the
  oracle expert, which zero-shot baselines MLL beats, which methods were skipped and why, and the
  accuracy-against-hub-size curve. Only numbers are stored where a value exists (a skipped cell is
  absent, never null), so `dvc metrics` stays numeric.
- `reports/benchmark.md` (`markdown`) and the block between the README markers (`readme_block`,
  `sync_readme`).
- `reports/plots/*.png` (`plots`): accuracy by task, growth with hub size, which model answers which
  class.

`python -m mll.bench.report --cells reports/benchmark/cells.json --out reports [--readme README.md]`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np

# Display order and labels; methods not listed here go after these, labelled by their key.
METHOD_LABELS: dict[str, str] = {
    "mll": "MLL",
    "single": "best single model (hindsight)",
    "uniform": "uniform ensemble",
    "random": "random selection",
    "top1": "per-class top-1",
    "ungated": "MLL w/o gates",
    "static": "MLL w/o adaptation",
    "oracle": "oracle expert",
    "clip": "CLIP zero-shot",
}
# Baselines that see neither the target labels nor target training data. `single` is picked with
# hindsight of the test labels and `oracle` is trained on the task, so neither is zero-shot.
ZERO_SHOT = ("uniform", "random", "top1", "ungated", "static", "clip")
# Excluded when bolding the best value of a row: they are upper references, not competitors.
NOT_BOLDED = ("oracle", "single")
# A growth curve may dip this much between consecutive sizes and still count as non-decreasing
# (sub-hub sampling noise at the third decimal is not a trend).
GROWTH_TOLERANCE = 0.005
DIGITS = 4
DASH = "–"
README_START = "<!-- benchmark:start -->"
README_END = "<!-- benchmark:end -->"


# --- small helpers ----------------------------------------------------------------------------------
def method_label(method: str) -> str:
    """The display label of a method key (the key itself when unknown)."""
    return METHOD_LABELS.get(method, method)


def order_methods(methods: list[str] | tuple[str, ...]) -> list[str]:
    """Known methods in display order, then unknown ones in order of first appearance."""
    seen = list(dict.fromkeys(methods))
    known = [m for m in METHOD_LABELS if m in seen]
    return known + [m for m in seen if m not in METHOD_LABELS]


def _r(x: float | None) -> float | None:
    return None if x is None else round(float(x), DIGITS)


def _value(cell: dict) -> float | None:
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


def _cells(cells: dict) -> list[dict]:
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
    return list(dict.fromkeys(names + [c["task"] for c in _cells(cells)]))


def _task_values(cells: dict) -> dict[str, dict[str, list[float]]]:
    """{task: {method: [accuracy per ok cell (one per seed)]}}, unrounded."""
    out: dict[str, dict[str, list[float]]] = {t: {} for t in task_names(cells)}
    for c in _cells(cells):
        v = _value(c)
        if v is not None:
            out[c["task"]].setdefault(c["method"], []).append(v)
    return out


def _seeded(cells: dict) -> set[str]:
    """Methods run with seeds (a std over seeds is reported for them)."""
    return {c["method"] for c in _cells(cells) if c.get("seed") is not None}


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


# --- summary ----------------------------------------------------------------------------------------
def _per_task(cells: dict, methods: list[str]) -> dict[str, dict[str, float]]:
    """{task: {method: mean over seeds}} unrounded, skipped cells absent."""
    values = _task_values(cells)
    return {t: {m: float(np.mean(values[t][m])) for m in methods if m in values[t]} for t in values}


def _tasks_block(cells: dict, methods: list[str]) -> dict[str, dict[str, float]]:
    values = _task_values(cells)
    seeded = _seeded(cells)
    out: dict[str, dict[str, float]] = {}
    for task, by_method in values.items():
        row: dict[str, float] = {}
        for m in methods:
            if m not in by_method:
                continue
            row[m] = _r(np.mean(by_method[m]))
            if m in seeded or len(by_method[m]) > 1:
                row[f"{m}_std"] = _r(_std(by_method[m]))
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
    for b in (m for m in methods if m in ZERO_SHOT):
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
        reasons = [c.get("reason") or "" for c in _cells(cells) if c["method"] == m]
        out[m] = "; ".join(dict.fromkeys(r for r in reasons if r)) or "no reason given"
    return out


def growth_points(cells: dict) -> dict[str, dict[int, list[float]]]:
    """{method: {size: [one value per sub-hub (seed), averaged over tasks first]}}, unrounded."""
    per_hub: dict[tuple[str, int, Any], list[float]] = {}
    for g in cells.get("growth") or []:
        v = _value(g)
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
        monotone[method] = all(b >= a - GROWTH_TOLERANCE for a, b in zip(means, means[1:]))
    return growth, monotone


def summarize(cells: dict) -> dict:
    """The metrics document (`reports/benchmark.json`) from the benchmark cells; floats to 4 decimals."""
    methods = order_methods([c["method"] for c in _cells(cells)])
    per_task = _per_task(cells, methods)
    tasks = list(per_task)
    mean = {m: _r(np.mean(v)) for m in methods if (v := [row[m] for row in per_task.values() if m in row])}
    mean_all = {m: mean[m] for m in mean if all(m in per_task[t] for t in tasks)}
    beaten, losses = _baselines(per_task, methods)
    growth, monotone = _growth_block(cells)
    return {
        "methods": methods,
        "tasks": _tasks_block(cells, methods),
        "mean": mean,
        "mean_all_tasks": mean_all,
        "oracle": _oracle_block(per_task),
        "zero_shot_baselines_beaten": beaten,
        "per_task_losses": losses,
        "skipped": _skipped(cells, methods, per_task),
        "growth": growth,
        "growth_non_decreasing": monotone,
    }


# --- markdown ---------------------------------------------------------------------------------------
def _fmt(value: float | None, std: float | None = None) -> str:
    if value is None:
        return DASH
    return f"{value:.3f}" if std is None else f"{value:.3f} ± {std:.3f}"


def _bold_best(row: dict[str, float], methods: list[str]) -> set[str]:
    """Methods holding the best value of the row among MLL and the zero-shot competitors (ties: all)."""
    cands = {m: round(row[m], 3) for m in methods if m in row and m not in NOT_BOLDED}
    if not cands:
        return set()
    best = max(cands.values())
    return {m for m, v in cands.items() if v == best}


def _table_cell(row: dict[str, float], method: str, bold: set[str]) -> str:
    text = _fmt(row.get(method), row.get(f"{method}_std") if method in row else None)
    return f"**{text}**" if method in bold else text


def main_table(cells: dict, summary: dict) -> str:
    """The tasks × methods accuracy table with the mean row (Markdown)."""
    methods = summary["methods"]
    info = cells.get("tasks") or {}
    lines = ["| task | classes | images | " + " | ".join(method_label(m) for m in methods) + " |",
             "|---|---:|---:|" + "---:|" * len(methods)]
    for task, row in summary["tasks"].items():
        t = info.get(task, {})
        n_classes = len(t.get("classes") or []) or DASH
        bold = _bold_best(row, methods)
        lines.append(f"| {task} | {n_classes} | {t.get('n_images', DASH)} | "
                     + " | ".join(_table_cell(row, m, bold) for m in methods) + " |")
    mean = summary["mean"]
    bold = _bold_best(mean, methods)
    partial = [m for m in methods if m in mean and m not in summary["mean_all_tasks"]]
    cells_md = []
    for m in methods:
        text = _fmt(mean.get(m))
        text = f"**{text}**" if m in bold else text
        cells_md.append(text + ("\\*" if m in partial else ""))
    lines.append("| **mean** | | | " + " | ".join(cells_md) + " |")
    if partial:
        lines.append("")
        lines.append("\\* mean over the tasks that method has a value for, not over all tasks.")
    return "\n".join(lines)


def oracle_line(summary: dict) -> str:
    """One sentence: MLL's mean accuracy as a fraction of the oracle expert's, and over which tasks."""
    o = summary["oracle"]
    if o["ratio"] is None:
        return "No task has both an MLL and an oracle-expert value, so there is no MLL/oracle ratio."
    return (f"MLL reaches **{o['ratio']:.3f}** of the oracle expert's accuracy "
            f"(MLL {o['mll_mean']:.3f} vs oracle {o['oracle_mean']:.3f}, mean over "
            f"{len(o['tasks'])} task{'s' if len(o['tasks']) != 1 else ''} with training data: {', '.join(o['tasks'])}).")


def _mll_cell(cells: dict, task: str) -> dict | None:
    return next((c for c in _cells(cells) if c["task"] == task and c["method"] == "mll" and _value(c) is not None), None)


def support_tables(cells: dict) -> str:
    """Per task: its classes with the number of test images, plus MLL's per-class accuracy and models."""
    parts = []
    for task, t in (cells.get("tasks") or {}).items():
        support = t.get("support") or {}
        classes = list(t.get("classes") or support)
        mll = _mll_cell(cells, task) or {}
        per_class, answered = mll.get("per_class") or {}, mll.get("answered_by") or {}
        parts.append(f"### {task} ({len(classes)} classes, {t.get('n_images', DASH)} images)\n")
        parts.append("| class | images | MLL accuracy | answered by (MLL) |\n|---|---:|---:|---|")
        for c in classes:
            acc = per_class.get(c)
            parts.append(f"| {c} | {support.get(c, DASH)} | {_fmt(acc)} | {', '.join(answered.get(c) or []) or DASH} |")
        parts.append("")
    return "\n".join(parts).rstrip()


def growth_table(summary: dict) -> str:
    """Rows = hub size, columns = methods, cells `mean ± std (n sub-hubs)`."""
    growth = summary.get("growth") or {}
    if not growth:
        return "No growth runs."
    methods = order_methods(list(growth))
    sizes = sorted({int(s) for m in methods for s in growth[m]})
    lines = ["| hub size | " + " | ".join(method_label(m) for m in methods) + " |", "|---:|" + "---:|" * len(methods)]
    for s in sizes:
        row = []
        for m in methods:
            g = growth[m].get(str(s))
            row.append(DASH if g is None else f"{g['mean']:.3f} ± {g['std']:.3f} ({g['n']})")
        lines.append(f"| {s} | " + " | ".join(row) + " |")
    flags = summary.get("growth_non_decreasing") or {}
    if flags:
        lines.append("")
        lines.append("Non-decreasing with hub size (tolerance 0.005): "
                     + ", ".join(f"{method_label(m)} {'yes' if v else 'no'}" for m, v in flags.items()) + ".")
    return "\n".join(lines)


def skipped_line(summary: dict) -> str:
    """One line naming the methods skipped on every task and why."""
    skipped = summary.get("skipped") or {}
    if not skipped:
        return "No method was skipped on every task."
    return "Skipped on every task: " + "; ".join(f"{method_label(m)} ({r})" for m, r in skipped.items()) + "."


def _baselines_line(summary: dict) -> str:
    beaten = summary.get("zero_shot_baselines_beaten") or {}
    if not beaten:
        return ""
    text = "MLL's mean beats the zero-shot baselines: " + ", ".join(
        f"{method_label(b)} {'yes' if v else 'no'}" for b, v in beaten.items()) + "."
    losses = summary.get("per_task_losses") or []
    if losses:
        text += " Tasks where a zero-shot baseline is above MLL: " + "; ".join(
            f"{x['task']} ({method_label(x['method'])} {x['baseline']:.3f} > {x['mll']:.3f})" for x in losses) + "."
    return text


def markdown(cells: dict, summary: dict) -> str:
    """The `reports/benchmark.md` text: main table, MLL/oracle, support tables, growth, skipped methods."""
    parts = [
        "# Benchmark: MLL against baselines",
        "",
        "Accuracy on each task's target_test images (fraction correct); random selection is the mean ± std "
        "over its seeds. Bold: the best of MLL and the zero-shot baselines per row (the oracle expert and the "
        "hindsight best single model are references, not bolded); – : skipped.",
        "",
        main_table(cells, summary),
        "",
        oracle_line(summary),
    ]
    if line := _baselines_line(summary):
        parts += ["", line]
    parts += ["", "## Classes per task", "", support_tables(cells),
              "", "## Accuracy against hub size",
              "", "Random sub-hubs of each size; each sub-hub's accuracy is averaged over tasks, then "
              "mean ± std over sub-hubs (n sub-hubs).", "", growth_table(summary),
              "", skipped_line(summary), ""]
    return "\n".join(parts)


def readme_block(summary: dict, cells: dict) -> str:
    """The compact README block: main table with mean row, the MLL/oracle line, and where it comes from."""
    return "\n".join([
        main_table(cells, summary),
        "",
        oracle_line(summary),
        "",
        "_Generated by `make demo` from reports/benchmark.md (accuracy on target_test images; "
        "random = mean ± std over seeds)._",
    ])


# --- plots ------------------------------------------------------------------------------------------
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # headless: the pipeline runs without a display
    import matplotlib.pyplot as plt

    return plt


def _color(method: str) -> Any:
    # One stable colour per method across all figures.
    import matplotlib

    keys = list(METHOD_LABELS)
    idx = keys.index(method) if method in keys else zlib.crc32(method.encode())  # crc32: stable across runs
    return matplotlib.colormaps["tab10"](idx % 10)


def _save(fig: Any, path: Path) -> Path:
    plt = _pyplot()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _plot_accuracy(summary: dict, path: Path) -> Path:
    plt = _pyplot()
    methods = [m for m in summary["methods"] if m in summary["mean"]]
    groups = list(summary["tasks"]) + ["mean"]
    rows = [summary["tasks"][t] for t in groups[:-1]] + [summary["mean"]]
    fig, ax = plt.subplots(figsize=(min(14.0, 4.0 + 0.3 * len(groups) * max(len(methods), 1)), 4.5))
    width = 0.8 / max(len(methods), 1)
    for i, m in enumerate(methods):
        xs = [g for g, row in enumerate(rows) if m in row]
        ys = [rows[g][m] for g in xs]
        pos = [x - 0.4 + width * (i + 0.5) for x in xs]
        ax.bar(pos, ys, width, label=method_label(m), color=_color(m))
        # error bars only where there is a spread over seeds (random), not a zero-length cap elsewhere
        err = [(p, y, rows[g].get(f"{m}_std", 0.0)) for p, y, g in zip(pos, ys, xs)]
        err = [e for e in err if e[2] > 0]
        if err:
            ax.errorbar([e[0] for e in err], [e[1] for e in err], yerr=[e[2] for e in err], fmt="none",
                        ecolor="black", elinewidth=1, capsize=2)
    ax.axvline(len(groups) - 1.5, color="grey", lw=0.8, ls=":")
    ax.set_xticks(range(len(groups)), groups, rotation=20 if len(groups) > 5 else 0, ha="right" if len(groups) > 5 else "center")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy (target_test)")
    ax.set_title("Accuracy by task (random: mean ± std over seeds)")
    # legend below the axes: keeps the saved width within the figure width (<= 14 in)
    ax.legend(fontsize=8, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.1 if len(groups) <= 5 else -0.2))
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def _plot_growth(summary: dict, path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    growth = summary.get("growth") or {}
    sizes: set[int] = set()
    for m in order_methods(list(growth)):
        by_size = sorted((int(s), g) for s, g in growth[m].items())
        xs = [s for s, _ in by_size]
        sizes.update(xs)
        ax.plot(xs, [g["mean"] for _, g in by_size], marker="o", color=_color(m), label=method_label(m))
        # min–max over sub-hubs: shows how much the choice of sub-hub matters at each size
        ax.fill_between(xs, [g["min"] for _, g in by_size], [g["max"] for _, g in by_size], color=_color(m), alpha=0.15)
    if sizes:
        ax.set_xticks(sorted(sizes))
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no growth runs", ha="center", va="center", transform=ax.transAxes)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("models in hub (random sub-hubs)")
    ax.set_ylabel("accuracy, mean over tasks")
    ax.set_title("Accuracy against hub size (band: min–max over sub-hubs)")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def answer_matrix(cells: dict) -> tuple[list[str], list[str], np.ndarray]:
    """Rows "task: class" for every class of the MLL cells, columns hub models; 1 where the model answers."""
    info = cells.get("tasks") or {}
    mll = [c for c in _cells(cells) if c["method"] == "mll"]
    rows: list[tuple[str, str]] = []
    for c in mll:
        answered = c.get("answered_by") or {}
        classes = list((info.get(c["task"]) or {}).get("classes") or answered)
        rows += [(c["task"], k) for k in classes if (c["task"], k) not in rows]
    models = list(cells.get("hub") or [])
    models += list(dict.fromkeys(m for c in mll for ms in (c.get("answered_by") or {}).values()
                                 for m in ms if m not in models))
    mat = np.zeros((len(rows), len(models)), dtype=np.int8)
    col = {m: j for j, m in enumerate(models)}
    for c in mll:
        for k, ms in (c.get("answered_by") or {}).items():
            if (c["task"], k) in rows:
                for m in ms:
                    mat[rows.index((c["task"], k)), col[m]] = 1
    return [f"{t}: {k}" for t, k in rows], models, mat


def _plot_answers(cells: dict, path: Path) -> Path:
    plt = _pyplot()
    from matplotlib.colors import ListedColormap

    labels, models, mat = answer_matrix(cells)
    w = min(14.0, 3.0 + 0.3 * max(len(models), 1))
    h = min(30.0, 1.5 + 0.22 * max(len(labels), 1))
    fig, ax = plt.subplots(figsize=(w, h))
    if mat.size:
        im = ax.imshow(mat, cmap=ListedColormap(["#f2f2f2", "#1f77b4"]), vmin=0, vmax=1, aspect="auto",
                       interpolation="nearest")
        fs = 8 if max(len(labels), len(models)) <= 40 else 5
        ax.set_xticks(range(len(models)), models, rotation=90, fontsize=fs)
        ax.set_yticks(range(len(labels)), labels, fontsize=fs)
        cbar = fig.colorbar(im, ax=ax, ticks=[0.25, 0.75], fraction=0.04)
        cbar.ax.set_yticklabels(["not used", "answers the class"], fontsize=8)
    else:
        ax.text(0.5, 0.5, "no MLL selection", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    ax.set_title("Which hub model answers which class (MLL selection)")
    return _save(fig, path)


def plots(cells: dict, summary: dict, out_dir: Path) -> list[Path]:
    """Write accuracy_by_task.png, growth.png and answers.png under out_dir; return their paths."""
    out_dir = Path(out_dir)
    return [
        _plot_accuracy(summary, out_dir / "accuracy_by_task.png"),
        _plot_growth(summary, out_dir / "growth.png"),
        _plot_answers(cells, out_dir / "answers.png"),
    ]


# --- files ------------------------------------------------------------------------------------------
def write_report(cells_path: Path, out_dir: Path) -> dict:
    """Read the cells JSON; write benchmark.json, benchmark.md and plots/*.png under out_dir; return the summary."""
    cells = json.loads(Path(cells_path).read_text())
    summary = summarize(cells)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # allow_nan=False: a NaN would make the metrics file invalid JSON for DVC
    (out_dir / "benchmark.json").write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
    (out_dir / "benchmark.md").write_text(markdown(cells, summary))
    plots(cells, summary, out_dir / "plots")
    return summary


def _marker_line(lines: list[str], marker: str, readme: Path) -> int | None:
    hits = [i for i, line in enumerate(lines) if line.strip() == marker]
    if len(hits) > 1:
        raise ValueError(f"{readme}: marker {marker!r} appears {len(hits)} times; keep exactly one")
    return hits[0] if hits else None


def sync_readme(readme: Path, table_md: str, start: str = README_START, end: str = README_END) -> bool:
    """Replace the text between the start and end marker lines with table_md; False if there are no markers."""
    readme = Path(readme)
    text = readme.read_text()
    lines = text.splitlines(keepends=True)
    i, j = _marker_line(lines, start, readme), _marker_line(lines, end, readme)
    if i is None and j is None:
        return False
    if i is None or j is None:
        missing = start if i is None else end
        raise ValueError(f"{readme}: has {(end if i is None else start)!r} but not {missing!r}; "
                         f"add a line {missing!r} so the benchmark block has both markers")
    if j < i:
        raise ValueError(f"{readme}: {end!r} comes before {start!r}; put the start marker first")
    # lines[i] ends with a newline: the end marker follows it
    new = "".join(lines[: i + 1]) + table_md.strip("\n") + "\n" + "".join(lines[j:])
    if new != text:  # leave the file untouched (mtime too) when nothing changed
        readme.write_text(new)
    return True


# --- command line -----------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """`python -m mll.bench.report`: write the benchmark report (and the README block with --readme)."""
    p = argparse.ArgumentParser(prog="python -m mll.bench.report",
                                description="Benchmark cells JSON -> reports/benchmark.{json,md} and plots.")
    p.add_argument("--cells", type=Path, default=Path("reports/benchmark/cells.json"), help="the benchmark cells JSON")
    p.add_argument("--out", type=Path, default=Path("reports"), help="output folder (plots go under OUT/plots)")
    p.add_argument("--readme", type=Path, default=None,
                   help=f"also replace the block between {README_START} and {README_END} in this file")
    a = p.parse_args(argv)
    try:
        summary = write_report(a.cells, a.out)
        synced = None
        if a.readme is not None:
            cells = json.loads(a.cells.read_text())
            synced = sync_readme(a.readme, readme_block(summary, cells))
    except (OSError, ValueError, KeyError, TypeError) as exc:  # json.JSONDecodeError is a ValueError
        print(f"mll.bench.report: error: {exc}", file=sys.stderr)
        return 2
    mll = summary["mean"].get("mll")
    ratio = summary["oracle"]["ratio"]
    where = f"{a.out}/benchmark.json, {a.out}/benchmark.md, {a.out}/plots/"
    if a.readme is not None:
        where += f", {a.readme}" if synced else f" ({a.readme} has no benchmark markers: not changed)"
    print(f"MLL mean {'n/a' if mll is None else f'{mll:.3f}'}, MLL/oracle "
          f"{'n/a' if ratio is None else f'{ratio:.3f}'}; wrote {where}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

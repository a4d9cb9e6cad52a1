"""Benchmark plots (`reports/plots/*.png`): accuracy by task, growth with hub size, which model answers
which class.

Labels, order and one stable colour per method come from the registry (`mll.bench.methods`), so a
method has the same colour in every figure and a new method appears without changes here.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import numpy as np

from mll.bench.methods import list_methods, method_label, order_methods
from mll.bench.summary import checked_cells, user_tasks


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # headless: the pipeline runs without a display
    import matplotlib.pyplot as plt

    return plt


def _color(method: str) -> Any:
    # One stable colour per method across all figures.
    import matplotlib

    keys = list_methods()
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
    groups = [*summary["tasks"], "mean"]
    rows = [summary["tasks"][t] for t in groups[:-1]] + [summary["mean"]]
    fig, ax = plt.subplots(figsize=(min(14.0, 4.0 + 0.3 * len(groups) * max(len(methods), 1)), 4.5))
    width = 0.8 / max(len(methods), 1)
    for i, m in enumerate(methods):
        xs = [g for g, row in enumerate(rows) if m in row]
        ys = [rows[g][m] for g in xs]
        pos = [x - 0.4 + width * (i + 0.5) for x in xs]
        ax.bar(pos, ys, width, label=method_label(m), color=_color(m))
        # error bars only where there is a spread over seeds (a seeded method), not a zero-length cap elsewhere
        err = [(p, y, rows[g].get(f"{m}_std", 0.0)) for p, y, g in zip(pos, ys, xs, strict=True)]
        err = [e for e in err if e[2] > 0]
        if err:
            ax.errorbar(
                [e[0] for e in err],
                [e[1] for e in err],
                yerr=[e[2] for e in err],
                fmt="none",
                ecolor="black",
                elinewidth=1,
                capsize=2,
            )
    ax.axvline(len(groups) - 1.5, color="grey", lw=0.8, ls=":")
    many = len(groups) > 5
    ax.set_xticks(range(len(groups)), groups, rotation=20 if many else 0, ha="right" if many else "center")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy (target_test)")
    seeded = list_methods(seeded=True)
    ax.set_title("Accuracy by task" + (f" ({', '.join(seeded)}: mean ± std over seeds)" if seeded else ""))
    # legend below the axes: keeps the saved width within the figure width (<= 14 in)
    ax.legend(fontsize=8, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.2 if many else -0.1))
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
    users = user_tasks(cells)  # the base tasks' selections: a user-name task repeats its base's images
    mll = [c for c in checked_cells(cells) if c["method"] == "mll" and c["task"] not in users]
    rows: list[tuple[str, str]] = []
    for c in mll:
        answered = c.get("answered_by") or {}
        classes = list((info.get(c["task"]) or {}).get("classes") or answered)
        rows += [(c["task"], k) for k in classes if (c["task"], k) not in rows]
    models = list(cells.get("hub") or [])
    models += list(
        dict.fromkeys(m for c in mll for ms in (c.get("answered_by") or {}).values() for m in ms if m not in models)
    )
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
        im = ax.imshow(
            mat, cmap=ListedColormap(["#f2f2f2", "#1f77b4"]), vmin=0, vmax=1, aspect="auto", interpolation="nearest"
        )
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


def _plot_fixed_coverage(summary: dict, path: Path) -> Path:
    """One panel per family: accuracy against hub size over the sub-hubs covering every class."""
    plt = _pyplot()
    fixed = summary.get("growth_fixed_coverage") or {}
    fams = list(fixed) or ["(none)"]
    fig, axes = plt.subplots(1, len(fams), figsize=(4.2 * len(fams), 4.0), squeeze=False)
    for ax, fam in zip(axes[0], fams, strict=True):
        for m in order_methods(list(fixed.get(fam, {}))):
            pts = sorted((int(s), v) for s, v in fixed[fam][m].items())
            ax.plot([s for s, _ in pts], [v for _, v in pts], marker="o", color=_color(m), label=method_label(m))
        ax.set_xscale("log", base=2)
        ax.set_ylim(0, 1.05)
        ax.set_title(fam, fontsize=10)
        ax.set_xlabel("models in hub (nested sub-hubs)")
        ax.grid(alpha=0.3)
        if fixed.get(fam):
            ax.legend(fontsize=7)
    axes[0][0].set_ylabel("accuracy where the sub-hub covers every class")
    return _save(fig, path)


def _plot_families(summary: dict, path: Path) -> Path:
    """Per split and family: each method's mean with its 95% bootstrap interval."""
    plt = _pyplot()
    rows = [(sp, fam, by) for sp, fams in (summary.get("families") or {}).items() for fam, by in fams.items()]
    fig, axes = plt.subplots(len(rows) or 1, 1, figsize=(9, 1.2 + 0.28 * 20 * max(len(rows), 1) / 2), squeeze=False)
    for ax, (sp, fam, by) in zip(axes[:, 0], rows, strict=False):
        ms = order_methods(list(by))
        ys = np.arange(len(ms))
        for y, m in zip(ys, ms, strict=True):
            e = by[m]
            ax.errorbar(
                e["mean"], y, xerr=[[e["mean"] - e["ci_low"]], [e["ci_high"] - e["mean"]]], fmt="o", color=_color(m)
            )
        ax.set_yticks(ys, [method_label(m) for m in ms], fontsize=7)
        ax.set_xlim(0, 1.02)
        ax.set_title(f"{sp}: {fam}", fontsize=9)
        ax.grid(alpha=0.3, axis="x")
    fig.subplots_adjust(hspace=0.45)  # room for each panel's title under the axis above
    return _save(fig, path)


def plots(cells: dict, summary: dict, out_dir: Path) -> list[Path]:
    """Write accuracy_by_task.png, growth.png, growth_fixed_coverage.png, families.png and answers.png
    under out_dir; return their paths."""
    out_dir = Path(out_dir)
    return [
        _plot_accuracy(summary, out_dir / "accuracy_by_task.png"),
        _plot_growth(summary, out_dir / "growth.png"),
        _plot_fixed_coverage(summary, out_dir / "growth_fixed_coverage.png"),
        _plot_families(summary, out_dir / "families.png"),
        _plot_answers(cells, out_dir / "answers.png"),
    ]

"""Benchmark report: the cells document -> metrics JSON, Markdown tables, plots and the README block.

The benchmark writes one "cell" per (task, method[, seed]) into a JSON document; this module turns
it into what people read and what DVC tracks:

- `reports/benchmark.json` (`mll.bench.summary.summarize`): per-task and mean accuracy per method,
  MLL against the oracle expert, which zero-shot baselines MLL beats, skipped methods, the growth curve.
- `reports/benchmark.md` (`markdown`) and the block between the README markers (`readme_block`,
  `sync_readme`).
- `reports/plots/*.png` (`mll.bench.plots.plots`): accuracy by task, growth with hub size, which
  model answers which class.

Column labels, order and which methods are references (not bolded) come from the registry in
`mll.bench.methods`; only MLL (the headline) and the oracle expert (the MLL/oracle ratio) are named here.

`python -m mll.bench.report --cells reports/benchmark/cells.json --out reports [--readme README.md]`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mll.bench.families import families_table
from mll.bench.masked import masked_table
from mll.bench.methods import find_method, get_method, list_methods, method_label, order_methods
from mll.bench.plots import plots
from mll.bench.quality import fixed_coverage_table, quality_table
from mll.bench.readme import README_END, README_START, sync_readme
from mll.bench.studies import budget_table, sweep_table
from mll.bench.summary import GROWTH_TOLERANCE, cell_value, checked_cells, summarize, user_tasks

DASH = "–"


# --- markdown ---------------------------------------------------------------------------------------
def _reference(method: str) -> bool:
    m = find_method(method)
    return m is not None and m.reference


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _legend() -> str:
    """How to read the main table: seeded methods, what is bolded, which methods are references."""
    text = "Accuracy on each task's target_test images (fraction correct)"
    if seeded := [get_method(k).label for k in list_methods(seeded=True)]:
        one = len(seeded) == 1
        text += f"; {_and(seeded)} {'is' if one else 'are'} the mean ± std over {'its' if one else 'their'} seeds"
    text += ". Bold: the best of MLL and the zero-shot baselines per row"
    # the oracle first: it is the reference the report measures MLL against
    if refs := sorted(list_methods(reference=True), key=lambda k: k != "oracle"):
        nouns = [get_method(k).noun for k in refs]
        text += f" ({_and(nouns)} {'is a reference' if len(refs) == 1 else 'are references'}, not bolded)"
    return text + f"; {DASH} : skipped."


def _fmt(value: float | None, std: float | None = None) -> str:
    if value is None:
        return DASH
    return f"{value:.3f}" if std is None else f"{value:.3f} ± {std:.3f}"


def _bold_best(row: dict[str, float], methods: list[str]) -> set[str]:
    """Methods holding the best value of the row among MLL and the zero-shot competitors (ties: all)."""
    cands = {m: round(row[m], 3) for m in methods if m in row and not _reference(m)}
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
    lines = [
        "| task | classes | images | " + " | ".join(method_label(m) for m in methods) + " |",
        "|---|---:|---:|" + "---:|" * len(methods),
    ]
    for task, row in summary["tasks"].items():
        t = info.get(task, {})
        n_classes = len(t.get("classes") or []) or DASH
        bold = _bold_best(row, methods)
        lines.append(
            f"| {task} | {n_classes} | {t.get('n_images', DASH)} | "
            + " | ".join(_table_cell(row, m, bold) for m in methods)
            + " |"
        )
    mean = summary["mean"]
    bold = _bold_best(mean, methods)
    partial = [m for m in methods if m in mean and m not in summary["mean_all_tasks"]]
    cells_md = []
    for m in methods:
        text = _fmt(mean.get(m))
        text = f"**{text}**" if m in bold else text
        cells_md.append(text + ("\\*" if m in partial else ""))
    families = {(info.get(t) or {}).get("family", "in_domain") for t in summary["tasks"]}
    label = "**mean**" if families <= {"in_domain"} else "**mean of the in_domain tasks**"
    lines.append(f"| {label} | | | " + " | ".join(cells_md) + " |")
    if partial:
        lines.append("")
        lines.append("\\* mean over the tasks that method has a value for, not over all tasks.")
    return "\n".join(lines)


def oracle_line(summary: dict) -> str:
    """One sentence: MLL's mean accuracy as a fraction of the oracle expert's, and over which tasks."""
    o = summary["oracle"]
    if o["ratio"] is None:
        return "No task has both an MLL and an oracle-expert value, so there is no MLL/oracle ratio."
    return (
        f"MLL reaches **{o['ratio']:.3f}** of the oracle expert's accuracy "
        f"(MLL {o['mll_mean']:.3f} vs oracle {o['oracle_mean']:.3f}, mean over "
        f"{len(o['tasks'])} task{'s' if len(o['tasks']) != 1 else ''} with training data: "
        f"{', '.join(o['tasks'])})."
    )


def _mll_cell(cells: dict, task: str) -> dict | None:
    return next(
        (c for c in checked_cells(cells) if c["task"] == task and c["method"] == "mll" and cell_value(c) is not None),
        None,
    )


def support_tables(cells: dict) -> str:
    """Per task: its classes with the number of test images, plus MLL's per-class accuracy and models."""
    parts = []
    users = user_tasks(cells)
    for task, t in (cells.get("tasks") or {}).items():
        if task in users:
            continue
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
        lines.append(
            f"Non-decreasing with hub size (tolerance {GROWTH_TOLERANCE}): "
            + ", ".join(f"{method_label(m)} {'yes' if v else 'no'}" for m, v in flags.items())
            + "."
        )
    return "\n".join(lines)


def user_names_section(summary: dict) -> str:
    """The user-name tasks against their base tasks: one row per (task, naming), each method's accuracy
    with its gap to the dataset's names, then the classes MLL matched to another synset."""
    block = summary.get("user_names") or {}
    rows = block.get("tasks") or {}
    if not rows:
        return ""
    methods = [m for m in summary["methods"] if any(m in r for r in rows.values())]
    lines = [
        "The same images and labels as the base task, with the class names a user types "
        "(`data/user_names.yaml`); each cell is the accuracy and, in brackets, its difference to the same "
        "method on the base task with the dataset's names.",
        "",
        "| task | naming | " + " | ".join(method_label(m) for m in methods) + " |",
        "|---|---|" + "---:|" * len(methods),
    ]
    for r in rows.values():
        vals = []
        for m in methods:
            if m not in r:
                vals.append("failed" if "failed" in r else DASH)
            else:
                gap = r.get(f"{m}_gap")
                vals.append(_fmt(r[m]) + (f" ({gap:+.3f})" if gap is not None else ""))
        lines.append(f"| {r['base']} | {r.get('naming') or DASH} | " + " | ".join(vals) + " |")
    gaps = block.get("mean_gap") or {}
    lines.append("| **mean gap** | | " + " | ".join(f"{gaps[m]:+.3f}" if m in gaps else DASH for m in methods) + " |")
    failed = block.get("failed") or []
    lines.append("")
    lines.append(
        f"Mean gap over the {len(rows) - len(failed)} of {len(rows)} user-name tasks whose names all matched"
        + ("; failed: " + "; ".join(f"{t} ({rows[t]['failed']})" for t in failed) + "." if failed else ".")
    )
    other = [(t, u, o) for t, r in rows.items() for u, o in (r.get("other_synsets") or {}).items()]
    if other:
        lines += [
            "",
            "Classes MLL matched to another synset than the dataset's name (MLL's per-class accuracy, "
            "user's name vs dataset's name):",
            "",
            "| task | name | matched | dataset's name | its synset | accuracy |",
            "|---|---|---|---|---|---|",
        ]
        for t, u, o in other:
            lines.append(
                f"| {t} | {u} | {o.get('name') or o.get('synset') or DASH} | {o['class']} | "
                f"{o.get('base_name') or o.get('base_synset') or DASH} | "
                f"{_fmt(o.get('accuracy'))} vs {_fmt(o.get('base_accuracy'))} |"
            )
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
    text = (
        "MLL's mean beats the zero-shot baselines: "
        + ", ".join(f"{method_label(b)} {'yes' if v else 'no'}" for b, v in beaten.items())
        + "."
    )
    losses = summary.get("per_task_losses") or []
    if losses:
        text += (
            " Tasks where a zero-shot baseline is above MLL: "
            + "; ".join(
                f"{x['task']} ({method_label(x['method'])} {x['baseline']:.3f} > {x['mll']:.3f})" for x in losses
            )
            + "."
        )
    return text


def hub_line(cells: dict) -> str:
    """The hub in one line, and how often MLL's selections used an expert flagged weak, redundant,
    noisy or misleading (the labels should keep it out)."""
    comp = cells.get("hub_composition")
    if not comp:
        return ""
    flagged = comp.get("flagged_models") or {}
    mll = [c for c in cells.get("cells", []) if c.get("method") == "mll"]
    used = sorted({m for c in mll for m in c.get("models") or [] if m in flagged})
    with_flagged = sum(any(m in flagged for m in c.get("models") or []) for c in mll)
    counts = ", ".join(f"{t} {n}" for t, n in comp["flagged"].items())
    return (
        f"Hub: {comp['models']} models, {comp['independent']} independent and {comp['models'] - comp['independent']} "
        f"flagged ({counts}), over {len(comp['backbones'])} shared backbones. MLL's selections used a flagged "
        f"expert in {with_flagged} of {len(mll)} task solutions" + (f" ({', '.join(used)})." if used else ".")
    )


def markdown(cells: dict, summary: dict) -> str:
    """The `reports/benchmark.md` text: main table, MLL/oracle, support tables, growth, skipped methods."""
    parts = [
        "# Benchmark: MLL against baselines",
        "",
        "## Task families",
        "",
        families_table(summary, method_label),
        "",
        "## Per task",
        "",
        _legend(),
        "",
        main_table(cells, summary),
        "",
        oracle_line(summary),
    ]
    if line := _baselines_line(summary):
        parts += ["", line]
    if line := hub_line(cells):
        parts += ["", line]
    if users := user_names_section(summary):
        parts += ["", "## User-typed names", "", users]
    parts += [
        "",
        "## Classes per task",
        "",
        support_tables(cells),
        "",
        "## Accuracy against hub size",
        "",
        "Random sub-hubs of each size; each sub-hub's accuracy is averaged over tasks, then "
        "mean ± std over sub-hubs (n sub-hubs).",
        "",
        growth_table(summary),
        "",
        "## Accuracy against hub size at fixed coverage",
        "",
        "Nested sub-hubs (random orders of the hub, each cut at every size); per family and size, the mean "
        "accuracy over the (task, sub-hub) pairs whose sub-hub covers every class of the task, so the curve "
        "measures ability, not coverage. The first rows: mean coverage of a task's classes and independent "
        "experts per sub-hub.",
        "",
        fixed_coverage_table(summary, method_label),
        "",
        "## Selection quality (LOVM metrics)",
        "",
        "Do the labels rank a task's covering models the way their measured accuracies (on the classes each "
        "covers) do? docs/method.md section 9b.",
        "",
        quality_table(summary),
        "",
        "## Node-data budget",
        "",
        "Every model labeled again on at most n probe images per synset (its statistics, gates and stored "
        "outputs from those alone), then the dev in_domain tasks solved; mean accuracy (mll.bench.studies).",
        "",
        budget_table(summary, method_label),
        "",
        "## Sensitivity: one solve knob at a time",
        "",
        "MLL (inductive) on the dev in_domain tasks with one setting changed, the others as in params.yaml; "
        "selection time is the plan (matching, CHCO, fitting the combiner), not the models' forward passes.",
        "",
        sweep_table(summary),
        "",
        "## The patch on hidden classes (masked coverage)",
        "",
        "In-domain and cross-style tasks with the coverage of 1-3 classes hidden (heads masked at the logit "
        "level in every model; `heads_and_nodes_hidden` also removes their node images), each answered by "
        "every patch kind with MLL's settings. Hidden-class accuracy pools the hidden classes' images over "
        "the subsets (CI: bootstrap over tasks, then images); the last column is the exact McNemar test of "
        "the semantic patch against that kind on the same hidden images (docs/method.md section 9c).",
        "",
        masked_table(summary.get("patch") or {}),
        "",
        skipped_line(summary),
        "",
    ]
    return "\n".join(parts)


def readme_block(summary: dict, cells: dict) -> str:
    """The compact README block: the families, the main table with mean row, the MLL/oracle line, the
    patch on hidden classes, and where it comes from."""
    patch = summary.get("patch") or {}
    return "\n".join(
        [
            families_table(summary, method_label),
            "",
            main_table(cells, summary),
            "",
            oracle_line(summary),
            "",
            *(
                ["**The patch on hidden classes** (masked coverage, docs/method.md 9c):", "", masked_table(patch), ""]
                if patch
                else []
            ),
            "_Generated by `make results` from reports/benchmark.md (accuracy on target_test images"
            + "".join(f"; {k} = mean ± std over seeds" for k in list_methods(seeded=True))
            + ")._",
        ]
    )


# --- files ------------------------------------------------------------------------------------------
def merge_test_cells(cells: dict, test_cells: dict) -> dict:
    """The development cells with a final-test run's tasks and cells added (their tasks are named
    `test:<task>` and have split `test`, so nothing collides)."""
    return {
        **cells,
        "tasks": {**(cells.get("tasks") or {}), **(test_cells.get("tasks") or {})},
        "cells": [*(cells.get("cells") or []), *(test_cells.get("cells") or [])],
        "masked": [*(cells.get("masked") or []), *(test_cells.get("masked") or [])],
        "release": test_cells.get("release"),
    }


def read_cells(cells_path: Path, test_cells_path: Path | None = None, studies_path: Path | None = None) -> dict:
    """The cells document, merged with the final-test run's when that file exists, and with the
    studies' rows (`mll.bench.studies`) under `studies` when that file exists."""
    cells = json.loads(Path(cells_path).read_text())
    if test_cells_path is not None and Path(test_cells_path).is_file():
        cells = merge_test_cells(cells, json.loads(Path(test_cells_path).read_text()))
    if studies_path is not None and Path(studies_path).is_file():
        cells = {**cells, "studies": json.loads(Path(studies_path).read_text())}
    return cells


def write_report(
    cells_path: Path, out_dir: Path, test_cells_path: Path | None = None, studies_path: Path | None = None
) -> dict:
    """Read the cells JSON (and the final-test run's and the studies', when there are some); write
    benchmark.json, benchmark.md and plots/*.png under out_dir; return the summary."""
    cells = read_cells(cells_path, test_cells_path, studies_path)
    summary = summarize(cells)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # allow_nan=False: a NaN would make the metrics file invalid JSON for DVC
    (out_dir / "benchmark.json").write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
    (out_dir / "benchmark.md").write_text(markdown(cells, summary))
    plots(cells, summary, out_dir / "plots")
    return summary


# --- command line -----------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """`python -m mll.bench.report`: write the benchmark report (and the README block with --readme)."""
    p = argparse.ArgumentParser(
        prog="python -m mll.bench.report", description="Benchmark cells JSON -> reports/benchmark.{json,md} and plots."
    )
    p.add_argument("--cells", type=Path, default=Path("reports/benchmark/cells.json"), help="the benchmark cells JSON")
    p.add_argument(
        "--test-cells",
        type=Path,
        default=None,
        help="the final-test run's cells JSON (reports/final_test/cells.json), merged when the file exists",
    )
    p.add_argument(
        "--studies",
        type=Path,
        default=None,
        help="the studies' rows (reports/benchmark/studies.json: node-data budget, sweeps), when the file exists",
    )
    p.add_argument("--out", type=Path, default=Path("reports"), help="output folder (plots go under OUT/plots)")
    p.add_argument(
        "--readme",
        type=Path,
        default=None,
        help=f"also replace the block between {README_START} and {README_END} in this file",
    )
    a = p.parse_args(argv)
    try:
        summary = write_report(a.cells, a.out, a.test_cells, a.studies)
        synced = None
        if a.readme is not None:
            cells = read_cells(a.cells, a.test_cells, a.studies)
            synced = sync_readme(a.readme, readme_block(summary, cells))
    except (OSError, ValueError, KeyError, TypeError) as exc:  # json.JSONDecodeError is a ValueError
        print(f"mll.bench.report: error: {exc}", file=sys.stderr)
        return 2
    mll = summary["mean"].get("mll")
    ratio = summary["oracle"]["ratio"]
    where = f"{a.out}/benchmark.json, {a.out}/benchmark.md, {a.out}/plots/"
    if a.readme is not None:
        where += f", {a.readme}" if synced else f" ({a.readme} has no benchmark markers: not changed)"
    print(
        f"MLL mean {'n/a' if mll is None else f'{mll:.3f}'}, MLL/oracle "
        f"{'n/a' if ratio is None else f'{ratio:.3f}'}; wrote {where}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

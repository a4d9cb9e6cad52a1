"""Rows and metric names for the run history (no MLflow here: `mll.tracking` logs them).

One shape for a selection wherever it is logged (a benchmark cell, `mll eval`, `mll solve`): a row
per target class with the models that answer it, their head classes, how it is answered, and the
estimated (on node data) and measured (on the task's images) accuracy, so two selections compare
row by row in the MLflow UI (Artifacts -> selection.json, or `mlflow.load_table` across runs)."""

from __future__ import annotations

from mll.tracking import metric_key


def selection_rows(
    selection: dict | None = None,
    measured: dict[str, float | None] | None = None,
    answered_by: dict[str, list[str]] | None = None,
    matched: dict[str, str | None] | None = None,
    modes: dict[str, str | None] | None = None,
) -> list[dict]:
    """A row per class from a `Selection.to_dict()` (`selection`) and/or what a benchmark cell keeps
    (`answered_by`, `matched`, `modes`); `measured` is the per-class accuracy on the task's images.
    A column no source gives is left empty (None)."""
    by_class = {c["name"]: c for c in (selection or {}).get("classes", [])}
    names = list(dict.fromkeys([*by_class, *(answered_by or {}), *(measured or {})]))
    rows = []
    for n in names:
        c = by_class.get(n, {})
        heads = c.get("head_classes") or {}
        rows.append(
            {
                "class": n,
                "synset": c.get("synset") or (matched or {}).get(n),
                "models": c.get("models") or (answered_by or {}).get(n) or [],
                "head_classes": "; ".join(f"{m}: {', '.join(h)}" for m, h in heads.items()) or None,
                "mode": c.get("mode") or (modes or {}).get(n),
                "estimated_accuracy": c.get("estimated_accuracy"),
                "measured_accuracy": (measured or {}).get(n),
            }
        )
    return rows


def per_class_metrics(measured: dict[str, float | None], prefix: str = "class_accuracy") -> dict[str, float]:
    """Per-class accuracy as metrics `class_accuracy.<class>` (charts and run comparison per class)."""
    return {metric_key(prefix, c): float(v) for c, v in measured.items() if v is not None}

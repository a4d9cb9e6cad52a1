"""The run history of labeling passes: one MLflow parent run per pass (experiment `labeling`) with
each labeled model's run as its child (`mll.labels.run.label_one(parent_run=...)`), the probe
manifest as the pass's dataset input and a per-model table. Logging only: labels live on disk."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from mll.config import LabelParams
from mll.tracking import Tracker, start_run

_ROW_STATS = ("covered_nodes", "mean_recall", "mean_false_alarm", "gate_auroc", "in_domain_accuracy")


@contextlib.contextmanager
def labeling_pass(
    params: LabelParams, probe_path: Path | str, models: list[str], force: bool = False, entry: str = "flow"
) -> Iterator[Tracker]:
    """The parent run of one labeling pass over `models` (a no-op Tracker when `label.track` is off).
    Its `run_id` is what `label_one(parent_run=...)` nests each model's run under."""
    with start_run(
        "labeling",
        f"labeling pass ({len(models)} models)",
        enabled=params.track,
        tags={"mll.kind": "labeling-pass", "mll.entry": entry},
    ) as t:
        t.log_params({"models": len(models), "force": force, "device": params.device, "probe": str(probe_path)})
        if t.run_id is not None:
            from mll.data.splits import read_manifest

            t.log_dataset(read_manifest(Path(probe_path)), "probe", str(probe_path), "probe")
        yield t


def label_rows(results: list, failed: dict[str, str] | None = None) -> list[dict]:
    """One row per model of a pass: status, time and the label's headline statistics."""
    rows = []
    for r in results:
        s = r.summary or {}
        rows.append(
            {
                "model": r.model,
                "status": r.status,
                "seconds": round(r.seconds, 2),
                **{k: (round(s[k], 4) if isinstance(s.get(k), float) else s.get(k)) for k in _ROW_STATS},
            }
        )
    rows += [{"model": m, "status": f"failed: {why[:200]}"} for m, why in (failed or {}).items()]
    return rows


def log_labeling_pass(tracker: Tracker, report: dict, rows: list[dict]) -> None:
    """The pass's outcome on its parent run: counts, seconds and the per-model table."""
    tracker.log_metrics(
        {
            "models": report["models"],
            "labeled": report["labeled"],
            "skipped": report["skipped"],
            "failed": len(report["failed"]),
            "pruned": len(report["pruned"]),
            "label_seconds": report["label_seconds"],
        }
    )
    tracker.log_table(rows, "labels.json")

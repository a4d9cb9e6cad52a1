"""`mll label`: label the hub models whose label is stale, or `--check` the stored labels."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from mll.config import LabelParams, load_section
from mll.labels.run import check_labels, label_stage


def label(a: argparse.Namespace) -> int:
    if a.check:
        n = check_labels(Path(a.hub), Path(a.labels), Path(a.sdag), a.models or None)
        print(f"{n} labels pass the great_expectations suite")
        return 0
    params = load_section("label", a.params) if Path(a.params).is_file() else LabelParams()
    over = {k: v for k, v in dict(device=a.device, batch_size=a.batch_size).items() if v is not None}
    if a.no_track:
        over["track"] = False
    report = label_stage(
        replace(params, **over),
        hub_root=Path(a.hub),
        probe_path=Path(a.probe),
        sdag_path=Path(a.sdag),
        labels_root=Path(a.labels),
        summary_path=Path(a.summary) if a.summary else None,
        models=a.models or None,
        force=a.force,
    )
    if report["forward_seconds"]:
        print(f"overhead: labeling wall time is {report['overhead_ratio']:.2f}x the models' pure forward time")
    return 0

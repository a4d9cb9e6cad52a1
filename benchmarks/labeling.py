"""Labeling throughput, overhead over the models' pure forward time, and peak memory, on the demo hub.

Labels every hub model from scratch into a temporary folder (the project's labels/ is untouched),
on the real probe split. Overhead = labeling wall time / pure forward time; it is reported with and
without model loading (a one-off per model that a long-lived worker pays once).
"""

from __future__ import annotations

import resource
import tempfile
import time
from pathlib import Path

from mll.config import LabelParams, load_section
from mll.hub.store import Hub
from mll.labels.run import label_one


def run(models: list[str] | None = None) -> dict:
    params = load_section("label")
    params = LabelParams(**{**params.__dict__, "track": False})
    names = models or Hub().names()
    rows = []
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            r = label_one(
                name,
                params,
                hub_root=Path("models"),
                probe_path=Path("data/splits/probe.parquet"),
                sdag_path=Path("data/sdag"),
                labels_root=Path(tmp),
                force=True,
                log=lambda *_: None,
                show_progress=False,
            )
            store = sum(r.summary.get("store_bytes", {}).values()) if r.summary else 0
            if not store:
                store = sum(f.stat().st_size for f in (Path(tmp) / name).iterdir())
            rows.append((name, r.images, r.seconds, r.load_seconds, r.forward_seconds, store))
    wall = time.perf_counter() - t_all
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{'model':18s} {'images':>6s} {'wall s':>7s} {'load s':>7s} {'fwd s':>7s} {'img/s':>7s} "
        f"{'wall/fwd':>8s} {'store KiB':>9s}"
    )
    for name, n, sec, load, fwd, store in rows:
        print(
            f"{name:18s} {n:6d} {sec:7.2f} {load:7.2f} {fwd:7.2f} {n / max(fwd, 1e-9):7.0f} "
            f"{sec / max(fwd, 1e-9):8.2f} {store / 1024:9.0f}"
        )
    tot, load, fwd = (sum(r[i] for r in rows) for i in (2, 3, 4))
    print(
        f"hub: {len(rows)} models, wall {wall:.1f} s (incl. decoding the probe set once), labeling {tot:.1f} s, "
        f"forward {fwd:.1f} s"
    )
    print(
        f"overhead ratio (labeling wall / pure forward): {tot / fwd:.3f}; without model loading: "
        f"{(tot - load) / fwd:.3f} (target < 1.20)"
    )
    print(f"peak memory (max RSS of this process): {peak_mb:.0f} MiB")
    return {"rows": rows, "ratio": tot / fwd, "ratio_no_load": (tot - load) / fwd, "peak_mb": peak_mb}

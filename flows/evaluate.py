"""Flow `evaluate`: the mll-offline benchmark grid (DVC stage `benchmark`).

One Prefect task per (task, method[, seed]) cell, then one per random sub-hub of the growth curve
(over the base tasks: a user-name task repeats its base task's images),
so a large grid can fan out over workers. Every cell goes through `mll.bench.run.run_cell`, which
runs the method registered in `mll.bench.methods` (the hub-based ones solve with the same
`mll.solve.evaluate` path as `mll eval`), and is one MLflow run in experiment `benchmark`. Writes the
raw cells document that `mll.bench.report` turns into the report.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

from mll.env import bootstrap

bootstrap()  # the offline environment, before Prefect reads its settings

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from mll.bench import run as bm
from mll.ops.dvc_stage import writing_stage
from mll.ops.execution import artifact_key, bounded_submit, markdown_table, retry_transient
from mll.tracking import start_run
from mll.tracking_tables import selection_rows

# a cell solves one task with one method: seconds to a few minutes on 2 cores; an hour means it hangs
CELL_TIMEOUT_S = 3600

_STATE: dict = {}
_LOCK = threading.Lock()  # one loader; MLflow's fluent API keeps one active run per process


def _state(paths: dict) -> dict:
    key = json.dumps(paths, sort_keys=True)
    with _LOCK:
        if key not in _STATE:  # SDAG, labels, matcher, decoded images and model outputs load once per process
            _STATE[key] = bm.load_state(**paths)
    return _STATE[key]


@task(
    name="benchmark-cell",
    cache_policy=NO_CACHE,
    timeout_seconds=CELL_TIMEOUT_S,
    retries=1,
    retry_condition_fn=retry_transient,
)
def cell(task_name: str, method: str, seed: int | None, paths: dict, parent: str | None = None) -> dict:
    st = _state(paths)
    t = st["tasks"][task_name]
    ctx = bm.task_context(st, t, log=get_run_logger().info)
    c = bm.run_cell(
        ctx, t, method, st["cache"], seed=seed, oracle_hub=Path(paths["oracles"]), probe=Path(paths["probe"])
    )
    with _LOCK:
        bm.log_cell(c, t, enabled=st["params"].track, parent=parent)
    acc = f"{c['accuracy']:.4f}" if c["status"] == "ok" else f"{c['status']}: {c['reason']}"
    get_run_logger().info(
        f"{task_name} / {method}{'' if seed is None else f' seed {seed}'}: {acc} ({c['seconds']:.1f} s) {c['detail']}"
    )
    return c


@task(
    name="growth-cell",
    cache_policy=NO_CACHE,
    timeout_seconds=CELL_TIMEOUT_S,
    retries=1,
    retry_condition_fn=retry_transient,
)
def growth(size: int, seed: int, models: list[str], paths: dict, parent: str | None = None) -> list[dict]:
    st = _state(paths)
    tasks = bm.base_tasks(st["tasks"])
    rows = bm.growth_cell(st["ctx"], tasks, size, seed, models, st["params"].growth_methods, st["cache"])
    # a skipped cell (say, INB on a sub-hub without a generalist) has no accuracy: averaged over the rest
    mean = {
        m: round(sum(vals) / len(vals), 3)
        if (vals := [r["accuracy"] for r in rows if r["method"] == m and r["accuracy"] is not None])
        else None
        for m in st["params"].growth_methods
    }
    get_run_logger().info(f"sub-hub size {size} seed {seed} {models}: mean accuracy {mean}")
    with _LOCK, start_run("benchmark", f"growth/size{size}/seed{seed}", st["params"].track, parent=parent) as tr:
        tr.set_tags({"growth_size": size, "growth_seed": seed})
        tr.log_params({"size": size, "seed": seed, "models": ",".join(models)})
        tr.log_metrics({f"mean_accuracy.{m}": v for m, v in mean.items() if v is not None})
        tr.log_table(rows, "growth.json")
    return rows


@task(name="masked-coverage", cache_policy=NO_CACHE)
def masked(paths: dict) -> list[dict]:
    from mll.bench.masked import run_masked

    st = _state(paths)
    mp = st["params"].masked
    return run_masked(st, mp.sizes, mp.subsets, mp.kinds, log=get_run_logger().info)


@flow(name="evaluate")
def evaluate_flow(
    params_file: str = "params.yaml",
    hub: str = "models",
    labels: str = "labels",
    sdag: str = "data/sdag",
    manifest: str = "data/splits/target_test.parquet",
    oracles: str = "oracles",
    out: str = "reports/benchmark/cells.json",
    cache_dir: str = ".cache/outputs",
    probe: str = "data/splits/probe.parquet",
    split: str = "dev",
) -> dict:
    """Run the benchmark grid and the growth curve; write the cells document to `out`. With
    `split="test"` (DVC stage `final-test`): the same tasks on the final-test `manifest`, no growth
    curve, and the params hash and commit recorded as the release.

    `cache_dir` keeps every model's outputs per image across runs (keyed by weights hash); the
    labels of a task's fold (`mll.bench.folds`) are made on `probe`, next to it."""
    t0 = time.perf_counter()
    paths = {
        "params_file": params_file,
        "hub": hub,
        "labels": labels,
        "sdag": sdag,
        "manifest": manifest,
        "oracles": oracles,
        "cache_dir": cache_dir,
        "probe": probe,
        "split": split,
    }
    log = get_run_logger().info
    predictions = Path(out).with_name("predictions.parquet")
    stage = "final-test" if split == "test" else "benchmark"
    st = _state(paths)
    bp = st["params"]
    grid = bm.grid(list(st["tasks"].values()), bp)
    subs = bm.sub_hubs(st["ctx"].index.models, bp.growth_sizes, bp.growth_seeds, bp.seed) if split == "dev" else []
    with (
        writing_stage(stage, [out, predictions], log=log),
        start_run("benchmark", f"benchmark-{split}", bp.track, tags={"mll.kind": "benchmark", "split": split}) as run,
    ):
        run.log_params({"split": split, "cells": len(grid), "sub_hubs": len(subs), "workers": bp.workers})
        if run.run_id is not None:
            from mll.data.splits import read_manifest

            run.log_dataset(read_manifest(Path(manifest)), Path(manifest).stem, manifest, "tasks")
            run.log_dataset(read_manifest(Path(probe)), "probe", probe, "probe")
        # bounded: `benchmark.workers` cells at a time, whatever runner the deployment gives the flow
        futures = bounded_submit(lambda *a: cell.submit(*a, paths, run.run_id), grid, bp.workers)
        cells = [f.result() for f in futures]
        futures = bounded_submit(lambda *a: growth.submit(*a, paths, run.run_id), subs, bp.workers)
        rows = [r for f in futures for r in f.result()]
        doc = bm.cells_document(st, cells, rows, seconds=time.perf_counter() - t0)
        doc["masked"] = masked(paths) if bp.masked.subsets else []  # the masked-coverage family
        n = bm.write_predictions(doc, st["tasks"], predictions)
        bm.write_json(doc, Path(out))
        table = _benchmark_table(cells)
        run.log_table(table, "benchmark.json")
        _artifacts(cells, table, split)
    log(f"{n} per-image predictions -> {predictions}")
    log(f"{len(cells)} cells and {len(subs)} sub-hubs in {doc['seconds']:.0f} s -> {out}")
    return doc


def _benchmark_table(cells: list[dict]) -> list[dict]:
    """Method x task accuracy (seeded methods averaged), one row per method."""
    acc: dict[str, dict[str, list[float]]] = {}
    for c in cells:
        if c["accuracy"] is not None:
            acc.setdefault(c["method"], {}).setdefault(c["task"], []).append(c["accuracy"])
    tasks = sorted({t for by_task in acc.values() for t in by_task})
    rows = []
    for m, by_task in acc.items():
        means = {t: round(sum(v) / len(v), 4) for t, v in by_task.items()}
        mean = round(sum(means.values()) / len(means), 4) if means else None
        rows.append({"method": m, "mean": mean, **{t: means.get(t) for t in tasks}})
    return rows


def _artifacts(cells: list[dict], table: list[dict], split: str) -> None:
    """The Prefect UI's view of the run: the benchmark table, and the selection of each task (the
    `mll` cell's, the method the benchmark is about)."""
    create_table_artifact(table, key=artifact_key("benchmark", split), description=f"accuracy by method ({split})")
    for c in cells:
        if c["method"] == "mll" and c["status"] == "ok":
            rows = selection_rows(None, c["per_class"], c["answered_by"], c.get("matched_names"), c.get("modes"))
            create_markdown_artifact(
                key=artifact_key("selection", split, c["task"]),
                markdown=f"## {c['task']}: accuracy {c['accuracy']:.4f}\n\n" + markdown_table(rows),
                description=f"mll selection for {c['task']} ({split})",
            )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", default="reports/benchmark/cells.json")
    ap.add_argument("--oracles", default="oracles")
    ap.add_argument("--split", choices=("dev", "test"), default="dev", help="test: the frozen final evaluation")
    ap.add_argument("--manifest", default=None, help="default: target_test (dev) or final_test (test)")
    a = ap.parse_args()
    manifest = a.manifest or f"data/splits/{'final_test' if a.split == 'test' else 'target_test'}.parquet"
    workers = bm.load_params(a.params).workers
    evaluate_flow.with_options(task_runner=ThreadPoolTaskRunner(max_workers=workers))(
        params_file=a.params, out=a.out, oracles=a.oracles, manifest=manifest, split=a.split
    )

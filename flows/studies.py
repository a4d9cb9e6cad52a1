"""Flow `studies`: the node-data budget and the one-knob sweeps on the dev tasks (DVC stage `studies`).

Two Prefect tasks, one per study, over the same loaded state as the benchmark (`mll.bench.run.load_state`:
labels, tasks, and the output cache the benchmark filled, so no model runs again). The logic is in
`mll.bench.studies`; this file only wires it. Writes `reports/benchmark/studies.json`, which
`mll.bench.report` summarises (`node_budget`, `sweeps`).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from mll.env import bootstrap

bootstrap()  # the offline environment, before Prefect reads its settings

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from mll.bench import run as bm
from mll.bench import studies
from mll.ops.dvc_stage import writing_stage

_STATE: dict[str, dict] = {}


def _state(paths: dict) -> dict:
    """The benchmark's state, loaded once per process (tasks get the paths, not this object:
    Prefect walks a task's arguments)."""
    key = json.dumps(paths, sort_keys=True)
    if key not in _STATE:
        _STATE[key] = bm.load_state(**paths)
    return _STATE[key]


@task(name="node-data-budget", cache_policy=NO_CACHE)
def budget(paths: dict) -> list[dict]:
    state = _state(paths)
    bp = state["params"]
    return studies.run_budget(state, bp.node_budget, bp.budget_methods, log=get_run_logger().info)


@task(name="sweeps", cache_policy=NO_CACHE)
def sweeps(paths: dict) -> list[dict]:
    state = _state(paths)
    return studies.run_sweeps(state, state["params"].sweep, log=get_run_logger().info)


@flow(name="studies")
def studies_flow(
    params_file: str = "params.yaml",
    hub: str = "models",
    labels: str = "labels",
    sdag: str = "data/sdag",
    manifest: str = "data/splits/target_test.parquet",
    out: str = "reports/benchmark/studies.json",
    cache_dir: str = ".cache/outputs",
    probe: str = "data/splits/probe.parquet",
) -> dict:
    """Run both studies on the dev tasks; write their rows to `out`."""
    t0 = time.perf_counter()
    paths = {
        "params_file": params_file,
        "hub": hub,
        "labels": labels,
        "sdag": sdag,
        "manifest": manifest,
        "oracles": "",
        "cache_dir": cache_dir,
        "probe": probe,
    }
    with writing_stage("studies", [out], log=get_run_logger().info):  # lock; dvc commit off DVC
        state = _state(paths)
        doc = {
            "tasks": [t.name for t in studies.study_tasks(state)],
            "budget": budget(paths),
            "sweeps": sweeps(paths),
        }
        bm.write_json(doc, Path(out))
    get_run_logger().info(
        f"{len(doc['budget'])} budget and {len(doc['sweeps'])} sweep cells in {time.perf_counter() - t0:.0f} s -> {out}"
    )
    return doc


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", default="reports/benchmark/studies.json")
    a = ap.parse_args()
    studies_flow(params_file=a.params, out=a.out)

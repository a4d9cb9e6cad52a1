"""Flow `solve-task`: evaluate many ImageFolder tasks zero-shot, one Prefect task per task folder."""

from __future__ import annotations

import argparse

from mll.env import bootstrap

bootstrap()  # the offline environment, before Prefect reads its settings

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from mll.config import load_section
from mll.ops.execution import bounded_submit, retry_transient
from mll.solve.folders import evaluate_folder
from mll.solve.task import Context

_CTX: dict = {}


def _context(params_file: str, hub: str, labels: str, sdag: str) -> Context:
    key = (params_file, hub, labels, sdag)
    if key not in _CTX:  # one context per worker process: SDAG, labels and matcher load once
        _CTX[key] = Context.load(sdag, hub, labels, load_section("solve", params_file))
    return _CTX[key]


@task(
    name="evaluate-task",
    retries=1,
    retry_condition_fn=retry_transient,  # an unknown class name fails the same way again
    timeout_seconds=3600,
    cache_policy=NO_CACHE,
)
def evaluate_task(task_dir: str, paths: dict) -> dict:
    rep = evaluate_folder(_context(**paths), task_dir)
    get_run_logger().info(
        f"{task_dir}: accuracy {rep['accuracy']:.4f} on {rep['n_images']} images, selection {rep['selection']}"
    )
    return {k: rep[k] for k in ("task_dir", "accuracy", "n_images", "per_class", "selection", "uncovered", "matched")}


@flow(name="solve-task")
def solve_task_flow(
    task_dirs: list[str],
    params_file: str = "params.yaml",
    hub: str = "models",
    labels: str = "labels",
    sdag: str = "data/sdag",
    workers: int = 2,
) -> list[dict]:
    """Evaluate each ImageFolder in `task_dirs` (sub-folder names are the class names), `workers`
    at a time."""
    paths = {"params_file": params_file, "hub": hub, "labels": labels, "sdag": sdag}
    return [f.result() for f in bounded_submit(evaluate_task.submit, [(d, paths) for d in task_dirs], workers)]


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("task_dirs", nargs="+")
    ap.add_argument("--params", default="params.yaml")
    a = ap.parse_args()
    for r in solve_task_flow(a.task_dirs, a.params):
        print(f"{r['task_dir']}: {r['accuracy']:.4f}")

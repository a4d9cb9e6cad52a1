"""Training independent models in several processes.

Training runs single-threaded for bit-reproducible weights (`mll.hub.training.deterministic`), so
on a machine with more cores than one a stage that trains several independent models leaves cores
idle. `run_parallel` trains them in `workers` spawned processes instead: each imports afresh, pins
the same CPU kernels (`mll.env.bootstrap(training=True)`) and trains with one thread and its own
seed, so every model's weights are the bits a sequential run gives (tested). MLflow runs from the
workers go to the same tracking store.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any


def _init_worker() -> None:
    from mll.env import bootstrap

    bootstrap(training=True)


def run_parallel(
    fn: Callable[..., Any], jobs: Sequence[tuple], workers: int = 1, experiments: tuple[str, ...] = ()
) -> list[Any]:
    """`fn(*job)` for every job, results in job order. `workers` > 1 runs them in that many spawned
    processes (`fn` and the jobs must pickle: a module-level function and plain arguments); 1 runs
    them here, one after another. A job's exception is raised here, after the running ones end.
    `experiments`: the MLflow experiments the workers log to, created here before they start (with
    the store itself; see `mll.tracking.prepare_store`)."""
    if workers <= 1 or len(jobs) <= 1:
        return [fn(*job) for job in jobs]
    if experiments:
        from mll.tracking import prepare_store

        prepare_store(experiments)
    ctx = multiprocessing.get_context("spawn")  # no forked torch or Prefect state in the workers
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=ctx, initializer=_init_worker) as pool:
        futures = [pool.submit(fn, *job) for job in jobs]
        return [f.result() for f in futures]

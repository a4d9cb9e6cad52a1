"""Flow `label-hub`: label every hub model on the probe split, one Prefect task per model (DVC stage `label`).

Run by `dvc repro` (the stage's command) or by the `label-hub` deployment: either way it holds the
pipeline lock, and when it is not DVC's own run and writes the stage's outputs, it records them in
dvc.lock afterwards (`mll.ops.dvc_stage`), so `dvc status` stays clean. The pass is one MLflow
parent run with a child per labeled model (`mll.labels.history`), and the Prefect UI shows its
per-model table as an artifact.

Task runner: threads in this process (`task_runner: thread`, `concurrency` models at once), or Dask
(`task_runner: dask`) on a local cluster or on a running scheduler given by `dask_address`, which is
how labeling of a large hub spreads across machines and GPUs.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from mll.env import bootstrap

bootstrap()  # the offline environment, before Prefect reads its settings

from prefect import flow, get_run_logger, task, unmapped
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from mll.config import LabelParams, load_section
from mll.hub.store import Hub
from mll.labels.history import label_rows, labeling_pass, log_labeling_pass
from mll.labels.run import finish_label_stage, label_one, labeling_order, validate_labels
from mll.ops.dvc_stage import writing_stage
from mll.ops.execution import artifact_key, markdown_table, retry_transient

# the largest demo model labels in about a minute on 2 CPU cores; an hour means it hangs
LABEL_TIMEOUT_S = 3600


@task(
    name="label-model",
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=retry_transient,  # a bad card or missing file fails the same way again
    timeout_seconds=LABEL_TIMEOUT_S,
    cache_policy=NO_CACHE,
)
def label_model_task(name: str, params: LabelParams, paths: dict, force: bool, parent_run: str | None = None):
    # validate=False: the flow checks every labeled model's node table in one run at the end
    return label_one(
        name,
        params,
        force=force,
        log=get_run_logger().info,
        show_progress=False,
        validate=False,
        parent_run=parent_run,
        **paths,
    )


@flow(name="label-models")
def _label_models(
    names: list[str], params: LabelParams, paths: dict, force: bool, parent_run: str | None = None
) -> tuple[list, dict]:
    futures = label_model_task.map(
        names,
        params=unmapped(params),
        paths=unmapped(paths),
        force=unmapped(force),
        parent_run=unmapped(parent_run),
    )
    results, failed = [], {}
    for name, f in zip(names, futures):  # one bad model must not stop the others
        f.wait()
        if f.state.is_completed():
            results.append(f.result())
        else:
            failed[name] = " ".join(str(f.state.message or f.state.name).split())[:300]
    return results, failed


def _runner(params: LabelParams):
    if params.task_runner == "thread":
        return ThreadPoolTaskRunner(max_workers=max(1, params.concurrency))
    if params.task_runner == "dask":
        from prefect_dask import DaskTaskRunner

        if params.dask_address:
            return DaskTaskRunner(address=params.dask_address)
        return DaskTaskRunner(
            cluster_kwargs={
                "n_workers": max(1, params.concurrency),
                "threads_per_worker": 1,
                "processes": True,
                "dashboard_address": None,
            }
        )
    raise ValueError(f"label.task_runner must be 'thread' or 'dask', got {params.task_runner!r}")


@flow(name="label-hub", log_prints=True)
def label_hub_flow(
    models: list[str] | None = None,
    force: bool = False,
    params_file: str = "params.yaml",
    hub: str = "models",
    probe: str = "data/splits/probe.parquet",
    sdag: str = "data/sdag",
    labels: str = "labels",
    summary: str | None = "reports/labels_summary.json",
    device: str | None = None,
    batch_size: int | None = None,
    concurrency: int | None = None,
    task_runner: str | None = None,
    dask_address: str | None = None,
) -> dict:
    """Label the hub's models (all, or `models`); unchanged models are skipped."""
    params = load_section("label", params_file)
    overrides = {
        k: v
        for k, v in dict(
            device=device,
            batch_size=batch_size,
            concurrency=concurrency,
            task_runner=task_runner,
            dask_address=dask_address,
        ).items()
        if v is not None
    }
    params = replace(params, **overrides)
    log = get_run_logger().info
    names = labeling_order(hub, models or Hub(hub).names())
    paths = {"hub_root": hub, "probe_path": probe, "sdag_path": sdag, "labels_root": labels}
    summary = summary if not models else None  # a partial pass leaves the hub's report as it is
    with writing_stage("label", [labels, summary], log=log) as dvc, labeling_pass(params, probe, names, force) as run:
        results, failed = _label_models.with_options(task_runner=_runner(params))(
            names, params, paths, force, run.run_id
        )
        refused = validate_labels(results, labels, sdag, log=log)
        failed.update(refused)
        results = [r for r in results if r.model not in refused]
        report = finish_label_stage(results, hub, labels, summary, log=log, failed=failed)
        rows = label_rows(results, failed)
        log_labeling_pass(run, report, rows)
        create_table_artifact(
            rows, key=artifact_key("label-summary"), description=f"labeling pass: {len(names)} models"
        )
        create_markdown_artifact(
            key=artifact_key("label-report"),
            markdown=f"## Labeling pass\n\n{report['labeled']} labeled, {report['skipped']} up to date, "
            f"{len(failed)} failed, {len(report['pruned'])} pruned ({report['label_seconds']:.1f} s).\n\n"
            f"DVC: {_dvc_note(dvc.mode)}; MLflow run: {run.run_id or 'not tracked (label.track: false)'}\n\n"
            + markdown_table(rows),
            description="labeling pass summary",
        )
        if failed:  # nothing recorded in DVC for a failed pass: `dvc status` shows the stage to rerun
            raise RuntimeError(f"models failed to label: {'; '.join(f'{k}: {v}' for k, v in failed.items())}")
    return report


def _dvc_note(mode: str) -> str:
    return {
        "dvc": "run by `dvc repro`, which records the outputs",
        "record": "outputs recorded in dvc.lock with `dvc commit` after the pass",
        "off": "outputs outside the DVC stage's paths: not recorded",
    }[mode]


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--models", nargs="*", help="label only these (default: the whole hub)")
    ap.add_argument("--force", action="store_true", help="relabel even when the stored label is current")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--device")
    ap.add_argument("--concurrency", type=int)
    ap.add_argument("--task-runner", choices=["thread", "dask"])
    ap.add_argument("--dask-address")
    a = ap.parse_args()
    label_hub_flow(
        a.models,
        a.force,
        a.params,
        device=a.device,
        concurrency=a.concurrency,
        task_runner=a.task_runner,
        dask_address=a.dask_address,
    )

"""Run history in MLflow: the only module that imports mlflow.

Library functions accept a `Tracker` (MLflow or a no-op) instead of calling MLflow themselves, so
they stay testable and usable without a tracking store. The default store is
`sqlite:///mlflow.db` in the project folder (MLflow 3 refuses the old file store).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mll.paths import project_root


def default_tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / 'mlflow.db'}"


def _flat(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, f"{key}."))
        else:
            out[key] = v if isinstance(v, (int, float, str, bool)) or v is None else json.dumps(v)[:6000]
    return out


class Tracker:
    """No-op tracker: the interface every library function logs through."""

    run_id: str | None = None

    def log_params(self, params: dict) -> None: ...
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...
    def set_tags(self, tags: dict[str, str]) -> None: ...
    def log_dict(self, data: Any, artifact_file: str) -> None: ...
    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None: ...
    def log_text(self, text: str, artifact_file: str) -> None: ...
    def log_table(self, rows: list[dict], artifact_file: str) -> None: ...
    def log_dataset(self, frame: Any, name: str, source: str, context: str) -> None: ...
    def register_folder(self, folder: Path, name: str, alias: str) -> str | None:
        return None


def metric_key(*parts: str) -> str:
    """An MLflow metric name from free text (class names have characters MLflow refuses)."""
    return ".".join(re.sub(r"[^A-Za-z0-9_\-. /]", "_", str(p)) for p in parts)


class MlflowTracker(Tracker):
    """Logs into the active MLflow run."""

    def __init__(self, run):
        self._run = run
        self.run_id = run.info.run_id

    def log_params(self, params: dict) -> None:
        import mlflow

        mlflow.log_params({k: ("" if v is None else v) for k, v in _flat(params).items()})

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        import mlflow

        clean = {k: float(v) for k, v in metrics.items() if v is not None and v == v}
        if clean:
            mlflow.log_metrics(clean, step=step)

    def set_tags(self, tags: dict[str, str]) -> None:
        import mlflow

        mlflow.set_tags({k: str(v) for k, v in tags.items()})

    def log_dict(self, data: Any, artifact_file: str) -> None:
        import mlflow

        mlflow.log_dict(data, artifact_file)

    def log_text(self, text: str, artifact_file: str) -> None:
        import mlflow

        mlflow.log_text(text, artifact_file)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        import mlflow

        mlflow.log_artifact(str(path), artifact_path)

    def log_table(self, rows: list[dict], artifact_file: str) -> None:
        """Rows as an MLflow table (the UI's artifact view and `mlflow.load_table` across runs);
        list values are joined, so every column is a plain type."""
        import mlflow
        import pandas as pd

        if rows:
            flat = [
                {k: ", ".join(map(str, v)) if isinstance(v, (list, tuple)) else v for k, v in r.items()} for r in rows
            ]
            mlflow.log_table(pd.DataFrame(flat), artifact_file, run_id=self.run_id)

    def log_dataset(self, frame: Any, name: str, source: str, context: str) -> None:
        """`frame` (a manifest: one row per image) as a dataset input of this run: the UI lists it
        with its digest, so two runs on the same images show the same dataset."""
        import warnings

        import mlflow
        from mlflow.exceptions import MlflowException

        cols = [c for c in ("uri", "image", "path", "label", "synset", "dataset", "split") if c in frame.columns]
        with warnings.catch_warnings():  # a path source "can be interpreted in multiple ways"; int columns hint
            warnings.simplefilter("ignore", UserWarning)
            data = frame[cols] if cols else frame
            try:  # a manifest path resolves to a local source
                ds = mlflow.data.from_pandas(data, source=source, name=name)
            except MlflowException:  # anything else (a benchmark task's name) is named, not resolved
                from mlflow.data.code_dataset_source import CodeDatasetSource

                ds = mlflow.data.from_pandas(data, source=CodeDatasetSource({"mll.source": source}), name=name)
            mlflow.log_input(ds, context=context)

    def register_folder(self, folder: Path, name: str, alias: str) -> str | None:
        """Log a hub model folder (card + safetensors) and register it as a version of `name`.

        The registered source is the folder itself, loadable with mll's safe loader, rather than an
        MLflow-serialised module: nothing in the registry needs unpickling.
        """
        import mlflow
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        mlflow.log_artifacts(str(folder), "hub_model")
        client = MlflowClient()
        try:
            client.create_registered_model(name, description="mll hub expert (card.yaml + weights.safetensors)")
        except MlflowException as exc:
            if "already exists" not in str(exc).lower() and "RESOURCE_ALREADY_EXISTS" not in str(exc):
                raise
        mv = client.create_model_version(name, source=f"{self._run.info.artifact_uri}/hub_model", run_id=self.run_id)
        client.set_registered_model_alias(name, alias, mv.version)
        return str(mv.version)


def prepare_store(experiments: tuple[str, ...] = ()) -> None:
    """Create the tracking store (its schema migrations) and `experiments` now, in this process:
    worker processes that open a new store at the same time collide in its migrations
    (`table _alembic_tmp_... already exists`) and in creating one experiment twice."""
    import logging

    import mlflow

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    mlflow.set_tracking_uri(default_tracking_uri())
    client = mlflow.MlflowClient()
    client.search_registered_models(max_results=1)  # the registry's tables are in the same store
    for name in experiments:
        if client.get_experiment_by_name(name) is None:
            client.create_experiment(name)


def _experiment_id(client, name: str) -> str:
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    try:
        return client.create_experiment(name)
    except MlflowException:  # another thread or process created it first
        return client.get_experiment_by_name(name).experiment_id


@contextlib.contextmanager
def start_run(
    experiment: str, run_name: str, enabled: bool = True, tags: dict | None = None, parent: str | None = None
) -> Iterator[Tracker]:
    """A tracked run in `experiment` (or a no-op Tracker when disabled); failed runs are marked failed.

    `parent`: the run id of a running parent (a labeling pass, a benchmark run): this run is its
    child, shown nested under it in the UI. Parents and children may be in different threads
    (MLflow keeps the active run per thread), which is how flow tasks log under the flow's run."""
    if not enabled:
        yield Tracker()
        return
    import logging

    import mlflow

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    mlflow.set_tracking_uri(default_tracking_uri())
    client = mlflow.MlflowClient()
    # by id, not mlflow.set_experiment: that one is process-wide, and threads log at the same time
    exp_id = _experiment_id(client, experiment)
    with mlflow.start_run(
        run_name=run_name, tags=tags, experiment_id=exp_id, parent_run_id=parent, nested=parent is not None
    ) as run:
        yield MlflowTracker(run)


def write_json_artifact(tracker: Tracker, data: Any, name: str) -> None:
    """Log JSON through a temporary file (works for trackers that only take files)."""
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / name
        p.write_text(json.dumps(data, indent=2, default=str))
        tracker.log_artifact(p)


def log_task_run(
    kind: str,
    names: list[str],
    matched: dict,
    selection: dict,
    metrics: dict,
    per_class: dict[str, float | None] | None = None,
) -> None:
    """One MLflow run per solved task (`mll eval` / `mll solve`, experiment `kind`): the classes,
    what they matched, the selection as a table (`selection.json`, `mll.tracking_tables`), the
    measured per-class accuracy (`per_class`, eval only) as metrics and the metrics."""
    from mll.tracking_tables import per_class_metrics, selection_rows

    with start_run(kind, f"{kind}-{len(names)}-classes") as t:
        t.log_params({"classes": ",".join(names)[:5000], "n_classes": len(names)})
        t.log_dict({"matched": matched, "selection": selection}, "selection_raw.json")
        t.log_table(selection_rows(selection, per_class, matched=matched), "selection.json")
        t.log_metrics(metrics)
        t.log_metrics(per_class_metrics(per_class or {}))

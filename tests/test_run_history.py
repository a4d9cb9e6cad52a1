"""Run history as users compare it: MLflow parent runs with child runs, per-class metrics, the
selection as a table, dataset inputs, growth cells; the Prefect artifacts of a run."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest


@pytest.fixture
def mlflow_db(tmp_path, monkeypatch):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return mlflow.MlflowClient(uri)


def _runs(client, experiment: str) -> list:
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], max_results=1000) if exp else []


def test_a_labeling_pass_is_a_parent_run_with_a_child_per_model(tiny_world, mlflow_db, tmp_path):
    from mll.config import LabelParams
    from mll.labels.run import label_stage

    label_stage(
        LabelParams(track=True, device="cpu"),
        hub_root=tiny_world["hub"].root,
        probe_path=tiny_world["probe"],
        sdag_path=tiny_world["sdag"],
        labels_root=tmp_path / "labels",
        summary_path=None,
        log=lambda *_: None,
    )
    runs = _runs(mlflow_db, "labeling")
    (parent,) = [r for r in runs if r.data.tags.get("mll.kind") == "labeling-pass"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.data.params["model"] for r in children) == ["high", "low"]
    assert parent.data.metrics["labeled"] == 2 and parent.data.tags["mll.entry"] == "cli"
    (probe,) = parent.inputs.dataset_inputs
    assert probe.dataset.name == "probe" and json.loads(probe.dataset.profile)["num_rows"] == 180
    table = mlflow_db.download_artifacts(parent.info.run_id, "labels.json", str(tmp_path))
    rows = json.loads(Path(table).read_text())
    assert sorted(r[0] for r in rows["data"]) == ["high", "low"] and "gate_auroc" in rows["columns"]


@pytest.fixture(scope="module")
def bench(tiny_world, tiny_labels, tmp_path_factory):
    from mll.config import SplitSizes
    from mll.data.datasets import load_dataset
    from mll.data.splits import split_dataset

    root = tmp_path_factory.mktemp("history")
    frame = split_dataset(load_dataset("digits"), SplitSizes(expert_train=80, probe=12, target_test=10), seed=0)
    manifest = root / "target_test.parquet"
    frame[frame.split == "target_test"].reset_index(drop=True).to_parquet(manifest)
    params = root / "params.yaml"
    params.write_text(
        "solve:\n  device: cpu\n"
        "benchmark:\n  max_per_class: 6\n  growth_sizes: [1, 2]\n  growth_seeds: 1\n  workers: 2\n"
        "  growth_methods: [mll, uniform]\n  methods: [mll, uniform]\n  user_name_methods: [mll]\n"
        "  tasks:\n    six: {classes: {'0': {digits: ['0']}, '1': {digits: ['1']}, '2': {digits: ['2']},"
        " '3': {digits: ['3']}, '4': {digits: ['4']}, '5': {digits: ['5']}}}\n"
    )
    return {"root": root, "manifest": manifest, "params": params, "labels": tiny_labels}


@pytest.mark.slow
def test_a_benchmark_run_nests_cells_and_growth_and_shows_artifacts(
    tiny_world, bench, prefect_server, mlflow_db, tmp_path
):
    from prefect.artifacts import Artifact

    from flows.evaluate import evaluate_flow

    evaluate_flow(
        params_file=str(bench["params"]),
        hub=str(tiny_world["hub"].root),
        labels=str(bench["labels"]),
        sdag=str(tiny_world["sdag"]),
        manifest=str(bench["manifest"]),
        oracles=str(tmp_path / "none"),
        out=str(tmp_path / "cells.json"),
        cache_dir=str(tmp_path / "outputs"),
        probe=str(tiny_world["probe"]),
    )
    runs = _runs(mlflow_db, "benchmark")
    (parent,) = [r for r in runs if r.data.tags.get("mll.kind") == "benchmark"]
    assert {d.dataset.name for d in parent.inputs.dataset_inputs} == {"target_test", "probe"}
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    cells = {r.info.run_name: r for r in children if not r.info.run_name.startswith("growth/")}
    growth = sorted(r.info.run_name for r in children if r.info.run_name.startswith("growth/"))
    assert set(cells) == {"six/mll", "six/uniform"} and growth == ["growth/size1/seed0", "growth/size2/seed0"]
    mll = cells["six/mll"]
    per_class = {k: v for k, v in mll.data.metrics.items() if k.startswith("class_accuracy.")}
    assert len(per_class) == 6 and "estimated_accuracy" in mll.data.metrics
    assert [d.dataset.name for d in mll.inputs.dataset_inputs] == ["six"]
    sel = json.loads(Path(mlflow_db.download_artifacts(mll.info.run_id, "selection.json", str(tmp_path))).read_text())
    frame = pd.DataFrame(sel["data"], columns=sel["columns"])
    assert list(frame["class"]) == ["0", "1", "2", "3", "4", "5"] and frame["measured_accuracy"].notna().all()
    assert frame["models"].str.len().gt(0).all()
    # the Prefect UI's view of the same run
    table = Artifact.get("benchmark-dev")
    assert table is not None and table.type == "table" and "mll" in json.dumps(table.data)
    assert Artifact.get("selection-dev-six").type == "markdown"


def test_retries_are_for_transient_errors_only():
    from mll.ops.execution import is_transient

    assert is_transient(TimeoutError()) and is_transient(ConnectionResetError()) and is_transient(OSError(5, "EIO"))
    assert is_transient(RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"))
    for permanent in (ValueError("bad card"), FileNotFoundError("x"), PermissionError(), KeyError("k"), None):
        assert not is_transient(permanent)


def test_bounded_submit_never_runs_more_than_the_limit():
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from mll.ops.execution import bounded_submit

    running, peak, lock = [0], [0], threading.Lock()

    def work(i):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1
        return i

    class F:  # Prefect futures have .wait(); concurrent ones .result()
        def __init__(self, f):
            self.f = f

        def wait(self):
            self.f.result()

    with ThreadPoolExecutor(32) as pool:
        futures = bounded_submit(lambda i: F(pool.submit(work, i)), [(i,) for i in range(20)], 3)
        assert [f.f.result() for f in futures] == list(range(20))
    assert peak[0] <= 3

"""Training one tiny demo expert end to end, tracked in a real MLflow store."""

import subprocess
import sys

import pytest

from mll.config import ExpertsParams, SplitSizes, TrainedExpertParams, TrainOverrides, _build
from mll.data.datasets import load_dataset
from mll.data.splits import split_dataset
from mll.hub.build import train_expert_stage
from mll.hub.store import Hub
from mll.hub.training import spec_from_params


@pytest.fixture
def manifest(tmp_path):
    frame = split_dataset(load_dataset("digits"), SplitSizes(expert_train=100, probe=5, target_test=5), seed=0)
    path = tmp_path / "expert_train.parquet"
    frame[frame.split == "expert_train"].to_parquet(path)
    return path


def test_train_one_expert_end_to_end_with_mlflow(tmp_path, manifest, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    params = tmp_path / "params.yaml"
    params.write_text(
        "experts:\n  defaults: {arch: test_resnet, epochs: 8, input_size: 16, seed: 0}\n"
        "  trained:\n    digits-013: {dataset: digits, classes: ['0', '1', '3']}\n  track: true\n"
    )
    card = train_expert_stage("digits-013", params, manifest, tmp_path / "hub", log=lambda *_: None)
    assert card.class_names == ["0", "1", "3"] and card.synsets[2] == "n13744044"  # three.n.01
    assert card.provenance["metrics"]["val_accuracy"] > 0.6  # well above chance (0.33)
    assert len(card.provenance["training_manifest_sha256"]) == 64
    expert = Hub(tmp_path / "hub").load("digits-013", device="cpu")
    assert expert.num_classes == 3

    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["experts"])
    assert len(runs) == 1 and runs.iloc[0]["params.dataset"] == "digits"
    assert "mlflow_run_id" not in card.provenance  # volatile: the card is a DVC output kept in git
    assert runs.iloc[0]["tags.weights_sha256"] == card.weights_sha256  # how a card finds its run
    history = MlflowClient().get_metric_history(runs.iloc[0]["run_id"], "val_accuracy")
    assert [m.step for m in history] == list(range(8))
    mv = MlflowClient().get_model_version_by_alias("mll-expert-digits-013", "hub")
    assert str(mv.version) == "1" and mv.source.endswith("hub_model")


def test_unknown_classes_and_keys_are_clear_errors(manifest):
    import pandas as pd

    from mll.hub.training import ExpertSpec, train_expert

    with pytest.raises(ValueError, match=r"classes \['eleven'\] have no expert_train images"):
        train_expert(ExpertSpec("x", "digits", ("0", "eleven")), pd.read_parquet(manifest), Hub("/nonexistent"))
    with pytest.raises(ValueError, match=r"unknown key.*experts\.trained\.x\.epoch"):
        _build(ExpertsParams, {"trained": {"x": {"dataset": "digits", "classes": ["0"], "epoch": 3}}}, "experts")
    with pytest.raises(ValueError, match=r"experts\.trained\.x needs `classes`"):
        _build(ExpertsParams, {"trained": {"x": {"dataset": "digits"}}}, "experts")
    spec = spec_from_params(
        "x", TrainedExpertParams(dataset="digits", classes=("0",), epochs=3), TrainOverrides(epochs=9, lr=0.1)
    )
    assert (spec.epochs, spec.lr, spec.batch_size) == (3, 0.1, ExpertSpec.batch_size)


def test_experts_trained_in_worker_processes_have_the_sequential_weights(tmp_path, manifest, monkeypatch):
    """`experts.workers: 2`: each worker trains single-threaded with its own seed, so the weights are
    the bits of a sequential run; both workers' MLflow runs land in the one store."""
    from mll.hub.parallel import run_parallel

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    params = tmp_path / "params.yaml"
    params.write_text(
        "experts:\n  defaults: {arch: test_resnet, epochs: 3, input_size: 16, seed: 0}\n"
        "  trained:\n    low: {dataset: digits, classes: ['0', '1', '2']}\n"
        "    high: {dataset: digits, classes: ['7', '8', '9']}\n  track: true\n  workers: 2\n"
    )
    names = ["low", "high"]
    # first, in workers, on a tracking store that does not exist yet (both would create it at once)
    par = run_parallel(
        train_expert_stage, [(n, params, manifest, tmp_path / "par") for n in names], 2, experiments=("experts",)
    )
    # the reference: both trained one after the other in one process that pins the training kernels
    # as a stage's process does (this test process imported torch before it could pin them)
    script = (
        "import sys; from mll.env import bootstrap; bootstrap(training=True)\n"
        "from mll.hub.build import train_expert_stage\n"
        "for n in ('low', 'high'): print(train_expert_stage(n, sys.argv[1], sys.argv[2], sys.argv[3],"
        " log=lambda *_: None).weights_sha256)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(params), str(manifest), str(tmp_path / "seq")],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert [c.name for c in par] == names
    assert [c.weights_sha256 for c in par] == out[-2:]
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert len(mlflow.search_runs(experiment_names=["experts"])) == 4  # 2 sequential + 2 from the workers

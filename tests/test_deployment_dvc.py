"""The `label-hub` deployment as a user runs it: `make serve`'s script in a DVC project, then
`prefect deployment run` from a shell with no Prefect exports; DVC agrees with what it wrote."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, free_port

BIN = Path(sys.executable).parent

DVC_YAML = """stages:
  label:
    cmd: python flows/label_hub.py
    deps: [models, data/splits/probe.parquet, data/sdag]
    params: [label]
    outs:
      - labels:
          persist: true
    metrics:
      - reports/labels_summary.json:
          cache: false
"""


def _shell_env(proj: Path) -> dict:
    """A new shell in the project folder: no PREFECT_API_URL, no PREFECT_HOME, no MLL_ROOT."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLL_ROOT", "MLFLOW_TRACKING"))}
    env["PATH"] = f"{BIN}:{env['PATH']}"
    env["PYTHONPATH"] = str(REPO / "src")  # this checkout's library, in the worker's flow runs too
    return env


def _run(cmd: list[str], proj: Path, env: dict, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=proj, env=env, capture_output=True, text=True, timeout=timeout)


def _dvc_status(proj: Path, env: dict) -> str:
    r = _run([sys.executable, "-m", "dvc", "status"], proj, env)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


@pytest.fixture(scope="module")
def served_project(tiny_world, tmp_path_factory):
    """A DVC project with the tiny hub, the flows and the Prefect project files, served by
    scripts/serve.sh on free ports; stopped (and checked stopped) afterwards."""
    proj = tmp_path_factory.mktemp("project")
    for f in ("prefect.yaml", "prefect.toml"):
        shutil.copy(REPO / f, proj / f)
    shutil.copytree(REPO / "flows", proj / "flows", ignore=shutil.ignore_patterns("__pycache__"))
    (proj / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "serve.sh", proj / "scripts" / "serve.sh")
    shutil.copytree(tiny_world["hub"].root, proj / "models")
    (proj / "data" / "splits").mkdir(parents=True)
    shutil.copy(tiny_world["probe"], proj / "data" / "splits" / "probe.parquet")
    shutil.copytree(tiny_world["sdag"], proj / "data" / "sdag")
    (proj / "params.yaml").write_text("label:\n  device: cpu\n  track: true\n")
    (proj / "dvc.yaml").write_text(DVC_YAML)
    env = _shell_env(proj)
    subprocess.run(["git", "init", "-q"], cwd=proj, check=True)
    for args in (["init", "-q"], ["config", "core.analytics", "false"]):
        assert _run([sys.executable, "-m", "dvc", *args], proj, env).returncode == 0
    serve_env = {**env, "MLL_PREFECT_PORT": str(free_port()), "MLL_MLFLOW_PORT": str(free_port())}
    try:
        r = _run(["bash", "scripts/serve.sh", "start"], proj, serve_env, timeout=400)
        assert r.returncode == 0, r.stderr + r.stdout
        yield proj, env
    finally:
        r = _run(["bash", "scripts/serve.sh", "stop"], proj, serve_env, timeout=120)
    assert "mll-served" not in (proj / ".prefect" / "profiles.toml").read_text()  # stop forgets the server


def _deployment_run(proj: Path, env: dict, *params: str) -> subprocess.Popen:
    cmd = ["prefect", "deployment", "run", "label-hub/label-hub", "--watch"]
    for p in params:
        cmd += ["-p", p]
    return subprocess.Popen(cmd, cwd=proj, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_label_hub_deployment_from_a_new_shell_leaves_dvc_clean(served_project):
    proj, env = served_project
    assert "PREFECT_API_URL" not in env
    t0 = time.perf_counter()
    p = _deployment_run(proj, env)
    out, _ = p.communicate(timeout=600)
    assert p.returncode == 0, out[-3000:]
    assert "not found" not in out.lower() and "telemetry" not in out.lower(), out[-3000:]
    assert json.loads((proj / "reports" / "labels_summary.run.json").read_text())["labeled"] == 2  # the run log
    assert _dvc_status(proj, env) == "Data and pipelines are up to date."
    print(f"deployment run: {time.perf_counter() - t0:.1f} s")

    # MLflow: one parent run for the pass, one child per labeled model, the probe set as its input
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{proj / 'mlflow.db'}")
    exp = client.get_experiment_by_name("labeling")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("mll.kind") == "labeling-pass"]
    assert len(parents) == 1 and parents[0].data.metrics["labeled"] == 2
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert sorted(r.data.params["model"] for r in children) == ["high", "low"]
    assert [d.dataset.name for d in parents[0].inputs.dataset_inputs] == ["probe"]

    # Prefect: the pass's table artifact, on the served API that the profile names
    url = [ln for ln in (proj / ".prefect" / "profiles.toml").read_text().splitlines() if "PREFECT_API_URL" in ln]
    api = url[0].split("=", 1)[1].strip().strip('"')
    import urllib.request

    req = urllib.request.Request(
        f"{api}/artifacts/filter",
        data=json.dumps({"artifacts": {"key": {"any_": ["label-summary"]}}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    arts = json.load(urllib.request.urlopen(req, timeout=30))
    assert arts and arts[0]["type"] == "table" and "high" in json.dumps(arts[0]["data"])


@pytest.mark.slow
def test_deployment_and_dvc_repro_at_once_are_serialised(served_project):
    """Both write labels/ and the summary: the pipeline lock makes one wait for the other, and the
    lock file plus DVC's records agree afterwards, whichever went first."""
    from mll.ops.dvc_stage import pipeline_lock

    proj, env = served_project
    with pipeline_lock(proj, "test: hold both runs back"):  # both start, both must wait
        dep = _deployment_run(proj, env, "force=true")
        repro = subprocess.Popen(
            [sys.executable, "-m", "dvc", "repro", "-f", "label"],
            cwd=proj,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        time.sleep(45)  # the deployment's flow process and the stage's both reach the lock
        assert dep.poll() is None and repro.poll() is None
    repro_out, _ = repro.communicate(timeout=600)
    dep_out, _ = dep.communicate(timeout=600)
    assert repro.returncode == 0, repro_out[-3000:]
    assert dep.returncode == 0, dep_out[-3000:]
    assert "waiting for the pipeline lock" in repro_out, repro_out[-3000:]
    assert _dvc_status(proj, env) == "Data and pipelines are up to date."
    # which went first varies: the deployment then defers its commit to the repro, or commits after it
    log = (proj / ".serve" / "worker.log").read_text()
    print("deployment first" if "not committing 'label'" in log else "dvc repro first")

"""Operations: the CI relabel workflow, the DVC remote, `make serve`, Dask labeling."""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest
import yaml

from conftest import REPO, free_port


def test_relabel_workflow_is_wired():
    wf = yaml.safe_load((REPO / ".github" / "workflows" / "relabel.yml").read_text())
    on = wf[True] if True in wf else wf["on"]  # YAML 1.1 reads the key `on` as True
    assert on["schedule"][0]["cron"]
    assert "models/**" in on["push"]["paths"]
    steps = wf["jobs"]["relabel"]["steps"]
    assert any(s.get("run") == "bash scripts/relabel.sh" for s in steps)
    script = (REPO / "scripts" / "relabel.sh").read_text()
    for needed in ("make setup", "dvc repro label", "mll label --check", "dvc push", "dvc pull", "set -euo pipefail"):
        assert needed in script, needed
    assert subprocess.run(["bash", "-n", str(REPO / "scripts" / "relabel.sh")]).returncode == 0


def test_default_dvc_remote_is_a_local_folder():
    cfg = (REPO / ".dvc" / "config").read_text()
    assert "remote = demo" in cfg and "url = ../../mll-dvc-remote" in cfg


def _dvc(cwd, *args):
    r = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr + r.stdout
    return r.stdout


def test_dvc_push_and_pull_of_hub_and_labels(tiny_world, tmp_path):
    """The hub and labels round-trip through a temporary local-folder remote."""
    proj = tmp_path / "proj"
    proj.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=proj, check=True)
    _dvc(proj, "init", "-q")
    _dvc(proj, "config", "core.analytics", "false")
    shutil.copytree(tiny_world["hub"].root, proj / "models")
    (proj / "labels" / "low").mkdir(parents=True)
    (proj / "labels" / "low" / "summary.json").write_text('{"key": "k"}')
    _dvc(proj, "add", "models", "labels")
    _dvc(proj, "remote", "add", "-d", "tmp", str(tmp_path / "remote"))
    _dvc(proj, "push")
    before = {p.relative_to(proj): p.read_bytes() for p in (proj / "models").rglob("*") if p.is_file()}
    shutil.rmtree(proj / "models")
    shutil.rmtree(proj / "labels")
    shutil.rmtree(proj / ".dvc" / "cache")
    _dvc(proj, "pull")
    after = {p.relative_to(proj): p.read_bytes() for p in (proj / "models").rglob("*") if p.is_file()}
    assert after == before and (proj / "labels" / "low" / "summary.json").is_file()


def _listeners(port: int) -> list[str]:
    out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True).stdout
    return [ln.split()[3] for ln in out.splitlines() if ln.strip()]


@pytest.mark.slow
def test_make_serve_runs_the_label_hub_deployment(tiny_world, tmp_path):
    pport, mport = free_port(), free_port()
    env = {
        **os.environ,
        "MLL_PREFECT_PORT": str(pport),
        "MLL_MLFLOW_PORT": str(mport),
        "MLL_SERVE_DIR": str(tmp_path / "serve"),
        "MLL_SERVE_PROFILE": "0",  # a scratch server from the checkout: leave the user's `make serve` profile alone
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "PATH": f"{REPO / '.venv' / 'bin'}:{os.environ['PATH']}",
    }
    env.pop("PREFECT_API_URL", None)
    params = tmp_path / "params.yaml"
    params.write_text("label:\n  device: cpu\n  track: true\n")
    try:
        r = subprocess.run(
            ["bash", "scripts/serve.sh", "start"], cwd=REPO, env=env, capture_output=True, text=True, timeout=400
        )
        assert r.returncode == 0, r.stderr + r.stdout
        for port in (pport, mport):  # loopback only
            assert _listeners(port) and all(a.startswith("127.0.0.1:") for a in _listeners(port)), _listeners(port)
        run = [
            "prefect",
            "deployment",
            "run",
            "label-hub/label-hub",
            "--watch",
            "-p",
            f"hub={tiny_world['hub'].root}",
            "-p",
            f"probe={tiny_world['probe']}",
            "-p",
            f"sdag={tiny_world['sdag']}",
            "-p",
            f"labels={tmp_path / 'labels'}",
            "-p",
            f"params_file={params}",
            "-p",
            f"summary={tmp_path / 'summary.json'}",
        ]
        r = subprocess.run(
            run,
            cwd=REPO,
            env={**env, "PREFECT_API_URL": f"http://127.0.0.1:{pport}/api"},
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        assert json.loads((tmp_path / "summary.run.json").read_text())["labeled"] == 2  # the run log
        import urllib.request

        req = urllib.request.Request(
            f"http://127.0.0.1:{mport}/api/2.0/mlflow/runs/search",
            data=json.dumps({"experiment_ids": [], "max_results": 10}).encode(),
            headers={"Content-Type": "application/json"},
        )
        exps = urllib.request.Request(
            f"http://127.0.0.1:{mport}/api/2.0/mlflow/experiments/get-by-name?experiment_name=labeling"
        )
        exp_id = json.load(urllib.request.urlopen(exps))["experiment"]["experiment_id"]
        req.data = json.dumps({"experiment_ids": [exp_id], "max_results": 10}).encode()
        runs = json.load(urllib.request.urlopen(req))["runs"]
        assert sorted(p["value"] for r_ in runs for p in r_["data"]["params"] if p["key"] == "model") == ["high", "low"]
    finally:
        subprocess.run(["bash", "scripts/serve.sh", "stop"], cwd=REPO, env=env, capture_output=True, timeout=120)
    time.sleep(1)
    assert not _listeners(pport) and not _listeners(mport)
    stray = subprocess.run(
        ["pgrep", "-f", f"--port {pport}|--port {mport}|huey_consumer"], capture_output=True, text=True
    )
    assert stray.stdout.strip() == "", stray.stdout


@pytest.mark.slow
def test_label_hub_flow_on_a_two_worker_dask_cluster(prefect_server, tiny_world, tmp_path, monkeypatch):
    from prefect.settings import PREFECT_API_URL

    from flows.label_hub import label_hub_flow

    # every Dask worker process talks to the same (test) Prefect API instead of starting its own
    monkeypatch.setenv("PREFECT_API_URL", PREFECT_API_URL.value())
    params = tmp_path / "params.yaml"
    params.write_text("label:\n  device: cpu\n  track: false\n  task_runner: dask\n  concurrency: 2\n")
    report = label_hub_flow(
        params_file=str(params),
        hub=str(tiny_world["hub"].root),
        probe=str(tiny_world["probe"]),
        sdag=str(tiny_world["sdag"]),
        labels=str(tmp_path / "labels"),
        summary=None,
    )
    assert report["labeled"] == 2
    assert {p.name for p in (tmp_path / "labels").iterdir() if not p.name.startswith(".")} == {"high", "low"}


def test_device_selection_falls_back_cleanly():
    import torch

    from mll.hub.experts import select_device

    assert select_device("cpu").type == "cpu"
    assert select_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU is available; use --device auto or cpu"):
            select_device("cuda")
        r = subprocess.run(
            ["bash", str(REPO / "scripts" / "gpu_check.sh")], capture_output=True, text=True, timeout=120
        )
        assert r.returncode == 3 and "no CUDA device" in r.stderr
    with pytest.raises(ValueError, match="device must be"):
        select_device("tpu")


@pytest.mark.gpu
def test_labeling_on_cuda_with_mixed_precision(tiny_world, tmp_path):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from mll.config import LabelParams
    from mll.labels.run import label_one

    r = label_one(
        "low",
        LabelParams(device="cuda", track=False),
        hub_root=tiny_world["hub"].root,
        probe_path=tiny_world["probe"],
        sdag_path=tiny_world["sdag"],
        labels_root=tmp_path,
        log=lambda *_: None,
        show_progress=False,
    )
    assert r.status == "labeled" and r.summary["device"].startswith("cuda")

"""mll.ops.dvc_stage: when a flow records its outputs in DVC, and the pipeline lock."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

from mll.ops.dvc_stage import commit_stage, pipeline_lock, stage_write

DVC_YAML = (
    "stages:\n  label:\n    cmd: echo\n    outs: [labels]\n    metrics: [{reports/summary.json: {cache: false}}]\n"
)


@pytest.fixture
def repo(tmp_path, monkeypatch):
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    for args in (["init", "-q"], ["config", "core.analytics", "false"]):
        subprocess.run([sys.executable, "-m", "dvc", *args], cwd=tmp_path, check=True)
    (tmp_path / "dvc.yaml").write_text(DVC_YAML)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DVC_STAGE", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    return tmp_path


def test_stage_write_modes(repo, tmp_path_factory, monkeypatch):
    assert stage_write("label", ["labels", "reports/summary.json"]).mode == "record"
    assert stage_write("label", ["labels", None]).mode == "record"  # a partial pass writes labels/ only
    assert stage_write("label", [str(repo / "reports" / "summary.json")]).mode == "record"
    assert stage_write("label", [str(tmp_path_factory.mktemp("elsewhere"))]).mode == "off"
    assert stage_write("no-such-stage", ["labels"]).mode == "off"
    monkeypatch.setenv("DVC_STAGE", "label")  # run by dvc repro: DVC records, the flow must not
    assert stage_write("label", ["labels"]).mode == "dvc"
    monkeypatch.delenv("DVC_STAGE")
    monkeypatch.chdir(tmp_path_factory.mktemp("not-a-repo"))
    assert stage_write("label", ["labels"]).mode == "off"


def test_commit_stage_records_what_a_flow_wrote(repo):
    (repo / "labels").mkdir()
    (repo / "labels" / "a.json").write_text("{}")
    (repo / "reports").mkdir()
    (repo / "reports" / "summary.json").write_text('{"labeled": 1}')
    assert commit_stage(repo, "label", log=lambda *_: None)
    r = subprocess.run([sys.executable, "-m", "dvc", "status"], cwd=repo, capture_output=True, text=True)
    assert r.stdout.strip() == "Data and pipelines are up to date.", r.stdout
    (repo / "labels" / "b.json").write_text("{}")
    assert (
        "modified"
        in subprocess.run([sys.executable, "-m", "dvc", "status"], cwd=repo, capture_output=True, text=True).stdout
    )


def test_commit_defers_to_a_running_repro_of_the_stage(repo):
    """While a `dvc repro` holds the stage's outputs (DVC's rwlock, as during its command), the
    commit says so and leaves the recording to that repro instead of failing the run."""
    import json
    import os

    (repo / "labels").mkdir()
    (repo / "labels" / "a.json").write_text("{}")
    (repo / "reports").mkdir()
    (repo / "reports" / "summary.json").write_text("{}")
    (repo / ".dvc" / "tmp").mkdir(exist_ok=True)
    busy = {"pid": os.getpid(), "cmd": "dvc repro label"}  # a live process: this test
    (repo / ".dvc" / "tmp" / "rwlock").write_text(json.dumps({"read": {}, "write": {str(repo / "labels"): busy}}))
    said = []
    assert commit_stage(repo, "label", log=said.append, busy_s=0) is False
    assert "holds its outputs" in said[0] and "dvc commit label" in said[0]


def test_the_pipeline_lock_makes_another_process_wait(repo):
    waiter = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from mll.ops.dvc_stage import pipeline_lock
        t0 = time.monotonic()
        with pipeline_lock(Path({str(repo)!r}), "second", log=print):
            print(f"got it after {{time.monotonic() - t0:.1f}} s", flush=True)
        """
    )
    with pipeline_lock(repo, "first", log=lambda *_: None):
        p = subprocess.Popen([sys.executable, "-c", waiter], stdout=subprocess.PIPE, text=True)
        time.sleep(3)
        assert p.poll() is None  # still waiting
    out, _ = p.communicate(timeout=60)
    assert "waiting for the pipeline lock" in out and "first" in out and "got it after" in out
    with pipeline_lock(repo, "outer", log=lambda *_: None):  # a holder that never lets go: a clear error
        held = subprocess.run(
            [sys.executable, "-c", waiter.replace('"second", log=print', '"second", log=print, wait_s=1')],
            capture_output=True,
            text=True,
        )
    assert held.returncode != 0 and "TimeoutError" in held.stderr and "remove the file" in held.stderr

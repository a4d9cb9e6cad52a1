"""`mll hub add` in a DVC project: the weights become DVC-tracked, the card stays in git, and
`dvc status` shows only what the new model changes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mll.cli import main
from mll.hub.store import Hub
from mll.hub.versioning import track_weights
from test_hub import tiny_card, tiny_state

# a stand-in for dvc.yaml's `label` stage: it depends on the whole hub folder, as the real one does
DVC_YAML = """\
stages:
  label:
    cmd: ls models > labels.txt
    deps:
      - models
    outs:
      - labels.txt
"""


def _run(cwd: Path, *args: str) -> str:
    r = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr + r.stdout
    return r.stdout


def _dvc(cwd: Path, *args: str) -> str:
    return _run(cwd, sys.executable, "-m", "dvc", *args)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A git + DVC project holding a one-model hub and a `label` stage on it, all committed."""
    proj = tmp_path / "proj"
    proj.mkdir()
    _run(proj, "git", "init", "-q")
    _run(proj, "git", "config", "user.email", "t@example.com")
    _run(proj, "git", "config", "user.name", "t")
    _dvc(proj, "init", "-q")
    _dvc(proj, "config", "core.analytics", "false")
    Hub(proj / "models").add(tiny_card("base"), tiny_state())
    _dvc(proj, "add", "models/base/weights.safetensors")
    (proj / "dvc.yaml").write_text(DVC_YAML)
    _dvc(proj, "repro", "-q")
    _run(proj, "git", "add", "-A")
    _run(proj, "git", "commit", "-qm", "hub of one")
    assert json.loads(_dvc(proj, "status", "--json")) == {}
    return proj


def _add(proj: Path, pth: Path, *extra: str) -> int:
    args = ["--name", "new", "--arch", "test_resnet", "--classes", "dog,cat", "--input-size", "16"]
    return main(["hub", "add", str(pth), *args, "--hub", str(proj / "models"), *extra])


def test_hub_add_tracks_the_weights_and_dvc_status_shows_only_the_new_model(project, tmp_path, capsys):
    pth = tmp_path / "new.pth"
    torch.save(tiny_state(2), pth)
    assert _add(project, pth) == 0
    out = capsys.readouterr().out
    assert "weights tracked by DVC (weights.safetensors.dvc)" in out and "git add models/new/card.yaml" in out
    new = project / "models" / "new"
    assert (new / "weights.safetensors.dvc").is_file()
    # the weights are ignored by git (DVC holds them), the card and the .dvc file are for git
    _run(project, "git", "check-ignore", "-q", "models/new/weights.safetensors")
    untracked = _run(project, "git", "status", "--porcelain", "--untracked-files=all").split("\n")
    assert sorted(ln for ln in untracked if ln) == [
        "?? models/new/.gitignore",
        "?? models/new/card.yaml",
        "?? models/new/weights.safetensors.dvc",
    ]
    # exactly the new model's change: the label stage's dependency on the hub folder, nothing else
    assert json.loads(_dvc(project, "status", "--json")) == {"label": [{"changed deps": {"models": "modified"}}]}
    _dvc(project, "repro", "-q")
    assert (project / "labels.txt").read_text().split() == ["base", "new"]
    assert json.loads(_dvc(project, "status", "--json")) == {}
    _run(project, "git", "add", "-A")
    _run(project, "git", "commit", "-qm", "new model")
    assert main(["hub", "remove", "new", "--hub", str(project / "models")]) == 0
    assert "git rm -r --cached" in capsys.readouterr().out


def test_identical_weights_readded_keep_the_card_hash(project, tmp_path):
    """Re-adding the same weights (a retrain that reproduces them) leaves the card, hence the label
    key, and the DVC-tracked weights unchanged."""
    pth = tmp_path / "new.pth"
    torch.save(tiny_state(2), pth)
    assert _add(project, pth) == 0
    hub = Hub(project / "models")
    card = hub.card("new")
    dvc_file = (project / "models" / "new" / "weights.safetensors.dvc").read_text()
    card_text = (project / "models" / "new" / "card.yaml").read_text()
    assert _add(project, pth, "--overwrite") == 0
    assert hub.card("new").content_hash() == card.content_hash()
    assert (project / "models" / "new" / "card.yaml").read_text() == card_text
    assert (project / "models" / "new" / "weights.safetensors.dvc").read_text() == dvc_file


def test_weights_a_stage_produces_are_left_to_the_stage(project):
    """A model folder whose weights a pipeline stage writes is not `dvc add`ed a second time."""
    (project / "dvc.yaml").write_text(
        DVC_YAML + "  build:\n    cmd: 'true'\n    outs:\n      - models/built/weights.safetensors\n"
    )
    Hub(project / "models").add(tiny_card("built"), tiny_state())
    got = track_weights(project / "models" / "built", "weights.safetensors")
    assert not got.tracked and "stage 'build' produces models/built/weights.safetensors" in got.advice()


def test_outside_a_dvc_repo_the_add_says_how_to_version_it(tmp_path, capsys):
    pth = tmp_path / "new.pth"
    torch.save(tiny_state(2), pth)
    assert _add(tmp_path, pth) == 0
    out = capsys.readouterr().out
    assert "weights not DVC-tracked" in out and "not inside a DVC repository (dvc init, then dvc add" in out
    assert (tmp_path / "models" / "new" / "weights.safetensors").is_file()

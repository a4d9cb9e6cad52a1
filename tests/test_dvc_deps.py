"""dvc.yaml's code deps are each stage's import closure (scripts/dvc_deps.py), so `dvc repro` reruns
exactly the stages an edit can change: editing preprocessing (mll.hub.experts) retrains the experts and
relabels, and leaves the data and the SDAG alone."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "dvc_deps.py"
PREPROCESSING = "src/mll/hub/experts.py"


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dvc_deps", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["dvc_deps"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


dvc_deps = _load_script()


def _run_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


# ----------------------------------------------------------------------------------- the real pipeline


def test_dvc_yaml_code_deps_are_the_import_closures() -> None:
    reports = dvc_deps.check(REPO / "dvc.yaml", REPO)
    detail = "\n".join(f"{r.stage}: missing {r.missing}, superfluous {r.superfluous}" for r in reports)
    assert not reports, f"dvc.yaml's code deps are stale; run `make dvc-deps`:\n{detail}"


def test_preprocessing_is_a_dep_of_the_stages_that_run_experts() -> None:
    deps = {s.name: s.deps for s in dvc_deps.read_stages(REPO / "dvc.yaml")}
    for stage in ("experts", "imagenet-experts", "label", "benchmark"):
        assert PREPROCESSING in deps[stage], stage
    for stage in ("data", "sdag"):
        assert PREPROCESSING not in deps[stage], stage


def test_cli_check_passes_on_the_repo_and_help_works() -> None:
    result = _run_script("--check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert _run_script("--help").returncode == 0


# ----------------------------------------------------------------------------------- a synthetic tree


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _tiny_project(root: Path) -> None:
    _write(root / "src/pkg/__init__.py", "")
    _write(
        root / "src/pkg/core.py",
        "import json\n"
        "from pkg import helpers\n"  # a submodule imported by `from package import name`
        "from pkg.helpers import VALUE\n"  # an attribute: resolves to the module only
        "\n\ndef run():\n"
        "    from pkg.sub import lazy\n"  # function-local: still a dependency
        "    return lazy, helpers, json\n",
    )
    _write(root / "src/pkg/helpers.py", "VALUE = 1\n")
    _write(root / "src/pkg/sub/__init__.py", "")
    _write(root / "src/pkg/sub/lazy.py", "from . import rel\n")  # relative import
    _write(root / "src/pkg/sub/rel.py", "")
    _write(root / "src/pkg/unused.py", "import pkg.core\n")  # imported by nobody
    _write(root / "flows/run.py", "import argparse\n\nfrom pkg.core import run\n")


SYNTHETIC_YAML = """\
# The pipeline of the tiny project.
stages:
  run:
    cmd: python flows/run.py --out out
    deps:
      # the flow and the library it imports
      - flows/run.py
      - src/pkg/__init__.py
      - src/pkg/core.py
      - src/pkg/helpers.py
      - src/pkg/sub/__init__.py
      - src/pkg/sub/rel.py
      - data/input.csv   # data deps stay
    outs:
      - out

  # one stage per item; the module runs with -m
  each:
    foreach: [a, b]
    do:
      cmd: python -m pkg.helpers ${item}
      deps:
        - src/pkg/__init__.py
        - src/pkg/helpers.py
        - data/${item}.csv
      outs:
        - out-${item}
"""


def test_check_reports_exactly_the_missing_module_and_write_fixes_it(tmp_path: Path) -> None:
    _tiny_project(tmp_path)
    dvc_yaml = tmp_path / "dvc.yaml"
    dvc_yaml.write_text(SYNTHETIC_YAML)

    assert dvc_deps.stage_code_deps("python flows/run.py", tmp_path) == [
        "flows/run.py",
        "src/pkg/__init__.py",
        "src/pkg/core.py",
        "src/pkg/helpers.py",
        "src/pkg/sub/__init__.py",
        "src/pkg/sub/lazy.py",
        "src/pkg/sub/rel.py",
    ]

    result = _run_script("--check", "--root", str(tmp_path))
    assert result.returncode == 1
    assert result.stdout == "run:\n  missing      src/pkg/sub/lazy.py\n"

    result = _run_script("--write", "--root", str(tmp_path))
    assert result.returncode == 0, result.stderr
    # one line added, in sorted place; comments, data deps and everything else byte for byte
    assert dvc_yaml.read_text() == SYNTHETIC_YAML.replace(
        "      - src/pkg/sub/rel.py\n", "      - src/pkg/sub/lazy.py\n      - src/pkg/sub/rel.py\n"
    )
    assert "      # the flow and the library it imports\n" in dvc_yaml.read_text()
    assert _run_script("--check", "--root", str(tmp_path)).returncode == 0
    assert _run_script("--write", "--root", str(tmp_path)).stdout.strip() == "dvc.yaml: already up to date"


def test_write_replaces_folder_and_flow_style_deps_and_adds_missing_blocks(tmp_path: Path) -> None:
    _tiny_project(tmp_path)
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n"
        "  folder:\n"
        "    cmd: python -m pkg.helpers\n"
        "    deps:\n"
        "    - src/pkg            # a whole folder: one edit would rerun everything\n"
        "    - src/pkg/helpers.py  # kept, and so is this comment\n"
        "    - src/pkg/resource.txt\n"
        "    - data/x.csv\n"
        "  flow:\n"
        "    cmd: python -m pkg.helpers\n"
        "    deps: [src/pkg/unused.py, data/y.csv]\n"
        "  none:\n"
        "    cmd: python -m pkg.helpers\n"
        "    outs:\n"
        "      - z\n"
        "  shell:\n"
        "    cmd: cp a b\n"
        "    deps:\n"
        "      - a\n"
    )
    _write(tmp_path / "src/pkg/resource.txt", "read by a module: a data dep, not code\n")
    reports = {r.stage: r for r in dvc_deps.check(tmp_path / "dvc.yaml", tmp_path)}
    assert set(reports) == {"folder", "flow", "none"}
    assert reports["folder"].superfluous == ["src/pkg"]
    assert reports["flow"].superfluous == ["src/pkg/unused.py"]

    assert dvc_deps.write(tmp_path / "dvc.yaml", tmp_path)
    doc = yaml.safe_load((tmp_path / "dvc.yaml").read_text())["stages"]
    code = ["src/pkg/__init__.py", "src/pkg/helpers.py"]
    assert doc["folder"]["deps"] == [*code, "src/pkg/resource.txt", "data/x.csv"]
    assert doc["flow"]["deps"] == [*code, "data/y.csv"]
    assert doc["none"]["deps"] == code and doc["none"]["outs"] == ["z"]
    assert doc["shell"]["deps"] == ["a"]
    text = (tmp_path / "dvc.yaml").read_text()
    assert "    - src/pkg/helpers.py  # kept, and so is this comment\n" in text
    assert "# a whole folder" not in text  # the trailing comment of a removed dep goes with it
    assert dvc_deps.check(tmp_path / "dvc.yaml", tmp_path) == []


# ----------------------------------------------------------------------------------- real DVC


def _project_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    keep = []
    for rel in listed:
        if not rel or not (REPO / rel).is_file():
            continue
        if (
            rel in {"dvc.yaml", "params.yaml", ".dvcignore", "pyproject.toml"}
            or rel.startswith(("src/", "flows/", "scripts/"))
            or rel.startswith("data/")  # the tracked inputs (curated maps, user names); outputs are ignored
        ):
            keep.append(rel)
    return keep


def _placeholders(root: Path, outs: list[str], deps: set[str]) -> None:
    """Each declared output as a small file or folder; a folder holds the files stages read from it."""
    for out in outs:
        inside = sorted(d for d in deps if d.startswith(out.rstrip("/") + "/"))
        path = root / out
        if inside:
            for dep in inside:
                _write(root / dep, f"placeholder {dep}\n")
        elif Path(out).suffix:
            _write(path, f"placeholder {out}\n")
        else:
            _write(path / "placeholder.txt", f"placeholder {out}\n")


@pytest.mark.slow
def test_dvc_status_after_a_preprocessing_edit(tmp_path: Path) -> None:
    from dvc.repo import Repo

    dvc = str(Path(sys.executable).parent / "dvc")
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "DO_NOT_TRACK": "true", "GIT_CONFIG_NOSYSTEM": "1"}

    def run(*cmd: str) -> str:
        done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{' '.join(cmd)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    for rel in _project_files():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, tmp_path / rel)
    run("git", "init", "-q")
    run(dvc, "init", "-q")

    with Repo(str(tmp_path)) as repo:  # dvc's own reading of dvc.yaml: foreach expanded from params.yaml
        stages = {s.name: s for s in repo.index.stages}
        outs = [o.def_path for s in stages.values() for o in s.outs]
        deps = {name: {d.def_path for d in s.deps} for name, s in stages.items()}
        cmds = {name: s.cmd for name, s in stages.items()}
        frozen = {name for name, s in stages.items() if s.frozen}  # `dvc status` does not check these
    _placeholders(tmp_path, outs, set().union(*deps.values()))
    for dep in set().union(*deps.values()):  # fetched inputs (the emoji artwork of `make clipart`)
        if not (tmp_path / dep).exists():
            _write(tmp_path / dep / "placeholder.txt", f"placeholder {dep}\n")

    run(dvc, "commit", "--force", "-q")
    assert json.loads(run(dvc, "status", "--json")) == {}

    with (tmp_path / PREPROCESSING).open("a") as f:
        f.write("# an edit to preprocessing\n")
    status = json.loads(run(dvc, "status", "--json"))
    changed = set(status)
    print("\ndvc status after editing", PREPROCESSING, "->", sorted(changed))

    declared = {name for name, d in deps.items() if PREPROCESSING in d} - frozen
    closure = {name for name, cmd in cmds.items() if PREPROCESSING in dvc_deps.stage_code_deps(cmd, tmp_path)} - frozen
    assert frozen == {"final-test"}
    assert changed == declared == closure
    for name in changed:
        assert {"changed deps": {PREPROCESSING: "modified"}} in status[name], status[name]

    assert {"experts", "imagenet-experts", "heads"} <= changed  # the three hub stages read images
    assert {"label", "benchmark"} <= changed
    assert not {"data", "sdag"} & changed

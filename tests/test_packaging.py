"""Packaging: the MLOps stack is the `pipeline` extra, the library runs without it, and a command
that needs it says which extra to install."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from mll.cli import PIPELINE_PACKAGES

ROOT = Path(__file__).parents[1]

# run `mll` with the pipeline packages made unimportable, as on an install without the extra
BLOCKED = f"""
import importlib.abc, sys
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {set(PIPELINE_PACKAGES)!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Blocker())
import mll.solve.task, mll.labels.compute, mll.hub.store, mll.serve.solution, mll.bench.report
from mll.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _name(req: str) -> str:
    return req.split("==")[0].split(">")[0].split("<")[0].strip().lower().replace("-", "_")


def test_the_pipeline_stack_is_an_extra_and_make_setup_installs_it():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {_name(r) for r in project["dependencies"]}
    pipeline = {_name(r) for r in project["optional-dependencies"]["pipeline"]}
    wanted = {"prefect", "prefect_dask", "mlflow", "dvc", "great_expectations"}
    assert pipeline == wanted and not core & wanted
    assert {p.replace("-", "_") for p in PIPELINE_PACKAGES} == wanted
    assert '-e ".[pipeline,dev]"' in (ROOT / "Makefile").read_text()
    assert project["scripts"]["mll"] == "mll.cli:main" and (ROOT / "src" / "mll" / "__main__.py").is_file()
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["mll"]
    assert all((ROOT / "src" / "mll" / f).is_file() for f in data)  # no stale package data


def _mll(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCKED, *args], capture_output=True, text=True, timeout=600)


def test_the_library_runs_without_the_pipeline_extra(tiny_world, tiny_labels, tmp_path):
    where = ["--hub", str(tiny_world["hub"].root), "--labels", str(tiny_labels), "--sdag", str(tiny_world["sdag"])]
    where += ["--params", str(tmp_path / "none.yaml")]
    folder = tmp_path / "images"
    folder.mkdir()
    from mll.data.images import open_image

    for i, u in enumerate(tiny_world["test"]["uri"][:4]):
        open_image(u).save(folder / f"{i}.png")
    ok = _mll("solve", "--classes", "0,1,2,3,4,5", "--images", str(folder), "--out", str(tmp_path / "p.csv"),
              "--no-track", *where)  # fmt: skip
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert len((tmp_path / "p.csv").read_text().splitlines()) == 5
    tracked = _mll("solve", "--classes", "0,1", "--images", str(folder), "--out", str(tmp_path / "q.csv"), *where)
    errors = [line for line in tracked.stderr.splitlines() if line.startswith("mll: error:")]
    assert tracked.returncode == 2 and len(errors) == 1 and "Traceback" not in tracked.stderr
    assert "needs mlflow" in errors[0] and "'.[pipeline]'" in errors[0] and "--no-track" in errors[0]
    assert (tmp_path / "q.csv").is_file()  # the predictions were written before the tracking step failed
    saved = _mll("solve", "--classes", "0,1", "--save", "x", *where)
    assert saved.returncode == 2 and "needs mlflow" in saved.stderr and "--no-track" not in saved.stderr
    check = _mll("label", "--check", "--hub", str(tiny_world["hub"].root), "--labels", str(tiny_labels),
                 "--sdag", str(tiny_world["sdag"]))  # fmt: skip
    assert check.returncode == 2 and "needs great_expectations" in check.stderr

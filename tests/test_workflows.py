"""The GitHub workflows run as written: they parse, pin Python 3.11, and every script and make target
they (or the scripts they call) reference exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
SCRIPT = re.compile(r"(?<![\w/.-])((?:scripts|\.ci)/[\w./-]+)")
MAKE = re.compile(r"\bmake\s+([a-z][\w-]*)")


def _targets() -> set[str]:
    return set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), re.M))


def _load(path: Path) -> dict:
    doc = yaml.safe_load(path.read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as the boolean true
    return doc


def _references(text: str, seen: set[Path]) -> tuple[set[str], set[str]]:
    """(scripts, make targets) named in `text` and, recursively, in the shell scripts it names."""
    scripts, targets = set(SCRIPT.findall(text)), set(MAKE.findall(text))
    for s in list(scripts):
        p = ROOT / s
        if p.is_file() and p not in seen and p.suffix in ("", ".sh"):
            seen.add(p)
            more_s, more_t = _references(p.read_text(), seen)
            scripts |= more_s
            targets |= more_t
    return scripts, targets


def test_both_workflows_exist():
    assert {p.name for p in WORKFLOWS} >= {"test.yml", "relabel.yml"}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_parses_pins_python_and_references_what_exists(path):
    doc = _load(path)
    assert doc["on"] and doc["jobs"], f"{path.name}: no triggers or no jobs"
    targets = _targets()
    for name, job in doc["jobs"].items():
        steps = job["steps"]
        assert job.get("timeout-minutes", 360) <= 90, f"{path.name}:{name}: over the 90-minute CI budget"
        pythons = [
            s["with"]["python-version"] for s in steps if str(s.get("uses", "")).startswith("actions/setup-python")
        ]
        assert pythons == ["3.11"], f"{path.name}:{name}: needs one setup-python step with 3.11, got {pythons}"
        assert any("cache" in (s.get("with") or {}) for s in steps), f"{path.name}:{name}: no pip cache"
        run = "\n".join(str(s.get("run", "")) for s in steps)
        assert "setup_system.sh" in run, f"{path.name}:{name}: the Debian packages are never installed"
        scripts, made = _references(run, set())
        missing = sorted(s for s in scripts if not (ROOT / s).exists())
        assert not missing, f"{path.name}:{name}: references missing files {missing}"
        unknown = sorted(made - targets)
        assert not unknown, f"{path.name}:{name}: references unknown make targets {unknown}"


def test_the_test_workflow_runs_lint_and_tests_on_push_and_pull_request():
    doc = _load(ROOT / ".github" / "workflows" / "test.yml")
    assert {"push", "pull_request"} <= set(doc["on"])
    scripts, made = _references("\n".join(str(s.get("run", "")) for s in doc["jobs"]["test"]["steps"]), set())
    assert ".ci/run" in scripts and {"lint", "test"} <= made


def test_the_relabel_workflow_needs_its_remote_and_proposes_the_new_lock():
    doc = _load(ROOT / ".github" / "workflows" / "relabel.yml")
    steps = doc["jobs"]["relabel"]["steps"]
    first = steps[0]
    assert "MLL_DVC_REMOTE" in first.get("if", "") and "exit 1" in first["run"]  # a clear failure without a remote
    pr = next(s for s in steps if str(s.get("uses", "")).startswith("peter-evans/create-pull-request"))
    assert {"dvc.lock", "reports/labels_summary.json"} <= set(pr["with"]["add-paths"].split())
    kept = next(s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact"))
    assert "mlflow.db" in kept["with"]["path"] and kept.get("if") == "always()"
    assert "schedule" in doc["on"] and "scripts/relabel.sh" in "\n".join(str(s.get("run", "")) for s in steps)


def _recipe(target: str) -> str:
    """What `make -n TARGET` would run (a dry run prints the commands; only a recipe line naming
    `$(MAKE)` would run, and demo and results have none)."""
    import subprocess

    r = subprocess.run(["make", "-n", "-B", target], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_only_make_results_rewrites_the_readme():
    """`make demo` writes reports/ (its `report` stage); the README's result block is rewritten by
    `make results` alone, which `make final-test` calls."""
    assert "dvc repro" in _recipe("demo") and "--readme" not in _recipe("demo")
    assert "mll.bench.report" in _recipe("results") and "--readme README.md" in _recipe("results")
    # final-test is read, not dry-run: make runs a `$(MAKE)` line even under -n
    final = re.search(r"^final-test:.*?(?=^\S)", (ROOT / "Makefile").read_text(), re.M | re.S).group(0)
    assert "$(MAKE) --no-print-directory results" in final and "--readme" not in final

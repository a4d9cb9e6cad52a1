"""`dvc exp run -S solve.cost_per_model=...`: DVC's own override parsing, applied to the project's
params.yaml, gives the typed config the benchmark reads, and the stages that read it rerun.

The experiment itself (the benchmark stage, about 6 min on 2 cores) is not run here."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import yaml

from mll.config import load_params

ROOT = Path(__file__).parents[1]


def test_a_cost_per_model_sweep_changes_only_that_setting(tmp_path):
    from dvc.utils.cli_parse import to_path_overrides
    from dvc.utils.hydra import apply_overrides, get_hydra_sweeps

    base = load_params(ROOT / "params.yaml")
    # `-S solve.cost_per_model=0.003,0.03` as `dvc exp run --queue` expands it: one experiment per value
    sweeps = get_hydra_sweeps(to_path_overrides(["solve.cost_per_model=0.003,0.03"]))
    assert [s["params.yaml"] for s in sweeps] == [["solve.cost_per_model=0.003"], ["solve.cost_per_model=0.03"]]
    for i, (value, sweep) in enumerate(zip((0.003, 0.03), sweeps, strict=True)):
        params = tmp_path / str(i) / "params.yaml"
        params.parent.mkdir()
        shutil.copyfile(ROOT / "params.yaml", params)
        apply_overrides(params, sweep["params.yaml"])  # what `dvc exp run -S` does to the workspace file
        got = load_params(params)
        assert got.solve.cost_per_model == value
        assert got == replace(base, solve=replace(base.solve, cost_per_model=value))


def test_the_stages_that_solve_depend_on_the_solve_section():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    readers = {name for name, st in stages.items() if "solve" in (st.get("params") or [])}
    assert {"benchmark", "studies", "final-test"} <= readers
    # the hub and its labels do not: a sweep reruns no training and no labeling
    assert not readers & {"data", "sdag", "experts", "imagenet-experts", "heads", "label", "oracles"}

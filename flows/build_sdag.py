"""Flow `build-sdag`: WordNet -> the Semantic DAG on disk (DVC stage `sdag`).

Like every flow that writes a stage's outputs, it holds the pipeline lock and, when run outside
`dvc repro` on the stage's paths (the `build-sdag` deployment), records them with `dvc commit`
(`mll.ops.dvc_stage`)."""

from __future__ import annotations

import argparse

from mll.env import bootstrap

bootstrap()  # the offline environment, before Prefect reads its settings

from prefect import flow, get_run_logger, task

from mll.config import SdagParams, load_section
from mll.data.stages import sdag_stage
from mll.ops.dvc_stage import writing_stage
from mll.ops.execution import retry_transient


@task(name="build-and-save-sdag", timeout_seconds=1800, retries=1, retry_condition_fn=retry_transient)
def build_and_save(params: SdagParams, out: str) -> int:
    return len(sdag_stage(params, out, log=get_run_logger().info))


@flow(name="build-sdag")
def build_sdag_flow(out: str = "data/sdag", params_file: str = "params.yaml") -> int:
    """Build the SDAG with the `sdag` section of params.yaml; returns the node count."""
    with writing_stage("sdag", [out], log=get_run_logger().info):
        return build_and_save(load_section("sdag", params_file), out)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="data/sdag")
    ap.add_argument("--params", default="params.yaml")
    a = ap.parse_args()
    build_sdag_flow(a.out, a.params)

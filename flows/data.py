"""Flow `prepare-data`: datasets -> validated split manifests + data summary (DVC stage `data`)."""

from __future__ import annotations

import argparse

from mll.env import bootstrap

bootstrap()  # the offline environment, before Prefect reads its settings

from prefect import flow, get_run_logger, task

from mll.config import DataParams, load_section
from mll.data.datasets import DatasetMissingError
from mll.data.stages import check_clipart_fetched, data_stage
from mll.ops.dvc_stage import writing_stage


@task(name="split-and-validate")
def split_and_validate(params: DataParams, out: str, summary: str) -> dict:
    return {k: str(v) for k, v in data_stage(params, out, summary, log=get_run_logger().info).items()}


@flow(name="prepare-data")
def prepare_data_flow(
    out: str = "data/splits", summary: str = "reports/data_summary.json", params_file: str = "params.yaml"
) -> dict:
    """Split every configured dataset into expert_train / probe / target_test manifests."""
    with writing_stage("data", [out, summary], log=get_run_logger().info):  # lock; dvc commit off DVC
        return split_and_validate(load_section("data", params_file), out, summary)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="data/splits")
    ap.add_argument("--summary", default="reports/data_summary.json")
    ap.add_argument("--params", default="params.yaml")
    a = ap.parse_args()
    try:  # missing artwork is a setup step, not a bug: one line, not a flow traceback
        check_clipart_fetched(load_section("data", a.params))
    except DatasetMissingError as exc:
        raise SystemExit(f"data: {exc}") from None
    prepare_data_flow(a.out, a.summary, a.params)

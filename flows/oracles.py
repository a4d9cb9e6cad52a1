"""Flow `train-oracles`: the benchmark's oracle experts, one per dataset with training data (DVC stage `oracles`).

An oracle is trained on the whole expert_train split of its dataset (every class): what a task
drawn from that dataset could reach with its own training data. It is kept in `oracles/`, out of
the hub, so MLL never selects it.
"""

from __future__ import annotations

import argparse

from mll.env import bootstrap

bootstrap(training=True)  # the offline environment before Prefect reads it; CPU kernels before torch runs

from prefect import flow, get_run_logger, task

from mll.bench.oracles import train_oracle


@task(name="train-oracle")
def train_one(dataset: str, params_file: str, manifest: str, out: str) -> dict:
    card = train_oracle(dataset, params_file, manifest, out, log=get_run_logger().info)
    return card.provenance.get("metrics", {})


@flow(name="train-oracles")
def train_oracles_flow(
    datasets: list[str],
    params_file: str = "params.yaml",
    manifest: str = "data/splits/expert_train.parquet",
    out: str = "oracles",
) -> dict:
    """Train the oracle expert of each dataset in `datasets` (names under benchmark.oracles), in
    `experts.workers` processes (mll.hub.parallel)."""
    from mll.config import load_section
    from mll.hub.parallel import run_parallel
    from mll.ops.dvc_stage import writing_stage

    workers = load_section("experts", params_file).workers
    with writing_stage("oracles", [out], log=get_run_logger().info):  # lock; dvc commit off DVC
        if workers > 1 and len(datasets) > 1:
            track = load_section("benchmark", params_file).track
            jobs = [(d, params_file, manifest, out) for d in datasets]
            cards = run_parallel(train_oracle, jobs, workers, experiments=("experts",) if track else ())
            return dict(zip(datasets, (c.provenance.get("metrics", {}) for c in cards)))
        return {d: train_one(d, params_file, manifest, out) for d in datasets}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("datasets", nargs="*", help="names under benchmark.oracles (none: every one, in this process)")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--manifest", default="data/splits/expert_train.parquet")
    ap.add_argument("--out", default="oracles")
    a = ap.parse_args()
    if not a.datasets:
        from mll.config import load_section

        a.datasets = list(load_section("benchmark", a.params).oracles)
    train_oracles_flow(a.datasets, a.params, a.manifest, a.out)

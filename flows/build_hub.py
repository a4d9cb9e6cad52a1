"""Flow `build-hub`: train demo experts, import the packaged ImageNet experts and derived specialists,
train the head experts on shared backbones (DVC stages `experts`, `imagenet-experts`, `heads`)."""

from __future__ import annotations

import argparse

from mll.env import bootstrap

bootstrap(training=True)  # the offline environment before Prefect reads it; CPU kernels before torch runs

from prefect import flow, get_run_logger, task

from mll.config import load_section
from mll.hub.build import import_imagenet_stage, train_expert_stage, train_heads_stage
from mll.hub.parallel import run_parallel


@task(name="train-expert")
def train_one(name: str, params_file: str, manifest: str, hub: str) -> dict:
    card = train_expert_stage(name, params_file, manifest, hub, log=get_run_logger().info)
    return card.provenance.get("metrics", {})


@task(name="train-experts")
def train_many(names: list[str], params_file: str, manifest: str, hub: str, workers: int) -> dict:
    """The named experts, trained in `workers` processes (mll.hub.parallel)."""
    jobs = [(n, params_file, manifest, hub) for n in names]
    track = load_section("experts", params_file).track
    cards = run_parallel(train_expert_stage, jobs, workers, experiments=("experts",) if track else ())
    for c in cards:
        get_run_logger().info(f"{c.name}: val accuracy {c.provenance['metrics']['val_accuracy']:.3f}")
    return {c.name: c.provenance.get("metrics", {}) for c in cards}


@task(name="import-imagenet-expert")
def import_one(name: str, params_file: str, hub: str) -> int:
    return import_imagenet_stage(name, params_file, hub, log=get_run_logger().info).num_classes


@task(name="train-heads")
def train_heads(names: list[str] | None, params_file: str, manifest: str, hub: str) -> int:
    return len(train_heads_stage(names or None, params_file, manifest, hub, log=get_run_logger().info))


@flow(name="build-hub")
def build_hub_flow(
    trained: list[str] | None = None,
    imagenet: list[str] | None = None,
    heads: list[str] | None = None,
    params_file: str = "params.yaml",
    manifest: str = "data/splits/expert_train.parquet",
    hub: str = "models",
) -> dict:
    """Train the named demo experts, import the named ImageNet experts and train the named heads
    (`heads=[]`: every head under experts.heads) into `hub`."""
    workers = load_section("experts", params_file).workers
    if workers > 1 and len(trained or []) > 1:
        out = train_many(list(trained), params_file, manifest, hub, workers)
    else:
        out = {n: train_one(n, params_file, manifest, hub) for n in trained or []}
    out.update({n: import_one(n, params_file, hub) for n in imagenet or []})
    if heads is not None:
        out["heads"] = train_heads(heads, params_file, manifest, hub)
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--train", nargs="*", default=None, help="names under experts.trained (no name: every one)")
    ap.add_argument("--imagenet", nargs="*", default=None, help="names under experts.imagenet (no name: every one)")
    ap.add_argument(
        "--heads", nargs="*", default=None, help="names under experts.heads (no name: every head), in one process"
    )
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--manifest", default="data/splits/expert_train.parquet")
    ap.add_argument("--hub", default="models")
    a = ap.parse_args()
    section = load_section("experts", a.params)
    # a flag alone names every expert of its kind, all built in this one process
    trained = list(section.trained) if a.train == [] else a.train
    imagenet = list(section.imagenet) if a.imagenet == [] else a.imagenet
    build_hub_flow(trained, imagenet, a.heads, a.params, a.manifest, a.hub)

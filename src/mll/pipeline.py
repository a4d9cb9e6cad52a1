"""The pipeline's stages as plain functions of (params, paths) -> output paths.

The DVC stages run Prefect flows (`flows/`), the flows call these functions, and so do the CLI and
the tests: one implementation behind every entry point.
"""

from __future__ import annotations

import time
from pathlib import Path

from mll.config import DataParams, SdagParams
from mll.datasets import load_dataset
from mll.sdag import SDAG, build_sdag


def data_stage(params: DataParams, out_dir: Path, summary_path: Path, log=print) -> dict[str, Path]:
    """Load every configured dataset, split it, validate the manifests, write them and the summary."""
    from mll.splits import make_splits, write_manifests, write_summary
    from mll.validation import check_manifests
    from mll.wordnet import synset_from_wnid

    names = list(params.datasets) + (["tuxpaint"] if params.tuxpaint_probe_fraction > 0 else [])
    sets = {}
    for name in names:
        t0 = time.perf_counter()
        sets[name] = load_dataset(name)
        log(f"loaded {name}: {len(sets[name])} images, {len(sets[name].class_names)} classes "
            f"({time.perf_counter() - t0:.1f} s)")
    frame = make_splits(params, sets)

    def synset_ok(s: str) -> bool:
        try:
            synset_from_wnid(s)
            return True
        except ValueError:
            return False

    biggest = max((max(s.expert_train, s.probe, s.target_test) for s in params.datasets.values()), default=None)
    check_manifests(frame, synset_ok, params.min_per_class, biggest)
    paths = write_manifests(frame, out_dir)
    write_summary(frame, summary_path)
    log(f"wrote {', '.join(f'{k}={int((frame.split == k).sum())}' for k in paths)} -> {out_dir}")
    return paths


def sdag_stage(params: SdagParams, out_dir: Path, vocabulary: list[str] | None = None, log=print) -> SDAG:
    """Build the SDAG (all nouns, or the closure of `vocabulary`) and save it to `out_dir`."""
    if params.scope not in ("all", "closure"):
        raise ValueError(f"sdag.scope must be 'all' or 'closure', got {params.scope!r}")
    if params.scope == "closure" and not vocabulary:
        raise ValueError("sdag.scope 'closure' needs a vocabulary of synset ids")
    g = build_sdag(None if params.scope == "all" else vocabulary)
    g.save(out_dir)
    log(f"SDAG: {len(g)} nodes, {g.graph.number_of_edges()} edges, built in {g.meta['build_seconds']} s -> {out_dir}")
    return g


def _experts_section(params_file) -> dict:
    from mll.config import load_raw

    raw = load_raw(Path(params_file)).get("experts")
    if not isinstance(raw, dict):
        raise KeyError(f"params: {params_file} has no `experts` section")
    return raw


def train_expert_stage(name: str, params_file, manifest: Path, hub_root: Path, log=print):
    """Train demo expert `name` (from `experts.trained`), add it to the hub, track it in MLflow."""
    from mll.hub import Hub
    from mll.splits import read_manifest
    from mll.tracking import start_run
    from mll.training import spec_from_params, train_expert

    section = _experts_section(params_file)
    trained = section.get("trained") or {}
    if name not in trained:
        raise KeyError(f"params: no expert {name!r} under experts.trained (have: {', '.join(trained)})")
    spec = spec_from_params(name, trained[name], section.get("defaults") or {})
    rows = read_manifest(Path(manifest))
    with start_run("experts", name, enabled=bool(section.get("track", True))) as tracker:
        card = train_expert(spec, rows, Hub(Path(hub_root)), tracker, log=log)
        version = tracker.register_folder(Path(hub_root) / name, f"mll-expert-{name}", "hub")
        if version:
            log(f"{name}: registered as mll-expert-{name} version {version} (alias @hub)")
    log(f"{name}: val accuracy {card.provenance['metrics']['val_accuracy']:.3f} on its {card.num_classes} classes")
    return card


def import_imagenet_stage(name: str, params_file, hub_root: Path, log=print):
    """Import packaged ImageNet expert `name` (from `experts.imagenet`) into the hub."""
    from mll.hub import Hub
    from mll.importers import import_efficientnet_lite

    imagenet = _experts_section(params_file).get("imagenet") or {}
    if name not in imagenet:
        raise KeyError(f"params: no expert {name!r} under experts.imagenet (have: {', '.join(imagenet)})")
    card = import_efficientnet_lite(Hub(Path(hub_root)), imagenet[name], name=name, overwrite=True)
    log(f"{name}: imported {imagenet[name]} ({card.num_classes} ImageNet classes)")
    return card

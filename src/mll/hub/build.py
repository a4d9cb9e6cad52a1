"""Building the demo hub: the `experts` stages (train a demo expert, import a packaged ImageNet one).

Both read their entry of params.yaml's `experts` section, write `models/<name>/`, and log to MLflow.
"""

from __future__ import annotations

from pathlib import Path

from mll.config import load_section


def train_expert_stage(name: str, params_file, manifest: Path, hub_root: Path, log=print):
    """Train demo expert `name` (from `experts.trained`), add it to the hub, track it in MLflow."""
    from mll.data.splits import read_manifest
    from mll.hub.store import Hub
    from mll.hub.training import spec_from_params, train_expert
    from mll.tracking import start_run

    section = load_section("experts", params_file)
    if name not in section.trained:
        raise KeyError(f"params: no expert {name!r} under experts.trained (have: {', '.join(section.trained)})")
    spec = spec_from_params(name, section.trained[name], section.defaults)
    rows = read_manifest(Path(manifest))
    with start_run("experts", name, enabled=section.track) as tracker:
        card = train_expert(spec, rows, Hub(Path(hub_root)), tracker, log=log)
        version = tracker.register_folder(Path(hub_root) / name, f"mll-expert-{name}", "hub")
        if version:
            log(f"{name}: registered as mll-expert-{name} version {version} (alias @hub)")
    log(f"{name}: val accuracy {card.provenance['metrics']['val_accuracy']:.3f} on its {card.num_classes} classes")
    return card


def import_imagenet_stage(name: str, params_file, hub_root: Path, log=print):
    """Import packaged ImageNet expert `name` (from `experts.imagenet`) into the hub."""
    from mll.hub.sources import import_efficientnet_lite
    from mll.hub.store import Hub

    imagenet = load_section("experts", params_file).imagenet
    if name not in imagenet:
        raise KeyError(f"params: no expert {name!r} under experts.imagenet (have: {', '.join(imagenet)})")
    entry = imagenet[name]
    card = import_efficientnet_lite(
        Hub(Path(hub_root)), entry.variant, name=name, overwrite=True, input_size=entry.input_size
    )
    log(f"{name}: imported {entry.variant} at {card.input.size} px ({card.num_classes} ImageNet classes)")
    return card

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
    """Add packaged ImageNet expert `name` (from `experts.imagenet`) to the hub as a head on its
    shared backbone: the whole classifier (a generalist) or, with `subtree`, the rows of the classes
    under it (a derived specialist). Tracked in MLflow like every expert."""
    from mll.hub.head_training import imagenet_card
    from mll.hub.store import Hub
    from mll.tracking import start_run

    section = load_section("experts", params_file)
    if name not in section.imagenet:
        raise KeyError(f"params: no expert {name!r} under experts.imagenet (have: {', '.join(section.imagenet)})")
    entry = section.imagenet[name]
    size = entry.input_size or 224
    with start_run("experts", name, enabled=section.track) as tracker:
        card, state = imagenet_card(name, entry.variant, size, entry.subtree, tuple(entry.tags))
        card = Hub(Path(hub_root)).add(card, state, overwrite=True)
        tracker.log_params({"variant": entry.variant, "input_size": size, "subtree": entry.subtree or ""})
        tracker.log_dict(card.to_dict(), "card.yaml.json")
        tracker.set_tags({"model_name": name, "weights_sha256": card.weights_sha256, "backbone": entry.variant})
        tracker.register_folder(Path(hub_root) / name, f"mll-expert-{name}", "hub")
    log(
        f"{name}: {entry.variant} at {size} px, {card.num_classes} ImageNet classes"
        + (f" under {entry.subtree}" if entry.subtree else "")
    )
    return card


def head_specs(params_file=None) -> dict:
    """Every `experts.heads` entry as a HeadSpec (over `experts.head_defaults`)."""
    from mll.hub.head_training import HeadSpec

    section = load_section("experts", params_file)
    defaults = section.head_defaults.given()
    out = {}
    for name, entry in section.heads.items():
        given = {**defaults, **entry.given()}
        out[name] = HeadSpec(
            name=name,
            datasets=tuple(entry.datasets),
            classes=tuple(str(c) for c in entry.classes),
            domain=entry.domain,
            tags=tuple(entry.tags),
            description=entry.description,
            **given,
        )
    return out


def train_heads_stage(
    names: list[str] | None,
    params_file,
    manifest: Path,
    hub_root: Path,
    sdag_path: Path = Path("data/sdag"),
    log=print,
) -> dict:
    """Train the head experts `names` (default: all of `experts.heads`) in this process, sharing the
    backbones' features of the training images (cached on disk under .cache/features/train)."""
    from tqdm import tqdm

    from mll.data.sdag import SDAG
    from mll.data.splits import read_manifest
    from mll.hub.backbones import FeatureCache
    from mll.hub.head_training import train_head
    from mll.hub.store import Hub
    from mll.paths import cache_dir
    from mll.tracking import start_run

    section = load_section("experts", params_file)
    specs = head_specs(params_file)
    unknown = sorted(set(names or []) - set(specs))
    if unknown:
        raise KeyError(f"params: no head(s) {', '.join(unknown)} under experts.heads (have: {', '.join(specs)})")
    todo = [specs[n] for n in (names or list(specs))]
    todo.sort(key=lambda s: (s.backbone, s.input_size, s.datasets, s.name))  # one backbone's features at a time
    rows = read_manifest(Path(manifest))
    sdag = SDAG.load(Path(sdag_path))
    hub = Hub(Path(hub_root))
    cache = FeatureCache(cache_dir() / "features" / "train")
    cards = {}
    for spec in tqdm(todo, desc="train heads", unit="head"):
        with start_run("experts", spec.name, enabled=section.track) as tracker:
            cards[spec.name] = train_head(spec, rows, hub, cache, sdag, tracker, log=log)
            tracker.register_folder(Path(hub_root) / spec.name, f"mll-expert-{spec.name}", "hub")
    log(f"heads: {len(cards)} trained; backbone features computed for {cache.computed} training views")
    return cards

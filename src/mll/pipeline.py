"""The pipeline's stages as plain functions of (params, paths) -> output paths.

The DVC stages run Prefect flows (`flows/`), the flows call these functions, and so do the CLI and
the tests: one implementation behind every entry point.
"""

from __future__ import annotations

import functools
import threading
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
    entry = imagenet[name] if isinstance(imagenet[name], dict) else {"variant": imagenet[name]}
    unknown = set(entry) - {"variant", "input_size"}
    if unknown or "variant" not in entry:
        raise ValueError(f"params: experts.imagenet.{name} needs `variant` (and optional `input_size`), got {sorted(entry)}")
    card = import_efficientnet_lite(Hub(Path(hub_root)), entry["variant"], name=name, overwrite=True,
                                    input_size=entry.get("input_size"))
    log(f"{name}: imported {entry['variant']} at {card.input.size} px ({card.num_classes} ImageNet classes)")
    return card


# --- labeling ------------------------------------------------------------------------------------
_label_ctx_lock = threading.Lock()
_tracking_lock = threading.Lock()  # MLflow's fluent API keeps one active run per process


@functools.lru_cache(maxsize=4)
def _label_context(probe_path: str, sdag_path: str):
    from mll.labeling import ProbeSet
    from mll.splits import read_manifest

    return ProbeSet(read_manifest(Path(probe_path))), SDAG.load(Path(sdag_path))


def label_one(name: str, params, *, hub_root: Path, probe_path: Path, sdag_path: Path, labels_root: Path,
              force: bool = False, log=print, show_progress: bool = True):
    """Label hub model `name` (skipped when its stored label has the current key); track it in MLflow."""
    from tqdm import tqdm

    from mll.experts import batch_size_for
    from mll.hub import Hub
    from mll.labeling import LabelConfig, label_model
    from mll.validation import check_label_table

    hub = Hub(Path(hub_root))
    card = hub.card(name)
    with _label_ctx_lock:
        probe, sdag = _label_context(str(probe_path), str(sdag_path))
    cfg = LabelConfig(batch_size=batch_size_for(params.device, params.batch_size, params.gpu_batch_size),
                      device=params.device, amp=params.amp, full_max_classes=params.full_max_classes,
                      top_k=params.top_k)
    with tqdm(total=len(probe), desc=f"label {name}", unit="img", disable=not show_progress, leave=False) as bar:
        result = label_model(lambda: hub.load(name, device=params.device, amp=params.amp), card, probe, sdag,
                             Path(labels_root), cfg, force=force,
                             validate=lambda nodes, g: check_label_table(nodes, g.__contains__, name),
                             progress=bar.update)
    if result.status == "labeled":
        s = result.summary
        rate = result.images / max(result.forward_seconds, 1e-9)
        log(f"{name}: labeled {result.images} probe images in {result.seconds:.1f} s "
            f"(forward {result.forward_seconds:.1f} s, {rate:.0f} img/s); covered nodes {s['covered_nodes']}, "
            f"mean recall {s['mean_recall'] or 0:.3f}, false alarm {s['mean_false_alarm'] or 0:.3f} "
            f"(gated {s['mean_gated_false_alarm'] or 0:.3f}), gate AUROC {s['gate_auroc'] or float('nan'):.3f}")
        if params.track:
            with _tracking_lock:
                _log_label_run(card, result, Path(labels_root))
    else:
        log(f"{name}: label up to date (key {result.key[:12]}), skipped")
    return result


def _log_label_run(card, result, labels_root: Path) -> None:
    from mll.tracking import start_run

    s = result.summary
    with start_run("labeling", card.name, tags={"model_name": card.name, "label_key": result.key}) as t:
        t.log_params({"model": card.name, "source": card.source, "architecture": card.architecture,
                      "num_classes": card.num_classes, "input_size": card.input.size,
                      "channels": card.input.channels, "license": card.license,
                      "weights_sha256": card.weights_sha256, "card_sha256": card.content_hash(),
                      "storage": s["storage"], "device": s.get("device")})
        t.log_metrics({k: s[k] for k in ("covered_nodes", "measured_nodes", "mean_recall", "mean_top1_hit",
                                          "mean_false_alarm", "mean_gated_recall", "mean_gated_false_alarm",
                                          "gate_auroc", "temperature", "in_domain_accuracy", "probe_images")
                       if isinstance(s.get(k), (int, float))})
        t.log_metrics({"label_seconds": result.seconds, "forward_seconds": result.forward_seconds,
                       "images_per_second": result.images / max(result.forward_seconds, 1e-9)})
        folder = labels_root / card.name
        t.log_artifact(folder / "nodes.parquet", "label")
        t.log_artifact(folder / "summary.json", "label")


def finish_label_stage(results: list, hub_root: Path, labels_root: Path, summary_path: Path | None, log=print,
                       failed: dict[str, str] | None = None) -> dict:
    """Drop labels of models no longer in the hub; write the hub-level labeling report."""
    import json
    import shutil

    from mll.hub import Hub

    names = set(Hub(Path(hub_root)).names())
    labels_root = Path(labels_root)
    pruned = []
    if labels_root.is_dir():
        for d in labels_root.iterdir():
            if d.is_dir() and not d.name.startswith(".") and d.name not in names:
                shutil.rmtree(d)
                pruned.append(d.name)
    labeled = [r for r in results if r.status == "labeled"]
    fwd = sum(r.forward_seconds for r in labeled)
    tot = sum(r.seconds for r in labeled)
    report = {
        "models": len(results) + len(failed or {}), "labeled": len(labeled), "skipped": len(results) - len(labeled),
        "failed": dict(failed or {}), "pruned": pruned,
        "label_seconds": round(tot, 2), "forward_seconds": round(fwd, 2),
        "overhead_ratio": round(tot / fwd, 3) if fwd else None,
        "per_model": {r.model: {"status": r.status, "seconds": round(r.seconds, 2),
                                "forward_seconds": round(r.forward_seconds, 2), "images": r.images}
                      for r in results},
    }
    if summary_path is not None:
        Path(summary_path).parent.mkdir(parents=True, exist_ok=True)
        Path(summary_path).write_text(json.dumps(report, indent=2) + "\n")
    log(f"labeling: {report['labeled']} labeled, {report['skipped']} up to date, {len(pruned)} pruned; "
        f"wall {tot:.1f} s vs forward {fwd:.1f} s")
    return report


def label_stage(params, *, hub_root: Path, probe_path: Path, sdag_path: Path, labels_root: Path,
                summary_path: Path | None, models: list[str] | None = None, force: bool = False, log=print) -> dict:
    """Label every hub model (or `models`) in this process, one after another, with progress bars."""
    from tqdm import tqdm

    from mll.hub import Hub

    from mll.cards import CardError

    names = models or Hub(Path(hub_root)).names()
    results, failed = [], {}
    for name in tqdm(names, desc="label hub", unit="model"):
        try:
            results.append(label_one(name, params, hub_root=hub_root, probe_path=probe_path, sdag_path=sdag_path,
                                     labels_root=labels_root, force=force, log=log))
        except (CardError, ValueError, OSError, RuntimeError) as exc:  # one bad model must not stop the hub
            failed[name] = " ".join(str(exc).split())
            log(f"{name}: FAILED: {failed[name]}")
    report = finish_label_stage(results, hub_root, labels_root, summary_path if not models else None, log=log,
                                failed=failed)
    if failed:
        raise LabelingFailed(failed)
    return report


class LabelingFailed(RuntimeError):
    """Some models could not be labeled; every other model was."""

    def __init__(self, failed: dict[str, str]):
        self.failed = failed
        super().__init__(f"{len(failed)} model(s) failed to label, the rest are labeled: "
                         + "; ".join(f"{k}: {v}" for k, v in failed.items()))

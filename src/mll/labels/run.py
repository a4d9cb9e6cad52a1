"""Labeling the hub: the `label` stage as functions (one model, the whole hub, the report), the
MLflow run per labeled model, and checking stored labels. The CLI, the `label-hub` flow and the
tests call these."""

from __future__ import annotations

import functools
import threading
from pathlib import Path

from mll.config import LabelParams
from mll.data.sdag import SDAG

# --- labeling ------------------------------------------------------------------------------------
_label_ctx_lock = threading.Lock()


_tracking_lock = threading.Lock()  # MLflow's fluent API keeps one active run per process


@functools.lru_cache(maxsize=4)
def load_sdag(sdag_path: str) -> SDAG:
    """The SDAG at `sdag_path`, read once per process (labeling and the label checks share it)."""
    return SDAG.load(Path(sdag_path))


@functools.lru_cache(maxsize=4)
def label_context(probe_path: str, sdag_path: str):
    """The probe set (decoded once, with its shared backbones' features) and the SDAG, per process."""
    from mll.data.splits import read_manifest
    from mll.labels.compute import ProbeSet

    probe = ProbeSet(read_manifest(Path(probe_path)))
    # the shared backbones' probe features persist: a new head on a known backbone runs only its head
    probe.features = probe_features(str(probe_path))
    return probe, load_sdag(str(sdag_path))


@functools.lru_cache(maxsize=4)
def probe_features(probe_path: str):
    """The on-disk cache of the shared backbones' features of the probe images (keyed by the probe
    manifest's hash), one object per process: labeling fills it, the node_data baseline reads it."""
    from mll.data.splits import read_manifest
    from mll.hub.backbones import FeatureCache
    from mll.labels.compute import ProbeSet
    from mll.paths import cache_dir

    probe = ProbeSet(read_manifest(Path(probe_path)))
    return FeatureCache(cache_dir() / "features" / f"probe-{probe.hash[:16]}")


def labeling_order(hub_root: Path, names: list[str]) -> list[str]:
    """`names` grouped by input config and backbone, so each preprocessing and each backbone's
    features are computed once while they are needed (the probe set keeps two variants at a time)."""
    from mll.hub.cards import CardError
    from mll.hub.store import Hub

    hub = Hub(Path(hub_root))

    def key(n: str) -> tuple[str, str, str]:
        try:
            card = hub.card(n)
        except (CardError, OSError):  # a bad card fails in its own labeling, with its own message
            return ("", "", n)
        return (repr(card.input), card.backbone, n)

    return sorted(names, key=key)


def label_one(
    name: str,
    params: LabelParams,
    *,
    hub_root: Path,
    probe_path: Path,
    sdag_path: Path,
    labels_root: Path,
    force: bool = False,
    log=print,
    show_progress: bool = True,
    validate: bool = True,
    parent_run: str | None = None,
):
    """Label hub model `name` (skipped when its stored label has the current key); track it in MLflow
    (as a child of `parent_run`, the pass's run from `mll.labels.history.labeling_pass`, when given).

    `validate=False` leaves the node table's checks to `validate_labels`, which the label stage runs
    once over every model it labeled (a great_expectations run per model cost more than a head)."""
    from tqdm import tqdm

    from mll.data.validation import check_label_table
    from mll.hub.store import Hub
    from mll.labels.compute import label_model

    hub = Hub(Path(hub_root))
    card = hub.card(name)
    with _label_ctx_lock:
        probe, sdag = label_context(str(probe_path), str(sdag_path))
    with tqdm(total=len(probe), desc=f"label {name}", unit="img", disable=not show_progress, leave=False) as bar:
        result = label_model(
            lambda: hub.load(name, device=params.device, amp=params.amp),
            card,
            probe,
            sdag,
            Path(labels_root),
            params,
            force=force,
            validate=(lambda nodes, g: check_label_table(nodes, g.__contains__, name)) if validate else None,
            progress=bar.update,
        )
    if result.status == "labeled":
        s = result.summary
        rate = result.images / max(result.forward_seconds, 1e-9)
        log(
            f"{name}: labeled {result.images} probe images in {result.seconds:.1f} s "
            f"(forward {result.forward_seconds:.1f} s, {rate:.0f} img/s); covered nodes {s['covered_nodes']}, "
            f"mean recall {s['mean_recall'] or 0:.3f}, false alarm {s['mean_false_alarm'] or 0:.3f} "
            f"(gated {s['mean_gated_false_alarm'] or 0:.3f}), gate AUROC {s['gate_auroc'] or float('nan'):.3f}"
        )
        if params.track:
            with _tracking_lock:
                _log_label_run(card, result, Path(labels_root), parent_run)
    else:
        log(f"{name}: label up to date (key {result.key[:12]}), skipped")
    return result


def _log_label_run(card, result, labels_root: Path, parent_run: str | None = None) -> None:
    from mll.tracking import start_run

    s = result.summary
    tags = {"model_name": card.name, "label_key": result.key}
    with start_run("labeling", card.name, tags=tags, parent=parent_run) as t:
        t.log_params(
            {
                "model": card.name,
                "source": card.source,
                "architecture": card.architecture,
                "num_classes": card.num_classes,
                "input_size": card.input.size,
                "channels": card.input.channels,
                "license": card.license,
                "weights_sha256": card.weights_sha256,
                "card_sha256": card.content_hash(),
                "storage": s["storage"],
                "device": s.get("device"),
            }
        )
        t.log_metrics(
            {
                k: s[k]
                for k in (
                    "covered_nodes",
                    "measured_nodes",
                    "mean_recall",
                    "mean_top1_hit",
                    "mean_false_alarm",
                    "mean_gated_recall",
                    "mean_gated_false_alarm",
                    "gate_auroc",
                    "temperature",
                    "in_domain_accuracy",
                    "probe_images",
                )
                if isinstance(s.get(k), (int, float))
            }
        )
        t.log_metrics(
            {
                "label_seconds": result.seconds,
                "forward_seconds": result.forward_seconds,
                "images_per_second": result.images / max(result.forward_seconds, 1e-9),
            }
        )
        folder = labels_root / card.name
        t.log_artifact(folder / "nodes.parquet", "label")
        t.log_artifact(folder / "summary.json", "label")


def validate_labels(results: list, labels_root: Path, sdag_path: Path, log=print) -> dict[str, str]:
    """Check the node tables of the models just labeled, in one great_expectations run; a model whose
    table fails loses its label (the next run labels it again) and is returned as {model: reason}."""
    import shutil

    import pandas as pd

    from mll.data.validation import check_label_tables
    from mll.labels.store import NODES

    labeled = [r.model for r in results if r.status == "labeled"]
    tables = {m: pd.read_parquet(Path(labels_root) / m / NODES) for m in labeled}
    sdag = load_sdag(str(sdag_path))
    bad = check_label_tables(tables, sdag.__contains__)
    for m, why in bad.items():
        shutil.rmtree(Path(labels_root) / m, ignore_errors=True)
        log(f"{m}: label refused by its checks and removed: {why}")
    if tables and not bad:
        log(f"label checks: {len(tables)} node table(s) valid")
    return bad


# the label figures per model in the stage's metrics file (`dvc metrics diff` compares them)
SUMMARY_METRICS = ("probe_images", "covered_nodes", "measured_nodes", "mean_recall", "mean_top1_hit", "gate_auroc")


def stable_summary(results: list, failed: dict[str, str] | None = None) -> dict:
    """The label stage's metrics file: what the labels are, nothing about the run that made them.

    Each model's label key and figures depend only on the card, the probe set and the label
    settings (and floating point), so a rerun that labels nothing, or the same labels computed
    again, writes the same bytes. Statuses (labeled/skipped/pruned) and timings are the run's: they
    go to `run_log_path` and MLflow."""
    return {
        "models": len(results) + len(failed or {}),
        "failed": dict(sorted((failed or {}).items())),
        "per_model": {
            r.model: {"key": r.key, **{k: (r.summary or {}).get(k) for k in SUMMARY_METRICS}}
            for r in sorted(results, key=lambda r: r.model)
        },
    }


def run_log_path(summary_path: Path) -> Path:
    """Where the label stage logs one run (statuses, timings) beside its metrics file."""
    return Path(summary_path).with_suffix(".run.json")


def finish_label_stage(
    results: list,
    hub_root: Path,
    labels_root: Path,
    summary_path: Path | None,
    log=print,
    failed: dict[str, str] | None = None,
) -> dict:
    """Drop labels of models no longer in the hub; bring the label index up to date (see
    `mll.labels.index.refresh_index`); write the hub-level labeling report."""
    import json
    import shutil

    from mll.hub.store import Hub
    from mll.labels.index_file import refresh_index

    names = set(Hub(Path(hub_root)).names())
    labels_root = Path(labels_root)
    pruned = []
    if labels_root.is_dir():
        for d in labels_root.iterdir():
            if d.is_dir() and not d.name.startswith(".") and d.name not in names:
                shutil.rmtree(d)
                pruned.append(d.name)
    try:
        if refresh_index(labels_root):
            log(f"label index: {labels_root / '.index'} written")
    except (OSError, ValueError) as exc:  # the labels are whole; only the fast path is missing
        log(
            f"label index not written ({' '.join(str(exc).split())}); selection reads every label's node "
            "table until `mll label` writes it"
        )
    labeled = [r for r in results if r.status == "labeled"]
    fwd = sum(r.forward_seconds for r in labeled)
    tot = sum(r.seconds for r in labeled)
    report = {
        "models": len(results) + len(failed or {}),
        "labeled": len(labeled),
        "skipped": len(results) - len(labeled),
        "failed": dict(failed or {}),
        "pruned": pruned,
        "label_seconds": round(tot, 2),
        "forward_seconds": round(fwd, 2),
        "overhead_ratio": round(tot / fwd, 3) if fwd else None,
        "per_model": {
            r.model: {
                "status": r.status,
                "seconds": round(r.seconds, 2),
                "forward_seconds": round(r.forward_seconds, 2),
                "images": r.images,
            }
            for r in results
        },
    }
    if summary_path is not None:
        summary_path = Path(summary_path)
        summary_path.parent.mkdir(parents=True, exist_ok=True)
        summary_path.write_text(json.dumps(stable_summary(results, failed), indent=2) + "\n")
        # what this run did and how long it took: a run log beside it (git-ignored, not a DVC output)
        run_log_path(summary_path).write_text(json.dumps(report, indent=2) + "\n")
        if labeled or failed:  # the label checks of this run as GX Data Docs (git-ignored)
            from mll.data.validation import build_data_docs

            if docs := build_data_docs(summary_path.parent / "data_docs" / "labels"):
                log(f"label checks: {docs}")
    log(
        f"labeling: {report['labeled']} labeled, {report['skipped']} up to date, {len(pruned)} pruned; "
        f"wall {tot:.1f} s vs forward {fwd:.1f} s"
    )
    return report


def label_stage(
    params: LabelParams,
    *,
    hub_root: Path,
    probe_path: Path,
    sdag_path: Path,
    labels_root: Path,
    summary_path: Path | None,
    models: list[str] | None = None,
    force: bool = False,
    log=print,
) -> dict:
    """Label every hub model (or `models`) in this process, one after another, with progress bars."""
    from tqdm import tqdm

    from mll.hub.cards import CardError
    from mll.hub.store import Hub
    from mll.labels.history import label_rows, labeling_pass, log_labeling_pass

    names = labeling_order(Path(hub_root), models or Hub(Path(hub_root)).names())
    results, failed = [], {}
    with labeling_pass(params, probe_path, names, force, entry="cli") as run:  # the pass's MLflow parent run
        for name in tqdm(names, desc="label hub", unit="model"):
            try:
                results.append(
                    label_one(
                        name,
                        params,
                        hub_root=hub_root,
                        probe_path=probe_path,
                        sdag_path=sdag_path,
                        labels_root=labels_root,
                        force=force,
                        log=log,
                        validate=False,  # all node tables are checked at once below
                        parent_run=run.run_id,
                    )
                )
            except (CardError, ValueError, OSError, RuntimeError) as exc:  # one bad model must not stop the hub
                failed[name] = " ".join(str(exc).split())
                log(f"{name}: FAILED: {failed[name]}")
        refused = validate_labels(results, Path(labels_root), Path(sdag_path), log=log)
        failed.update(refused)
        results = [r for r in results if r.model not in refused]
        report = finish_label_stage(
            results, hub_root, labels_root, summary_path if not models else None, log=log, failed=failed
        )
        log_labeling_pass(run, report, label_rows(results, failed))
    if failed:
        raise LabelingFailed(failed)
    return report


class LabelingFailed(RuntimeError):
    """Some models could not be labeled; every other model was."""

    def __init__(self, failed: dict[str, str]):
        self.failed = failed
        super().__init__(
            f"{len(failed)} model(s) failed to label, the rest are labeled: "
            + "; ".join(f"{k}: {v}" for k, v in failed.items())
        )


def check_labels(hub_root: Path, labels_root: Path, sdag_path: Path, models: list[str] | None = None) -> int:
    """Validate the stored labels of the hub (or `models`) with great_expectations; returns how many.

    Raises FileNotFoundError naming the models without a label, or the suite's ValidationError."""
    import pandas as pd

    from mll.data.validation import check_label_table
    from mll.hub.store import Hub
    from mll.labels.store import NODES, read_summary

    sdag = SDAG.load(Path(sdag_path))
    names = models or Hub(Path(hub_root)).names()
    missing = [n for n in names if read_summary(Path(labels_root), n) is None]
    if missing:
        raise FileNotFoundError(f"no label for {', '.join(missing)}; run `mll label`")
    for n in names:
        check_label_table(pd.read_parquet(Path(labels_root) / n / NODES), sdag.__contains__, n)
    return len(names)


def label_overview(labels_root: Path, model: str, top: int = 3) -> dict | None:
    """What `mll hub show` prints of a label: its summary and the best and worst measured concepts
    (nodes with at least 3 probe images, below the model's widest node). None when unlabeled."""
    import pandas as pd

    from mll.labels.store import NODES, read_summary

    summary = read_summary(Path(labels_root), model)
    if summary is None:
        return None
    nodes = pd.read_parquet(Path(labels_root) / model / NODES)
    heads = nodes[nodes.measured & (nodes.support >= 3) & (nodes.head_classes < nodes.head_classes.max())]
    if heads.empty:
        heads = nodes[nodes.measured & (nodes.support >= 3)]
    ranked = heads.sort_values(["top1_hit", "support"], ascending=[False, False])

    def rows(part: pd.DataFrame) -> list[dict]:
        return [
            {"concept": r.name.split(".")[0], "top1_hit": float(r.top1_hit), "support": int(r.support)}
            for r in part.itertuples()
        ]

    return {"summary": summary, "best": rows(ranked.head(top)), "worst": rows(ranked.tail(top).iloc[::-1])}

"""Folds of the evaluation protocol: a task solved as if some domains had never been seen.

A task's `fold: {remove_domains: [clothing]}` (params.yaml `benchmark.tasks`) takes out every hub
model whose card is in one of those domains **and** every probe (node) image of them. Nothing
derived from the removed images may reach the solver, so the fold's models are labeled again on the
probe images the fold keeps (`fold_labels`): gates, temperatures, per-node recall and false alarm,
the stored outputs the combiner is fitted on (top-k rest mass and log-sum-exp included), the label
index's prune scores and with them the choice of a generalist all come from the kept images only.
This is the label stage run on a smaller probe manifest, bit for bit (tested), and it is cheap: the
shared backbones' probe features are cached per image, so a fold runs heads, not backbones.

Fold labels live under `.cache/folds/<fold>/labels` (keyed like any label, so a fold is relabeled
only when a model, the probe set or the label settings change).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mll.config import LabelParams, SolveParams


@dataclass(frozen=True)
class Fold:
    """Domains taken out of the hub and out of the node data; optionally, the node data thinned to
    at most `per_synset` probe images per synset (the node-data budget study)."""

    remove_domains: tuple[str, ...]
    per_synset: int | None = None

    @classmethod
    def from_entry(cls, task: str, entry: dict | None) -> Fold | None:
        """The fold of a task entry's `fold:` (None when it has none); a clear error when malformed."""
        if not entry:
            return None
        domains = entry.get("remove_domains") if isinstance(entry, dict) else None
        if isinstance(domains, str):
            domains = [domains]
        if not domains or not all(isinstance(d, str) and d for d in domains) or set(entry) - {"remove_domains"}:
            raise ValueError(f"benchmark task {task}: fold must be {{remove_domains: [domain, ...]}}, got {entry!r}")
        return cls(tuple(sorted(set(domains))))

    @property
    def key(self) -> str:
        parts = (["minus", *self.remove_domains] if self.remove_domains else []) + (
            [f"probe{self.per_synset}"] if self.per_synset is not None else []
        )
        return "-".join(parts) or "whole"

    def keeps(self, domain: str | None) -> bool:
        return (domain or "") not in self.remove_domains

    def probe_rows(self, probe: pd.DataFrame) -> pd.DataFrame:
        """The probe rows the fold keeps (the manifest's `domain` column decides); with `per_synset`,
        the first n of each synset's rows in a seeded shuffle, so a smaller budget's images are a
        subset of a larger one's."""
        if "domain" not in probe:
            raise ValueError("the probe manifest has no 'domain' column; rebuild the splits (dvc repro data)")
        kept = probe[~probe["domain"].isin(self.remove_domains)]
        if self.per_synset is not None:
            if self.per_synset < 1:
                raise ValueError(f"a node-data budget needs at least 1 image per synset, got {self.per_synset}")
            order = np.random.default_rng(0).permutation(len(kept))
            shuffled = kept.iloc[order]
            rank = shuffled.groupby("synset", sort=False).cumcount()
            kept = shuffled[rank.to_numpy() < self.per_synset].sort_index()
        return kept.reset_index(drop=True)


def fold_models(fold: Fold, hub_root: Path, names: list[str]) -> list[str]:
    """The models of `names` the fold keeps (its card's domain is not removed)."""
    from mll.hub.store import Hub

    hub = Hub(Path(hub_root))
    return [n for n in names if fold.keeps(hub.card(n).domain)]


def fold_labels(
    fold: Fold,
    models: list[str],
    *,
    hub_root: Path,
    probe_path: Path,
    sdag_path: Path,
    out_root: Path,
    params: LabelParams,
    log=print,
) -> Path:
    """Label the fold's models on the probe images it keeps, into `out_root/<fold.key>/labels`;
    returns that folder. Labels already there with the current key are kept."""
    from mll.data.splits import read_manifest
    from mll.hub.backbones import FeatureCache
    from mll.hub.store import Hub
    from mll.labels.compute import ProbeSet, label_model
    from mll.labels.index_file import refresh_index
    from mll.labels.run import labeling_order, load_sdag
    from mll.paths import cache_dir

    full = read_manifest(Path(probe_path))
    kept = fold.probe_rows(full)
    # the full probe set's feature cache: keyed per image, so the kept images' features are read
    features = FeatureCache(cache_dir() / "features" / f"probe-{ProbeSet(full, log=log).hash[:16]}")
    probe = ProbeSet(kept, log=log, features=features)
    sdag = load_sdag(str(sdag_path))
    root = Path(out_root) / fold.key / "labels"
    root.mkdir(parents=True, exist_ok=True)
    hub = Hub(Path(hub_root))
    wanted = set(models)
    for stale in [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in wanted]:
        shutil.rmtree(stale, ignore_errors=True)  # a model the fold no longer keeps (or the hub dropped)
    done = 0
    for name in labeling_order(hub.root, models):
        r = label_model(
            lambda name=name: hub.load(name, device=params.device, amp=params.amp),
            hub.card(name),
            probe,
            sdag,
            root,
            params,
        )
        done += r.status == "labeled"
    refresh_index(root)
    log(
        f"fold {fold.key}: {len(models)} models on {len(kept)} of {len(full)} probe images "
        f"({done} labeled, {len(models) - done} up to date)"
    )
    return root


def fold_context(
    fold: Fold, ctx, *, hub_root: Path, probe_path: Path, sdag_path: Path, out_root: Path, params, log=print
):
    """A solve context for `fold`: the kept models, with their fold labels (see `fold_labels`)."""
    from mll.solve.task import Context

    models = fold_models(fold, hub_root, list(ctx.index.models))
    if not models:
        raise ValueError(f"fold {fold.key} removes every hub model; keep at least one domain")
    labels = fold_labels(
        fold,
        models,
        hub_root=hub_root,
        probe_path=probe_path,
        sdag_path=sdag_path,
        out_root=out_root,
        params=params,
        log=log,
    )
    cfg: SolveParams = ctx.cfg
    return Context.load(Path(sdag_path), Path(hub_root), labels, cfg, models=models)

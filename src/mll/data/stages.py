"""The data stages as plain functions of (params, paths) -> output paths: `data` (split manifests)
and `sdag` (the Semantic DAG). The flows, the CLI and the tests call these."""

from __future__ import annotations

import time
from pathlib import Path

from mll.config import DataParams, SdagParams
from mll.data.datasets import load_dataset
from mll.data.sdag import SDAG, build_sdag


def data_stage(params: DataParams, out_dir: Path, summary_path: Path, log=print) -> dict[str, Path]:
    """Load every configured dataset, split it, validate the manifests, write them and the summary."""
    from mll.data.splits import make_splits, write_manifests, write_summary
    from mll.data.validation import check_manifests
    from mll.data.wordnet import synset_from_wnid

    names = list(params.datasets) + (["tuxpaint"] if params.tuxpaint_probe_fraction > 0 else [])
    sets = {}
    for name in names:
        t0 = time.perf_counter()
        sets[name] = load_dataset(name)
        log(
            f"loaded {name}: {len(sets[name])} images, {len(sets[name].class_names)} classes "
            f"({time.perf_counter() - t0:.1f} s)"
        )
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
    t0 = time.perf_counter()
    g = build_sdag(None if params.scope == "all" else vocabulary)
    seconds = time.perf_counter() - t0
    g.save(out_dir)
    log(f"SDAG: {len(g)} nodes, {g.graph.number_of_edges()} edges, built in {seconds:.1f} s -> {out_dir}")
    return g

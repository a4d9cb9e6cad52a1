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

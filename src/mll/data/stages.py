"""The data stages as plain functions of (params, paths) -> output paths: `data` (split manifests)
and `sdag` (the Semantic DAG). The flows, the CLI and the tests call these."""

from __future__ import annotations

import time
from pathlib import Path

from mll.config import DataParams, SdagParams
from mll.data.datasets import load_dataset
from mll.data.sdag import SDAG, build_sdag


def check_clipart_fetched(params: DataParams, root: Path | None = None) -> None:
    """DatasetMissingError (one line, naming `make clipart`) when a style `data.clipart` names has
    not been fetched; checked before any dataset is loaded, so a fresh machine fails fast."""
    from mll.data.clipart import check_assignment, default_root
    from mll.data.datasets import DatasetMissingError

    root = Path(root or default_root())
    missing = [s for s in check_assignment(params.clipart) if not (root / s / "emoji.json").is_file()]
    if missing:
        raise DatasetMissingError(
            f"emoji artwork for style(s) {', '.join(missing)} not found under {root}; fetch it with `make clipart`"
        )


def data_stage(params: DataParams, out_dir: Path, summary_path: Path, log=print) -> dict[str, Path]:
    """Load every configured dataset (and the clipart styles `data.clipart` names), split them with
    their corrupted variants, validate the manifests, write them and the summary."""
    from mll.data.clipart import check_assignment, load_clipart
    from mll.data.splits import make_splits, write_manifests, write_summary
    from mll.data.validation import build_data_docs, check_manifests
    from mll.data.wordnet import synset_from_wnid

    check_clipart_fetched(params)
    names = list(params.datasets) + (["tuxpaint"] if params.tuxpaint_probe_fraction > 0 else [])
    sets = {}
    for name in names:
        t0 = time.perf_counter()
        sets[name] = load_dataset(name)
        log(
            f"loaded {name}: {len(sets[name])} images, {len(sets[name].class_names)} classes "
            f"({time.perf_counter() - t0:.1f} s)"
        )
    clipart = None
    if params.clipart:
        clipart = load_clipart(styles=tuple(check_assignment(params.clipart)))
        log(f"loaded clipart: {len(clipart.images)} images, {len(clipart.images.class_names)} classes")
    frame = make_splits(params, sets, clipart)

    def synset_ok(s: str) -> bool:
        try:
            synset_from_wnid(s)
            return True
        except ValueError:
            return False

    sizes = [*params.datasets.values(), *([params.corrupted] if params.corruptions and params.corrupted else [])]
    biggest = max((max(s.expert_train, s.probe, s.target_test) for s in sizes), default=None)
    try:
        check_manifests(frame, synset_ok, params.min_per_class, biggest)
    finally:  # browsable whether the checks pass or fail (git-ignored: the pages carry run times)
        if docs := build_data_docs(Path(summary_path).parent / "data_docs" / "manifests"):
            log(f"manifest checks: {docs}")
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

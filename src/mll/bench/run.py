"""Running the `mll-offline` benchmark: the grid of cells, the growth curve, oracle experts, MLflow.

One cell per (task, method[, seed]): tasks come from `mll.bench.tasks` (the user-name tasks get
`benchmark.user_name_methods` only), and what a method does (and
the table of methods) from the registry in `mll.bench.methods`, which `run_cell` dispatches through
and `load_params` checks params.yaml against. The growth curve solves every task over random
sub-hubs of each size (several seeds). `flows/evaluate.py` runs these as Prefect tasks and writes
the cells document that `mll.bench.report` summarises.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from mll.bench.methods import CellRun, did_you_mean, get_method, list_methods
from mll.bench.tasks import BenchTask, build_tasks, build_test_tasks, load_user_names
from mll.config import BenchmarkParams, load_section
from mll.solve.outputs import OutputCache
from mll.solve.task import Context


# --- the grid ---------------------------------------------------------------------------------------
def _check_methods(name: str, keys: tuple[str, ...], allowed: list[str], why: str = "") -> None:
    known = list_methods()
    unknown = sorted(set(keys) - set(known))
    if unknown:
        raise ValueError(f"params: {name} has unknown {unknown}{did_you_mean(unknown)}; known: {', '.join(known)}")
    barred = [k for k in dict.fromkeys(keys) if k not in allowed]
    if barred:
        raise ValueError(f"params: {name} cannot have {barred} ({why}); allowed: {', '.join(allowed)}")


def load_params(params_file: Path | str = "params.yaml") -> BenchmarkParams:
    """params.yaml's `benchmark` section, its method keys checked against the registry."""
    bp = load_section("benchmark", Path(params_file))
    _check_methods("benchmark.methods", bp.methods, list_methods())
    _check_methods(
        "benchmark.growth_methods",
        bp.growth_methods,
        list_methods(growth=True),
        "they do not depend on the hub, so a sub-hub cannot change them",
    )
    _check_methods("benchmark.user_name_methods", bp.user_name_methods, list_methods())
    _check_methods(
        "benchmark.budget_methods",
        bp.budget_methods,
        [m for m in list_methods(reference=False) if m not in list_methods(seeded=True)],
        "the budget study compares zero-shot methods, one run each",
    )
    if any(n < 1 for n in bp.node_budget):
        raise ValueError(f"params: benchmark.node_budget needs sizes >= 1 (images per synset), got {bp.node_budget}")
    from mll.bench.studies import SWEEPABLE

    if bad := sorted(set(bp.sweep) - set(SWEEPABLE)):
        raise ValueError(f"params: benchmark.sweep cannot vary {bad}; choose from {', '.join(SWEEPABLE)}")
    if not bp.tasks:
        raise ValueError("params: benchmark.tasks is empty; add at least one task")
    return bp


def grid(tasks: list[str | BenchTask], bp: BenchmarkParams) -> list[tuple[str, str, int | None]]:
    """(task, method, seed) of every cell: one per task and method, one per seed for a seeded method;
    a user-name task (a BenchTask with a base) gets `benchmark.user_name_methods`."""
    cells = []
    for t in tasks:
        name = t if isinstance(t, str) else t.name
        methods = bp.user_name_methods if getattr(t, "base", None) else bp.methods
        cells += [(name, m, s) for m in methods for s in (range(bp.random_seeds) if get_method(m).seeded else [None])]
    return cells


def new_cell(task: BenchTask, method: str, seed: int | None = None) -> dict:
    """An empty cell of (task, method[, seed]) for a method to fill."""
    return {
        "task": task.name,
        "method": method,
        "seed": seed,
        "status": "ok",
        "reason": "",
        "accuracy": None,
        "models": [],
        "answered_by": {},
        "per_class": {},
        "seconds": 0.0,
        "detail": "",
    }


def run_cell(
    ctx: Context,
    task: BenchTask,
    method: str,
    cache: OutputCache,
    seed: int | None = None,
    oracle_hub: Path | None = None,
    restrict: list[str] | None = None,
    probe: Path | None = None,
) -> dict:
    """One (task, method[, seed]) cell of the benchmark grid; `restrict` solves over a sub-hub.

    A class name the matcher cannot resolve fails the cell (status `failed`, the matcher's message
    as the reason), not the grid."""
    from mll.solve.matching import MatchError

    t0 = time.perf_counter()
    fn = get_method(method).fn
    cell = new_cell(task, method, seed)
    try:
        fn(CellRun(ctx, task, cache, cell, seed=seed, restrict=restrict, oracle_hub=oracle_hub, probe=probe))
    except MatchError as exc:
        cell.update(status="failed", reason=f"matching: {exc}", accuracy=None)
    cell["seconds"] = round(time.perf_counter() - t0, 3)
    return cell


# --- the growth curve ---------------------------------------------------------------------------------
def base_tasks(tasks: dict[str, BenchTask]) -> list[BenchTask]:
    """The tasks solved over the whole hub that are not user-name variants of another (the growth
    curve runs over these: a fold task's hub is already a sub-hub)."""
    return [t for t in tasks.values() if not t.base and t.fold is None]


def sub_hubs(models: list[str], sizes: tuple[int, ...], seeds: int, seed: int = 0) -> list[tuple[int, int, list[str]]]:
    """(size, order, models): `seeds` random orders of the hub, each cut at every size, so the
    sub-hubs of one order are nested (each adds models to the one before, as a growing hub does).
    A size that admits one subset only (the full hub) is kept once."""
    out, full_seen = [], False
    for s in range(seeds):
        order = [str(m) for m in np.random.default_rng([seed, s]).permutation(sorted(models))]
        for size in sorted(set(min(z, len(models)) for z in sizes)):
            if size == len(models):
                if full_seen:
                    continue
                full_seen = True
            out.append((size, s, sorted(order[:size])))
    return out


def growth_cell(
    ctx: Context,
    tasks: list[BenchTask],
    size: int,
    seed: int,
    models: list[str],
    methods: tuple[str, ...],
    cache: OutputCache,
) -> list[dict]:
    """Every task solved over one sub-hub by each growth method, with the sub-hub's coverage of the
    task (the fraction of its classes some head covers) and its independent experts counted apart."""
    from mll.hub.listing import FLAG_TAGS, has_tag
    from mll.solve.task import covering_models

    sub = ctx.index.subset(models)
    independent = sum(not any(has_tag(ctx.cards[m], t) for t in FLAG_TAGS) for m in models)
    rows = []
    for t in tasks:
        coverage = None
        for m in methods:
            c = run_cell(ctx, t, m, cache, seed=seed, restrict=models)
            if coverage is None and c.get("matched"):
                synsets = list(c["matched"].values())
                coverage = round(sum(bool(covering_models(sub, s)) for s in synsets) / len(synsets), 4)
            rows.append(
                {
                    "size": size,
                    "seed": seed,
                    "models": models,
                    "independent": independent,
                    "task": t.name,
                    "method": m,
                    "accuracy": c["accuracy"],
                }
            )
        for r in rows[-len(methods) :]:
            r["coverage"] = coverage
    return rows


def log_cell(cell: dict, task: BenchTask, enabled: bool = True, parent: str | None = None) -> None:
    """One MLflow run per (task, method[, seed]) in experiment `benchmark`, a child of `parent` (the
    benchmark run): accuracy and per-class accuracy as metrics, the selection as a table, the task's
    images as a dataset input."""
    from mll.tracking import start_run, write_json_artifact
    from mll.tracking_tables import per_class_metrics, selection_rows

    name = f"{cell['task']}/{cell['method']}" + (f"/seed{cell['seed']}" if cell["seed"] is not None else "")
    with start_run(
        "benchmark",
        name,
        enabled=enabled,
        tags={"task": cell["task"], "method": cell["method"], "status": cell["status"]},
        parent=parent,
    ) as tr:
        tr.log_params(
            {
                "task": cell["task"],
                "method": cell["method"],
                "seed": cell["seed"],
                "n_classes": len(task.classes),
                "n_images": len(task.uris),
                "models": ",".join(cell["models"]),
                "detail": cell["detail"][:500],
                "reason": cell["reason"],
            }
        )
        if cell["accuracy"] is not None:
            tr.log_metrics({"accuracy": cell["accuracy"], "n_models": len(cell["models"]), "seconds": cell["seconds"]})
            tr.log_metrics(per_class_metrics(cell["per_class"]))
        if cell.get("estimated_accuracy") is not None:
            tr.log_metrics({"estimated_accuracy": cell["estimated_accuracy"]})
        write_json_artifact(
            tr,
            {"answered_by": cell["answered_by"], "per_class": cell["per_class"], "support": task.support},
            "selection_raw.json",
        )
        tr.log_table(
            selection_rows(None, cell["per_class"], cell["answered_by"], cell.get("matched_names"), cell.get("modes")),
            "selection.json",
        )
        if tr.run_id is not None:
            import pandas as pd

            frame = pd.DataFrame({"image": task.uris, "label": [task.classes[int(y)] for y in task.y]})
            tr.log_dataset(frame, task.name, f"mll-offline:{task.name}", "task")


# --- wiring helpers for the flow -----------------------------------------------------------------------
def load_state(
    params_file: str,
    hub: str,
    labels: str,
    sdag: str,
    manifest: str,
    oracles: str,
    cache_dir: str | None = ".cache/outputs",
    probe: str = "data/splits/probe.parquet",
    split: str = "dev",
) -> dict:
    """Everything a benchmark cell needs, loaded once: params, solve context, tasks, output cache
    (fold contexts are added by `task_context` when a task first needs one). `split: test` builds
    the tasks on the final-test manifest (`mll.bench.tasks.build_test_tasks`)."""
    import tempfile
    import threading

    from mll.data.splits import read_manifest

    bp = load_params(params_file)
    ctx = Context.load(Path(sdag), Path(hub), Path(labels), load_section("solve", params_file))
    names = load_user_names(Path(params_file).parent / bp.user_names) if bp.user_names else None
    frame = read_manifest(Path(manifest))
    missing: dict[str, str] = {}
    if split == "test":
        tasks, missing = build_test_tasks(bp.tasks, frame, ctx.sdag, bp, set(bp.oracles), names)
    else:
        tasks = build_tasks(bp.tasks, frame, ctx.sdag, bp, set(bp.oracles), names)
    return {
        "split": split,
        "missing_tasks": missing,
        "params": bp,
        "ctx": ctx,
        "tasks": {t.name: t for t in tasks},
        "cache": OutputCache(Path(cache_dir) if cache_dir else None),
        "paths": {
            "params_file": params_file,
            "hub": hub,
            "sdag": sdag,
            "probe": probe,
            # fold labels next to the output cache (a throwaway folder without one)
            "folds": str(Path(cache_dir).with_name("folds")) if cache_dir else tempfile.mkdtemp(prefix="mll-folds-"),
        },
        "folds": {},
        "fold_lock": threading.Lock(),
    }


def task_context(state: dict, task: BenchTask, log=print) -> Context:
    """The context `task` is solved in: the hub's, or its fold's (labeled once per fold and process;
    see `mll.bench.folds`)."""

    if task.fold is None:
        return state["ctx"]
    return state_fold_context(state, task.fold, log)


def state_fold_context(state: dict, fold, log=print) -> Context:
    """The solve context of `fold` (`mll.bench.folds.Fold`), labeled once per fold and process and
    kept in `state` (leave-one-domain-out tasks and the node-data budget share this)."""
    from mll.bench.folds import fold_context
    from mll.config import LabelParams

    with state["fold_lock"]:
        if fold.key not in state["folds"]:
            paths = state["paths"]
            lp = load_section("label", paths["params_file"])
            state["folds"][fold.key] = fold_context(
                fold,
                state["ctx"],
                hub_root=Path(paths["hub"]),
                probe_path=Path(paths["probe"]),
                sdag_path=Path(paths["sdag"]),
                out_root=Path(paths["folds"]),
                params=LabelParams(**{**lp.__dict__, "track": False}),
                log=log,
            )
        return state["folds"][fold.key]


def cells_document(state: dict, cells: list[dict], growth: list[dict], seconds: float) -> dict:
    """The raw benchmark results that `mll.bench.report` summarises."""
    from mll.hub.listing import composition

    ctx = state["ctx"]
    return {
        "split": state.get("split", "dev"),
        **({"release": release_info(state["paths"]["params_file"])} if state.get("split") == "test" else {}),
        "missing_tasks": state.get("missing_tasks", {}),
        "hub": ctx.index.models,
        "hub_composition": composition([ctx.cards[m] for m in ctx.index.models]),
        "tasks": {n: t.describe() for n, t in state["tasks"].items()},
        "cells": cells,
        "growth": growth,
        "seconds": round(seconds, 1),
    }


def write_predictions(doc: dict, tasks: dict[str, BenchTask], path: Path) -> int:
    """Move every cell's per-image predictions out of the cells document into one parquet table
    (task, family, split, method, seed, image, label, prediction, hit); returns its row count."""
    import pandas as pd

    frames = []
    for c in doc["cells"]:
        pred = c.pop("predictions", None)
        t = tasks.get(c["task"])
        if pred is None or t is None or len(pred) != len(t.uris):
            continue
        pred = np.asarray(pred, dtype=np.int64)
        names = np.asarray([*t.classes, ""], dtype=object)  # -1 (no head answered) -> ""
        frames.append(
            pd.DataFrame(
                {
                    "task": c["task"],
                    "family": t.family,
                    "split": t.split,
                    "method": c["method"],
                    "seed": pd.array([c["seed"]] * len(pred), dtype="Int64"),
                    "image": t.uris,
                    "label": t.y.astype(np.int64),
                    "label_name": names[t.y],
                    "prediction": pred,
                    "prediction_name": names[pred],
                    "hit": pred == t.y,
                }
            )
        )
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    table.to_parquet(tmp, index=False)
    tmp.replace(path)
    return len(table)


def release_info(params_file: str) -> dict:
    """What a final-test run was made with: the sha256 of params.yaml and the git commit (with
    `-dirty` when tracked files had changes), so a release names its frozen settings."""
    import hashlib
    import subprocess

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, check=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "HEAD") or "unknown"
    if commit != "unknown" and git("status", "--porcelain", "--untracked-files=no"):
        commit += "-dirty"
    return {"params_sha256": hashlib.sha256(Path(params_file).read_bytes()).hexdigest(), "commit": commit}


def write_json(doc: dict, path: Path) -> None:
    """Write `doc` through a temporary file, so a reader never sees half a document."""
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=float) + "\n")
    tmp.replace(path)

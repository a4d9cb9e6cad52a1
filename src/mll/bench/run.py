"""The `mll-offline` benchmark: target tasks built from `target_test`, MLL against its baselines.

A task is data (params.yaml `benchmark.tasks`): class names, each with the images that belong to it
given as dataset class names (`fashion_mnist: [Sandal, Sneaker]`) or WordNet subtrees
(`tuxpaint: [bird.n.01]`). Only `target_test` images are used: never expert training or probe
(node) data. Every method is a different way to choose the heads (or no heads), then the same
`mll.solve.evaluate` path that `mll eval` uses scores it:

| method   | heads per class                                        | combination                 |
|----------|--------------------------------------------------------|-----------------------------|
| mll      | CHCO, node data weighted towards the task's images  | calibrated, gated stacking  |
| ungated  | CHCO (same choice)                                     | plain mean of P_m(t_k|x)    |
| static   | CHCO on unweighted node data (no adaptation to the task's images) | calibrated, gated |
| top1     | the single best head by label statistics (no CHCO)    | calibrated, gated stacking  |
| uniform  | every covering head                                    | plain mean of P_m(t_k|x)    |
| random   | every covering head of r random covering models, r = MLL's model count (several seeds) | calibrated, gated |
| single   | one model alone; the best on the test labels (hindsight, so an upper bound for one model) | calibrated, gated |
| oracle   | an expert trained on the task's own training data (when it has any)                       | its softmax    |
| clip     | the open_clip patch model alone over every class name (skipped when none is configured)  | zero-shot       |

The growth curve solves every task over random sub-hubs of each size (several seeds).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from mll.config import BenchmarkParams, load_section
from mll.data.images import open_image
from mll.solve.outputs import OutputCache
from mll.data.sdag import SDAG
from mll.solve.task import Context, Plan, covering_models, evaluate, plan

METHODS = ("mll", "single", "uniform", "random", "top1", "ungated", "static", "oracle", "clip")
GROWTH_METHODS = ("mll", "uniform", "top1")
_SYNSET_NAME = re.compile(r"^[a-z0-9_\-'.]+\.n\.\d\d$")


def load_params(params_file: Path | str = "params.yaml") -> BenchmarkParams:
    bp = load_section("benchmark", Path(params_file))
    unknown = set(bp.methods) - set(METHODS)
    if unknown:
        raise ValueError(f"params: benchmark.methods has unknown {sorted(unknown)}; known: {', '.join(METHODS)}")
    if not bp.tasks:
        raise ValueError("params: benchmark.tasks is empty; add at least one task")
    return bp


@dataclass
class BenchTask:
    """One benchmark task: class names and its labelled target_test images."""

    name: str
    classes: list[str]
    uris: list[str]
    y: np.ndarray
    support: dict[str, int]
    datasets: list[str]
    members: dict[str, list[tuple[str, str]]]  # class -> (dataset, class name or synset name)
    oracle: str | None = None  # dataset whose oracle expert answers this task
    dropped: int = 0  # images that matched two classes (ambiguous), left out
    _images: list[Image.Image] | None = field(default=None, repr=False)

    def images(self) -> list[Image.Image]:
        if self._images is None:
            self._images = [open_image(u) for u in self.uris]
        return self._images

    def describe(self) -> dict:
        return {"classes": self.classes, "support": self.support, "n_images": len(self.uris),
                "datasets": self.datasets, "oracle": self.oracle, "dropped_ambiguous": self.dropped,
                "members": {c: [f"{d}:{m}" for d, m in ms] for c, ms in self.members.items()}}


def _members(name: str, entry, test: pd.DataFrame) -> dict[str, list[tuple[str, str]]]:
    if isinstance(entry, dict) and "source" in entry:
        ds = entry["source"]
        rows = test[test["dataset"] == ds]
        if rows.empty:
            raise ValueError(f"benchmark task {name}: dataset {ds!r} has no target_test images "
                             f"(have: {sorted(set(test['dataset']))})")
        order = rows.drop_duplicates("class_name").sort_values("label")["class_name"]
        return {c: [(ds, c)] for c in order}
    classes = entry.get("classes") if isinstance(entry, dict) else None
    if not isinstance(classes, dict) or len(classes) < 2:
        raise ValueError(f"benchmark task {name}: give `source: <dataset>` or `classes: {{name: {{dataset: [members]}}}}` "
                         "with at least two classes")
    out = {}
    for cname, sources in classes.items():
        if not isinstance(sources, dict):
            raise ValueError(f"benchmark task {name}, class {cname!r}: expected {{dataset: [class names or synset names]}}")
        out[str(cname)] = [(ds, str(m)) for ds, ms in sources.items() for m in ([ms] if isinstance(ms, str) else ms)]
    return out


def build_task(name: str, entry: dict, test: pd.DataFrame, sdag: SDAG, max_per_class: int, seed: int,
               oracle_datasets: set[str] = frozenset()) -> BenchTask:
    """Resolve a task entry against the target_test manifest (deterministic per-class sample)."""
    from mll.data.wordnet import resolve_synset, wnid

    members = _members(name, entry, test)
    hit = np.zeros((len(test), len(members)), dtype=bool)
    ds_col, cls_col, syn_col = test["dataset"].to_numpy(), test["class_name"].to_numpy(), test["synset"].to_numpy()
    for k, (cname, ms) in enumerate(members.items()):
        for ds, m in ms:
            in_ds = ds_col == ds
            if not in_ds.any():
                raise ValueError(f"benchmark task {name}, class {cname!r}: no target_test images from {ds!r}")
            if _SYNSET_NAME.match(m):
                root = wnid(resolve_synset(m))
                nodes = (sdag.descendants(root) | {root}) if root in sdag else {root}
                sel = in_ds & np.isin(syn_col, list(nodes))
            else:
                sel = in_ds & (cls_col == m)
            if not sel.any():
                known = sorted(set(cls_col[in_ds]))[:12]
                raise ValueError(f"benchmark task {name}, class {cname!r}: {ds}:{m} matches no target_test image "
                                 f"(class names there include {known}; or give a synset name like bird.n.01)")
            hit[:, k] |= sel
    single = hit.sum(1) == 1
    dropped = int((hit.sum(1) > 1).sum())
    rng = np.random.default_rng(seed)
    uris, y, support = [], [], {}
    for k, cname in enumerate(members):
        idx = np.flatnonzero(hit[:, k] & single)
        if len(idx) > max_per_class:
            idx = np.sort(rng.choice(idx, max_per_class, replace=False))
        uris += list(test["uri"].to_numpy()[idx])
        y += [k] * len(idx)
        support[cname] = int(len(idx))
    datasets = sorted({d for ms in members.values() for d, _ in ms})
    named = all(not _SYNSET_NAME.match(m) for ms in members.values() for _, m in ms)
    oracle = datasets[0] if len(datasets) == 1 and named and datasets[0] in oracle_datasets else None
    return BenchTask(name, list(members), uris, np.asarray(y), support, datasets, members, oracle, dropped)


def build_tasks(tasks: dict, test: pd.DataFrame, sdag: SDAG, bp: BenchmarkParams,
                oracle_datasets: set[str] = frozenset()) -> list[BenchTask]:
    test = test[test["split"] == "target_test"] if "split" in test else test
    return [build_task(n, e, test.reset_index(drop=True), sdag, bp.max_per_class, bp.seed, oracle_datasets)
            for n, e in tasks.items()]


# --- the methods ------------------------------------------------------------------------------------
def _pool(ctx: Context, p: Plan, restrict: list[str] | None) -> list[str]:
    """Models whose heads cover at least one of the task's (answered) nodes."""
    index = ctx.index if restrict is None else ctx.index.subset(restrict)
    nodes = [c.target_node for c in p.selection.classes]
    # every covering model of every class, not only CHCO's: plan already resolved backoffs
    return sorted({m for n in nodes for m in covering_models(index, n)})


def _cell(task: BenchTask, method: str, seed: int | None = None) -> dict:
    return {"task": task.name, "method": method, "seed": seed, "status": "ok", "reason": "", "accuracy": None,
            "models": [], "answered_by": {}, "per_class": {}, "seconds": 0.0, "detail": ""}


def _fill(cell: dict, rep: dict, detail: str = "") -> dict:
    cell.update(accuracy=round(rep["accuracy"], 4), models=rep["models"], answered_by=rep["selection"],
                per_class={k: v["accuracy"] for k, v in rep["per_class"].items()}, detail=detail,
                combiner=rep["combiner"], estimated_accuracy=rep["estimated_accuracy"],
                adaptation=rep.get("adaptation"))
    return cell


def _solve(ctx: Context, task: BenchTask, cache: OutputCache, restrict=None, cfg=None, fixed=None) -> dict:
    p = plan(ctx, task.classes, restrict_models=restrict, cfg=cfg, fixed=fixed)
    return evaluate(ctx, p, task.images(), task.y, cache=cache, keys=task.uris)


def best_single(ctx: Context, task: BenchTask, cache: OutputCache, restrict: list[str] | None = None) -> tuple[dict | None, str, int]:
    """Each covering model alone (same calibrated reuse); the best on the task's labels."""
    p = plan(ctx, task.classes, restrict_models=restrict)
    pool = _pool(ctx, p, restrict)
    best, who = None, ""
    for m in pool:
        rep = _solve(ctx, task, cache, restrict, cfg=replace(ctx.cfg, adapt=False),
                     fixed=lambda cov, m=m: [[m] if m in c else [] for c in cov])
        if best is None or rep["accuracy"] > best["accuracy"]:
            best, who = rep, m
    return best, who, len(pool)


def run_cell(ctx: Context, task: BenchTask, method: str, cache: OutputCache, seed: int | None = None,
             oracle_hub: Path | None = None, restrict: list[str] | None = None) -> dict:
    """One (task, method[, seed]) cell of the benchmark grid."""
    t0 = time.perf_counter()
    cell = _cell(task, method, seed)
    static = replace(ctx.cfg, adapt=False)  # the baselines choose heads from the labels alone
    if method == "mll":
        _fill(cell, _solve(ctx, task, cache, restrict))
    elif method == "static":
        _fill(cell, _solve(ctx, task, cache, restrict, cfg=static))
    elif method == "ungated":
        _fill(cell, _solve(ctx, task, cache, restrict, cfg=replace(ctx.cfg, use_gates=False)))
    elif method == "top1":
        _fill(cell, _solve(ctx, task, cache, restrict, cfg=replace(static, prune=1, max_heads=1)))
    elif method == "uniform":
        _fill(cell, _solve(ctx, task, cache, restrict, cfg=replace(static, use_gates=False), fixed=lambda cov: cov))
    elif method == "random":
        p = plan(ctx, task.classes, restrict_models=restrict)
        pool = _pool(ctx, p, restrict)
        r = min(max(len(p.selection.models), 1), len(pool))
        chosen = set(np.random.default_rng(1000 + (seed or 0)).choice(pool, r, replace=False)) if pool else set()
        rep = _solve(ctx, task, cache, restrict, cfg=static,
                     fixed=lambda cov: [[m for m in c if m in chosen] for c in cov])
        _fill(cell, rep, f"{r} of {len(pool)} covering models: {', '.join(sorted(chosen))}")
    elif method == "single":
        rep, who, n = best_single(ctx, task, cache, restrict)
        if rep is None:
            cell.update(accuracy=0.0, detail="no hub model covers any class")
        else:
            _fill(cell, rep, f"{who} (best of {n} covering models, chosen on the test labels)")
    elif method == "oracle":
        _oracle(ctx, task, cell, cache, oracle_hub)
    elif method == "clip":
        _clip(ctx, task, cell)
    else:
        raise ValueError(f"unknown benchmark method {method!r}; known: {', '.join(METHODS)}")
    cell["seconds"] = round(time.perf_counter() - t0, 3)
    return cell


def _oracle(ctx: Context, task: BenchTask, cell: dict, cache: OutputCache, oracle_hub: Path | None) -> None:
    from mll.hub.store import Hub
    from mll.solve.reuse import run_models

    if task.oracle is None:
        cell.update(status="skipped", reason="no training data for this task's classes (no oracle)")
        return
    name = oracle_name(task.oracle)
    hub = Hub(Path(oracle_hub or "oracles"))
    if name not in hub.names():
        cell.update(status="skipped", reason=f"oracle expert {name} not built (dvc repro oracles@{task.oracle})")
        return
    card = hub.card(name)
    logp, _, _ = run_models(task.images(), {name: lambda: hub.load(name, device=ctx.cfg.device)},
                            {}, ctx.cfg.batch_size, cache=cache, keys=task.uris,
                            hashes={name: card.weights_sha256})
    p_fine = np.exp(logp[name])
    col = {c: i for i, c in enumerate(card.class_names)}
    # a coarse class's probability is the sum over its member classes (the oracle knows the fine ones)
    probs = np.stack([p_fine[:, [col[m] for _, m in task.members[c] if m in col]].sum(1) for c in task.classes], 1)
    _score(cell, task, probs, name, f"{card.architecture} trained on {task.oracle} expert_train "
                                    f"(val accuracy {card.provenance.get('metrics', {}).get('val_accuracy')})")


def _clip(ctx: Context, task: BenchTask, cell: dict) -> None:
    if not ctx.cfg.patch.model:
        cell.update(status="skipped", reason="no open_clip checkpoint configured (set solve.patch.model/pretrained)")
        return
    _score(cell, task, ctx.get_patch().probs(task.images(), task.classes), "patch", ctx.get_patch().name)


def _score(cell: dict, task: BenchTask, probs: np.ndarray, model: str, detail: str) -> None:
    """Fill a cell answered by one model over every class from its (N, K) probabilities."""
    pred = probs.argmax(1)
    cell.update(accuracy=round(float((pred == task.y).mean()), 4), models=[model],
                answered_by={c: [model] for c in task.classes}, detail=detail,
                per_class={c: float((pred[task.y == k] == k).mean()) if (task.y == k).any() else None
                           for k, c in enumerate(task.classes)})


def oracle_name(dataset: str) -> str:
    return f"oracle-{dataset}"


def train_oracle(dataset: str, params_file: Path | str, manifest: Path, out_root: Path, log=print):
    """Train the oracle expert for `dataset`: every class, on its whole expert_train split (the
    practical upper limit for tasks drawn from that dataset). Kept out of the hub (`oracles/`)."""
    from mll.config import TrainedExpertParams, load_params as load_all
    from mll.data.splits import read_manifest
    from mll.hub.store import Hub
    from mll.hub.training import spec_from_params, train_expert
    from mll.tracking import start_run

    bp = load_params(params_file)
    if dataset not in bp.oracles:
        raise KeyError(f"params: no oracle {dataset!r} under benchmark.oracles (have: {', '.join(bp.oracles)})")
    rows = read_manifest(Path(manifest))
    rows = rows[(rows["dataset"] == dataset) & (rows["split"] == "expert_train")]
    if rows.empty:
        raise ValueError(f"oracle {dataset}: no expert_train images (is it under data.datasets?)")
    classes = list(rows.drop_duplicates("class_name").sort_values("label")["class_name"])
    entry = TrainedExpertParams(dataset=dataset, classes=tuple(classes), **bp.oracles[dataset].given())
    spec = spec_from_params(oracle_name(dataset), entry, load_all(params_file).experts.defaults)
    with start_run("experts", spec.name, enabled=bp.track) as tracker:
        card = train_expert(spec, rows, Hub(Path(out_root)), tracker, log=log)
    log(f"{spec.name}: val accuracy {card.provenance['metrics']['val_accuracy']:.3f} on {len(classes)} classes")
    return card


# --- the growth curve ---------------------------------------------------------------------------------
def sub_hubs(models: list[str], sizes: tuple[int, ...], seeds: int, seed: int = 0) -> list[tuple[int, int, list[str]]]:
    """(size, seed, models) for random sub-hubs; a size that admits one subset only (the full hub) once."""
    out = []
    for size in sizes:
        size = min(size, len(models))
        seen = set()
        for s in range(seeds):
            pick = tuple(sorted(np.random.default_rng([seed, size, s]).choice(models, size, replace=False)))
            if pick in seen:
                continue
            seen.add(pick)
            out.append((size, s, [str(m) for m in pick]))
    return out


def growth_cell(ctx: Context, tasks: list[BenchTask], size: int, seed: int, models: list[str],
                methods: tuple[str, ...], cache: OutputCache) -> list[dict]:
    """Every task solved over one sub-hub by each growth method."""
    rows = []
    for t in tasks:
        for m in methods:
            c = run_cell(ctx, t, m, cache, seed=seed, restrict=models)
            rows.append({"size": size, "seed": seed, "models": models, "task": t.name, "method": m,
                         "accuracy": c["accuracy"]})
    return rows


def log_cell(cell: dict, task: BenchTask, enabled: bool = True) -> None:
    """One MLflow run per (task, method[, seed]) in experiment `benchmark`."""
    from mll.tracking import start_run, write_json_artifact

    name = f"{cell['task']}/{cell['method']}" + (f"/seed{cell['seed']}" if cell["seed"] is not None else "")
    with start_run("benchmark", name, enabled=enabled, tags={"task": cell["task"], "method": cell["method"],
                                                             "status": cell["status"]}) as tr:
        tr.log_params({"task": cell["task"], "method": cell["method"], "seed": cell["seed"],
                       "n_classes": len(task.classes), "n_images": len(task.uris), "models": ",".join(cell["models"]),
                       "detail": cell["detail"][:500], "reason": cell["reason"]})
        if cell["accuracy"] is not None:
            tr.log_metrics({"accuracy": cell["accuracy"], "n_models": len(cell["models"]),
                            "seconds": cell["seconds"]})
        write_json_artifact(tr, {"answered_by": cell["answered_by"], "per_class": cell["per_class"],
                                 "support": task.support}, "selection.json")


# --- wiring helpers for the flow -----------------------------------------------------------------------
def load_state(params_file: str, hub: str, labels: str, sdag: str, manifest: str, oracles: str,
               cache_dir: str | None = ".cache/outputs") -> dict:
    """Everything a benchmark cell needs, loaded once: params, solve context, tasks, output cache."""
    from mll.data.splits import read_manifest

    bp = load_params(params_file)
    ctx = Context.load(Path(sdag), Path(hub), Path(labels), load_section("solve", params_file))
    tasks = build_tasks(bp.tasks, read_manifest(Path(manifest)), ctx.sdag, bp, set(bp.oracles))
    return {"params": bp, "ctx": ctx, "tasks": {t.name: t for t in tasks},
            "cache": OutputCache(Path(cache_dir) if cache_dir else None)}


def cells_document(state: dict, cells: list[dict], growth: list[dict], seconds: float) -> dict:
    """The raw benchmark results that `mll.bench.report` summarises."""
    return {"hub": state["ctx"].index.models, "tasks": {n: t.describe() for n, t in state["tasks"].items()},
            "cells": cells, "growth": growth, "seconds": round(seconds, 1)}


def write_json(doc: dict, path: Path) -> None:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=float) + "\n")
    tmp.replace(path)

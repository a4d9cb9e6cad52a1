"""What the benchmark's baselines compute beyond a fixed selection: the generalists' ranking (INB),
a classifier trained on the task's node data (node_data), and the hindsight search over selections.

The methods in `mll.bench.methods` wire these into cells; here is the arithmetic, so it can be
tested apart from the grid.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mll.hub.backbones import FeatureCache


# --- INB: the hub's best generalist by its labels ----------------------------------------------------
# --- node_data: logistic regression on frozen backbone features of the node images ------------------
@dataclass(frozen=True)
class NodeDataFit:
    backbone: str  # the backbone key chosen by cross-validation
    cv_accuracy: dict[str, float]  # every candidate's cross-validated accuracy on the node data
    predictions: np.ndarray  # task class index per test image (-1: no class had node images)


def cv_accuracy(x: np.ndarray, y: np.ndarray, folds: int, C: float, seed: int = 0) -> float:
    """Mean held-out accuracy of `LogReg(C)` over stratified folds (NaN when a fold lacks 2 classes)."""
    from mll.solve.logreg import LogReg
    from mll.solve.rerank import stratified_folds

    fold = stratified_folds(y, folds, seed)
    hits, n = 0, 0
    for f in range(folds):
        tr, te = fold != f, fold == f
        if not te.any() or len(np.unique(y[tr])) < 2:
            return float("nan")
        model = LogReg(C=C, max_iter=300, tol=1e-3).fit(x[tr], y[tr])
        hits += int((model.predict(x[te]) == y[te]).sum())
        n += int(te.sum())
    return hits / max(n, 1)


def fit_node_data(
    node_features: dict[str, Callable[[], np.ndarray]],
    test_features: dict[str, Callable[[], np.ndarray]],
    y_node: np.ndarray,
    folds: int = 3,
    C: float = 1.0,
    default: str | None = None,
) -> NodeDataFit:
    """Choose the backbone whose features cross-validate best on the node data, fit on all of it and
    predict the test images. The feature callables are only called for the backbones they name.

    A class with a single node image cannot be held out: then nothing is cross-validated and
    `default` is used (the caller's a-priori choice; the first backbone by name without one)."""
    from mll.solve.logreg import LogReg

    y_node = np.asarray(y_node)
    if len(np.unique(y_node)) < 2:
        raise ValueError("node_data needs node images of at least two classes")
    # a class with fewer node images than folds cannot be held out in every fold: fewer folds then
    fewest = int(np.bincount(np.unique(y_node, return_inverse=True)[1]).min())
    scores: dict[str, float] = {}
    if fewest >= 2:
        k = min(folds, fewest)
        scores = {b: cv_accuracy(node_features[b](), y_node, k, C) for b in sorted(node_features)}
    ranked = sorted((b for b in scores if scores[b] == scores[b]), key=lambda b: (-scores[b], b))
    best = ranked[0] if ranked else (default if default in node_features else sorted(node_features)[0])
    model = LogReg(C=C, max_iter=300, tol=1e-3).fit(node_features[best](), y_node)
    pred = model.predict(test_features[best]())
    return NodeDataFit(best, {b: round(v, 4) for b, v in scores.items()}, np.asarray(pred, dtype=int))


def backbone_features(
    bkey: str, keys: Sequence[str], caches: Sequence[FeatureCache], compute: Callable[[list[int]], np.ndarray]
) -> np.ndarray:
    """Features of images `keys` on backbone `bkey`: from the first cache holding each row (the
    label stage's probe cache, the benchmark's), computing the rest into the last cache."""
    import torch

    out = None
    todo = list(range(len(keys)))
    for cache in caches[:-1]:
        have = sorted(set(todo) - set(cache.missing(bkey, [keys[i] for i in todo])))
        if have:
            feats = cache.get(bkey, [keys[i] for i in have], lambda rows: torch.empty(0)).numpy()
            if out is None:
                out = np.empty((len(keys), feats.shape[1]), dtype=np.float32)
            out[have] = feats
            todo = sorted(set(todo) - set(have))
    if todo:
        sub = [keys[i] for i in todo]
        feats = caches[-1].get(bkey, sub, lambda rows: torch.as_tensor(compute([todo[r] for r in rows]))).numpy()
        if out is None:
            out = np.empty((len(keys), feats.shape[1]), dtype=np.float32)
        out[todo] = feats
    return out if out is not None else np.empty((0, 0), dtype=np.float32)


def probe_feature_cache(probe_path: Path) -> FeatureCache | None:
    """The label stage's cache of the shared backbones' probe features (None without a probe manifest)."""
    if not Path(probe_path).is_file():
        return None
    from mll.labels.run import probe_features

    return probe_features(str(probe_path))


# --- hindsight: the best selection on the test labels -----------------------------------------------
def greedy_hindsight(
    score: Callable[[frozenset], float], start: str, candidates: Sequence[str], max_add: int
) -> tuple[frozenset, float, int]:
    """Forward selection on the test labels: from model `start`, add the candidate that raises
    `score(models)` most, while one does (at most `max_add` additions). Returns (models, score,
    selections scored)."""
    chosen = frozenset([start])
    best = score(chosen)
    tried = 1
    for _ in range(max_add):
        options = [(score(chosen | {m}), m) for m in candidates if m not in chosen]
        tried += len(options)
        if not options:
            break
        s, m = max(options, key=lambda o: (o[0], -candidates.index(o[1])))
        if s <= best:
            break
        chosen, best = chosen | {m}, s
    return chosen, best, tried


def node_data_cell(run) -> None:
    """Fill `run` (a `mll.bench.methods.CellRun`) with the node_data baseline's cell."""
    from mll.data.images import open_image
    from mll.hub.backbones import backbone_key
    from mll.hub.experts import preprocess
    from mll.solve.nodedata import task_node_data

    p = run.plan(cfg=run.static)
    index = run.ctx.index if run.restrict is None else run.ctx.index.subset(run.restrict)
    uris, y_node = task_node_data(index, [c.target_node for c in p.selection.classes], run.ctx.sdag)
    if len(np.unique(y_node)) < 2:
        run.skip("node images of fewer than two classes")
        return
    reps: dict[str, str] = {}  # backbone key -> one model on it (its loader computes missing features)
    for m in sorted(index.models):
        card = run.ctx.cards[m]
        bkey = backbone_key(card.backbone, card.input)
        if bkey and bkey not in reps:
            reps[bkey] = m
    if not reps:
        run.skip("no shared backbone in the hub")
        return
    probe = probe_feature_cache(run.probe) if run.probe is not None else None
    caches = [c for c in (probe, run.cache.features) if c is not None]

    def feats(bkey: str, keys: list[str], images) -> np.ndarray:
        def compute(rows: list[int]) -> np.ndarray:
            ex = run.ctx.hub.load(reps[bkey], device=run.ctx.cfg.device)
            return ex.features(preprocess([images(i) for i in rows], ex.card.input)).numpy()

        return backbone_features(bkey, keys, caches, compute)

    test_images = run.task.images()
    widest = max(reps, key=lambda b: (run.ctx.cards[reps[b]].input.size, b))
    fit = fit_node_data(
        {b: (lambda b=b: feats(b, uris, lambda i: open_image(uris[i]))) for b in reps},
        {b: (lambda b=b: feats(b, run.task.uris, lambda i: test_images[i])) for b in reps},
        y_node,
        default=widest,
    )
    run.cell["node_images"] = len(uris)
    if fit.cv_accuracy:
        others = ", ".join(f"{v:.3f}" for b, v in sorted(fit.cv_accuracy.items()) if b != fit.backbone)
        how = f"CV accuracy {fit.cv_accuracy[fit.backbone]:.3f}; the other backbones {others}"
    else:
        how = "one node image in some class: no cross-validation, the widest input"
    run.score(
        np.eye(len(run.task.classes))[fit.predictions],
        f"node_data:{fit.backbone}",
        f"{len(uris)} node images; backbone {fit.backbone} ({how})",
    )


def hindsight_cell(run) -> None:
    """Fill `run` with the hindsight baseline's cell: the best selection found on the test labels."""
    singles = {}
    for m in run.pool(run.plan()):
        singles[m] = run.solve(cfg=run.static, fixed=lambda cov, m=m: [[m] if m in c else [] for c in cov])
    if not singles:
        run.cell.update(accuracy=0.0, detail="no hub model covers any class")
        return
    reports: dict[frozenset, dict] = {}

    def score(models: frozenset) -> float:
        if models not in reports:
            reports[models] = run.solve(cfg=run.static, fixed=lambda cov: [[m for m in c if m in models] for c in cov])
        return reports[models]["accuracy"]

    ranked = sorted(singles, key=lambda m: (-singles[m]["accuracy"], m))[:8]
    chosen, _, tried = greedy_hindsight(score, ranked[0], ranked, max_add=4)
    candidates = {
        "forward selection": reports[chosen],
        "MLL's selection": run.solve(cfg=run.static),
        "every covering model": run.solve(cfg=run.static, fixed=lambda cov: cov),
    }
    how, rep = max(candidates.items(), key=lambda kv: kv[1]["accuracy"])
    run.fill(rep, f"{how} ({tried} selections scored on the test labels; forward picked {', '.join(sorted(chosen))})")

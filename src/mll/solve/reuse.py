"""Reuse: combine the selected heads into one prediction over the target classes.

The combiner is fitted on the selected models' *stored* outputs for the target classes' node data
(no target images): a regularised multinomial logistic regression (stacking) over, for every
(model, class) pair the selection made, log P_m(t_k|x) and, per model, its gate g_m(x). Where some
class has fewer than `min_node_images` node images it falls back to the statistics-based
combination, score_k(x) = mean_{m∈S_k} g_m(x) P_m(t_k|x), and says so. Then the selected models run
once on the task's images (decoded once, per-card preprocessing, batched) and the same features go
through the combiner. Classes no head covers are scored by the patch (`mll.solve.patch`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from mll.data.sdag import SDAG
from mll.hub.experts import Expert, preprocess
from mll.labels.scores import gate_score
from mll.labels.store import storage_of
from mll.solve.chco import Selection
from mll.solve.nodedata import ScoreBank, head_columns
from mll.solve.outputs import OutputCache


@dataclass
class Combiner:
    """Maps per-model outputs to scores over the covered target classes; `kind` names its entry in
    the combiner registry (`COMBINERS`), which fits and applies it."""

    kind: str  # a key of COMBINERS: stacking | statistics
    pairs: list[tuple[str, int, str]]  # (model, class index, node) features, in column order
    models: list[str]
    classes: list[int]  # target class indices the combiner predicts (covered classes)
    clf: object | None = None  # fitted state of kinds that learn (stacking: the logistic regression)

    def features(self, logp: dict[str, np.ndarray], gates: dict[str, np.ndarray], cols: dict) -> np.ndarray:
        """Stacking features: log P_m(t_k|x) per selected (model, class) pair, then each model's gate."""
        n = len(next(iter(gates.values())))
        f = [
            np.log(np.clip(np.exp(logp[m][:, cols[(m, node)]]).sum(1), 1e-8, 1.0))
            if cols[(m, node)]
            else np.full(n, np.log(1e-8))
            for m, _, node in self.pairs
        ]
        f += [gates[m] for m in self.models]
        return np.stack(f, axis=1)

    def predict_proba(self, logp: dict[str, np.ndarray], gates: dict[str, np.ndarray], cols: dict) -> np.ndarray:
        """(N, len(classes)) probabilities over the covered classes."""
        return get_combiner(self.kind).predict(self, logp, gates, cols)


# --- the registry of combiners ---------------------------------------------------------------------
@dataclass(frozen=True)
class CombinerKind:
    """How one kind of combiner is fitted on node data and applied to live outputs."""

    key: str
    fit: Callable[..., None]  # (comb, logp, gates, cols, y, weights, C, seed) -> None, sets comb.clf/classes
    predict: Callable[..., np.ndarray]  # (comb, logp, gates, cols) -> (N, len(comb.classes))
    description: str = ""


COMBINERS: dict[str, CombinerKind] = {}


def register_combiner(key: str, description: str = ""):
    """Decorator for a class with static `fit` and `predict`; the class's key is its registry name."""

    def deco(cls):
        COMBINERS[key] = CombinerKind(key, cls.fit, cls.predict, description or (cls.__doc__ or "").strip())
        return cls

    return deco


def get_combiner(key: str) -> CombinerKind:
    if key not in COMBINERS:
        raise ValueError(f"unknown combiner {key!r}; known: {', '.join(COMBINERS)}")
    return COMBINERS[key]


@register_combiner("stacking")
class _Stacking:
    """Regularised multinomial logistic regression over the pairs' log-probabilities and the gates."""

    @staticmethod
    def fit(
        comb: Combiner,
        logp: dict,
        gates: dict,
        cols: dict,
        y: np.ndarray,
        weights: np.ndarray | None,
        C: float,
        seed: int,
    ) -> None:
        from sklearn.linear_model import LogisticRegression

        comb.clf = LogisticRegression(C=C, max_iter=2000, class_weight="balanced", random_state=seed)
        comb.clf.fit(comb.features(logp, gates, cols), y, sample_weight=weights)
        comb.classes = [int(c) for c in comb.clf.classes_]

    @staticmethod
    def predict(comb: Combiner, logp: dict, gates: dict, cols: dict) -> np.ndarray:
        return comb.clf.predict_proba(comb.features(logp, gates, cols))


@register_combiner("statistics")
class _Statistics:
    """Mean over a class's selected heads of g_m(x) P_m(t_k|x), normalised: nothing to fit."""

    @staticmethod
    def fit(comb: Combiner, *args, **kwargs) -> None:
        return None

    @staticmethod
    def predict(comb: Combiner, logp: dict, gates: dict, cols: dict) -> np.ndarray:
        n = len(next(iter(gates.values())))
        score = np.zeros((n, len(comb.classes)))
        count = np.zeros(len(comb.classes))
        for m, k, node in comb.pairs:
            j = comb.classes.index(k)
            p = np.exp(logp[m][:, cols[(m, node)]]).sum(1) if cols[(m, node)] else 0.0
            score[:, j] += gates[m] * p
            count[j] += 1
        score /= np.maximum(count, 1)
        return score / np.maximum(score.sum(1, keepdims=True), 1e-12)


def choose_combiner(classes: list[int], y: np.ndarray, min_node_images: int, use_gates: bool) -> str:
    """Stacking when every covered class has enough node images to fit on, else statistics; the
    ungated ablation is always statistics (gates replaced by ones at prediction)."""
    counts = [int((y == k).sum()) for k in classes]
    if not use_gates or len(classes) < 2 or min(counts, default=0) < min_node_images:
        return "statistics"
    return "stacking"


def fit_combiner(
    sel: Selection,
    bank: ScoreBank,
    y: np.ndarray,
    sdag: SDAG,
    cards: dict,
    min_node_images: int = 5,
    use_gates: bool = True,
    C: float = 0.5,
    seed: int = 0,
    weights: np.ndarray | None = None,
) -> tuple[Combiner, dict]:
    """Fit the combiner on the node data's stored outputs; returns it and the column map.

    `weights` (one per node image, from `mll.solve.adaptation`) make node images that look like the
    target images count more."""
    pairs = [(m, k, c.target_node) for k, c in enumerate(sel.classes) for m in c.models]
    models = sorted({m for m, _, _ in pairs})
    classes = sorted({k for _, k, _ in pairs})
    excl = {c.target_node: tuple(c.exclude) for c in sel.classes}
    cols = {(m, node): head_columns(cards[m], node, sdag, excl.get(node, ())) for m, _, node in pairs}
    comb = Combiner(choose_combiner(classes, y, min_node_images, use_gates), pairs, models, classes)
    mask = np.isin(y, classes)
    if comb.kind != "statistics":  # statistics fits nothing: skip reading the node outputs
        logp = {m: bank.logp(m)[mask] for m in models}
        gates = {m: bank.gate(m)[mask] for m in models}
        get_combiner(comb.kind).fit(
            comb, logp, gates, cols, y[mask], None if weights is None else weights[mask], C, seed
        )
    sel.combiner = comb.kind if use_gates else "statistics-ungated"
    return comb, cols


def simulate_accuracy(
    comb: Combiner, cols: dict, bank: ScoreBank, y: np.ndarray, use_gates: bool = True
) -> float | None:
    """The combination's argmax accuracy on its own node data (in-sample for stacking)."""
    mask = np.isin(y, comb.classes)
    if not mask.any() or not comb.models:
        return None
    logp = {m: bank.logp(m)[mask] for m in comb.models}
    gates = {m: (bank.gate(m)[mask] if use_gates else np.ones(int(mask.sum()))) for m in comb.models}
    pred = np.asarray(comb.classes)[comb.predict_proba(logp, gates, cols).argmax(1)]
    return float((pred == y[mask]).mean())


# --- running the selected models on the task's images -----------------------------------------------
def run_models(
    images: Sequence[Image.Image],
    loaders: dict[str, Callable[[], Expert]],
    summaries: dict[str, dict],
    batch_size: int = 64,
    progress: Callable[[int], None] | None = None,
    cache: OutputCache | None = None,
    keys: list[str] | None = None,
    hashes: dict[str, str] | None = None,
    lse_out: dict | None = None,
) -> tuple[dict, dict, dict]:
    """Run each model once over `images`; returns (log-probs, gates, seconds) per model.

    Preprocessed images are shared by consecutive models with the same input config (only one
    variant is kept in memory), so callers pass the models grouped by input config. With a `cache`
    (and one key per image, and each model's weights hash), only images a model has not seen run.
    `lse_out`, when given, receives each model's logit log-sum-exp (domain features need it).
    Outputs take the stored form of each model's label (`summaries[name]["storage"]`), so live
    outputs look exactly like the node data the combiner was fitted on; a model without a label
    gets the labeling default for its head width.
    """
    logp, gates, seconds, tensors = {}, {}, {}, {}
    for name, load in loaders.items():
        t0 = time.perf_counter()
        sha = (hashes or {}).get(name, "")
        todo = list(range(len(images))) if cache is None else cache.missing(name, sha, keys)
        if todo:
            expert = load()
            key = expert.card.input
            if key not in tensors:
                tensors = {key: preprocess(list(images), key)}  # keep one variant alive at a time
            logits = expert.forward(tensors[key][todo] if cache is not None else tensors[key], batch_size)
            lp = storage_of(summaries.get(name), expert.num_classes).live(logits)
            lse = torch.logsumexp(logits.float(), 1).numpy()
            if cache is not None:
                sub = [keys[i] for i in todo]
                cache.put(name, sha, sub, lp, lse)
        if cache is not None:
            lp, lse = cache.take(name, sha, keys)
        logp[name] = lp
        if lse_out is not None:
            lse_out[name] = lse
        gate = summaries.get(name, {}).get("gate")
        gates[name] = gate_score(gate, lp, lse) if gate else np.ones(len(lp))  # no gate fitted: always in domain
        seconds[name] = time.perf_counter() - t0
        if progress:
            progress(1)
    return logp, gates, seconds

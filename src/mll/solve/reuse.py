"""Reuse: combine the selected heads into one prediction over the target classes.

The combiner is fitted on the selected models' *stored* outputs for the target classes' node data
(no target images): a regularised multinomial logistic regression (stacking) over, for every
(model, class) pair the selection made, log P_m(t_k|x) and, per model, its gate g_m(x). A class
with fewer than `min_node_images` node images cannot be stacked: it falls back, alone, to the
statistics-based combination score_k(x) = mean_{m∈S_k} g_m(x) P_m(t_k|x), and the `hybrid`
combiner joins the two in one probability (the stacked classes share the mass the statistics
combination gives them); each class says which mode answered it. Then the selected models run once
on the task's images (decoded once, per-card preprocessing, batched) and the same features go
through the combiner. Classes no head covers are scored by the patch (`mll.solve.patch`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from mll.data.sdag import SDAG
from mll.hub.experts import Expert, preprocess
from mll.labels.scores import gate_score
from mll.labels.store import storage_of
from mll.solve.chco import Selection
from mll.solve.nodedata import ScoreBank, head_columns, mask_logp, tempered
from mll.solve.outputs import OutputCache

STACKING, STATISTICS = "stacking", "statistics"  # the two modes a class can be answered in


@dataclass
class Combiner:
    """Maps per-model outputs to scores over the covered target classes; `kind` names its entry in
    the combiner registry (`COMBINERS`), which fits and applies it."""

    kind: str  # a key of COMBINERS: stacking | statistics | hybrid
    pairs: list[tuple[str, int, str]]  # (model, class index, node) features, in column order
    models: list[str]
    classes: list[int]  # target class indices the combiner predicts (covered classes)
    clf: object | None = None  # fitted state of kinds that learn (stacking: the logistic regression)
    gated: bool = True  # the gates enter the combination (stacking features, statistics weights)
    temps: dict[str, float] = field(default_factory=dict)  # per-model temperature applied before subtree sums
    stacked: list[int] = field(default_factory=list)  # classes the stacking part answers (the rest: statistics)
    masked: dict[str, list[int]] = field(default_factory=dict)  # hidden head columns per model (mll.solve.masking)

    def subtree_logp(self, logp: dict[str, np.ndarray], cols: dict) -> list[np.ndarray]:
        """log P_m(t_k|x) per pair, from each model's (temperature-scaled) log-probabilities."""
        scaled = {m: mask_logp(tempered(logp[m], self.temps.get(m, 1.0)), self.masked.get(m)) for m in self.models}
        n = len(next(iter(scaled.values())))
        return [
            np.log(np.clip(np.exp(scaled[m][:, cols[(m, node)]]).sum(1), 1e-8, 1.0))
            if cols[(m, node)]
            else np.full(n, np.log(1e-8))
            for m, _, node in self.pairs
        ]

    def features(self, logp: dict[str, np.ndarray], gates: dict[str, np.ndarray], cols: dict) -> np.ndarray:
        """Stacking features: log P_m(t_k|x) per selected (model, class) pair, then each model's gate
        (left out when the combiner is ungated)."""
        f = self.subtree_logp(logp, cols)
        if self.gated:
            f += [gates[m] for m in self.models]
        return np.stack(f, axis=1)

    def statistics(self, logp: dict[str, np.ndarray], gates: dict[str, np.ndarray], cols: dict) -> np.ndarray:
        """(N, len(classes)): mean over a class's heads of g_m(x) P_m(t_k|x), normalised over classes."""
        sub = self.subtree_logp(logp, cols)
        n = len(sub[0])
        score = np.zeros((n, len(self.classes)))
        count = np.zeros(len(self.classes))
        for (m, k, node), lp in zip(self.pairs, sub):
            j = self.classes.index(k)
            p = np.exp(lp) if cols[(m, node)] else 0.0
            score[:, j] += (gates[m] if self.gated else 1.0) * p
            count[j] += 1
        score /= np.maximum(count, 1)
        return score / np.maximum(score.sum(1, keepdims=True), 1e-12)

    def modes(self) -> dict[int, str]:
        """Which mode answers each class: stacking or statistics."""
        return {k: STACKING if k in self.stacked else STATISTICS for k in self.classes}

    def predict_proba(self, logp: dict[str, np.ndarray], gates: dict[str, np.ndarray], cols: dict) -> np.ndarray:
        """(N, len(classes)) probabilities over the covered classes."""
        return get_combiner(self.kind).predict(self, logp, gates, cols)


# --- the registry of combiners ---------------------------------------------------------------------
@dataclass(frozen=True)
class CombinerKind:
    """How one kind of combiner is fitted on node data and applied to live outputs."""

    key: str
    fit: Callable[..., None]  # (comb, logp, gates, cols, y, weights, C, seed) -> None, sets comb.clf
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


def _fit_stacker(comb: Combiner, logp: dict, gates: dict, cols: dict, y, weights, C: float, seed: int) -> None:
    """The logistic regression over the features, on the node images of the stacked classes."""
    from mll.solve.logreg import LogReg

    m = np.isin(y, comb.stacked)
    comb.clf = LogReg(C=C, max_iter=2000)
    comb.clf.fit(
        comb.features({k: v[m] for k, v in logp.items()}, {k: v[m] for k, v in gates.items()}, cols),
        y[m],
        sample_weight=None if weights is None else weights[m],
    )
    comb.stacked = [int(c) for c in comb.clf.classes_]


@register_combiner(STACKING)
class _Stacking:
    """Regularised multinomial logistic regression over the pairs' log-probabilities and the gates."""

    @staticmethod
    def fit(comb: Combiner, logp, gates, cols, y, weights, C: float, seed: int) -> None:
        comb.stacked = list(comb.classes)
        _fit_stacker(comb, logp, gates, cols, y, weights, C, seed)
        comb.classes = list(comb.stacked)

    @staticmethod
    def predict(comb: Combiner, logp: dict, gates: dict, cols: dict) -> np.ndarray:
        return comb.clf.predict_proba(comb.features(logp, gates, cols))


@register_combiner(STATISTICS)
class _Statistics:
    """Mean over a class's selected heads of g_m(x) P_m(t_k|x), normalised: nothing to fit."""

    @staticmethod
    def fit(comb: Combiner, *args, **kwargs) -> None:
        comb.stacked = []

    @staticmethod
    def predict(comb: Combiner, logp: dict, gates: dict, cols: dict) -> np.ndarray:
        return comb.statistics(logp, gates, cols)


@register_combiner("hybrid")
class _Hybrid:
    """Stacking for the classes with enough node images, statistics for the thin ones, in one
    probability: p_k = q_k for a thin class k, p_k = (Σ_{j∈S} q_j) · p^stack_k for k in the stacked
    set S, where q is the statistics combination over every covered class."""

    @staticmethod
    def fit(comb: Combiner, logp, gates, cols, y, weights, C: float, seed: int) -> None:
        _fit_stacker(comb, logp, gates, cols, y, weights, C, seed)  # comb.stacked set by the caller

    @staticmethod
    def predict(comb: Combiner, logp: dict, gates: dict, cols: dict) -> np.ndarray:
        q = comb.statistics(logp, gates, cols)
        s = [comb.classes.index(k) for k in comb.stacked]
        mass = q[:, s].sum(1, keepdims=True)
        # no head gives any mass to any class: let the stacker alone speak for its classes
        mass = np.where(q.sum(1, keepdims=True) > 0, mass, 1.0)
        out = q.copy()
        out[:, s] = mass * comb.clf.predict_proba(comb.features(logp, gates, cols))
        return out


COMBINER_CHOICES = ("auto", "per_task", STACKING, STATISTICS, "hybrid")


def choose_combiner(
    classes: list[int], y: np.ndarray, min_node_images: int, choice: str = "auto"
) -> tuple[str, list[int]]:
    """(kind, stacked classes). `auto`: a class with at least `min_node_images` node images is
    stacked, the others fall back to statistics one by one (the `hybrid` kind when both occur);
    `per_task`: stacking only when every class can be stacked, else statistics for all (the rule
    before per-class fallback); a combiner key forces that kind. Stacking needs two classes."""
    if choice not in COMBINER_CHOICES:
        raise ValueError(f"solve.combiner: {choice!r} is not one of {', '.join(COMBINER_CHOICES)}")
    counts = {k: int((y == k).sum()) for k in classes}
    need = 1 if choice == STACKING else min_node_images  # forced stacking: every class with a node image
    rich = [k for k in classes if counts[k] >= need]
    if choice == STATISTICS or len(rich) < 2 or (choice == "per_task" and len(rich) < len(classes)):
        return STATISTICS, []
    return (STACKING, rich) if len(rich) == len(classes) else ("hybrid", rich)


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
    combiner: str = "auto",
    fit_rows: np.ndarray | None = None,
) -> tuple[Combiner, dict]:
    """Fit the combiner on the node data's stored outputs; returns it and the column map.

    `fit_rows` (a boolean mask over the node images) fits on those images only, while the kind of
    combiner and its stacked classes are still chosen from all of `y`: the cross-fitted estimate of
    `mll.solve.rerank` thus scores the very combiner a full fit would build.

    `weights` (one per node image, from `mll.solve.adaptation`) make node images that look like the
    target images count more. `use_gates: false` leaves the gates out of whichever combiner is
    chosen. Each model's log-probabilities are divided by the temperature the bank applies to it
    (`ScoreBank.temperature`) before the subtree sums, on node data and live outputs alike. Sets
    each covered class's `mode` (stacking | statistics)."""
    pairs = [(m, k, c.target_node) for k, c in enumerate(sel.classes) for m in c.models]
    models = sorted({m for m, _, _ in pairs})
    classes = sorted({k for _, k, _ in pairs})
    excl = {c.target_node: tuple(c.exclude) for c in sel.classes}
    cols = {(m, node): head_columns(cards[m], node, sdag, excl.get(node, ())) for m, _, node in pairs}
    kind, stacked = choose_combiner(classes, y, min_node_images, combiner)
    temps = {m: t for m in models if (t := bank.temperature(m)) != 1.0}
    masked = {m: bank.masked[m] for m in models if m in bank.masked}  # live outputs are masked as the bank's
    comb = Combiner(kind, pairs, models, classes, gated=use_gates, temps=temps, stacked=stacked, masked=masked)
    if kind != STATISTICS:  # statistics fits nothing: skip reading the node outputs
        mask = np.isin(y, classes)
        if fit_rows is not None:
            mask &= fit_rows
        logp = {m: bank.logp(m)[mask] for m in models}
        gates = {m: bank.gate(m)[mask] for m in models}
        get_combiner(kind).fit(comb, logp, gates, cols, y[mask], None if weights is None else weights[mask], C, seed)
    modes = comb.modes()
    for k, c in enumerate(sel.classes):
        c.mode = modes.get(k, "patch" if c.patched else None)
    sel.combiner = kind if use_gates else f"{kind}-ungated"
    return comb, cols


def crossfit_proba(
    sel: Selection,
    bank: ScoreBank,
    y: np.ndarray,
    sdag: SDAG,
    cards: dict,
    min_node_images: int = 5,
    use_gates: bool = True,
    weights: np.ndarray | None = None,
    combiner: str = "auto",
    folds: int = 3,
    seed: int = 0,
) -> np.ndarray | None:
    """The combiner's probabilities over its classes on every node image, each from a combiner fitted
    without that image's fold (stratified): what the experts would say on images they were not fitted
    on, which an in-sample fit overstates. None when a fold leaves nothing to fit."""
    from mll.solve.rerank import stratified_folds

    if not sel.models or not len(y):
        return None
    fold = stratified_folds(y, folds, seed)
    out = None
    for f in range(folds):
        test = fold == f
        if not test.any():
            continue
        try:
            comb, cols = fit_combiner(
                sel,
                bank,
                y,
                sdag,
                cards,
                min_node_images,
                use_gates,
                weights=weights,
                combiner=combiner,
                fit_rows=~test,
            )
        except ValueError:  # e.g. a training fold left the stacker a single class
            return None
        part = node_proba(comb, cols, bank, test)
        if out is None:
            out = np.zeros((len(y), part.shape[1]))
        out[test] = part
    return out


def node_proba(comb: Combiner, cols: dict, bank: ScoreBank, rows: np.ndarray) -> np.ndarray:
    """The combination's probabilities over `comb.classes` on the node images selected by `rows`,
    from their stored outputs."""
    logp = {m: bank.logp(m)[rows] for m in comb.models}
    gates = {m: bank.gate(m)[rows] for m in comb.models}
    return comb.predict_proba(logp, gates, cols)


def predict_node(comb: Combiner, cols: dict, bank: ScoreBank, rows: np.ndarray) -> np.ndarray:
    """The combination's answer (a task class index) on the node images selected by `rows`."""
    return np.asarray(comb.classes)[node_proba(comb, cols, bank, rows).argmax(1)]


def simulate_accuracy(
    comb: Combiner, cols: dict, bank: ScoreBank, y: np.ndarray, weights: np.ndarray | None = None
) -> float | None:
    """The combination's argmax accuracy on its own node data (in-sample for stacking); with the
    adaptation's node `weights`, each node image counts by its weight, as in the fit."""
    mask = np.isin(y, comb.classes)
    if not mask.any() or not comb.models:
        return None
    hit = (predict_node(comb, cols, bank, mask) == y[mask]).astype(float)
    w = np.ones(len(hit)) if weights is None else np.asarray(weights, dtype=float)[mask]
    return float((w * hit).sum() / max(w.sum(), 1e-12))


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

            def inputs(key=key, todo=todo) -> torch.Tensor:
                nonlocal tensors
                if key not in tensors:
                    tensors = {key: preprocess(list(images), key)}  # keep one variant alive at a time
                return tensors[key][todo] if cache is not None else tensors[key]

            if cache is not None:  # a head on a shared backbone computes its features once per image
                logits = expert.cached_logits([keys[i] for i in todo], inputs, cache.features, batch_size)
            else:
                logits = expert.forward(inputs(), batch_size)
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

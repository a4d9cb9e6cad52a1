"""Re-ranking CHCO's candidates with the combined, cross-fitted objective.

CHCO's proxy (`mll.solve.chco`) scores each class alone: the AUROC of the class's own score on the
node data. It decomposes by class, which is what makes the integer program fast, but it cannot see
what the combination does across classes: two classes whose heads both fire on each other's images
each keep a good AUROC against the rest, while the combined argmax confuses them. The design asks
for the estimated accuracy of the *combined predictor*. So the proxy stays the fast search, and a
handful of candidate selections around its optimum are scored by

    combined(sel) = cross-fitted argmax accuracy of fit_combiner(sel) on the node data − cost(sel),

where the combiner (hybrid / stacking / statistics, exactly what prediction fits) is fitted on k−1
folds of the node images (stratified by class, seeded) and scored on the held-out fold, every node
image once, weighted by the adaptation's node weights when given, and cost(sel) is what the proxy
charges: the cost of the cost units the selection's models need (a shared backbone once; λ per
standalone model, `mll.solve.problem.Problem`). The best candidate wins if it
beats the proxy optimum by `min_z` standard errors of the paired difference; otherwise (ties
included) the proxy optimum stays, so re-ranking changes a selection only on evidence.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mll.config import SolveParams
from mll.data.sdag import SDAG
from mll.solve.chco import ClassChoice, Selection
from mll.solve.nodedata import ScoreBank
from mll.solve.problem import Problem
from mll.solve.reuse import fit_combiner, predict_node

# the other model costs whose proxy optima are candidates, as multiples of every unit's cost (see `candidates`)
COST_FACTORS = (0.0, 2.0, 0.5, 4.0)


@dataclass(frozen=True)
class Rerank:
    """How many candidates to re-score (0: the proxy alone) and the combiner they are scored with
    (the solve settings' own, so the score is that of the predictor that will be used)."""

    candidates: int = 8
    min_z: float = 1.5  # how many standard errors a candidate must beat the proxy optimum by
    folds: int = 3
    seed: int = 0
    min_node_images: int = 5
    use_gates: bool = True
    combiner: str = "auto"
    C: float = 0.5

    @classmethod
    def from_params(cls, cfg: SolveParams) -> Rerank:
        """The re-rank the solve settings ask for, scored with their own combiner."""
        return cls(
            cfg.rerank,
            cfg.rerank_min_z,
            min_node_images=cfg.min_node_images,
            use_gates=cfg.use_gates,
            combiner=cfg.combiner,
        )

    def choose(
        self,
        problem: Problem,
        proxy: list[int],
        build: Callable[[list[int]], list[ClassChoice]],
        bank: ScoreBank,
        y: np.ndarray,
        weights: np.ndarray | None,
        sdag: SDAG,
        cards: dict,
        resolve: Callable[[Problem], list[int]],
    ) -> tuple[list[int], dict]:
        """(the chosen option per class, the record kept in `Selection.rerank`).

        A candidate may replace the proxy optimum only when its combined objective is higher by at
        least `min_z` standard errors of the paired per-image difference of their held-out hits
        (weighted as the accuracy is): on a few dozen node images (the photo tasks) one or two
        images decide between candidates, and following that noise cost accuracy on the dev tasks.
        Among those that clear the bar, the highest combined objective wins; none: the proxy's."""
        from threadpoolctl import threadpool_limits

        cands = candidates(problem, proxy, self.candidates, resolve)
        folds = stratified_folds(y, self.folds, self.seed)
        w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=float)
        rows, hits = [], []
        for choice, how in cands:
            classes = build(choice)
            # the stackers are tiny (hundreds of images, tens of features): BLAS threads only contend,
            # one thread fits them 2-5x faster on a 2-core machine
            with threadpool_limits(limits=1):
                h = self.cross_fitted_hits(classes, bank, y, weights, sdag, cards, folds)
            models = sorted({m for k, o in enumerate(choice) if o >= 0 for m in problem.options[k][o]})
            acc = None if h is None else float((w * h).sum() / max(float(w[h >= 0].sum()), 1e-12))
            row = {
                "how": how,
                "models": models,
                "proxy": round(problem.objective(choice), 5),
                "accuracy": None if acc is None else round(acc, 5),
                "combined": None if acc is None else round(acc - problem.models_cost(models), 5),
                "z": None,
                "changed": {classes[k].name: classes[k].models for k, o in enumerate(choice) if o != proxy[k]},
            }
            if h is not None and hits and hits[0] is not None and rows[0]["combined"] is not None:
                row["z"] = round(_paired_z(h, hits[0], w, row["combined"] - rows[0]["combined"]), 3)
            rows.append(row)
            hits.append(h)
        win = 0
        for i, r in enumerate(rows[1:], 1):
            # strictly better and clear of the noise only: ties and unscored candidates keep the proxy's
            if r["z"] is not None and r["z"] >= self.min_z and r["combined"] > rows[win]["combined"]:
                win = i
        return cands[win][0], {"winner": win, "folds": self.folds, "min_z": self.min_z, "candidates": rows}

    def cross_fitted_hits(
        self,
        classes: list[ClassChoice],
        bank: ScoreBank,
        y: np.ndarray,
        weights: np.ndarray | None,
        sdag: SDAG,
        cards: dict,
        folds: np.ndarray,
    ) -> np.ndarray | None:
        """Per node image, whether the combiner fitted on the other folds gets it right (1 or 0; -1
        for an image of an uncovered class, which is not scored); None when there is nothing to
        score or to fit."""
        sel = Selection(classes, sorted({m for c in classes for m in c.models}), 0.0, None, "rerank", 0.0, 0.0)
        covered = [k for k, c in enumerate(classes) if c.models]
        scored = np.isin(y, covered)
        if not sel.models or not scored.any():
            return None
        hits = np.where(scored, 0.0, -1.0)
        for f in range(self.folds):
            test = scored & (folds == f)
            if not test.any():
                continue
            try:
                comb, cols = fit_combiner(
                    sel,  # a throwaway: fit_combiner writes each class's mode into it
                    bank,
                    y,
                    sdag,
                    cards,
                    self.min_node_images,
                    self.use_gates,
                    self.C,
                    self.seed,
                    weights,
                    self.combiner,
                    fit_rows=folds != f,
                )
            except ValueError:  # e.g. a training fold left the stacker a single class
                return None
            hits[test] = predict_node(comb, cols, bank, test) == y[test]
        return hits


def _paired_z(h: np.ndarray, h0: np.ndarray, w: np.ndarray, gain: float) -> float:
    """`gain` (the difference of the combined objectives) over the standard error of the weighted
    mean of the per-image hit differences h - h0 (the images both score)."""
    m = (h >= 0) & (h0 >= 0)
    d, wm = h[m] - h0[m], w[m]
    mean = (wm * d).sum() / wm.sum()
    se = np.sqrt((wm**2 * (d - mean) ** 2).sum()) / wm.sum()
    if se == 0:  # the same hits everywhere: only the model costs differ, and they are certain
        return float(np.sign(gain)) * 1e6  # finite, so the record stays plain JSON
    return float(gain / se)


def stratified_folds(y: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """A fold number per node image: each class's images shuffled (seeded) and dealt round-robin, so
    every fold holds about 1/k of every class (a class with fewer images than folds is absent from
    some test folds and then scored only where it is)."""
    rng = np.random.default_rng(seed)
    folds = np.zeros(len(y), dtype=int)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        folds[rng.permutation(idx)] = np.arange(len(idx)) % k
    return folds


def candidates(
    problem: Problem, proxy: list[int], n: int, resolve: Callable[[Problem], list[int]]
) -> list[tuple[list[int], str]]:
    """Up to `n` distinct option choices, the proxy optimum first, with how each was made.

    Two kinds, interleaved so that a small `n` gets some of each:
    - the proxy optima at other model costs (every cost unit's cost x `COST_FACTORS`, so a backbone,
      a head and a standalone model keep their proportions): the combiner uses every selected
      model's outputs for every class (stacking features, gates), so whether one more or one fewer
      model pays off is exactly what the per-class proxy misjudges;
    - one class moved to its next-best option, for the classes where the proxy's margin (the
      objective lost by the move, model costs included) is smallest: where the proxy hardly
      prefers its choice, a cross-class confusion it cannot see can easily decide.
    """
    seen = {tuple(proxy)}
    out = [(list(proxy), "proxy optimum")]
    base = problem.objective(proxy)
    moves = []
    for k, opts in enumerate(problem.options):
        best = None
        for o in range(len(opts)):
            if o == proxy[k]:
                continue
            alt = list(proxy)
            alt[k] = o
            loss = base - problem.objective(alt)
            if best is None or loss < best[0]:
                best = (loss, alt, o)
        if best is not None:
            moves.append((best[0], k, best[1], f"class {k}: {'+'.join(opts[best[2]])} (proxy margin {best[0]:.4f})"))
    moves.sort(key=lambda m: (m[0], m[1]))
    swaps = [(m[2], m[3]) for m in moves]
    costs = list(COST_FACTORS)
    while len(out) < n and (swaps or costs):
        if costs:
            f = costs.pop(0)
            choice = resolve(problem.scaled(f))
            if tuple(choice) not in seen:
                seen.add(tuple(choice))
                out.append((choice, f"proxy optimum at {f:g} x the model cost"))
        if swaps and len(out) < n:
            choice, how = swaps.pop(0)
            if tuple(choice) not in seen:
                seen.add(tuple(choice))
                out.append((choice, how))
    return out[:n]

"""Scores shared by labeling, selection and adaptation: the gate's features, the gate itself, the
temperature fit, and one AUROC.

The gate answers "is this image in the model's domain?" from the model's own output alone: its
features are what any closed-set head produces (max log-probability, normalised entropy, the logit
log-sum-exp, and the whole log-probability vector of a small head).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported where it is used: selection reads labels without it
    import torch

GATE_FULL_MAX = 32  # heads up to this width give the gate their whole log-probability vector


def fit_temperature(logits: torch.Tensor, target: torch.Tensor) -> float:
    """Temperature T minimising the NLL of softmax(z / T) on in-domain probe images (1-D search)."""
    import torch

    if len(target) < 5:
        return 1.0
    grid = torch.exp(torch.linspace(np.log(0.05), np.log(20.0), 61))
    nll = torch.stack([torch.nn.functional.cross_entropy(logits / t, target) for t in grid])
    return float(grid[int(nll.argmin())])


def gate_features(logp: np.ndarray, lse: np.ndarray, top_k: int | None = None) -> np.ndarray:
    """max log-prob, normalised entropy, logit log-sum-exp (+ the log-probs of a small head).

    With `top_k` (a head stored as its top k, `mll.labels.store.Storage`) the entropy is taken over
    the k largest probabilities and the rest's mass as one outcome: exactly what the stored form
    determines, so the features are the same whether computed from the model's full outputs or from
    a stored label's reconstruction (whose evenly spread rest would inflate a full entropy).
    """
    c = logp.shape[1]
    if top_k is not None and top_k < c:
        top = -np.sort(-logp, axis=1)[:, :top_k]
        pt = np.exp(top.astype(np.float64))
        rest = np.clip(1.0 - pt.sum(1), 0.0, 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            h = -(pt * top).sum(1) - np.where(rest > 0, rest * np.log(np.maximum(rest, 1e-300)), 0.0)
        entropy = h / np.log(top_k + 1)
    else:
        p = np.exp(logp)
        entropy = -(p * logp).sum(1) / max(np.log(max(c, 2)), 1e-9)
    base = np.stack([logp.max(1), entropy, lse], axis=1)
    if c <= GATE_FULL_MAX:
        base = np.concatenate([base, np.maximum(logp, -30.0)], axis=1)
    return base


def auroc(
    pos: np.ndarray, neg: np.ndarray, wpos: np.ndarray | None = None, wneg: np.ndarray | None = None, empty: float = 0.5
) -> float:
    """P(score of a random positive > score of a random negative), ties counted half (the AUROC).

    With weights, pairs count by the product of their images' weights. `empty` is returned when
    either side has no image (selection treats that as chance; a label reports it as NaN).
    """
    if len(pos) == 0 or len(neg) == 0:
        return empty
    if wpos is not None:
        order = np.argsort(neg, kind="stable")
        ns, cw = neg[order], np.concatenate([[0.0], np.cumsum(wneg[order])])
        lo, hi = np.searchsorted(ns, pos, "left"), np.searchsorted(ns, pos, "right")
        below, tied = cw[lo], cw[hi] - cw[lo]
        return float((wpos * (below + 0.5 * tied)).sum() / (wpos.sum() * wneg.sum()))
    if len(pos) * len(neg) <= 2_000_000:  # direct pairwise comparison: faster than ranking when small
        gt = (pos[:, None] > neg[None, :]).mean()
        eq = (pos[:, None] == neg[None, :]).mean()
        return float(gt + 0.5 * eq)
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([pos, neg]))
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def auroc_rows(pos: np.ndarray, neg: np.ndarray) -> list[float]:
    """`auroc(pos[i], neg[i])` for every row i of two score matrices, to the last bit, faster.

    Where `auroc` compares every pair, this counts the pairs by sorting: for each positive, the
    negatives below it and those tied with it (binary search). The counts are exact integers, and
    they are divided as `np.mean` divides its (exact) float sum of booleans: the same doubles.
    """
    n_pos, n_neg = pos.shape[1], neg.shape[1]
    if n_pos == 0 or n_neg == 0 or n_pos * n_neg > 2_000_000 or np.isnan(pos).any() or np.isnan(neg).any():
        return [auroc(p, n) for p, n in zip(pos, neg)]
    total = n_pos * n_neg
    out = []
    for p, ns in zip(pos, np.sort(neg, axis=1)):
        lo, hi = np.searchsorted(ns, p, "left"), np.searchsorted(ns, p, "right")
        gt, eq = np.float64(int(lo.sum())) / total, np.float64(int((hi - lo).sum())) / total
        out.append(float(gt + 0.5 * eq))
    return out


def fit_gate(feats: np.ndarray, in_domain: np.ndarray, folds: int, seed: int = 0) -> tuple[dict, float]:
    """Logistic regression on the gate features (see `_gate_features`) -> P(in domain).

    Returns the gate fitted on all probe images and its cross-validated AUROC.
    """
    from mll.solve.logreg import LogReg

    if in_domain.all() or not in_domain.any():
        d = feats.shape[1]
        return {
            "coef": [0.0] * d,
            "intercept": 10.0 if in_domain.all() else -10.0,
            "mean": [0.0] * d,
            "scale": [1.0] * d,
        }, float("nan")
    mu, sd = feats.mean(0), feats.std(0) + 1e-6
    z = (feats - mu) / sd
    rng = np.random.default_rng(seed)
    fold = rng.integers(0, folds, len(z))
    cv = np.zeros(len(z))
    for f in range(folds):
        tr = fold != f
        if in_domain[tr].all() or not in_domain[tr].any():
            cv[~tr] = 0.5
            continue
        clf = LogReg(C=1.0, max_iter=500).fit(z[tr], in_domain[tr])
        cv[~tr] = clf.decision_function(z[~tr])
    # balanced: a narrow expert's domain is a small share of the probe set, and g = 0.5 should mean
    # "as likely mine as not", not "rarer than the base rate"
    clf = LogReg(C=1.0, max_iter=500).fit(z, in_domain)
    gate = {
        "coef": clf.coef_[0].tolist(),
        "intercept": float(clf.intercept_[0]),
        "mean": mu.tolist(),
        "scale": sd.tolist(),
    }
    return gate, auroc(cv[in_domain], cv[~in_domain], empty=float("nan"))


def gate_score(gate: dict, logp: np.ndarray, lse: np.ndarray) -> np.ndarray:
    """P(image is in the model's domain) from its log-probabilities and logit log-sum-exp."""
    z = (gate_features(logp, lse, gate.get("top_k")) - np.asarray(gate["mean"])) / np.asarray(gate["scale"])
    return 1.0 / (1.0 + np.exp(-(z @ np.asarray(gate["coef"]) + gate["intercept"])))

"""Adaptation to the target images: weight the node data by how much it looks like them.

A class's node data pools every probe image under its SDAG node, whatever the domain: "3" has
MNIST digits and 8x8 scans. CHCO then picks the heads that are best on that *mixture*, which can
differ from the best heads on the images the task actually holds. The task's images are unlabeled
but present at prediction time, so we estimate the density ratio between target and node images
(covariate-shift importance weighting) and redo the selection and the combiner fit with it:

1. features: for every candidate model (the pruned candidates of every class), its domain features
   on an image (max log-prob, normalised entropy, logit log-sum-exp, and the log-probs of a small
   head: the same features the label's gate uses), for the node images (from the stored outputs)
   and the target images (the candidates run once on them);
2. a domain classifier (regularised logistic regression, balanced) separates target from node
   images; each node image gets the cross-fitted odds w(x) = p(target|x) / p(node|x), normalised to
   mean 1 and clipped to [W_MIN, W_MAX] so that no handful of images decides;
3. when the classifier cannot tell the two apart, nothing changes: the node data already looks like
   the target. "Cannot" is a Mann-Whitney test of the cross-validated AUROC against chance: under no
   shift it has standard deviation sqrt((n_node + n_target + 1) / (12 n_node n_target)), and we
   reweight only above MIN_Z of those (a target that is a sub-population of the node data, like
   MNIST among MNIST + 8x8 digits, caps the AUROC well below 1, so a fixed AUROC bar would miss it
   on large sets and fire on noise on small ones).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mll.labels.scores import auroc, gate_features

W_MIN, W_MAX = 0.1, 10.0
MIN_Z = 3.0  # the AUROC must exceed chance by this many null standard deviations to reweight


@dataclass
class DomainWeights:
    weights: np.ndarray | None  # one per node image, mean 1; None = no shift detected
    auroc: float  # cross-validated AUROC of target vs node images
    z: float  # (auroc - 0.5) / its standard deviation under no shift
    effective_n: float  # (Σw)² / Σw², the node images' effective sample size
    models: list[str]

    def to_dict(self) -> dict:
        return {
            "auroc": round(self.auroc, 4),
            "z": round(self.z, 2),
            "effective_node_images": round(self.effective_n, 1),
            "reweighted": self.weights is not None,
            "models": self.models,
        }


def _features(logp: dict[str, np.ndarray], lse: dict[str, np.ndarray], models: list[str]) -> np.ndarray:
    return np.concatenate([gate_features(logp[m], lse[m]) for m in models], axis=1)


def domain_weights(
    node_logp: dict[str, np.ndarray],
    node_lse: dict[str, np.ndarray],
    target_logp: dict[str, np.ndarray],
    target_lse: dict[str, np.ndarray],
    folds: int = 5,
    C: float = 0.1,
    seed: int = 0,
) -> DomainWeights:
    """Importance weights for the node images from the candidates' outputs on node and target images."""
    from mll.solve.logreg import LogReg

    models = sorted(set(node_logp) & set(target_logp))
    n_node = len(next(iter(node_logp.values()))) if node_logp else 0
    n_tgt = len(next(iter(target_logp.values()))) if target_logp else 0
    if not models or n_node < 2 * folds or n_tgt < 2 * folds:
        return DomainWeights(None, 0.5, 0.0, float(n_node), models)
    X = np.concatenate([_features(node_logp, node_lse, models), _features(target_logp, target_lse, models)])
    X = (X - X.mean(0)) / (X.std(0) + 1e-6)
    d = np.r_[np.zeros(n_node), np.ones(n_tgt)]
    fold = np.random.default_rng(seed).integers(0, folds, len(d))
    p = np.empty(len(d))
    for f in range(folds):  # cross-fitted: an image's odds never come from a classifier that saw it
        tr = fold != f
        clf = LogReg(C=C, max_iter=1000).fit(X[tr], d[tr])
        p[~tr] = clf.predict_proba(X[~tr])[:, 1]
    auc = auroc(p[d == 1], p[d == 0])
    null_sd = np.sqrt((n_node + n_tgt + 1) / (12.0 * n_node * n_tgt))
    z = float((auc - 0.5) / null_sd)
    if z < MIN_Z:
        return DomainWeights(None, auc, z, float(n_node), models)
    q = np.clip(p[:n_node], 1e-4, 1 - 1e-4)
    w = q / (1 - q)
    w = np.clip(w / w.mean(), W_MIN, W_MAX)
    w /= w.mean()
    return DomainWeights(w, auc, z, float(w.sum() ** 2 / (w**2).sum()), models)

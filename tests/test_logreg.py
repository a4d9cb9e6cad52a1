"""The stacking combiner's logistic regression (`mll.solve.logreg`) against scikit-learn's."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import logsumexp
from sklearn.linear_model import LogisticRegression

from mll.solve.logreg import LogReg


def _objective(coef, intercept, X, yi, sw, C, k) -> float:
    """sklearn's lbfgs objective with class_weight="balanced", in the original coordinates."""
    counts = np.bincount(yi, weights=sw, minlength=k)
    w = sw * (counts.sum() / (k * counts))[yi]
    if k == 2:
        z = X @ coef[0] + intercept[0]
        loss = np.logaddexp(0, z) - (yi == 1) * z
    else:
        z = X @ coef.T + intercept
        loss = logsumexp(z, 1) - z[np.arange(len(X)), yi]
    return float(w @ loss / w.sum() + 0.5 / (C * w.sum()) * (coef**2).sum())


@pytest.mark.parametrize("k", [2, 3, 7])
def test_reaches_sklearns_optimum_on_badly_scaled_features(k):
    rng = np.random.default_rng(k)
    n, f = 400, 25
    X = rng.normal(size=(n, f)) * rng.uniform(0.05, 20, size=f) - 8  # log-probability-like scales
    X[:, 3] = -18.42  # a constant column (a class no image reaches), and one nearly so
    X[:, 4] = 0.5 + 1e-12 * rng.normal(size=n)
    labels = np.array([11, 4, 7, 30, 2, 9, 5])[:k]
    yi = rng.integers(0, k, n)
    X[:, 0] += yi * 0.8
    y, sw = labels[yi], rng.uniform(0.3, 2.0, n)
    ours = LogReg(C=0.5).fit(X, y, sample_weight=sw)
    ref = LogisticRegression(C=0.5, max_iter=5000, tol=1e-8, class_weight="balanced").fit(X, y, sample_weight=sw)
    assert list(ours.classes_) == list(ref.classes_)
    yi_sorted = np.searchsorted(ours.classes_, y)  # classes_ are the sorted labels
    f_ours = _objective(ours.coef_, ours.intercept_, X, yi_sorted, sw, 0.5, k)
    f_ref = _objective(ref.coef_, ref.intercept_, X, yi_sorted, sw, 0.5, k)
    assert f_ours <= f_ref + 1e-5  # the same optimum, to the solver's tolerance
    assert np.abs(ours.predict_proba(X) - ref.predict_proba(X)).max() < 0.02
    assert (ours.predict(X) == ref.predict(X)).mean() > 0.99
    assert ours.coef_[:, 3].tolist() == [0.0] * len(ours.coef_)  # nothing to learn from a constant
    assert ours.n_iter_ < 200  # standardised coordinates: tens of steps where sklearn takes hundreds


def test_one_class_is_refused():
    with pytest.raises(ValueError, match="at least 2 classes"):
        LogReg().fit(np.zeros((4, 2)), np.ones(4))

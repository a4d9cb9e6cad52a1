"""L2-regularised logistic regression, the stacking combiner's model, in plain numpy + L-BFGS.

It minimises exactly scikit-learn's `LogisticRegression(C, class_weight="balanced", solver="lbfgs")`
objective (multinomial for 3+ classes, binomial for 2; intercepts unpenalised) with the same L-BFGS
options, so its optimum is sklearn's. Why not sklearn itself: the combiner is fitted dozens of times
per task (re-ranking cross-fits every candidate), on small dense problems (hundreds of images, tens
of features) where sklearn's per-iteration validation and array-API dispatch cost about 4x the
arithmetic. Its state is three arrays, so a fitted combiner saves as safetensors, never a pickle.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, log_expit, softmax


class LogReg:
    """`fit(X, y, sample_weight)`, then `predict_proba(X)`; `coef_`, `intercept_`, `classes_` as in sklearn."""

    def __init__(self, C: float = 1.0, max_iter: int = 2000, tol: float = 1e-4, balanced: bool = True) -> None:
        if C <= 0:
            raise ValueError(f"LogReg: C must be > 0, got {C}")
        self.C, self.max_iter, self.tol, self.balanced = C, max_iter, tol, balanced
        self.n_iter_ = 0

    def fit(self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> LogReg:
        X = np.asarray(X, dtype=np.float64)
        self.classes_, yi = np.unique(np.asarray(y), return_inverse=True)
        k = len(self.classes_)
        if k < 2:
            raise ValueError(f"LogReg needs at least 2 classes in y, got {k}")
        sw = np.ones(len(X)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64).copy()
        if self.balanced:  # sklearn's "balanced": total weight over (classes x weighted class count)
            counts = np.bincount(yi, weights=sw, minlength=k)
            sw *= (counts.sum() / (k * counts))[yi]
        s = sw.sum()
        lam = 1.0 / (self.C * s)
        w = sw / s
        # Optimise over centred, unit-variance columns with the penalty rescaled to match: the same
        # objective in other coordinates (the intercept is unpenalised, so centring is free), the same
        # optimum, and L-BFGS needs far fewer steps on log-probability features spanning decades.
        # A column constant to 1e-9 carries nothing a weight could use: its weight is fixed at 0
        # (keeping it lets L-BFGS's memory fill with subnormal numbers, 10x slower per step).
        mu = X.mean(0)
        sd = X.std(0)
        live = sd > 1e-9
        sd = np.maximum(sd[live], 0.1)
        n, f = len(X), int(live.sum())
        xb = np.hstack([(X[:, live] - mu[live]) / sd, np.ones((n, 1))])  # the intercept: a last, unpenalised column
        pen = np.append(1.0 / sd**2, 0.0)

        if k == 2:
            t = (yi == 1).astype(np.float64)

            def fun(p: np.ndarray) -> tuple[float, np.ndarray]:
                z = xb @ p
                loss = w @ (-log_expit(z) + (1 - t) * z) + 0.5 * lam * (pen * p) @ p
                return float(loss), xb.T @ (w * (expit(z) - t)) + lam * pen * p

            p0 = np.zeros(f + 1)
        else:
            rows = np.arange(n)
            wcol = w[:, None]

            def fun(p: np.ndarray) -> tuple[float, np.ndarray]:
                W = p.reshape(k, f + 1)
                z = xb @ W.T
                zmax = z.max(1, keepdims=True)
                e = np.exp(z - zmax)
                se = e.sum(1, keepdims=True)
                loss = w @ (np.log(se[:, 0]) + zmax[:, 0] - z[rows, yi]) + 0.5 * lam * (pen * W * W).sum()
                e /= se
                e[rows, yi] -= 1.0
                e *= wcol
                return float(loss), (e.T @ xb + lam * W * pen).ravel()

            p0 = np.zeros(k * (f + 1))
        res = minimize(
            fun,
            p0,
            method="L-BFGS-B",
            jac=True,
            options={"maxiter": self.max_iter, "maxls": 50, "gtol": self.tol, "ftol": 64 * np.finfo(float).eps},
        )
        self.n_iter_ = int(res.nit)
        W = res.x.reshape(-1, f + 1)
        self.coef_ = np.zeros((len(W), X.shape[1]))
        self.coef_[:, live] = W[:, :f] / sd
        self.intercept_ = W[:, f] - self.coef_[:, live] @ mu[live]
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        z = np.asarray(X, dtype=np.float64) @ self.coef_.T + self.intercept_
        return z[:, 0] if len(self.classes_) == 2 else z

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        z = self.decision_function(X)
        if len(self.classes_) == 2:
            p = expit(z)
            return np.stack([1 - p, p], axis=1)
        return softmax(z, axis=1)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(1)]

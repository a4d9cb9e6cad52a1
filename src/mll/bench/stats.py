"""Statistics for comparing methods on the same images: paired exact McNemar tests and accuracy
intervals, read from the cells' per-image `hits` strings ('0'/'1' in image order)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def hits_array(hits: str) -> np.ndarray:
    """A cell's `hits` string -> boolean array."""
    if set(hits) - {"0", "1"}:
        raise ValueError("hits must be a string of '0' and '1' (one character per image)")
    return np.frombuffer(hits.encode(), dtype=np.uint8) == ord("1")


@dataclass(frozen=True)
class Paired:
    """Method A against method B on the same images."""

    n: int
    a_only: int  # images A gets right and B wrong
    b_only: int  # images B gets right and A wrong
    p_value: float  # two-sided exact McNemar (binomial on the discordant pairs)

    @property
    def difference(self) -> float:
        """accuracy(A) - accuracy(B)."""
        return (self.a_only - self.b_only) / max(self.n, 1)


def mcnemar(a: np.ndarray | str, b: np.ndarray | str) -> Paired:
    """Exact McNemar test of two methods' per-image correctness on the same images."""
    a = hits_array(a) if isinstance(a, str) else np.asarray(a, dtype=bool)
    b = hits_array(b) if isinstance(b, str) else np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"paired test needs the same images: {a.shape[0]} vs {b.shape[0]} results")
    a_only, b_only = int((a & ~b).sum()), int((~a & b).sum())
    return Paired(len(a), a_only, b_only, mcnemar_p(a_only, b_only))


def mcnemar_p(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts (binomial at 1/2)."""
    from scipy.stats import binomtest

    return 1.0 if a_only + b_only == 0 else float(binomtest(a_only, a_only + b_only, 0.5).pvalue)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n (95% by default): sensible at 0, 1 and small n."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    d = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / d
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, centre - half), min(1.0, centre + half))


def bootstrap_ci(hits: np.ndarray, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `hits` (per-image correctness, 0/1 or a mean over
    seeds), resampling images; (1 - alpha) coverage."""
    h = np.asarray(hits, dtype=float)
    if len(h) == 0:
        return (0.0, 1.0)
    reps = h[np.random.default_rng(seed).integers(0, len(h), (n_boot, len(h)))].mean(1)
    return float(np.quantile(reps, alpha / 2)), float(np.quantile(reps, 1 - alpha / 2))


def family_bootstrap(
    tasks: list[np.ndarray], n_boot: int = 2000, seed: int = 0, alpha: float = 0.05
) -> tuple[float, float, float]:
    """(mean, low, high) of a family's mean accuracy (the mean over its tasks of each task's accuracy),
    the interval by a two-level bootstrap: resample the tasks, then each drawn task's images. With
    one task it is that task's image bootstrap; tasks are the unit a reviewer generalises over."""
    if not tasks:
        return (float("nan"), 0.0, 1.0)
    rng = np.random.default_rng(seed)
    hs = [np.asarray(h, dtype=float) for h in tasks]
    # each task's accuracy under n_boot image resamples, drawn once
    per_task = np.stack([h[rng.integers(0, len(h), (n_boot, len(h)))].mean(1) for h in hs])
    pick = rng.integers(0, len(hs), (n_boot, len(hs)))  # tasks drawn per replicate
    col = rng.integers(0, n_boot, (n_boot, len(hs)))  # an independent image resample per draw
    reps = per_task[pick, col].mean(1)
    mean = float(np.mean([h.mean() for h in hs]))
    return mean, float(np.quantile(reps, alpha / 2)), float(np.quantile(reps, 1 - alpha / 2))


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error control), in the input order."""
    p = np.asarray(p_values, dtype=float)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adj = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adj[i] = running
    return adj.tolist()

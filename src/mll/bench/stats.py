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
    from scipy.stats import binomtest

    a = hits_array(a) if isinstance(a, str) else np.asarray(a, dtype=bool)
    b = hits_array(b) if isinstance(b, str) else np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"paired test needs the same images: {a.shape[0]} vs {b.shape[0]} results")
    a_only, b_only = int((a & ~b).sum()), int((~a & b).sum())
    p = 1.0 if a_only + b_only == 0 else float(binomtest(a_only, a_only + b_only, 0.5).pvalue)
    return Paired(len(a), a_only, b_only, p)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n (95% by default): sensible at 0, 1 and small n."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    d = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / d
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, centre - half), min(1.0, centre + half))

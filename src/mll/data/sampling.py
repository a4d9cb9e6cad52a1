"""Seeded sampling shared by the split code (mll.data.splits, .variants, .clipart).

Every random draw of the splits comes from a generator seeded with the global seed and a name (a
dataset's, a variant's), so adding a dataset never reshuffles another.
"""

from __future__ import annotations

import zlib

import numpy as np

# final_test: the frozen final evaluation, drawn last from what no other split (nor a variant) uses
SPLITS = ("expert_train", "probe", "target_test", "final_test")


def seeded_rng(seed: int, name: str) -> np.random.Generator:
    """The generator of one named draw; crc32 because Python's `hash` is salted per process."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def take(rng: np.random.Generator, idx: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` of `idx` at random (sorted) and the rest (in shuffled order)."""
    idx = rng.permutation(idx)
    return np.sort(idx[:n]), idx[n:]

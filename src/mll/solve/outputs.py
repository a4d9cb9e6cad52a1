"""A cache of hub models' outputs per image, so one image meets one model once.

The benchmark solves many tasks with many methods (and sub-hubs for the growth curve) over the same
target images; every method needs the same models' outputs on them. Outputs are kept in the stored
form the labels use (log-probabilities, top-k truncated for wide heads, plus the logsumexp of the
logits for the gate), in memory and optionally on disk as one `.npz` per model and weights hash, so
a rerun after a change to the method runs no model at all.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from mll.hub.backbones import FeatureCache


class OutputCache:
    """(model, image key) -> stored-form log-probabilities and logsumexp."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else None
        self._mem: dict[str, dict] = {}  # model key -> {"pos": {key: row}, "logp": [arrays], "lse": [arrays]}
        self._lock = threading.Lock()
        # the shared backbones' features of the same images (heads on one backbone run it once)
        self.features = FeatureCache(self.root / "features" if self.root is not None else None)

    @staticmethod
    def _key(model: str, sha: str) -> str:
        return f"{model}-{(sha or 'nohash')[:16]}"

    def _entry(self, mkey: str) -> dict:
        if mkey not in self._mem:
            e = {"pos": {}, "logp": None, "lse": None}
            f = self.root / f"{mkey}.npz" if self.root else None
            if f is not None and f.is_file():
                with np.load(f, allow_pickle=False) as z:
                    e["pos"] = {str(k): i for i, k in enumerate(z["keys"])}
                    e["logp"], e["lse"] = z["logp"], z["lse"]
            self._mem[mkey] = e
        return self._mem[mkey]

    def missing(self, model: str, sha: str, keys: list[str]) -> list[int]:
        """Positions in `keys` whose outputs are not cached yet."""
        with self._lock:
            pos = self._entry(self._key(model, sha))["pos"]
            return [i for i, k in enumerate(keys) if k not in pos]

    def put(self, model: str, sha: str, keys: list[str], logp: np.ndarray, lse: np.ndarray) -> None:
        with self._lock:
            e = self._entry(self._key(model, sha))
            new = [i for i, k in enumerate(keys) if k not in e["pos"]]
            if not new:
                return
            base = 0 if e["logp"] is None else len(e["logp"])
            lp, ls = logp[new].astype(np.float32), lse[new].astype(np.float32)
            e["logp"] = lp if e["logp"] is None else np.concatenate([e["logp"], lp])
            e["lse"] = ls if e["lse"] is None else np.concatenate([e["lse"], ls])
            for j, i in enumerate(new):
                e["pos"][keys[i]] = base + j
            if self.root is not None:
                self.root.mkdir(parents=True, exist_ok=True)
                mkey = self._key(model, sha)
                tmp = self.root / f".{mkey}.tmp.npz"
                ordered = sorted(e["pos"], key=e["pos"].get)
                np.savez(tmp, keys=np.asarray(ordered), logp=e["logp"], lse=e["lse"])
                tmp.replace(self.root / f"{mkey}.npz")  # atomic: an interrupted run leaves the old file

    def take(self, model: str, sha: str, keys: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Cached (log-probs float32, logsumexp) rows for `keys`; all must be present."""
        with self._lock:
            e = self._entry(self._key(model, sha))
            rows = np.asarray([e["pos"][k] for k in keys], dtype=int)
            return e["logp"][rows], e["lse"][rows]

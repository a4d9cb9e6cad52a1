"""The hub's labels, indexed: every labeled model's node table in one columnar table, for the CHCO prune.

In memory the table keeps, per node, where its rows are, so the rows of a task's target nodes are
read without touching the rest (`rows`). On disk the `label` stage keeps a copy of the whole table
in `labels/.index/` (`refresh_index`): `rows.npy`, one uncompressed structured array sorted by node
(memory-mapped, so a new process reads only the target nodes' rows), and `meta.npz` (models, nodes,
each node's first row, and a fingerprint of each model's `summary.json`: inode, size, mtime).
A reader uses it only when every fingerprint matches the labels on disk (one `stat` per model);
otherwise, or when it is missing, it reads every model's node table as before. Summaries are read
when first used. Readers never write it: `labels/` is the `label` stage's output.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from mll.labels.index_file import COLUMNS, _label_folders, _StoredIndex, _Table
from mll.labels.store import NODES, read_label, read_summary


# --- the index -------------------------------------------------------------------------------------
class LabelIndex:
    """Every labeled model's node table, plus summaries; stored outputs load lazily.

    `source` says where the rows came from: "index file" (`labels/.index/`, current), "node tables"
    (every label's nodes.parquet: no index file, or a stale one) or "memory" (built by the caller).
    """

    source = "memory"

    def __init__(self, labels_root: Path, models: list[str] | None = None):
        self.root = Path(labels_root)
        self._labels: dict = {}
        names = list(models) if models is not None else _label_folders(self.root)
        stored = _StoredIndex.open(self.root)
        labeled = stored.match(self.root, names) if stored is not None else None
        if labeled is not None:  # the on-disk index is current: nothing else is read now
            self._frame = None
            self._table = stored.table
            self._rank = stored.rank(labeled)
            self.summaries = LazySummaries(self.root, labeled)
            self.source = "index file"
            return
        self.source = "node tables"
        frames, summaries = [], {}
        for n in names:
            s = read_summary(self.root, n)
            if s is None:
                continue
            summaries[n] = s
            f = pd.read_parquet(self.root / n / NODES, columns=COLUMNS)
            f.insert(0, "model", n)
            frames.append(f)
        self.summaries = summaries
        self._set_frame(pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["model", *COLUMNS]))

    def _set_frame(self, frame: pd.DataFrame) -> None:
        """Index a model-major frame of label rows (columns "model", "node", ...)."""
        self._frame = frame
        self._table = _Table.from_frame(frame)
        self._rank = np.arange(len(self._table.models))

    @property
    def nodes(self) -> pd.DataFrame:
        """All label rows as one frame (model-major), built on first use when read from the on-disk index."""
        if self._frame is None:
            self._frame = self._table.frame(self._rank)
        return self._frame

    @nodes.setter
    def nodes(self, frame: pd.DataFrame) -> None:
        self._set_frame(frame)

    @property
    def models(self) -> list[str]:
        key = tuple(self.summaries)
        if getattr(self, "_models_key", None) != key:
            self._models_key, self._models = key, sorted(self.summaries)
        return self._models

    def subset(self, models: list[str]) -> LabelIndex:
        """The index restricted to `models` (a sub-hub), sharing the loaded labels: nothing is re-read."""
        key = tuple(sorted(set(models)))
        cached = self.__dict__.setdefault("_subsets", {}).get(key)
        if cached is not None:  # the growth curve solves every task over the same sub-hub
            return cached
        keep = set(models)
        unknown = keep - set(self.summaries)
        if unknown:
            raise KeyError(f"not labeled: {sorted(unknown)}; run `mll label` first")
        sub = LabelIndex.__new__(LabelIndex)
        sub.root, sub.source = self.root, self.source
        if isinstance(self.summaries, LazySummaries):
            sub.summaries = self.summaries.restrict(keep)
        else:
            sub.summaries = {m: s for m, s in self.summaries.items() if m in keep}
        sub._table = self._table
        sub._rank = np.where(np.isin(self._table.models, list(keep)), self._rank, -1)
        sub._frame = None
        sub._labels = self._labels
        if len(self._subsets) > 64:
            self._subsets.clear()
        self._subsets[key] = sub
        return sub

    def covered_nodes(self) -> set[str]:
        t = self._table
        if not len(t.node_ids):
            return set()
        ok = (self._rank[np.asarray(t.cols["model"])] >= 0).astype(np.int64)
        if t.perm is not None:
            ok = ok[t.perm]
        per_node = np.add.reduceat(ok, t.starts[:-1]) if len(ok) else np.zeros(len(t.node_ids))
        return set(t.node_ids[per_node > 0].tolist())

    def row_arrays(self, node: str) -> dict[str, np.ndarray]:
        """The label rows of every model covering `node`, as numpy columns ("model" as str objects),
        in the index's model order."""
        t = self._table
        idx = t.slice(node)
        if idx is None:
            return {c: (np.empty(0, dtype=object) if c in ("model", "node") else np.empty(0)) for c in t.columns}
        code = np.asarray(t.cols["model"][idx])
        rank = self._rank[code]
        sel = np.flatnonzero(rank >= 0)
        if len(sel) > 1 and (np.diff(rank[sel]) < 0).any():  # a caller's model order that is not the index's
            sel = sel[np.lexsort((np.asarray(t.cols["order"][idx])[sel], rank[sel]))]
        out = {}
        for c in t.columns:
            if c == "model":
                out[c] = t.models[code[sel]].astype(object)
            elif c == "node":
                out[c] = np.full(len(sel), node, dtype=object)
            else:
                out[c] = np.asarray(t.cols[c][idx])[sel]
        return out

    def rows(self, node: str) -> pd.DataFrame:
        """The label rows of every model covering `node` (see `row_arrays`)."""
        arrays = self.row_arrays(node)
        return pd.DataFrame(arrays, index=np.arange(len(arrays["model"])))

    def covers(self, node: str) -> bool:
        """Whether some model has a head class under `node`."""
        return bool((self.row_arrays(node)["head_classes"] > 0).any())

    def label(self, model: str):
        if model not in self._labels:
            self._labels[model] = read_label(self.root, model, self.summaries.get(model) or None)
        return self._labels[model]


class LazySummaries(Mapping):
    """Labels' summaries by model, each read from its `summary.json` when first used."""

    def __init__(self, root: Path, models: list[str], cache: dict | None = None):
        self.root = Path(root)
        self._models = list(models)
        self._known = set(self._models)
        self._cache = {} if cache is None else cache

    def __getitem__(self, model: str) -> dict:
        if model not in self._known:
            raise KeyError(model)
        if model not in self._cache:
            self._cache[model] = read_summary(self.root, model) or {}
        return self._cache[model]

    def __iter__(self) -> Iterator[str]:
        return iter(self._models)

    def __len__(self) -> int:
        return len(self._models)

    def __contains__(self, model: object) -> bool:
        return model in self._known

    def restrict(self, keep: set[str]) -> LazySummaries:
        return LazySummaries(self.root, [m for m in self._models if m in keep], self._cache)

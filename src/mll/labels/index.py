"""The hub's labels, indexed: every labeled model's node table in one frame, for the CHCO prune."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mll.labels.store import read_label, read_summary


# --- the hub's labels, indexed ---------------------------------------------------------------------
class LabelIndex:
    """Every labeled model's node table in one frame, plus summaries; stored outputs load lazily."""

    def __init__(self, labels_root: Path, models: list[str] | None = None):
        self.root = Path(labels_root)
        names = (
            models
            if models is not None
            else sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
            if self.root.is_dir()
            else []
        )
        frames, self.summaries = [], {}
        for n in names:
            s = read_summary(self.root, n)
            if s is None:
                continue
            self.summaries[n] = s
            f = pd.read_parquet(
                self.root / n / "nodes.parquet",
                columns=[
                    "node",
                    "head_classes",
                    "support",
                    "measured",
                    "top1_hit",
                    "gated_recall",
                    "gated_false_alarm",
                    "false_alarm",
                    "soft_recall",
                ],
            )
            f.insert(0, "model", n)
            frames.append(f)
        self.nodes = (
            pd.concat(frames, ignore_index=True)
            if frames
            else pd.DataFrame(
                columns=[
                    "model",
                    "node",
                    "head_classes",
                    "support",
                    "measured",
                    "top1_hit",
                    "gated_recall",
                    "gated_false_alarm",
                    "false_alarm",
                    "soft_recall",
                ]
            )
        )
        self._by_node = self.nodes.groupby("node").indices if len(self.nodes) else {}
        self._labels: dict = {}

    @property
    def models(self) -> list[str]:
        return sorted(self.summaries)

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
        sub.root = self.root
        sub.summaries = {m: s for m, s in self.summaries.items() if m in keep}
        sub.nodes = self.nodes[self.nodes["model"].isin(keep)].reset_index(drop=True)
        sub._by_node = sub.nodes.groupby("node").indices if len(sub.nodes) else {}
        sub._labels = self._labels
        if len(self._subsets) > 64:
            self._subsets.clear()
        self._subsets[key] = sub
        return sub

    def covered_nodes(self) -> set[str]:
        return set(self.nodes["node"])

    def rows(self, node: str) -> pd.DataFrame:
        """The label rows of every model covering `node` (built from numpy columns: pandas' Arrow
        string columns make row takes on a million-row index take seconds)."""
        if getattr(self, "_cols", None) is None or len(next(iter(self._cols.values()), ())) != len(self.nodes):
            self._cols = {
                c: (self.nodes[c].to_numpy(dtype=object) if c in ("model", "node") else self.nodes[c].to_numpy())
                for c in self.nodes.columns
            }
        idx = self._by_node.get(node)
        if idx is None:
            idx = np.empty(0, dtype=int)
        return pd.DataFrame({c: a[idx] for c, a in self._cols.items()}, index=np.arange(len(idx)))

    def label(self, model: str):
        if model not in self._labels:
            self._labels[model] = read_label(self.root, model)
        return self._labels[model]

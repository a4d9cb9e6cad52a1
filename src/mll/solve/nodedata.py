"""Node data for a task, and the candidates' scores on it, simulated from stored outputs.

A task's node data are the probe images under its target nodes (no model runs): CHCO estimates each
option's accuracy on them, reuse fits its combiner on them, adaptation reweights them.
"""

from __future__ import annotations

import numpy as np

from mll.data.sdag import SDAG
from mll.labels.index import LabelIndex
from mll.labels.scores import gate_score
from mll.labels.store import storage_of


# --- node data and simulated scores ---------------------------------------------------------------
def task_node_data(index: LabelIndex, targets: list[str], sdag: SDAG) -> tuple[list[str], np.ndarray]:
    """Probe images under the target nodes: (uris, class index); an image under two nested targets
    belongs to the more specific one. Costs the size of the targets' subtrees, not probe x targets."""
    if not index.models:
        return [], np.empty(0, dtype=int)
    lab = index.label(index.models[0])
    uris = lab.uris
    rows_of = _rows_by_synset(lab)
    y = np.full(len(uris), -1)
    best_depth = np.full(len(uris), -1)
    for k, t in enumerate(targets):
        if not t or t not in sdag:
            continue
        d = sdag.depth(t)
        hit = [rows_of[node] for node in (sdag.descendants(t) | {t}) & rows_of.keys()]
        if hit:
            rows = np.concatenate(hit)  # each image once: it has one synset
            rows = rows[d > best_depth[rows]]
            y[rows], best_depth[rows] = k, d
    keep = np.flatnonzero(y >= 0)
    return [uris[i] for i in keep], y[keep]


def _row_of_uri(lab) -> dict[str, int]:
    """Each probe image's row in the label, kept on the label object."""
    cached = getattr(lab, "_row_of_uri", None)
    if cached is None:
        cached = lab._row_of_uri = {u: i for i, u in enumerate(lab.uris)}
    return cached


def _rows_by_synset(lab) -> dict[str, np.ndarray]:
    """The probe images' rows per synset, kept on the label object (read once per process)."""
    cached = getattr(lab, "_rows_by_synset", None)
    if cached is None:
        groups: dict[str, list[int]] = {}
        for i, s in enumerate(lab.synsets):
            groups.setdefault(s, []).append(i)
        cached = {s: np.asarray(r) for s, r in groups.items()}
        lab._rows_by_synset = cached
    return cached


def tempered(logp: np.ndarray, t: float) -> np.ndarray:
    """log softmax(z / T) from log softmax(z): the same as scaling the logits (exact for a full
    head; for a top-k stored head the rest's mass is spread evenly over the others, as when the
    dense vector is rebuilt)."""
    if t == 1.0:
        return logp
    x = logp.astype(np.float64) / t
    m = x.max(1, keepdims=True)
    return x - (m + np.log(np.exp(x - m).sum(1, keepdims=True)))


MASKED_LOGP = -1e4  # a masked class's log-probability (mll.solve.masking): exp() is 0, no inf reaches a fit


def mask_logp(logp: np.ndarray, cols: list[int] | None) -> np.ndarray:
    """log softmax over the columns not in `cols`, from log softmax over all: the masked classes get
    `MASKED_LOGP` and the others share their mass (what removing those logits does)."""
    if not cols:
        return logp
    x = np.array(logp, dtype=np.float64)
    x[:, cols] = -np.inf
    m = x.max(1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    lse = m + np.log(np.maximum(np.exp(x - m).sum(1, keepdims=True), 1e-300))
    out = x - lse
    out[:, cols] = MASKED_LOGP
    return out


TEMPERATURES = ("none", "full", "all")  # which models' logits are divided by their fitted temperature


class ScoreBank:
    """Gated subtree probabilities g_m(x) P_m(t|x) of candidate models on node-data images (cached).

    With `temperature` (`TEMPERATURES`), P_m comes from softmax(z / T_m), T_m the label's fitted
    temperature: for every model (`all`) or only for those whose label stores the full log-probability
    vector (`full`), where rescaling is exact; a top-k stored head does not know how its tail mass is
    spread, so it keeps T = 1 there. The gate always reads the unscaled outputs it was fitted on.
    `masked` ({model: head columns}, `mll.solve.masking`) removes those classes from P_m (not from
    the gate, which reads the model's own outputs)."""

    def __init__(
        self,
        index: LabelIndex,
        sdag: SDAG,
        uris: list[str],
        hub_cards: dict,
        temperature: str = "none",
        masked: dict[str, list[int]] | None = None,
    ):
        if temperature not in TEMPERATURES:
            raise ValueError(f"solve.temperature: {temperature!r} is not one of {', '.join(TEMPERATURES)}")
        self.index, self.sdag, self.cards = index, sdag, hub_cards
        self.uris = uris
        self.temperature_mode = temperature
        self.masked = dict(masked or {})
        self._rows: dict[str, np.ndarray] = {}
        self._cache: dict = {}

    def _row_index(self, model: str) -> np.ndarray:
        if model not in self._rows:
            # labels measured on the same probe set share one row map
            key = self.index.summaries.get(model, {}).get("probe_hash") or model
            if key not in self._rows:
                pos = _row_of_uri(self.index.label(model))
                self._rows[key] = np.asarray([pos[u] for u in self.uris], dtype=int)
            self._rows[model] = self._rows[key]
        return self._rows[model]

    def logp(self, model: str) -> np.ndarray:
        key = ("logp", model)
        if key not in self._cache:
            lab = self.index.label(model)  # decodes (and, memory-mapped, reads) only the node images' rows
            self._cache[key] = lab.dense_logp(self.cards[model].num_classes, self._row_index(model))
        return self._cache[key]

    def scaled_logp(self, model: str) -> np.ndarray:
        """log P_m(c|x) as selection reads it: temperature-scaled when the bank is, without masked classes."""
        if self.temperature(model) == 1.0 and model not in self.masked:
            return self.logp(model)
        key = ("logp_t", model)
        if key not in self._cache:
            self._cache[key] = mask_logp(tempered(self.logp(model), self.temperature(model)), self.masked.get(model))
        return self._cache[key]

    def temperature(self, model: str) -> float:
        """The temperature applied to `model`: its label's fitted T_m, or 1 (see the class doc)."""
        summary = self.index.summaries.get(model, {})
        full = storage_of(summary, self.cards[model].num_classes).top_k is None
        if self.temperature_mode == "none" or (self.temperature_mode == "full" and not full):
            return 1.0
        t = summary.get("temperature")
        return float(t) if t and np.isfinite(t) and t > 0 else 1.0

    def gate(self, model: str) -> np.ndarray:
        key = ("gate", model)
        if key not in self._cache:
            lab = self.index.label(model)
            rows = self._row_index(model)
            self._cache[key] = gate_score(lab.summary["gate"], self.logp(model), np.asarray(lab.lse[rows]))
        return self._cache[key]

    def subtree_prob(self, model: str, node: str, exclude: tuple[str, ...] = ()) -> np.ndarray:
        key = ("p", model, node, exclude)
        if key not in self._cache:
            cols = head_columns(self.cards[model], node, self.sdag, exclude)
            if not cols:
                self._cache[key] = np.zeros(len(self.uris))
            else:
                self._cache[key] = np.exp(self.scaled_logp(model)[:, cols]).sum(1)
        return self._cache[key]

    def lse(self, model: str) -> np.ndarray:
        """Logit log-sum-exp of `model` on the node images (for domain features)."""
        return np.asarray(self.index.label(model).lse[self._row_index(model)])

    def score(self, model: str, node: str, exclude: tuple[str, ...] = ()) -> np.ndarray:
        return self.gate(model) * self.subtree_prob(model, node, exclude)


_COLS_CACHE: dict = {}


def head_columns(card, node: str, sdag: SDAG, exclude: tuple[str, ...] | list[str] = ()) -> list[int]:
    """Indices of a card's head classes under `node`, minus those under nested targets `exclude`."""
    # a 1000-class head walks 1000 ancestor sets per call; baselines and sub-hubs repeat the same calls
    key = (id(sdag), card.name, card.weights_sha256, len(card.synsets), node, tuple(exclude))
    hit = _COLS_CACHE.get(key)
    if hit is None:
        if len(_COLS_CACHE) > 100_000:
            _COLS_CACHE.clear()
        hit = _COLS_CACHE[key] = _head_columns(card, node, sdag, exclude)
    return list(hit)


def _head_columns(card, node: str, sdag: SDAG, exclude) -> list[int]:
    if node not in sdag:
        return []
    out = []
    for i, s in enumerate(card.synsets):  # walk up from each head class: cheap, unlike node's subtree
        if s not in sdag:
            continue
        up = up_closure(sdag, s)
        if node in up and not any(e in up for e in exclude):
            out.append(i)
    return out


_UP_CACHE: dict = {}


def up_closure(sdag: SDAG, s: str) -> frozenset:
    """{s} and its ancestors, cached per SDAG object."""
    key = (id(sdag), s)
    hit = _UP_CACHE.get(key)
    if hit is None:
        if len(_UP_CACHE) > 200_000:
            _UP_CACHE.clear()
        hit = _UP_CACHE[key] = frozenset(sdag.ancestors(s) | {s})
    return hit

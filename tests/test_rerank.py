"""Re-ranking CHCO's candidates with the combined, cross-fitted objective (`mll.solve.rerank`)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mll.bench.synthetic import synthetic_card
from mll.data.sdag import SDAG
from mll.labels.index import LabelIndex
from mll.labels.store import Label
from mll.solve.chco import select
from mll.solve.problem import Problem
from mll.solve.rerank import Rerank, candidates, stratified_folds
from mll.solve.solvers import solve_exact

# class -> node images; each toy model has a two-class head [its class, D] and fires (+3 logits) on
# the images of the classes listed: M1 and M3 both fire on A and B (each separates its class from C
# only), M2 fires on A and C (separates A from B only), M4 on C alone
IMAGES = {"A": 30, "B": 30, "C": 60}
MODELS = {"M1": ("A", "AB"), "M2": ("A", "AC"), "M3": ("B", "AB"), "M4": ("C", "C")}


class ToyIndex(LabelIndex):
    """Four hand-made labels over a four-leaf tree (R -> A, B, C, D), built in memory."""

    def __init__(self):
        rng = np.random.default_rng(0)
        self.uris = [f"toy://{c}/{i}" for c, n in IMAGES.items() for i in range(n)]
        self.synsets = [c for c, n in IMAGES.items() for _ in range(n)]
        self.cards = {m: synthetic_card(m, [c, "D"]) for m, (c, _) in MODELS.items()}
        gate = {"coef": [0.0] * 5, "intercept": 4.0, "mean": [0.0] * 5, "scale": [1.0] * 5}  # always in domain
        self.summaries = {m: {"gate": gate, "probe_hash": "toy", "key": m, "storage": "full"} for m in MODELS}
        self._labels = {}
        rows = []
        for m, (c, fires) in MODELS.items():
            logits = np.zeros((len(self.uris), 2), dtype=np.float32)
            logits[:, 0] = np.where(np.isin(self.synsets, list(fires)), 3.0, -3.0) + rng.normal(0, 0.5, len(self.uris))
            logp = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
            lse = np.logaddexp.reduce(logits, axis=1).astype(np.float32)
            self._labels[m] = Label(m, "toy", self.uris, self.synsets, logp.astype(np.float16), None, None, None, lse,
                                    pd.DataFrame(), self.summaries[m])  # fmt: skip
            for node, heads in ((c, 1), ("D", 1), ("R", 2)):
                rows.append({"model": m, "node": node, "head_classes": heads, "support": 1, "measured": True,
                             "top1_hit": 0.9, "gated_recall": 0.9, "gated_false_alarm": 0.05,
                             "false_alarm": 0.1, "soft_recall": 0.9})  # fmt: skip
        self._set_frame(pd.DataFrame(rows))
        self.root = None

    @property
    def models(self) -> list[str]:
        return sorted(MODELS)

    def label(self, model: str) -> Label:
        return self._labels[model]


@pytest.fixture(scope="module")
def toy() -> tuple[ToyIndex, SDAG]:
    nodes = {
        n: {"name": f"{n.lower()}.n.01", "lemmas": [n], "definition": n, "depth": int(n != "R"), "lexname": "x",
            "counts": [1]}
        for n in "RABCD"
    }  # fmt: skip
    return ToyIndex(), SDAG.from_edges(nodes, [("R", c) for c in "ABCD"])


def _select(toy, rerank):
    index, sdag = toy
    return select(index, sdag, list("ABC"), list("ABC"), index.cards, max_heads=1, rerank=rerank)


def _comparable(sel) -> dict:
    d = json.loads(sel.to_json())
    for k in ("seconds", "timings"):
        d.pop(k)
    return d


def test_the_proxy_misses_a_cross_class_confusion_that_reranking_finds(toy):
    proxy, _, _ = _select(toy, None)
    assert proxy.by_class() == {"A": ["M1"], "B": ["M3"], "C": ["M4"]}  # M1's AUROC 0.83 beats M2's 0.67
    sel, _, _ = _select(toy, Rerank(8))
    assert sel.by_class() == {"A": ["M2"], "B": ["M3"], "C": ["M4"]}
    rows = sel.rerank["candidates"]
    assert rows[0]["how"] == "proxy optimum" and sel.rerank["winner"] == 1
    assert rows[1]["changed"] == {"A": ["M2"]}
    assert "re-ranked" in sel.classes[0].why and "re-ranked" not in sel.classes[1].why
    # the proxy prefers the first, the combined objective the second: A and B images look alike to M1
    # and M3, so the proxy's combination gets about half of them wrong
    assert rows[0]["proxy"] > rows[1]["proxy"]
    assert rows[0]["accuracy"] < 0.85 < 0.95 < rows[1]["accuracy"]
    assert sel.objective == rows[1]["proxy"]  # the selection's objective is still the proxy's, of the winner
    assert sel.timings["rerank"] > 0 and proxy.timings["rerank"] == 0.0


def test_rerank_zero_reproduces_the_proxy_selection_exactly(toy):
    plain, _, _ = _select(toy, None)
    zero, _, _ = _select(toy, Rerank(0))
    assert _comparable(zero) == _comparable(plain) and zero.rerank == {}
    assert set(zero.timings) == {"node_data", "prune", "proxy", "solve", "rerank"}


def test_one_candidate_is_the_proxy_optimum_and_keeps_it(toy):
    sel, _, _ = _select(toy, Rerank(1))
    plain, _, _ = _select(toy, None)
    assert sel.by_class() == plain.by_class() and sel.rerank["winner"] == 0 and len(sel.rerank["candidates"]) == 1


def test_ties_keep_the_proxy_optimum(toy, monkeypatch):
    import mll.solve.rerank as rr

    same = np.ones(sum(IMAGES.values()))
    monkeypatch.setattr(rr.Rerank, "cross_fitted_hits", lambda self, *a: same)  # every candidate ties
    sel, _, _ = _select(toy, Rerank(8))
    assert sel.rerank["winner"] == 0 and sel.by_class()["A"] == ["M1"]
    assert [r["z"] for r in sel.rerank["candidates"]][1:] == [0.0]


def test_a_gain_within_the_noise_keeps_the_proxy_optimum(toy):
    sel, _, _ = _select(toy, Rerank(8, min_z=1e3))  # the same evidence, an unreachable bar
    assert sel.rerank["winner"] == 0 and sel.by_class()["A"] == ["M1"]
    assert 3 < sel.rerank["candidates"][1]["z"] < 1e3


def test_node_weights_enter_the_combined_score(toy):
    index, sdag = toy
    y = np.repeat([0, 1, 2], list(IMAGES.values()))
    w = np.where(y == 1, 0.01, 1.0)  # B barely counts: the A/B confusion costs the proxy's choice less
    sel, _, _ = select(index, sdag, list("ABC"), list("ABC"), index.cards, max_heads=1, weights=w, rerank=Rerank(8))
    unweighted, _, _ = _select(toy, Rerank(8))
    gap = lambda s: s.rerank["candidates"][1]["accuracy"] - s.rerank["candidates"][0]["accuracy"]  # noqa: E731
    assert 0 < gap(sel) < gap(unweighted) - 0.03


def test_candidates_are_distinct_start_with_the_proxy_and_follow_the_smallest_margins():
    opts = [[("a",), ("b",), ("a", "b")], [("c",), ("d",)], [("e",)]]
    p = Problem(opts, [[0.9, 0.89, 0.95], [0.8, 0.5], [0.7]], 0.01)
    proxy = solve_exact(p)[0]
    got = candidates(p, proxy, 8, lambda q: solve_exact(q)[0])
    choices = [tuple(c) for c, _ in got]
    assert choices[0] == tuple(proxy) and len(set(choices)) == len(choices)
    assert all(len(c) == 3 and all(0 <= o < len(opts[k]) for k, o in enumerate(c)) for c in choices)
    assert candidates(p, proxy, 2, lambda q: solve_exact(q)[0]) == got[:2]  # a prefix: fewer is a cut


def test_folds_are_stratified_and_seeded():
    y = np.repeat([0, 1, 2], [10, 7, 2])
    f = stratified_folds(y, 3, seed=0)
    assert np.array_equal(f, stratified_folds(y, 3, seed=0))
    for c in range(3):
        counts = np.bincount(f[y == c], minlength=3)
        assert counts.max() - counts.min() <= 1


def test_reranking_runs_on_the_synthetic_hub_and_times_itself(synthetic_task):
    sdag, index, names, targets = synthetic_task
    plain, _, _ = select(index, sdag, names, targets, index.cards)
    sel, _, _ = select(index, sdag, names, targets, index.cards, rerank=Rerank(4, combiner="statistics"))
    assert 1 <= len(sel.rerank["candidates"]) <= 4 and sel.rerank["candidates"][0]["models"] == plain.models
    assert sel.timings["rerank"] > 0

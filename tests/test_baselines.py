"""The baselines' arithmetic (INB ranking, node_data, hindsight search), LOVM's selection-quality
metrics, and growth at fixed coverage."""

from __future__ import annotations

from itertools import pairwise
from types import SimpleNamespace

import numpy as np
import pytest

from mll.bench.baselines import fit_node_data, greedy_hindsight
from mll.bench.quality import growth_coverage, growth_fixed_coverage, lovm_metrics, selection_quality
from mll.bench.run import sub_hubs
from mll.solve.rerank import stratified_folds
from mll.solve.semantic import generalists


def _card(n: int, domain: str = "") -> SimpleNamespace:
    return SimpleNamespace(num_classes=n, domain=domain)


def test_generalists_are_ranked_by_their_labels_and_exclude_domain_cuts():
    cards = {"g1": _card(1000, "general"), "g2": _card(1000, "general"), "cut": _card(120, "photos"), "s": _card(10)}
    summaries = {m: {"in_domain_accuracy": a} for m, a in (("g1", 0.6), ("g2", 0.7), ("cut", 0.9))}
    assert generalists(cards, summaries, 100) == ["g2", "g1"]  # the domain cut is better but not general
    # a hub whose cards name no general domain: every wide head, best first; one without a label last
    plain = {"a": _card(200), "b": _card(300), "c": _card(5)}
    assert generalists(plain, {"b": {"in_domain_accuracy": 0.5}}, 100) == ["b", "a"]


def test_stratified_folds_deal_every_class_over_every_fold():
    y = np.repeat([0, 1, 2], [7, 5, 3])
    f = stratified_folds(y, 3, seed=1)
    for c in range(3):
        assert sorted(np.bincount(f[y == c], minlength=3)) == sorted(np.bincount(np.arange((y == c).sum()) % 3))
    assert (stratified_folds(y, 3, seed=1) == f).all()


def test_node_data_picks_the_backbone_whose_features_separate_the_classes():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 12)
    yt = np.repeat(np.arange(3), 10)
    good = lambda labels: np.eye(3)[labels] * 4 + rng.normal(size=(len(labels), 3))  # noqa: E731
    noise = lambda labels: rng.normal(size=(len(labels), 3))  # noqa: E731
    called = []
    fit = fit_node_data(
        {"noise": lambda: noise(y), "good": lambda: good(y)},
        {"noise": lambda: called.append("noise") or noise(yt), "good": lambda: good(yt)},
        y,
    )
    assert fit.backbone == "good" and fit.cv_accuracy["good"] > 0.9 > fit.cv_accuracy["noise"]
    assert (fit.predictions == yt).mean() > 0.9
    assert called == []  # only the chosen backbone's test features are computed
    with pytest.raises(ValueError, match="at least two classes"):
        fit_node_data({"good": lambda: good(y[:12])}, {}, y[:12])


def test_greedy_hindsight_adds_models_while_the_test_accuracy_rises():
    value = {"a": 0.5, "b": 0.2, "c": 0.1, "d": -0.3}
    chosen, best, tried = greedy_hindsight(lambda ms: sum(value[m] for m in ms), "a", ["a", "b", "c", "d"], 3)
    assert chosen == {"a", "b", "c"} and best == pytest.approx(0.8) and tried == 1 + 3 + 2 + 1
    one, _, _ = greedy_hindsight(lambda ms: sum(value[m] for m in ms), "a", ["a", "b", "c", "d"], 1)
    assert one == {"a", "b"}


def test_lovm_metrics_follow_the_definitions():
    true = {f"m{i}": 0.9 - 0.1 * i for i in range(8)}  # m0 best
    assert lovm_metrics(true, true) == pytest.approx({"r5": 1.0, "tau": 1.0, "l1": 0.0})
    shifted = {m: v + 0.05 for m, v in true.items()}
    assert lovm_metrics(shifted, true)["l1"] == pytest.approx(0.05)
    reverse = {m: -v for m, v in true.items()}  # predicts m7..m3 as the top five: two of the true top five
    r = lovm_metrics(reverse, true)
    assert r["r5"] == pytest.approx(2 / 5) and r["tau"] == 0.0  # fewer than 3 overlap: tau 0
    swap = dict(true, m0=0.45, m4=0.95)  # same top five, order partly wrong
    r = lovm_metrics(swap, true)
    assert r["r5"] == 1.0 and -1 < r["tau"] < 1


def _single_cell(task: str, per_model: dict) -> dict:
    return {"task": task, "method": "single", "status": "ok", "accuracy": 0.5, "per_model": per_model}


def test_selection_quality_ranks_tasks_with_enough_models():
    per = {
        f"m{i}": {"estimated": 0.9 - 0.1 * i, "measured": 0.85 - 0.1 * i, "classes": 3, "in_domain": 0.1 * i}
        for i in range(8)
    }
    per["one-class"] = {"estimated": 1.0, "measured": 1.0, "classes": 1, "in_domain": 0.9}  # not ranked
    few = {k: per[k] for k in ("m0", "m1", "m2")}
    cells = {
        "tasks": {"t": {"split": "dev"}, "u": {"split": "dev"}, "test:t": {"split": "test"}},
        "cells": [
            _single_cell("t", per),
            _single_cell("u", few),
            _single_cell("test:t", per),
            {"task": "t", "method": "mll", "status": "ok", "accuracy": 0.8, "estimated_accuracy": 0.9},
        ],
    }
    q = selection_quality(cells)
    dev = q["dev"]
    assert dev["ranking_mll"] == {"r5": 1.0, "tau": 1.0, "l1": 0.05, "n_tasks": 1}  # u has too few models
    assert dev["ranking_inb"]["r5"] == pytest.approx(0.4) and dev["per_task"]["t"]["models"] == 8
    assert dev["self_estimate_l1"] == pytest.approx(0.1)
    assert q["test"]["ranking_mll"]["n_tasks"] == 1 and q["test"]["self_estimate_l1"] is None


def test_growth_at_fixed_coverage_keeps_only_covering_sub_hubs():
    tasks = {"a": {"family": "in_domain"}, "b": {"family": "cross_style"}}
    rows = [
        {"task": "a", "method": "mll", "size": 1, "accuracy": 0.2, "coverage": 0.5, "independent": 1},
        {"task": "a", "method": "mll", "size": 4, "accuracy": 0.7, "coverage": 1.0, "independent": 3},
        {"task": "a", "method": "mll", "size": 4, "accuracy": 0.9, "coverage": 1.0, "independent": 4},
        {"task": "b", "method": "inb", "size": 4, "accuracy": 0.4, "coverage": 1.0, "independent": 4},
    ]
    fixed = growth_fixed_coverage({"tasks": tasks, "growth": rows})
    assert fixed == {"cross_style": {"inb": {"4": 0.4}}, "in_domain": {"mll": {"4": 0.8}}}
    cov = growth_coverage({"tasks": tasks, "growth": rows})
    assert cov["1"] == {"coverage": 0.5, "independent": 1.0} and cov["4"]["coverage"] == 1.0


def test_sub_hubs_are_nested_random_orders():
    models = [f"m{i}" for i in range(10)]
    subs = sub_hubs(models, (1, 2, 4, 8, 10), seeds=3, seed=0)
    assert [s for s, _, _ in subs].count(10) == 1
    for order in range(3):
        chain = [set(m) for s, o, m in subs if o == order]
        assert all(a < b for a, b in pairwise(chain))  # each sub-hub grows the one before
    firsts = {tuple(m) for s, _, m in subs if s == 1}
    assert len(firsts) > 1  # different orders start from different models

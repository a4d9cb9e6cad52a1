"""CHCO's cost counts shared computation once: models map to cost units (a standalone model is one; a
head on a shared backbone is its backbone's forward pass, shared, plus its own cheap head), and the
objective charges the union of the units paid. With standalone models only it is the old per-model
cost, choices included."""

import dataclasses
import itertools

import numpy as np
import pytest

from mll.bench.synthetic import SyntheticIndex, random_problem, synthetic_sdag
from mll.hub.cards import InputConfig
from mll.solve.chco import cost_units, select
from mll.solve.heuristic import _coordinate_ascent, solve_heuristic
from mll.solve.problem import Problem
from mll.solve.solvers import solve_exact


def _per_model_objective(p: Problem, choice: list[int]) -> float:
    """The objective as it was before cost units: mean accuracy − cost × distinct models."""
    used = {m for c, o in enumerate(choice) if o >= 0 for m in p.options[c][o]}
    acc = sum(p.acc[c][o] for c, o in enumerate(choice) if o >= 0)
    return acc / max(len(p.options), 1) - p.cost * len(used)


def _brute(p: Problem, objective=None) -> float:
    objective = objective or p.objective
    sizes = [len(o) for o in p.options]
    return max(objective(list(c)) for c in itertools.product(*[range(s) if s else [-1] for s in sizes]))


def _singleton_units(p: Problem) -> Problem:
    """The same problem with every model's own unit spelled out (the general path, not the default)."""
    models = {m for opts in p.options for o in opts for m in o}
    return Problem(p.options, p.acc, p.cost, {m: (m,) for m in models}, {m: p.cost for m in models})


# --- (a) standalone models only: today's objective and today's choices -------------------------------
def test_standalone_models_give_the_per_model_objective_exactly():
    rng = np.random.default_rng(0)
    for _ in range(50):
        p = random_problem(rng, int(rng.integers(1, 12)), int(rng.integers(2, 30)), cost=float(rng.uniform(0, 0.1)))
        q = _singleton_units(p)
        for _ in range(10):
            choice = [int(rng.integers(0, len(o))) for o in p.options]
            assert p.objective(choice) == _per_model_objective(p, choice)  # bit for bit
            assert q.objective(choice) == _per_model_objective(p, choice)


def test_standalone_models_solve_to_the_per_model_optimum_with_every_solver():
    rng = np.random.default_rng(1)
    for trial in range(12):
        # small (exhaustive) and 5 classes x 6 options = 7,776 combinations (HiGHS), both brute-forced
        k = 3 if trial % 2 else 5
        p = random_problem(rng, k, int(rng.integers(4, 20)), cost=float(rng.uniform(0, 0.06)))
        best = _brute(p, lambda c, p=p: _per_model_objective(p, c))
        q = _singleton_units(p)
        (ex, how), (he, _) = solve_exact(p), solve_heuristic(p)
        assert how == ("highs" if k == 5 else "exhaustive")
        assert _per_model_objective(p, ex) == pytest.approx(best, abs=1e-12)
        assert _per_model_objective(p, he) <= best + 1e-12
        # the general unit path makes the very same choices as the default one
        assert solve_exact(q) == (ex, how) and solve_heuristic(q)[0] == he


def test_standalone_models_choose_as_before_on_benchmark_sized_problems():
    """HiGHS and the heuristic on 30 classes x 100 models: the choices with the units spelled out
    are those of the default (one unit per model), and the objective is the per-model one."""
    for seed in range(4):
        p = random_problem(np.random.default_rng(30_000 + seed), 30, 100)
        q = _singleton_units(p)
        for solve in (solve_exact, solve_heuristic):
            a, b = solve(p)[0], solve(q)[0]
            assert a == b and p.objective(a) == _per_model_objective(p, a)


# --- (b) a shared backbone is paid once --------------------------------------------------------------
LAMBDA, RATIO = 0.01, 0.1
SHARED = {"h1": ("bb@160", "h1"), "h2": ("bb@160", "h2")}
SHARED_COSTS = {"bb@160": LAMBDA, "h1": LAMBDA * RATIO, "h2": LAMBDA * RATIO}


def test_a_second_head_on_a_paid_backbone_beats_a_standalone_model_of_equal_accuracy():
    # class A has only h1 (so the backbone is paid); class B: h2 on the same backbone, or standalone s2
    p = Problem([[("h1",)], [("h2",), ("s2",)]], [[0.9], [0.8, 0.8]], LAMBDA, SHARED, SHARED_COSTS)
    for solve in (solve_exact, solve_heuristic):
        choice, _ = solve(p)
        assert choice == [0, 0]
    # by hand: (0.9 + 0.8) / 2 − (backbone 0.01 + two heads 0.001 each), the backbone once
    assert p.objective([0, 0]) == pytest.approx(0.85 - 0.012, abs=1e-15)
    assert p.objective([0, 1]) == pytest.approx(0.85 - (0.01 + 0.001 + 0.01), abs=1e-15)
    assert p.models_cost(["h1", "h2"]) == pytest.approx(0.012, abs=1e-15)
    assert p.units_of(["h1", "h2"]) == {"bb@160", "h1", "h2"}
    # s2 slightly better: the per-model cost would take it (0.855 − 0.02 > 0.85 − 0.02), the units
    # keep the head (0.85 − 0.012 = 0.838 > 0.855 − 0.021 = 0.834)
    p = Problem([[("h1",)], [("h2",), ("s2",)]], [[0.9], [0.8, 0.81]], LAMBDA, SHARED, SHARED_COSTS)
    for solve in (solve_exact, solve_heuristic):
        assert solve(p)[0] == [0, 0]
    assert _per_model_objective(p, [0, 1]) > _per_model_objective(p, [0, 0])


def test_one_head_alone_may_not_pay_for_its_backbone_but_two_do():
    # each class: a head on the backbone (0.9005) or its own standalone model (0.9)
    opts = [[("h1",), ("s1",)], [("h2",), ("s2",)]]
    p = Problem(opts, [[0.9005, 0.9], [0.9005, 0.9]], LAMBDA, SHARED, SHARED_COSTS)
    for solve in (solve_exact, solve_heuristic):
        assert solve(p)[0] == [0, 0]  # 0.9005 − 0.012 > 0.9 − 0.02 (and > 0.90025 − 0.021 mixed)
    assert p.objective([0, 0]) == pytest.approx(0.9005 - 0.012, abs=1e-15)
    # one class alone: head + backbone cost 0.011, the standalone model 0.01: 0.0005 does not pay it
    p1 = Problem(opts[:1], [[0.9005, 0.9]], LAMBDA, SHARED, SHARED_COSTS)
    assert solve_exact(p1)[0] == solve_heuristic(p1)[0] == [1]


def test_scaling_a_problem_scales_every_unit():
    p = Problem([[("h1",)], [("h2",), ("s2",)]], [[0.9], [0.8, 0.8]], LAMBDA, SHARED, SHARED_COSTS)
    for f in (0.0, 0.5, 2.0, 4.0):
        q = p.scaled(f)
        assert q.models_cost(["h1", "h2", "s2"]) == pytest.approx(f * p.models_cost(["h1", "h2", "s2"]), abs=1e-15)
        assert q.unit_cost("s2") == pytest.approx(f * LAMBDA)  # a standalone model: the default cost, scaled
    assert p.unit_costs == SHARED_COSTS  # the original is left alone


# --- (c) exact vs heuristic on unit-structured problems ------------------------------------------------
def test_exact_is_the_optimum_and_the_heuristic_close_on_small_unit_problems():
    rng = np.random.default_rng(2)
    gaps = []
    for _ in range(40):
        p = random_problem(
            rng,
            int(rng.integers(2, 5)),
            int(rng.integers(3, 15)),
            cost=float(rng.uniform(0, 0.1)),
            backbones=int(rng.integers(1, 4)),
            head_share=0.7,
        )
        best = _brute(p)
        ex, _ = solve_exact(p)
        assert p.objective(ex) == pytest.approx(best, abs=1e-12)
        he, _ = solve_heuristic(p)
        assert all(0 <= o < len(opts) for o, opts in zip(he, p.options))
        gaps.append(best - p.objective(he))
    assert min(gaps) >= -1e-12 and max(gaps) <= 0.01, gaps


def test_heuristic_is_close_to_highs_on_benchmark_sized_unit_problems():
    gaps = []
    for seed in range(8):
        p = random_problem(np.random.default_rng(40_000 + seed), 30, 100, backbones=10, head_share=0.7)
        (ex, how), (he, _) = solve_exact(p), solve_heuristic(p)
        assert how == "highs"
        greedy = _coordinate_ascent(p, [int(np.argmax(a)) for a in p.acc], 3)
        assert p.objective(he) >= p.objective(greedy) - 1e-12
        gaps.append(p.objective(ex) - p.objective(he))
    assert min(gaps) >= -1e-9 and max(gaps) <= 0.01, gaps


# --- (d) the ILP path agrees with exhaustive search ---------------------------------------------------
def test_highs_with_units_agrees_with_exhaustive_search():
    rng = np.random.default_rng(3)
    for _ in range(8):
        # 5 classes x 6 options = 7,776 combinations: past the exhaustive limit, so solve_exact uses HiGHS
        p = random_problem(
            rng, 5, int(rng.integers(5, 14)), cost=float(rng.uniform(0.005, 0.08)), backbones=2, head_share=0.8
        )
        ex, how = solve_exact(p)
        assert how == "highs"
        assert p.objective(ex) == pytest.approx(_brute(p), abs=1e-9)


# --- select(): units from the cards, recorded in the selection ---------------------------------------
def test_select_builds_units_from_cards_and_records_them(synthetic_task):
    sdag, index, names, targets = synthetic_task
    plain, _, _ = select(index, sdag, names, targets, index.cards)
    assert plain.cost_units == {m: [m] for m in plain.models}  # standalone: one unit each, themselves
    assert plain.cost_per_model == 0.01 and plain.head_cost_ratio == 0.1
    # every model a head on one backbone: the backbone is paid once, each head at a tenth
    cards = {m: dataclasses.replace(c, backbone="efficientnet_lite0") for m, c in index.cards.items()}
    sel, _, _ = select(index, sdag, names, targets, cards)
    assert sel.cost_units["efficientnet_lite0@8"] == sel.models
    assert set(sel.cost_units) == {"efficientnet_lite0@8", *sel.models}
    acc = [c.estimated_accuracy for c in sel.classes if c.models]
    cost = 0.01 + 0.001 * len(sel.models)
    assert sel.objective == pytest.approx(sum(acc) / len(sel.classes) - cost, abs=1e-3)
    # the exact optimum under the unit costs is no worse than the per-model choice priced in units
    n = len(plain.models)
    assert sel.solver == "exhaustive" or sel.solver == "highs"
    assert sel.objective >= plain.objective + 0.01 * n - (0.01 + 0.001 * n) - 1e-4


def test_cost_unit_names_follow_backbone_and_input_config():
    base = SyntheticIndex(synthetic_sdag(200, seed=0), 6, seed=0).cards
    m = sorted(base)
    cards = {
        m[0]: dataclasses.replace(base[m[0]], backbone="b0", input=InputConfig(size=160)),
        m[1]: dataclasses.replace(base[m[1]], backbone="b0", input=InputConfig(size=160)),
        m[2]: dataclasses.replace(base[m[2]], backbone="b0", input=InputConfig(size=224)),
        m[3]: dataclasses.replace(base[m[3]], backbone="b0", input=InputConfig(size=224, crop_pct=0.875)),
        m[4]: base[m[4]],  # standalone
    }
    units, costs = cost_units(set(m[:5]), cards, 0.02, 0.1)
    assert units[m[0]] == ("b0@160", m[0]) and units[m[1]] == ("b0@160", m[1])
    a, b = units[m[2]][0], units[m[3]][0]  # same backbone and size, other input config: two units
    assert a != b and a.startswith("b0@224-") and b.startswith("b0@224-")
    assert m[4] not in units  # a standalone model is its own unit at the default cost
    assert costs["b0@160"] == costs[a] == 0.02 and costs[m[0]] == pytest.approx(0.002)
    # a card type without the field (older or synthetic cards) is standalone
    plain = type("Card", (), {"input": InputConfig()})()
    assert cost_units({"x"}, {"x": plain}, 0.01, 0.1) == ({}, {})

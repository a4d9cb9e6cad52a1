"""Paired comparisons from per-image hits: exact McNemar and Wilson intervals."""

import numpy as np
import pytest

from mll.bench.stats import hits_array, mcnemar, wilson


def test_mcnemar_counts_discordant_pairs_and_is_exact():
    a = "1" * 50 + "1" * 10 + "0" * 2 + "0" * 38
    b = "1" * 50 + "0" * 10 + "1" * 2 + "0" * 38
    r = mcnemar(a, b)
    assert (r.n, r.a_only, r.b_only) == (100, 10, 2)
    assert r.difference == pytest.approx(0.08)
    # two-sided binomial: 2 * P(X <= 2 | n=12, p=1/2) = 2 * (1 + 12 + 66) / 4096
    assert r.p_value == pytest.approx(2 * 79 / 4096)
    assert mcnemar(a, a).p_value == 1.0 and mcnemar(b, a).difference == pytest.approx(-0.08)


def test_mismatched_or_malformed_hits_are_refused():
    with pytest.raises(ValueError, match="same images"):
        mcnemar("101", "10")
    with pytest.raises(ValueError, match="'0' and '1'"):
        hits_array("10x")
    assert hits_array("").shape == (0,) and hits_array("011").tolist() == [False, True, True]


def test_wilson_interval_covers_and_stays_in_range():
    lo, hi = wilson(40, 50)
    assert lo < 0.8 < hi and 0.66 < lo < 0.68 and 0.88 < hi < 0.90
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == 1.0 and wilson(0, 0) == (0.0, 1.0)
    rng = np.random.default_rng(0)  # coverage near 95% for p = 0.9, n = 60
    ks = rng.binomial(60, 0.9, size=2000)
    cover = np.mean([lo <= 0.9 <= hi for lo, hi in (wilson(int(k), 60) for k in ks)])
    assert 0.92 < cover < 0.985


def test_bootstrap_intervals_cover_the_truth_and_narrow_with_more_data():
    rng = np.random.default_rng(1)
    from mll.bench.stats import bootstrap_ci, family_bootstrap

    covered = 0
    for rep in range(200):  # 95% percentile bootstrap: coverage near nominal for n = 200, p = 0.8
        h = rng.random(200) < 0.8
        lo, hi = bootstrap_ci(h, n_boot=500, seed=rep)
        covered += lo <= 0.8 <= hi
    assert 0.9 < covered / 200 <= 1.0
    small, large = bootstrap_ci(np.r_[np.ones(40), np.zeros(10)]), bootstrap_ci(np.r_[np.ones(400), np.zeros(100)])
    assert large[1] - large[0] < small[1] - small[0]
    # a family of tasks: the mean of task means, wider than any task's own interval when tasks differ
    tasks = [np.r_[np.ones(90), np.zeros(10)], np.r_[np.ones(50), np.zeros(50)], np.r_[np.ones(70), np.zeros(30)]]
    mean, lo, hi = family_bootstrap(tasks, seed=0)
    assert mean == pytest.approx(0.7) and lo < 0.7 < hi
    assert hi - lo > bootstrap_ci(tasks[1])[1] - bootstrap_ci(tasks[1])[0]
    assert family_bootstrap(tasks, seed=3) == family_bootstrap(tasks, seed=3)  # seeded: reproducible


def test_holm_adjustment_by_hand():
    from mll.bench.stats import holm

    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1, then made monotone
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5]) == [0.5] and holm([]) == [] and holm([0.6, 0.7]) == [1.0, 1.0]

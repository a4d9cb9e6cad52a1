"""Hostile inputs: broken and oversized images, odd image modes, abusive class names, fuzzing."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mll.data.images import ImageError, open_image
from mll.solve.matching import MAX_CLASSES, Matcher, MatchError, check_task


def test_broken_images_are_refused_with_a_reason(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(good)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    for bad in (truncated, empty):
        with pytest.raises(ImageError) as e:
            open_image(str(bad))
        assert str(bad) in str(e.value)


def test_decompression_bomb_is_refused(tmp_path):
    bomb = tmp_path / "bomb.png"
    Image.new("1", (9000, 9000)).save(bomb)  # 81 M pixels in a few kB
    assert bomb.stat().st_size < 200_000
    with pytest.raises(ImageError, match="too many pixels"):
        open_image(str(bomb))


@pytest.mark.parametrize(
    "mode,shape,dtype",
    [
        ("L", (20, 20), np.uint8),
        ("RGBA", (20, 20, 4), np.uint8),
        ("I;16", (20, 20), np.uint16),
        ("LA", (20, 20, 2), np.uint8),
    ],
)
def test_odd_modes_become_l_or_rgb(tmp_path, mode, shape, dtype):
    arr = np.random.default_rng(1).integers(0, np.iinfo(dtype).max, shape, dtype=dtype)
    path = tmp_path / f"x_{mode.replace(';', '')}.png"
    Image.fromarray(arr, mode if mode != "I;16" else None).save(path)
    assert open_image(str(path)).mode in ("L", "RGB")


@pytest.fixture(scope="module")
def matcher(small_sdag):
    return Matcher(small_sdag, covered=["n02084071"], use_embeddings=False)


@pytest.mark.parametrize(
    "names,msg",
    [
        (["dog", ""], "empty"),
        (["dog", "dog"], "duplicate"),
        (["dog", "x" * 10_000], "10000 characters long"),
        (["dog", "ca\x00t"], "control characters"),
        (["dog", "../../etc/passwd"], "no SDAG node matches"),
        (["dog", "$(rm -rf /); `reboot`"], "no SDAG node matches"),
        ([f"name{i}" for i in range(6000)], "at most 5000"),
    ],
)
def test_abusive_class_names_are_clear_errors(matcher, names, msg):
    """`match` answers every name of a batch (a problem, not an exception); a task to solve refuses
    such names with one clear line (`check_task`, which `plan` runs). Only an oversized batch is
    refused outright."""
    if len(names) > MAX_CLASSES:
        with pytest.raises(MatchError, match=msg):
            matcher.match(names)
        return
    results = matcher.match(names)
    assert [r.name for r in results] == [n.strip() for n in names] or len(results) == len(names)
    with pytest.raises(MatchError, match=msg):
        check_task(results)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(min_size=1, max_size=30), min_size=1, max_size=6))
def test_matching_never_crashes(matcher, names):
    """Any names: either a match per name or a MatchError, never another exception."""
    try:
        out = matcher.match(names)
    except MatchError:
        return
    assert len(out) == len(names)
    for m in out:
        assert m.synset is None or m.synset in matcher.sdag


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 8), st.integers(1, 10), st.integers(0, 2**31 - 1), st.floats(0, 0.2))
def test_chco_answers_every_coverable_class_with_hub_models(k, models, seed, cost):
    """Random instances: each class with options gets one, options only name hub models, exact >= heuristic."""
    import itertools

    from mll.solve.heuristic import solve_heuristic
    from mll.solve.problem import Problem
    from mll.solve.solvers import solve_exact

    rng = np.random.default_rng(seed)
    hub = [f"m{i}" for i in range(models)]
    options, acc = [], []
    for _ in range(k):
        n = int(rng.integers(0, min(3, models) + 1))  # some classes have no candidate at all
        cands = list(rng.choice(hub, size=n, replace=False))
        opts = [o for r in (1, 2) for o in itertools.combinations(cands, r)]
        options.append(opts)
        acc.append(list(rng.uniform(0, 1, len(opts))))
    p = Problem(options, acc, cost)
    for solve in (solve_exact, solve_heuristic):
        choice, _ = solve(p)
        for c, o in enumerate(choice):
            assert (o >= 0) == bool(options[c])  # coverable classes answered, others flagged
            if o >= 0:
                assert set(options[c][o]) <= set(hub)
    assert p.objective(solve_exact(p)[0]) >= p.objective(solve_heuristic(p)[0]) - 1e-9

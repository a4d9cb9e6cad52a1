"""Matching, CHCO, reuse and the patch, on the real SDAG pieces and a tiny labeled hub."""

import itertools
import json

import numpy as np
import pandas as pd
import pytest

from mll.bench import synthetic
from mll.config import SolveParams as SolveConfig
from mll.data.images import open_image
from mll.solve.matching import Matcher, MatchError, check_task, normalise
from mll.solve.solvers import Problem, solve_exact, solve_heuristic
from mll.solve.task import Context, plan, predict


# --- matching ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def matcher(small_sdag):
    return Matcher(small_sdag, covered=["n03472535", "n02084071"], use_embeddings=False)


def test_normalisation():
    assert normalise("T-shirt/top")[:2] == ["t-shirt", "t_shirt"] and "top" in normalise("T-shirt/top")
    assert "ankle_boot" in normalise("AnkleBoot") and "seven" in normalise("7")
    assert "goose" in normalise("geese") and "trouser" in normalise("trousers")


def test_tricky_names(matcher, small_sdag):
    got = {
        m.name: small_sdag.name(m.synset)
        for m in matcher.match(["Sneakers", "Ankle boot", "T-shirt/top", "trousers", "7", "car"])
    }
    assert got == {
        "Sneakers": "gym_shoe.n.01",
        "Ankle boot": "boot.n.01",
        "T-shirt/top": "jersey.n.03",
        "trousers": "trouser.n.01",
        "7": "seven.n.01",
        "car": "car.n.01",
    }


def test_context_decides_the_sense(wordnet):
    from mll.data.sdag import build_sdag
    from mll.data.wordnet import wnid

    words = ["mouse", "keyboard", "monitor", "cat", "dog", "crane", "heron", "stork", "truck", "bulldozer"]
    g = build_sdag([wnid(s) for w in words for s in wordnet.synsets(w, pos="n")])
    m = Matcher(g, use_embeddings=False)
    pick = lambda names, n: g.name(next(x.synset for x in m.match(names) if x.name == n))  # noqa: E731
    assert pick(["mouse", "keyboard", "monitor"], "mouse") == "mouse.n.04"
    assert pick(["mouse", "cat", "dog"], "mouse") == "mouse.n.01"
    assert pick(["crane", "heron", "stork"], "crane") == "crane.n.05"
    assert pick(["crane", "truck", "bulldozer"], "crane") == "crane.n.04"


def test_overrides_nesting_and_errors(matcher, small_sdag):
    res = {m.name: m for m in matcher.match(["sneaker=n03472535", "shoe", "dog"])}
    assert res["sneaker"].synset == "n03472535" and res["sneaker"].method == "override"
    assert res["sneaker"].nested_in == ["shoe"]
    # `match` reports every name; `check_task` is the gate a task to solve must pass
    for names, why in (
        (["dog", "dog"], "duplicate"),
        (["dog", " "], "empty"),
        (["dog", "blorptastic"], "no SDAG node matches 'blorptastic'"),
        (["dog=notasynset"], "not a synset id"),
    ):
        res = matcher.match(names)
        assert len(res) == len(names)
        with pytest.raises(MatchError, match=why):
            check_task(res)


# --- CHCO ----------------------------------------------------------------------------------------
def random_problem(rng, k, models, per_class=3, max_heads=2, cost=0.02):
    return synthetic.random_problem(rng, k, models, per_class=per_class, max_heads=max_heads, cost=cost, low=0.4)


def test_exact_solver_is_optimal_and_heuristic_is_close():
    rng = np.random.default_rng(0)
    gaps = []
    for trial in range(20):
        p = random_problem(rng, k=int(rng.integers(3, 9)), models=int(rng.integers(3, 12)))
        ex, _how = solve_exact(p)
        he, _ = solve_heuristic(p)
        assert p.objective(ex) >= p.objective(he) - 1e-9
        gaps.append(p.objective(ex) - p.objective(he))
        if trial < 5:  # brute force agrees with the exact solver
            sizes = [len(o) for o in p.options]
            brute = max(p.objective(list(c)) for c in itertools.product(*[range(s) for s in sizes]))
            assert abs(brute - p.objective(ex)) < 1e-9
    assert np.mean(gaps) < 0.02


def test_highs_handles_a_30_class_100_model_task():
    p = random_problem(np.random.default_rng(1), k=30, models=100, per_class=3)
    choice, how = solve_exact(p)
    assert how == "highs" and all(c >= 0 for c in choice)
    assert p.objective(choice) >= p.objective(solve_heuristic(p)[0]) - 1e-9


def test_broad_head_beats_two_narrow_ones_when_labels_say_so():
    # class A: broad model B or narrow NA; class B: broad model B or narrow NB; equal quality
    p = Problem([[("B",), ("NA",)], [("B",), ("NB",)]], [[0.9, 0.9], [0.9, 0.9]], cost=0.01)
    choice, _ = solve_exact(p)
    assert [p.options[k][c] for k, c in enumerate(choice)] == [("B",), ("B",)]
    # ...but not when the narrow heads are clearly better
    p = Problem([[("B",), ("NA",)], [("B",), ("NB",)]], [[0.6, 0.95], [0.6, 0.95]], cost=0.01)
    choice, _ = solve_exact(p)
    assert [p.options[k][c] for k, c in enumerate(choice)] == [("NA",), ("NB",)]


# --- the tiny labeled hub ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ctx(tiny_world, tiny_labels):
    c = Context.load(tiny_world["sdag"], tiny_world["hub"].root, tiny_labels, SolveConfig(device="cpu"))
    c.matcher.use_embeddings = False
    return c


def test_selection_runs_no_model(ctx, monkeypatch):
    from mll.hub.experts import Expert
    from mll.hub.store import Hub

    def boom(*a, **k):
        raise AssertionError("selection must not run a model")

    monkeypatch.setattr(Hub, "load", boom)
    monkeypatch.setattr(Expert, "forward", boom)
    p = plan(ctx, ["0", "1", "3", "4"])
    assert p.selection.by_class() == {"0": ["low"], "1": ["low"], "3": ["high"], "4": ["high"]}
    d = json.loads(p.selection.to_json())
    assert d["classes"][0]["why"] and d["classes"][0]["head_classes"] == {"low": ["0"]}
    assert p.selection.combiner in ("stacking", "statistics")


def test_reuse_on_a_tiny_hub_beats_chance(ctx, tiny_world):
    test = tiny_world["test"]
    test = test[test["class_name"].isin(["0", "1", "3", "4"])]
    p = plan(ctx, ["0", "1", "3", "4"])
    probs, info = predict(ctx, p, [open_image(u) for u in test["uri"]])
    y = test["class_name"].map({"0": 0, "1": 1, "3": 2, "4": 3}).to_numpy()
    acc = float((probs.argmax(1) == y).mean())
    assert acc > 0.7, acc  # chance is 0.25
    assert np.allclose(probs.sum(1), 1.0, atol=1e-6)
    assert set(info["model_seconds"]) == {"low", "high"}


def test_uncovered_class_without_patch_is_flagged_not_dropped(ctx, tiny_world):
    p = plan(ctx, ["0", "3", "car"])
    assert p.selection.uncovered == ["car"]
    car = p.selection.classes[2]
    assert car.models == [] and "no hub head covers" in car.why and not car.patched
    probs, _ = predict(ctx, p, [open_image(u) for u in tiny_world["test"]["uri"][:4]])
    assert probs.shape == (4, 3) and (probs[:, 2] == 0).all()


def test_uncovered_class_with_a_tiny_open_clip_patch(ctx, tiny_world, tiny_clip):
    from dataclasses import replace

    from mll.config import PatchParams as PatchConfig

    c2 = replace(ctx, cfg=replace(ctx.cfg, patch=PatchConfig(tiny_clip[0], str(tiny_clip[1]), "cpu")), patch=None)
    p = plan(c2, ["0", "3", "car"])
    assert p.selection.classes[2].patched and p.uncovered == [2]
    probs, _ = predict(c2, p, [open_image(u) for u in tiny_world["test"]["uri"][:5]])
    assert probs.shape == (5, 3) and np.allclose(probs.sum(1), 1.0, atol=1e-5) and (probs[:, 2] > 0).all()


def task_folder(test: pd.DataFrame, folders: dict[str, str], root):
    """An ImageFolder of the test images of `folders` (class name -> folder name as a user types it)."""
    rows = test[test["class_name"].isin(list(folders))]
    for i, (u, c) in enumerate(zip(rows["uri"], rows["class_name"])):
        (root / folders[c]).mkdir(parents=True, exist_ok=True)
        open_image(u).save(root / folders[c] / f"{i}.png")
    return root, rows


def test_cli_eval_solve_match(ctx, tiny_world, tmp_path, capsys):
    from mll.cli import main

    task, rows = task_folder(tiny_world["test"], {"1": "one", "4": "four"}, tmp_path / "task")
    (task / "one" / "broken.png").write_bytes(b"not an image")
    common = [
        "--hub",
        str(tiny_world["hub"].root),
        "--labels",
        str(ctx.index.root),
        "--sdag",
        str(tiny_world["sdag"]),
        "--params",
        str(tmp_path / "none.yaml"),
    ]
    out = tmp_path / "r.json"
    assert main(["eval", "--task-dir", str(task), "--json", str(out), "--no-track", "--explain", *common]) == 0
    rep = json.loads(out.read_text())
    assert {"accuracy", "per_class", "n_images", "selection", "uncovered", "matched"} <= set(rep)
    assert rep["accuracy"] > 0.7 and rep["matched"]["four"] == "n13744304" and len(rep["skipped_images"]) == 1
    import mlflow

    os_env = __import__("os").environ
    old_uri = os_env.get("MLFLOW_TRACKING_URI")
    os_env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    try:  # eval and solve each log an MLflow run with the selection as an artifact
        assert main(["eval", "--task-dir", str(task), *common]) == 0
        assert (
            main(["solve", "--classes", "one,four", "--images", str(task), "--out", str(tmp_path / "p.csv"), *common])
            == 0
        )
        mlflow.set_tracking_uri(os_env["MLFLOW_TRACKING_URI"])
        runs = mlflow.search_runs(experiment_names=["eval", "solve"])
        assert len(runs) == 2 and runs["metrics.accuracy"].dropna().iloc[0] > 0.7
        arts = mlflow.artifacts.list_artifacts(run_id=runs.iloc[0]["run_id"])
        assert "selection.json" in {a.path for a in arts}
    finally:
        if old_uri is None:
            os_env.pop("MLFLOW_TRACKING_URI", None)
        else:
            os_env["MLFLOW_TRACKING_URI"] = old_uri
    preds = pd.read_csv(tmp_path / "p.csv")
    assert list(preds.columns) == ["path", "predicted", "score", "model"] and len(preds) == len(rows) + 1
    assert main(["match", "one", "four", "--json", str(tmp_path / "m.json"), *common]) == 0
    m = json.loads((tmp_path / "m.json").read_text())
    assert m[0]["name"] == "one" and m[0]["synset"] and m[0]["candidates"]
    capsys.readouterr()
    (tmp_path / "empty").mkdir()
    assert main(["eval", "--task-dir", str(tmp_path / "empty"), "--no-track", *common]) == 2
    assert "no class sub-folders" in capsys.readouterr().err
    one = tmp_path / "one"
    (one / "x").mkdir(parents=True)
    open_image(rows["uri"].iloc[0]).save(one / "x" / "a.png")
    assert main(["eval", "--task-dir", str(one), "--no-track", *common]) == 2
    assert "at least two classes" in capsys.readouterr().err
    assert (
        main(
            [
                "solve",
                "--classes",
                "one,blorptastic",
                "--images",
                str(task),
                "--out",
                str(tmp_path / "q.csv"),
                "--no-track",
                *common,
            ]
        )
        == 2
    )
    assert "blorptastic" in capsys.readouterr().err


def test_solve_task_flow(prefect_server, ctx, tiny_world, tmp_path):
    from flows.solve_task import solve_task_flow

    task, _ = task_folder(tiny_world["test"], {"0": "zero", "5": "five"}, tmp_path / "t")
    params = tmp_path / "params.yaml"
    params.write_text("solve:\n  device: cpu\n")
    out = solve_task_flow(
        [str(task)], str(params), str(tiny_world["hub"].root), str(ctx.index.root), str(tiny_world["sdag"])
    )
    assert out[0]["accuracy"] > 0.7 and out[0]["selection"] == {"five": ["high"], "zero": ["low"]}

"""The mll-offline benchmark on the tiny labeled hub: tasks from data, every method, the output cache,
the growth curve, the registry of methods, and the `evaluate` flow writing a report with MLflow runs."""

import json

import numpy as np
import pandas as pd
import pytest

from mll.bench.methods import get_method, list_methods, register_method, unregister_method
from mll.bench.oracles import train_oracle
from mll.bench.run import grid, growth_cell, load_params, run_cell, sub_hubs
from mll.bench.tasks import build_task
from mll.config import BenchmarkParams
from mll.config import SolveParams as SolveConfig
from mll.solve.outputs import OutputCache
from mll.solve.task import Context

SIX = {"classes": {str(d): {"digits": [str(d)]} for d in range(6)}}


@pytest.fixture(scope="module")
def world(tiny_world, tiny_labels, tmp_path_factory):
    """The tiny hub labeled, a target_test manifest, and a params file with a benchmark section."""
    from mll.config import SplitSizes
    from mll.data.datasets import load_dataset
    from mll.data.splits import split_dataset

    root = tmp_path_factory.mktemp("bench")
    labels = tiny_labels
    # the same deterministic split tiny_world trained on: expert_train for the oracle, target_test to evaluate
    frame = split_dataset(load_dataset("digits"), SplitSizes(expert_train=80, probe=12, target_test=10), seed=0)
    manifest = root / "target_test.parquet"
    frame[frame.split == "target_test"].reset_index(drop=True).to_parquet(manifest)
    train = root / "expert_train.parquet"
    frame[frame.split == "expert_train"].reset_index(drop=True).to_parquet(train)
    params = root / "params.yaml"
    # one user-name task whose names the matcher cannot resolve: its cell fails, the grid goes on
    (root / "names.yaml").write_text(
        "six:\n  bad: {'0': zero, '1': one, '2': blorptastic, '3': three, '4': four, '5': five}\n"
    )
    params.write_text(
        "experts:\n  defaults: {arch: test_resnet, epochs: 6, input_size: 16, batch_size: 64, lr: 0.003}\n"
        "solve:\n  device: cpu\n"
        "benchmark:\n  max_per_class: 8\n  random_seeds: 2\n  growth_sizes: [1, 2]\n  growth_seeds: 3\n"
        "  growth_methods: [mll, uniform, inb]\n"
        "  methods: [mll, single, uniform, random, top1, ungated, oracle, clip]\n"
        "  oracles: {digits: {}}\n"
        "  user_names: names.yaml\n  user_name_methods: [mll]\n"
        "  tasks:\n    six: {classes: {'0': {digits: ['0']}, '1': {digits: ['1']}, '2': {digits: ['2']},"
        " '3': {digits: ['3']}, '4': {digits: ['4']}, '5': {digits: ['5']}}}\n"
        "    ten: {source: digits}\n"
        "    six-lodo: {family: leave_one_domain_out, fold: {remove_domains: [clothing]},"
        " classes: {'0': {digits: ['0']}, '1': {digits: ['1']}, '2': {digits: ['2']},"
        " '3': {digits: ['3']}, '4': {digits: ['4']}, '5': {digits: ['5']}}}\n"
    )
    ctx = Context.load(tiny_world["sdag"], tiny_world["hub"].root, labels, SolveConfig(device="cpu"))
    ctx.matcher.use_embeddings = False
    test = pd.read_parquet(manifest)
    return {
        "root": root,
        "labels": labels,
        "manifest": manifest,
        "train": train,
        "params": params,
        "ctx": ctx,
        "test": test,
        "hub": tiny_world["hub"].root,
        "sdag": tiny_world["sdag"],
        "probe": tiny_world["probe"],
    }


def test_tasks_are_built_from_target_test_data(world, small_sdag):
    t = build_task("six", SIX, world["test"], small_sdag, max_per_class=4, seed=0, oracle_datasets={"digits"})
    assert t.classes == ["0", "1", "2", "3", "4", "5"] and t.support == dict.fromkeys(t.classes, 4)
    assert len(t.uris) == 24 and set(t.uris) <= set(world["test"]["uri"]) and t.oracle == "digits"
    assert t.y.tolist() == [k for k in range(6) for _ in range(4)]
    # the same seed gives the same sample; a source task takes the dataset's own names in label order
    assert build_task("six", SIX, world["test"], small_sdag, 4, 0).uris == t.uris
    ten = build_task("ten", {"source": "digits"}, world["test"], small_sdag, 100, 0)
    assert ten.classes == [str(d) for d in range(10)] and sum(ten.support.values()) == 100
    # an image under two classes is ambiguous: left out and counted
    amb = build_task(
        "amb", {"classes": {"low": {"digits": ["0", "1"]}, "one": {"digits": ["1"]}}}, world["test"], small_sdag, 100, 0
    )
    assert amb.support == {"low": 10, "one": 0} and amb.dropped == 10 and amb.oracle is None
    # a WordNet subtree member: every digit synset lies under digit.n.01
    sub = build_task(
        "sub",
        {"classes": {"digit": {"digits": ["digit.n.01"]}, "zero": {"digits": ["0"]}}},
        world["test"],
        small_sdag,
        100,
        0,
    )
    assert sub.support["digit"] == 90 and sub.dropped == 10


def test_bad_task_entries_name_the_fix(world, small_sdag):
    with pytest.raises(ValueError, match=r"digits:seven matches no target_test image.*class names there include"):
        build_task(
            "bad", {"classes": {"a": {"digits": ["seven"]}, "b": {"digits": ["1"]}}}, world["test"], small_sdag, 5, 0
        )
    with pytest.raises(ValueError, match="no target_test images from 'tuxpaint'"):
        build_task(
            "bad",
            {"classes": {"a": {"tuxpaint": ["bird.n.01"]}, "b": {"digits": ["1"]}}},
            world["test"],
            small_sdag,
            5,
            0,
        )
    with pytest.raises(ValueError, match="at least two classes"):
        build_task("bad", {"classes": {"a": {"digits": ["1"]}}}, world["test"], small_sdag, 5, 0)


@pytest.fixture(scope="module")
def six(world, small_sdag):
    return build_task("six", SIX, world["test"], small_sdag, 8, 0, {"digits"})


def test_every_method_runs_and_mll_matches_mll_eval(world, six, tmp_path):
    from mll.solve.folders import evaluate_folder

    ctx, cache = world["ctx"], OutputCache()
    cells = {
        m: run_cell(ctx, six, m, cache, seed=0 if m == "random" else None, oracle_hub=tmp_path / "none")
        for m in list_methods()
    }
    mll = cells["mll"]
    assert mll["status"] == "ok" and mll["accuracy"] > 0.6 and set(mll["models"]) == {"low", "high"}
    assert mll["answered_by"]["0"] == ["low"] and mll["answered_by"]["5"] == ["high"]
    assert set(cells["uniform"]["models"]) == {"low", "high"} and cells["uniform"]["combiner"] == "statistics-ungated"
    assert cells["ungated"]["combiner"] == "statistics-ungated" and cells["top1"]["status"] == "ok"
    # one model alone covers only half the classes: the best single model is far below MLL
    assert cells["single"]["accuracy"] <= 0.5 + 1e-9 and "best of 2 covering models" in cells["single"]["detail"]
    assert cells["random"]["models"] and "of 2 covering models" in cells["random"]["detail"]
    assert cells["clip"]["status"] == "skipped" and "solve.patch.model" in cells["clip"]["reason"]
    assert cells["oracle"]["status"] == "skipped" and "dvc repro oracles" in cells["oracle"]["reason"]
    # hindsight searches selections on the test labels, MLL's among them: never below MLL
    hindsight = cells["hindsight"]
    assert hindsight["accuracy"] >= mll["accuracy"] and "scored on the test labels" in hindsight["detail"]
    # the tiny hub has no generalist and no shared backbone: those baselines say so
    assert cells["inb"]["status"] == "skipped" and "no generalist" in cells["inb"]["reason"]
    assert cells["node_data"]["status"] == "skipped" and "no shared backbone" in cells["node_data"]["reason"]
    per_model = cells["single"]["per_model"]
    assert set(per_model) == {"low", "high"} and all(0 <= v["measured"] <= 1 for v in per_model.values())
    # the benchmark's MLL is `mll eval` on the same images
    folder = tmp_path / "task"
    for uri, k in zip(six.uris, six.y):
        d = folder / six.classes[k]
        d.mkdir(parents=True, exist_ok=True)
        from mll.data.images import open_image

        open_image(uri).save(d / f"{len(list(d.iterdir()))}.png")
    assert evaluate_folder(ctx, folder)["accuracy"] == pytest.approx(mll["accuracy"], abs=1e-4)


def test_output_cache_runs_each_model_once_and_persists(world, six, tmp_path, monkeypatch):
    from mll.hub.store import Hub

    first = run_cell(world["ctx"], six, "mll", OutputCache(tmp_path / "out"))
    assert sorted(p.name.split("-")[0] for p in (tmp_path / "out").glob("*.npz")) == ["high", "low"]

    def boom(*a, **k):
        raise AssertionError("a cached image must not run a model again")

    monkeypatch.setattr(Hub, "load", boom)
    again = run_cell(world["ctx"], six, "mll", OutputCache(tmp_path / "out"))  # a new process reads the disk
    assert again["accuracy"] == first["accuracy"] and again["per_class"] == first["per_class"]


def test_oracle_is_trained_on_the_tasks_own_data(world, six, tmp_path):
    card = train_oracle("digits", world["params"], world["train"], tmp_path / "oracles", log=lambda *_: None)
    assert card.name == "oracle-digits" and card.num_classes == 10
    cell = run_cell(world["ctx"], six, "oracle", OutputCache(), oracle_hub=tmp_path / "oracles")
    assert cell["status"] == "ok" and cell["accuracy"] > 0.5 and cell["models"] == ["oracle-digits"]
    with pytest.raises(KeyError, match=r"no oracle 'mnist' under benchmark\.oracles"):
        train_oracle("mnist", world["params"], world["train"], tmp_path / "oracles")


def test_an_oracle_that_would_be_a_hub_expert_is_refused(world, tmp_path):
    """An oracle trained like a hub expert on the same data and classes is that expert: refused
    before training, with the setting to change."""
    params = tmp_path / "params.yaml"
    params.write_text(
        world["params"]
        .read_text()
        .replace(
            "experts:\n",
            "experts:\n  trained:\n    digits-all: {dataset: digits, classes: ['9', '8', '7', '6', '5', '4', '3', "
            "'2', '1', '0'], epochs: 6}\n",
            1,
        )
    )
    with pytest.raises(
        ValueError, match=r"equal hub expert digits-all's .* benchmark\.oracles\.digits \(say seed: 1\)"
    ):
        train_oracle("digits", params, world["train"], tmp_path / "oracles", log=lambda *_: None)
    assert not (tmp_path / "oracles").exists()  # refused before any training
    params.write_text(params.read_text().replace("oracles: {digits: {}}", "oracles: {digits: {seed: 1}}"))
    assert train_oracle("digits", params, world["train"], tmp_path / "oracles", log=lambda *_: None).num_classes == 10


def test_sub_hubs_and_growth(world, six, small_sdag):
    subs = sub_hubs(["a", "b", "c"], (1, 2, 3), seeds=5, seed=0)
    assert [s for s, _, _ in subs].count(3) == 1  # the whole hub is one sub-hub, not five copies
    assert all(len(m) == s for s, _, m in subs) and subs == sub_hubs(["a", "b", "c"], (1, 2, 3), 5, 0)
    rows = growth_cell(world["ctx"], [six], 1, 0, ["low"], ("mll", "uniform"), OutputCache())
    assert {r["method"] for r in rows} == {"mll", "uniform"}
    assert all(r["coverage"] == 0.5 and r["independent"] == 1 for r in rows)  # "low" covers 3 of 6 classes
    # one expert covers three of six classes: at most half the images can be right
    assert all(r["accuracy"] <= 0.5 + 1e-9 for r in rows)
    full = growth_cell(world["ctx"], [six], 2, 0, ["high", "low"], ("mll",), OutputCache())
    assert full[0]["accuracy"] > rows[0]["accuracy"] and full[0]["coverage"] == 1.0

    # a sub-hub covering none of a task's classes: each class backs off to a sibling head ("3" -> "2"),
    # which cannot tell the three apart: no crash, and at most chance
    upper = build_task("upper", {"classes": {d: {"digits": [d]} for d in "345"}}, world["test"], small_sdag, 5, 0)
    none = growth_cell(world["ctx"], [upper], 1, 0, ["low"], ("mll", "uniform", "top1", "single"), OutputCache())
    assert len(none) == 4 and all(r["accuracy"] <= 1 / 3 + 1e-3 for r in none)


def test_inb_answers_with_the_best_generalist_by_its_labels(world, six, monkeypatch):
    import mll.bench.methods as methods

    monkeypatch.setattr(methods, "INB_MIN_CLASSES", 2)  # the tiny experts' heads count as wide here
    ctx = world["ctx"]
    best = max(ctx.index.models, key=lambda m: (ctx.index.summaries[m]["in_domain_accuracy"], m))
    cell = run_cell(ctx, six, "inb", OutputCache())
    assert cell["status"] == "ok" and cell["models"] == [best] and cell["detail"].startswith(best)
    assert set(run_cell(ctx, six, "inb_top3", OutputCache())["models"]) == set(ctx.index.models)


@pytest.mark.slow
def test_evaluate_flow_writes_cells_runs_and_report(world, prefect_server, tmp_path, monkeypatch):
    from flows.evaluate import evaluate_flow
    from mll.bench.report import write_report

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    train_oracle("digits", world["params"], world["train"], tmp_path / "oracles", log=lambda *_: None)
    out = tmp_path / "cells.json"
    doc = evaluate_flow(
        params_file=str(world["params"]),
        hub=str(world["hub"]),
        labels=str(world["labels"]),
        sdag=str(world["sdag"]),
        manifest=str(world["manifest"]),
        oracles=str(tmp_path / "oracles"),
        out=str(out),
        cache_dir=str(tmp_path / "outputs"),
        probe=str(world["probe"]),
    )
    saved = json.loads(out.read_text())
    assert saved["hub"] == ["high", "low"] and set(saved["tasks"]) == {"six", "ten", "six-lodo", "six@bad"}
    per = {(c["task"], c["method"], c["seed"]) for c in saved["cells"]}
    assert ("six", "random", 1) in per and ("ten", "oracle", None) in per and len(doc["cells"]) == 3 * 9 + 1
    # the fold task: solved on labels made without the clothing probe images, same images as `six`
    lodo = {c["method"]: c for c in saved["cells"] if c["task"] == "six-lodo"}
    assert saved["tasks"]["six-lodo"]["fold"] == {"remove_domains": ["clothing"]} and lodo["mll"]["status"] == "ok"
    assert {p.name for p in (tmp_path / "folds" / "minus-clothing" / "labels").iterdir() if p.is_dir()} >= {"low"}
    preds = pd.read_parquet(tmp_path / "predictions.parquet")
    assert set(preds["task"]) == {"six", "ten", "six-lodo"} and preds["hit"].dtype == bool
    mll_six = preds[(preds["task"] == "six") & (preds["method"] == "mll")]
    assert "".join("1" if h else "0" for h in mll_six["hit"]) == next(
        c["hits"] for c in saved["cells"] if c["task"] == "six" and c["method"] == "mll"
    )
    assert "predictions" not in saved["cells"][0]  # moved to the parquet table
    bad = next(c for c in saved["cells"] if c["task"] == "six@bad")
    assert bad["method"] == "mll" and bad["status"] == "failed" and "blorptastic" in bad["reason"]
    assert {g["task"] for g in saved["growth"]} == {"six", "ten"}  # a fold's hub is a sub-hub already
    assert {(g["size"], g["method"]) for g in saved["growth"]} == {
        (s, m) for s in (1, 2) for m in ("mll", "uniform", "inb")
    }
    # the tiny hub has no generalist: INB's growth cells carry no accuracy, and nothing breaks on that
    assert all(g["accuracy"] is None for g in saved["growth"] if g["method"] == "inb")
    # the studies flow: the node-data budget and a sweep on the in_domain dev tasks, from the same cache
    from flows.studies import studies_flow

    params = world["params"].with_name("studies-params.yaml")  # next to names.yaml, which it names
    params.write_text(
        world["params"].read_text() + "  node_budget: [2]\n  budget_methods: [mll]\n  sweep: {prune: [1, 2]}\n"
    )
    studies = studies_flow(
        params_file=str(params),
        hub=str(world["hub"]),
        labels=str(world["labels"]),
        sdag=str(world["sdag"]),
        manifest=str(world["manifest"]),
        out=str(tmp_path / "studies.json"),
        cache_dir=str(tmp_path / "outputs"),
        probe=str(world["probe"]),
    )
    assert {r["budget"] for r in studies["budget"]} == {2} and {r["value"] for r in studies["sweeps"]} == {1, 2}
    summary = write_report(out, tmp_path / "reports", studies_path=tmp_path / "studies.json")
    assert set(summary["node_budget"]["mll"]) == {"2"} and set(summary["sweeps"]["prune"]) == {"1", "2"}
    assert summary["oracle"]["ratio"] is not None and summary["skipped"]["clip"]
    assert summary["user_names"]["failed"] == ["six@bad"] and "six@bad" not in summary["tasks"]
    assert (tmp_path / "reports" / "plots" / "growth.png").is_file()
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["benchmark"])
    # one parent run (the benchmark) with a child per cell and per growth sub-hub (nested in the UI)
    parent = runs[runs["tags.mll.kind"] == "benchmark"]
    assert len(parent) == 1 and (runs["tags.mlflow.parentRunId"].dropna() == parent["run_id"].iloc[0]).all()
    runs = runs[runs["tags.method"].notna()]  # the cells
    assert len(runs) == 28 and set(runs["tags.method"]) == set(load_params(world["params"]).methods)
    mll = runs[runs["tags.method"] == "mll"].set_index("tags.task")["metrics.accuracy"]
    assert mll["six"] > 0.6 and mll["ten"] < mll["six"]  # four of ten classes covered: far lower


def test_benchmark_params_are_validated(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("benchmark:\n  methods: [mll, magic]\n  tasks: {a: {source: digits}}\n")
    with pytest.raises(ValueError, match=r"unknown.*magic"):
        load_params(p)
    p.write_text("benchmark:\n  methods: [mll, singel]\n  tasks: {a: {source: digits}}\n")
    with pytest.raises(ValueError, match=r"unknown \['singel'\] \(did you mean 'single'\?\)"):
        load_params(p)
    # the oracle and CLIP do not depend on the hub: a sub-hub of the growth curve cannot change them
    p.write_text("benchmark:\n  growth_methods: [mll, clip]\n  tasks: {a: {source: digits}}\n")
    with pytest.raises(ValueError, match=r"growth_methods cannot have \['clip'\]"):
        load_params(p)
    p.write_text("benchmark:\n  bogus: 1\n")
    with pytest.raises(ValueError, match="unknown key"):
        load_params(p)
    # the config's defaults are registered methods in column order (a new method is opt-in in params.yaml)
    bp = BenchmarkParams()
    assert list(bp.methods) == [m for m in list_methods() if m in bp.methods] and np.all(np.diff(bp.growth_sizes) > 0)
    assert set(bp.growth_methods) <= set(list_methods(growth=True))
    p.write_text("benchmark:\n  methods: [mll, random]\n  random_seeds: 2\n  tasks: {a: {source: digits}}\n")
    assert grid(["a"], load_params(p)) == [("a", "mll", None), ("a", "random", 0), ("a", "random", 1)]


def test_registry_entries_and_lookup():
    columns = ["mll", "mll_transductive", "single", "uniform", "random", "top1", "ungated", "oracle", "clip"]
    assert [m for m in list_methods() if m in columns] == columns  # the report's column order
    assert "random" in list_methods(seeded=True) and {"single", "oracle"} <= set(list_methods(reference=True))
    assert {"oracle", "clip"} <= set(list_methods(growth=False)) and "mll" in list_methods(growth=True)
    assert get_method("single").label == "best single model (hindsight)" and get_method("single").hindsight
    with pytest.raises(ValueError, match=r"unknown benchmark method 'mlll' \(did you mean 'mll'\?\); known: mll, "):
        get_method("mlll")
    with pytest.raises(ValueError, match="already registered"):
        register_method("mll", label="again", heads="", combination="")(lambda run: None)


@pytest.fixture
def exact_tmp():
    """A method registered for one test only: MLL with the exact CHCO solver."""
    from dataclasses import replace

    @register_method(
        "exact_tmp",
        label="MLL (exact solver, test)",
        heads="CHCO solved exactly",
        combination="calibrated, gated stacking",
    )
    def _exact(run):
        run.fill(run.solve(cfg=replace(run.ctx.cfg, solver="exact")))

    yield "exact_tmp"
    unregister_method("exact_tmp")


def test_a_registered_method_is_run_and_reported(world, six, exact_tmp, tmp_path):
    """One registry entry is the whole of a new method: the grid runs it, the params accept it and the
    report shows it as the last column and compares MLL against it."""
    from mll.bench.report import markdown
    from mll.bench.summary import summarize

    ctx, cache = world["ctx"], OutputCache()
    cells = [run_cell(ctx, six, m, cache) for m in ("mll", "uniform", exact_tmp)]
    new = cells[-1]
    assert new["method"] == exact_tmp and new["status"] == "ok" and 0.0 <= new["accuracy"] <= 1.0
    assert set(new["models"]) <= {"low", "high"} and set(new["answered_by"]) == set(six.classes)
    doc = {"hub": ctx.index.models, "tasks": {six.name: six.describe()}, "cells": cells, "growth": []}
    summary = summarize(doc)
    assert summary["methods"] == ["mll", "uniform", exact_tmp] and exact_tmp in summary["tasks"]["six"]
    assert exact_tmp in summary["zero_shot_baselines_beaten"]
    header = next(x for x in markdown(doc, summary).splitlines() if x.startswith("| task |"))
    assert header.endswith("| MLL | uniform ensemble | MLL (exact solver, test) |")
    p = tmp_path / "params.yaml"
    p.write_text(
        "benchmark:\n  methods: [mll, exact_tmp]\n  growth_methods: [exact_tmp]\n  tasks: {a: {source: digits}}\n"
    )
    assert load_params(p).methods == ("mll", exact_tmp)


def test_clip_cell_runs_when_a_checkpoint_is_configured(world, six, tiny_clip):
    """The CLIP row is measured, not invented: with a configured open_clip checkpoint (a tiny
    random-weight model written by the fixture) the cell runs it over every class name."""
    from dataclasses import replace

    from mll.config import PatchParams as PatchConfig

    ctx = world["ctx"]
    c2 = replace(
        ctx,
        cfg=replace(ctx.cfg, patch=PatchConfig(tiny_clip[0], str(tiny_clip[1]), "cpu", kind="open_clip")),
        patch=None,
    )
    cell = run_cell(c2, six, "clip", OutputCache())
    assert cell["status"] == "ok" and cell["models"] == ["patch"] and 0.0 <= cell["accuracy"] <= 1.0
    assert tiny_clip[0] in cell["detail"] and set(cell["per_class"]) == set(six.classes)


def test_ablations_isolate_what_they_name(world, six):
    """w/o gates keeps stacking; w/o CHCO stacks every covering head; one head per class has no model
    cost; w/o gates or stacking is the plain mean."""
    ctx, cache = world["ctx"], OutputCache()
    methods = ("mll", "mll_proxy", "stack_ungated", "stack_all", "one_head", "ungated")
    cells = {m: run_cell(ctx, six, m, cache) for m in methods}
    assert all(c["status"] == "ok" and 0.0 <= c["accuracy"] <= 1.0 for c in cells.values())
    assert cells["mll"]["combiner"] == "stacking" and set(cells["mll"]["modes"].values()) == {"stacking"}
    assert cells["stack_ungated"]["combiner"] == "stacking-ungated"
    assert cells["stack_ungated"]["answered_by"] == cells["mll"]["answered_by"]  # the same CHCO choice
    assert cells["ungated"]["combiner"] == "statistics-ungated"
    assert set(cells["ungated"]["modes"].values()) == {"statistics"}
    index = ctx.index
    from mll.solve.task import covering_models

    for c, models in cells["stack_all"]["answered_by"].items():
        assert models == covering_models(index, cells["stack_all"]["matched"][c])
    assert cells["stack_all"]["combiner"] == "stacking"
    assert all(len(ms) == 1 for ms in cells["one_head"]["answered_by"].values())
    for m in ("mll_proxy", "stack_ungated", "stack_all", "one_head"):
        assert get_method(m).label and not get_method(m).reference


@pytest.fixture(scope="module")
def user_names(tmp_path_factory) -> dict:
    words = {"0": "zero", "1": "one", "2": "two", "3": "three", "4": "four", "5": "five"}
    return {"six": {"words": words, "bad": {**words, "2": "blorptastic"}}}


def test_user_name_tasks_reuse_the_base_tasks_images(world, small_sdag, user_names, tmp_path):
    from mll.bench.tasks import build_tasks, load_user_names

    path = tmp_path / "names.yaml"
    import yaml

    path.write_text(yaml.safe_dump(user_names, sort_keys=False))
    names = load_user_names(path)
    bp = BenchmarkParams(max_per_class=8, tasks={"six": SIX}, user_name_methods=("mll", "top1"))
    tasks = {t.name: t for t in build_tasks(bp.tasks, world["test"], small_sdag, bp, {"digits"}, names)}
    assert list(tasks) == ["six", "six@words", "six@bad"]
    six, words = tasks["six"], tasks["six@words"]
    assert words.uris == six.uris and words.y.tolist() == six.y.tolist() and words.oracle is None
    assert words.classes == ["zero", "one", "two", "three", "four", "five"] and words.support["two"] == 8
    assert (words.base, words.naming) == ("six", "words") and words.describe()["base"] == "six"
    assert words.images() is six.images()  # decoded once
    # the user-name tasks get their own methods; a name that matches nothing fails its cell, not the grid
    assert [c for c in grid(list(tasks.values()), replace_methods(bp)) if c[0] == "six@bad"] == [
        ("six@bad", "mll", None),
        ("six@bad", "top1", None),
    ]
    ctx, cache = world["ctx"], OutputCache()
    base_cell = run_cell(ctx, six, "mll", cache)
    cell = run_cell(ctx, words, "mll", cache)
    assert cell["status"] == "ok" and cell["accuracy"] == base_cell["accuracy"]  # same synsets, same answer
    bad = run_cell(ctx, tasks["six@bad"], "mll", cache)
    assert bad["status"] == "failed" and bad["accuracy"] is None and "blorptastic" in bad["reason"]
    # a file naming a task the benchmark lacks, or leaving a class unnamed, is an error that says so
    with pytest.raises(ValueError, match="'seven' is not a benchmark task"):
        build_tasks(bp.tasks, world["test"], small_sdag, bp, set(), {"seven": {"w": {}}})
    with pytest.raises(ValueError, match=r"six@w: no name for class\(es\) \['5'\]"):
        build_tasks(bp.tasks, world["test"], small_sdag, bp, set(), {"six": {"w": {str(d): "x" for d in range(5)}}})


def replace_methods(bp: BenchmarkParams) -> BenchmarkParams:
    from dataclasses import replace

    return replace(bp, methods=("mll", "single"))


def test_load_state_reads_the_user_names_next_to_params(world, tmp_path):
    from mll.bench.run import load_state

    st = load_state(
        str(world["params"]),
        str(world["hub"]),
        str(world["labels"]),
        str(world["sdag"]),
        str(world["manifest"]),
        "",
        None,
    )
    assert set(st["tasks"]) == {"six", "ten", "six-lodo", "six@bad"} and st["tasks"]["six@bad"].base == "six"
    params = tmp_path / "params.yaml"
    params.write_text(
        world["params"].read_text().replace("user_name_methods: [mll]", "user_name_methods: [mll, magic]")
    )
    with pytest.raises(ValueError, match=r"user_name_methods has unknown \['magic'\]"):
        load_params(params)


def test_final_test_tasks_and_release(world, tmp_path):
    """The final-test run: the same task definitions on final_test rows, named test:<task>, split
    test; a task with no final-test image is reported as missing; the release names params and commit."""
    from mll.bench.run import cells_document, load_state, release_info, run_cell
    from mll.bench.summary import summarize

    final = world["test"].copy()
    final["split"] = "final_test"
    final = final[final["class_name"] != "5"]  # `six` names a class with no final-test image
    path = tmp_path / "final_test.parquet"
    final.reset_index(drop=True).to_parquet(path)
    st = load_state(str(world["params"]), str(world["hub"]), str(world["labels"]), str(world["sdag"]), str(path),
                    "", None, probe=str(world["probe"]), split="test")  # fmt: skip
    assert set(st["tasks"]) == {"test:ten"} and {"six", "six-lodo"} == set(st["missing_tasks"])
    t = st["tasks"]["test:ten"]
    assert t.split == "test" and t.family == "in_domain" and "5" not in t.classes
    cell = run_cell(world["ctx"], t, "mll", st["cache"])
    doc = cells_document(st, [cell], [], seconds=1.0)
    assert doc["split"] == "test" and len(doc["release"]["params_sha256"]) == 64 and doc["release"]["commit"]
    assert release_info(str(world["params"]))["params_sha256"] == doc["release"]["params_sha256"]
    s = summarize(doc)
    assert "test:ten" not in s["tasks"] and s["families"]["test"]["in_domain"]["mll"]["n_tasks"] == 1


def test_studies_budget_and_sweeps_on_the_tiny_hub(world, tmp_path):
    """The node-data budget relabels the hub on a thinned probe set and solves the in_domain dev
    tasks; a sweep reruns MLL with one knob changed; both summarise into the report's blocks."""
    from mll.bench.run import load_state
    from mll.bench.studies import run_budget, run_sweeps, study_tasks, summarize_studies

    st = load_state(str(world["params"]), str(world["hub"]), str(world["labels"]), str(world["sdag"]),
                    str(world["manifest"]), "", str(tmp_path / "outputs"), probe=str(world["probe"]))  # fmt: skip
    names = [t.name for t in study_tasks(st)]
    assert names and all(st["tasks"][n].family == "in_domain" and st["tasks"][n].fold is None for n in names)
    budget = run_budget(st, (1, 100), ("mll",), log=lambda *_: None)
    assert {r["budget"] for r in budget} == {1, 100} and all(r["status"] == "ok" for r in budget)
    few = {r["task"]: r["node_images"] for r in budget if r["budget"] == 1}
    many = {r["task"]: r["node_images"] for r in budget if r["budget"] == 100}
    assert all(0 < few[t] < many[t] for t in few)  # the thinned labels see fewer node images
    assert (tmp_path / "folds" / "probe1" / "labels").is_dir()
    sweeps = run_sweeps(st, {"max_heads": [1, 2]}, log=lambda *_: None)
    assert {(r["knob"], r["value"]) for r in sweeps} == {("max_heads", 1), ("max_heads", 2)}
    assert all(r["plan_seconds"] > 0 for r in sweeps)
    s = summarize_studies({"budget": budget, "sweeps": sweeps})
    assert set(s["node_budget"]["mll"]) == {"1", "100"} and s["sweeps"]["max_heads"]["2"]["n_tasks"] == len(names)
    with pytest.raises(ValueError, match="cannot be swept"):
        run_sweeps(st, {"temperature": ["none"]})

"""The patch for classes no head covers: hidden coverage (masking), the semantic (ConSE) patch,
back-off, the masked-coverage family's bookkeeping, and the weak-class warnings and --strict."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from mll.config import PatchParams
from mll.config import SolveParams as SolveConfig
from mll.data.images import open_image
from mll.solve import semantic
from mll.solve.masking import HeadMask, mask_logp, masked_index
from mll.solve.task import Context, check_strict, plan, predict, weak_classes


@pytest.fixture(scope="module")
def ctx(tiny_world, tiny_labels):
    c = Context.load(tiny_world["sdag"], tiny_world["hub"].root, tiny_labels, SolveConfig(device="cpu"))
    c.matcher.use_embeddings = False
    return c


@pytest.fixture
def wide(monkeypatch):
    """The tiny digit experts (3 classes each) count as the hub's generalists."""
    monkeypatch.setattr(semantic, "GENERALIST_MIN_CLASSES", 3)


def _cfg(ctx, kind: str, generalists: int = 1) -> SolveConfig:
    return replace(ctx.cfg, adapt=False, patch=PatchParams(kind=kind, device="cpu", generalists=generalists))


def _digits(tiny_world, classes):
    test = tiny_world["test"]
    test = test[test["class_name"].isin(classes)].reset_index(drop=True)
    y = test["class_name"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    return [open_image(u) for u in test["uri"]], y


def test_mask_logp_equals_the_softmax_without_the_masked_logits():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(5, 6)) * 3
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    out = mask_logp(logp, [1, 4])
    keep = [0, 2, 3, 5]
    ref = z[:, keep] - np.log(np.exp(z[:, keep]).sum(1, keepdims=True))
    assert np.allclose(out[:, keep], ref)
    assert np.allclose(np.exp(out).sum(1), 1.0) and (np.exp(out[:, [1, 4]]) == 0).all()
    assert mask_logp(logp, []) is logp


def test_a_hidden_class_is_uncovered_and_its_head_is_masked(ctx):
    three = ctx.matcher.match(["3"])[0].synset
    mask = HeadMask.of([three], "heads_hidden")
    index = masked_index(ctx.index, mask, ctx.sdag)
    assert ctx.index.covers(three) and not index.covers(three)
    assert index.covers(ctx.matcher.match(["4"])[0].synset)  # a sibling keeps its heads
    assert mask.model_columns(ctx.cards, ctx.sdag) == {"high": [ctx.cards["high"].synsets.index(three)]}
    p = plan(ctx, ["0", "1", "3", "4"], cfg=_cfg(ctx, "none"), mask=mask)
    assert p.uncovered == [2] and not p.selection.classes[2].patched
    assert p.combiner.masked == {"high": mask.model_columns(ctx.cards, ctx.sdag)["high"]}
    with pytest.raises(ValueError, match="variant"):
        HeadMask.of([three], "everything_hidden")


def test_masked_plan_never_answers_the_hidden_class_without_a_patch(ctx, tiny_world):
    images, y = _digits(tiny_world, ["0", "1", "3", "4"])
    three = ctx.matcher.match(["3"])[0].synset
    p = plan(ctx, ["0", "1", "3", "4"], cfg=_cfg(ctx, "none"), mask=HeadMask.of([three]))
    probs, _ = predict(ctx, p, images)
    assert (probs[:, 2] == 0).all()
    # the other classes are still told apart by the masked experts
    other = y != 2
    assert (probs[other].argmax(1) == y[other]).mean() > 0.6


def test_heads_and_nodes_hidden_removes_the_hidden_node_images(ctx):
    three = ctx.matcher.match(["3"])[0].synset
    kept = plan(ctx, ["0", "1", "3", "4"], cfg=_cfg(ctx, "none"), mask=HeadMask.of([three], "heads_hidden"))
    gone = plan(ctx, ["0", "1", "3", "4"], cfg=_cfg(ctx, "none"), mask=HeadMask.of([three], "heads_and_nodes_hidden"))
    assert (kept.y == 2).sum() > 0 and (gone.y == 2).sum() == 0
    assert (gone.y != 2).sum() == (kept.y != 2).sum()


def test_semantic_patch_answers_a_hidden_class(ctx, tiny_world, wide):
    images, y = _digits(tiny_world, ["0", "1", "3", "4"])
    three = ctx.matcher.match(["3"])[0].synset
    p = plan(ctx, ["0", "1", "3", "4"], cfg=_cfg(ctx, "semantic", generalists=2), mask=HeadMask.of([three]))
    c = p.selection.classes[2]
    assert p.uncovered == [2] and c.patched and c.mode == "patch" and "semantic patch" in c.why
    sp = p.semantic
    assert sp is not None and set(sp.models) == {"low", "high"} and sp.uncovered == [2]
    assert sp.masked.get("high") == [ctx.cards["high"].synsets.index(three)]
    assert sp.calibration["tau"] == "node images" and 0.005 <= sp.tau <= 1.0
    probs, _ = predict(ctx, p, images)
    assert np.allclose(probs.sum(1), 1.0, atol=1e-6) and (probs[:, 2] > 0).all()
    # the hidden class is answered sometimes; nothing is hard-coded to a class
    assert 0 < (probs.argmax(1) == 2).sum() < len(y)


def test_semantic_similarities_follow_the_embeddings():
    """ConSE by hand: an image whose generalist says "head class 0" lands on the task class whose
    embedding is head class 0's; masking that head class moves it to the next one."""
    e = np.eye(3, dtype=np.float32)
    sp = semantic.SemanticPatch(
        ["g"], {"g": e}, np.stack([e[0], e[2]]), uncovered=[1], top_t=1, tau=0.05, gain=(1.0, 0.0, 0.0)
    )
    logp = {"g": np.log(np.array([[0.7, 0.2, 0.1], [0.1, 0.2, 0.7]]))}
    assert np.allclose(sp.similarities(logp), [[1, 0], [0, 1]])
    sp.masked = {"g": [0]}
    sp.top_t = 2
    s = sp.similarities(logp)
    assert s[0, 0] == 0 and s[0, 1] > 0  # head class 0 hidden: only 1 and 2 remain
    p = sp.probs(logp)
    assert np.allclose(p.sum(1), 1.0)


def test_semantic_patch_backs_off_without_a_generalist(ctx):
    """No head is wide enough to be a generalist: the semantic patch cannot be made, so the class
    backs off to its nearest covered relative (or stays unanswered), and the plan says so."""
    three = ctx.matcher.match(["3"])[0].synset
    p = plan(ctx, ["0", "1", "3", "4"], cfg=_cfg(ctx, "semantic"), mask=HeadMask.of([three]))
    assert p.semantic is None and not p.selection.classes[2].patched


def test_backoff_answers_a_hidden_class_with_a_relative(ctx):
    three = ctx.matcher.match(["3"])[0].synset
    p = plan(ctx, ["0", "1", "3", "4"], cfg=_cfg(ctx, "backoff"), mask=HeadMask.of([three]))
    c = p.selection.classes[2]
    if c.backoff is None:  # the small SDAG may have no covered relative close enough
        assert not c.models
    else:
        assert c.backoff != three and c.models and not ctx.sdag.is_ancestor(three, c.backoff)


def test_weak_classes_and_strict(ctx, wide):
    p = plan(ctx, ["0", "3", "car"], cfg=_cfg(ctx, "none"))
    weak = {w["class"]: w for w in weak_classes(p)}
    assert weak["car"]["kind"] == "uncovered" and "no hub head covers" in weak["car"]["reason"]
    with pytest.raises(ValueError, match=r"--strict: no hub head covers 'car'; add an expert"):
        check_strict(p)
    p2 = plan(ctx, ["0", "3", "car"], cfg=_cfg(ctx, "semantic"))
    assert {w["class"]: w["kind"] for w in weak_classes(p2)}["car"] == "patched"
    # a covered class below the threshold is named with its estimate
    low = weak_classes(plan(ctx, ["0", "3"], cfg=_cfg(ctx, "none")), warn_below=1.01)
    assert {w["kind"] for w in low} == {"low_estimate"} and "< solve.warn_below 1.01" in low[0]["reason"]
    check_strict(plan(ctx, ["0", "3"], cfg=_cfg(ctx, "none")))  # everything covered: no error


def test_cli_warns_before_running_and_strict_refuses(tiny_world, tiny_labels, tmp_path, capsys):
    from mll.cli import main

    images = tmp_path / "imgs"
    images.mkdir()
    for i, u in enumerate(tiny_world["test"]["uri"][:3]):
        open_image(u).save(images / f"{i}.png")
    base = ["--hub", str(tiny_world["hub"].root), "--labels", str(tiny_labels), "--sdag", str(tiny_world["sdag"])]
    base += ["--params", str(tmp_path / "none.yaml")]  # no params file: defaults (patch backs off)
    out = tmp_path / "p.csv"
    rc = main(["solve", *base, "--classes", "0,3,car", "--images", str(images), "--out", str(out), "--no-track"])
    err = capsys.readouterr().err
    assert rc == 0 and "warning: class 'car' may be weak" in err
    js = tmp_path / "solve.json"
    main(
        [
            "solve",
            *base,
            "--classes",
            "0,3,car",
            "--images",
            str(images),
            "--out",
            str(out),
            "--no-track",
            "--json",
            str(js),
        ]
    )
    assert {w["class"] for w in json.loads(js.read_text())["weak_classes"]} >= {"car"}
    capsys.readouterr()
    rc = main(
        ["solve", *base, "--classes", "0,3,car", "--images", str(images), "--out", str(tmp_path / "q.csv"), "--strict"]
    )
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "mll: error:" in line]
    assert rc != 0 and len(errors) == 1 and "--strict: no hub head covers 'car'" in errors[0]
    assert not (tmp_path / "q.csv").exists()  # refused before any model ran


def test_hidden_subsets_are_seeded_and_bounded():
    from mll.bench.masked import hidden_subsets

    a = hidden_subsets("fashion-10", 10, (1, 2, 3), 4)
    assert a == hidden_subsets("fashion-10", 10, (1, 2, 3), 4) and len(a) == 12
    assert [len(s) for s in a] == [1] * 4 + [2] * 4 + [3] * 4 and len(set(a)) == 12
    assert hidden_subsets("four", 4, (1, 2, 3), 10) == [
        (0,), (1,), (2,), (3,), (0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3),
        (0, 1, 2), (0, 1, 3), (0, 2, 3), (1, 2, 3),
    ]  # fmt: skip
    assert hidden_subsets("two", 2, (1, 2, 3), 10) == [(0,), (1,)]  # never every class


def test_summarize_masked_pools_subsets_and_pairs_the_kinds():
    from mll.bench.masked import masked_table, summarize_masked

    def row(kind, variant, hidden_hits, hits, task="t", size=1, hidden=("a",)):
        return {
            "task": task, "family": "in_domain", "split": "dev", "variant": variant, "kind": kind, "size": size,
            "hidden": list(hidden), "accuracy": hits.count("1") / len(hits), "unmasked_accuracy": 0.9,
            "hits": hits, "hidden_hits": hidden_hits,
        }  # fmt: skip

    rows = [
        row("semantic", "heads_hidden", "1110", "11101111"),
        row("backoff", "heads_hidden", "1000", "10001111"),
        row("semantic", "heads_hidden", "11", "1111", hidden=("b",)),
        row("backoff", "heads_hidden", "00", "0011", hidden=("b",)),
    ]
    s = summarize_masked(rows, n_boot=200)["dev"]["heads_hidden"]
    assert s["semantic"]["hidden_class_acc"] == round(5 / 6, 4) and s["backoff"]["hidden_class_acc"] == round(1 / 6, 4)
    assert s["semantic"]["n_hidden"] == 6 and s["semantic"]["n_subsets"] == 2
    assert s["backoff"]["vs_semantic"] == {"semantic_only": 4, "other_only": 0, "p": 0.125}
    assert s["semantic"]["ci_low"] <= s["semantic"]["hidden_class_acc"] <= s["semantic"]["ci_high"]
    assert s["semantic"]["in_domain_unmasked"] == 0.9
    assert "| dev | heads_hidden | backoff | 0.167" in masked_table({"dev": {"heads_hidden": s}})

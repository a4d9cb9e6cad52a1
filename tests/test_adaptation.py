"""Adaptation: node images are reweighted towards the task's images only when they differ."""

import numpy as np
import pytest

from mll.labels.scores import auroc as _auc
from mll.solve.adaptation import W_MAX, W_MIN, domain_weights


def _outputs(rng, n, centre, c=5):
    """Fake stored outputs of one 5-class model: log-softmax of logits around `centre`."""
    z = rng.normal(centre, 1.0, (n, c))
    lse = np.log(np.exp(z).sum(1))
    return z - lse[:, None], lse


def test_no_shift_leaves_the_node_data_alone():
    rng = np.random.default_rng(0)
    node, tgt = _outputs(rng, 300, 0.0), _outputs(rng, 200, 0.0)
    dw = domain_weights({"m": node[0]}, {"m": node[1]}, {"m": tgt[0]}, {"m": tgt[1]})
    assert dw.weights is None and abs(dw.auroc - 0.5) < 0.1 and dw.z < 3


def test_a_target_subpopulation_is_found_and_upweighted():
    rng = np.random.default_rng(1)
    a, b = _outputs(rng, 200, 0.0), _outputs(rng, 200, 3.0)  # the node data mixes two domains
    node = (np.concatenate([a[0], b[0]]), np.concatenate([a[1], b[1]]))
    tgt = _outputs(rng, 300, 3.0)  # the task's images are all like the second
    dw = domain_weights({"m": node[0]}, {"m": node[1]}, {"m": tgt[0]}, {"m": tgt[1]})
    assert dw.weights is not None and dw.z > 3
    w = dw.weights
    assert w.mean() == pytest.approx(1.0) and w.min() >= W_MIN / W_MAX - 1e-9
    assert w[200:].mean() > 3 * w[:200].mean()  # the matching domain counts several times more
    assert dw.effective_n < 400


def test_too_few_images_or_no_common_model_is_a_no_op():
    rng = np.random.default_rng(2)
    node, tgt = _outputs(rng, 50, 0.0), _outputs(rng, 4, 3.0)
    assert domain_weights({"m": node[0]}, {"m": node[1]}, {"m": tgt[0]}, {"m": tgt[1]}).weights is None
    assert domain_weights({"m": node[0]}, {"m": node[1]}, {"x": tgt[0]}, {"x": tgt[1]}).weights is None


def test_weighted_auc_is_the_auc_of_repeated_images():
    rng = np.random.default_rng(3)
    pos, neg = rng.normal(1, 1, 30).round(1), rng.normal(0, 1, 40).round(1)  # rounding makes ties
    assert _auc(pos, neg, np.ones(30), np.ones(40)) == pytest.approx(_auc(pos, neg))
    wp, wn = rng.integers(1, 4, 30), rng.integers(1, 4, 40)
    assert _auc(pos, neg, wp.astype(float), wn.astype(float)) == pytest.approx(
        _auc(np.repeat(pos, wp), np.repeat(neg, wn))
    )


def test_solving_reports_what_adaptation_did(tiny_world, tiny_labels):
    """End to end on the tiny hub: the probe pools digits and clothes; a digits task is adapted or
    not, and either way the report says what was measured."""
    from mll.config import SolveParams as SolveConfig
    from mll.data.images import open_image
    from mll.solve.task import Context, evaluate, plan

    ctx = Context.load(tiny_world["sdag"], tiny_world["hub"].root, tiny_labels, SolveConfig(device="cpu"))
    ctx.matcher.use_embeddings = False
    test = tiny_world["test"]
    test = test[test["class_name"].isin(list("012345"))]
    names = [str(d) for d in range(6)]
    y = np.asarray([names.index(c) for c in test["class_name"]])
    images = [open_image(u) for u in test["uri"]]
    rep = evaluate(ctx, plan(ctx, names), images, y)
    a = rep["adaptation"]
    assert set(a) >= {"auroc", "z", "reweighted", "effective_node_images", "models"} and set(a["models"]) == {
        "low",
        "high",
    }
    assert rep["accuracy"] > 0.6
    off = evaluate(ctx, plan(ctx, names, cfg=SolveConfig(device="cpu", adapt=False)), images, y)
    assert off["adaptation"] is None


def test_adaptation_does_not_run_the_selected_models_twice(tiny_world, tiny_labels, monkeypatch):
    """The candidates' run on the task's images doubles as the selected models' run (no cache given)."""
    from mll.config import SolveParams as SolveConfig
    from mll.data.images import open_image
    from mll.hub.store import Hub
    from mll.solve.task import Context, evaluate, plan

    ctx = Context.load(tiny_world["sdag"], tiny_world["hub"].root, tiny_labels, SolveConfig(device="cpu"))
    ctx.matcher.use_embeddings = False
    test = tiny_world["test"][tiny_world["test"]["class_name"].isin(list("012345"))]
    loads: list[str] = []
    real = Hub.load
    monkeypatch.setattr(Hub, "load", lambda self, name, **k: loads.append(name) or real(self, name, **k))
    names = [str(d) for d in range(6)]
    evaluate(
        ctx,
        plan(ctx, names),
        [open_image(u) for u in test["uri"]],
        np.asarray([names.index(c) for c in test["class_name"]]),
    )
    assert sorted(loads) == ["high", "low"]  # each model loaded (and run) once

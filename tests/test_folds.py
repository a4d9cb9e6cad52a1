"""Folds of the protocol (`mll.bench.folds`): nothing derived from a removed domain reaches the solver."""

from __future__ import annotations

import functools
import json

import numpy as np
import pandas as pd
import pytest

from mll.bench.folds import Fold, fold_context, fold_labels, fold_models
from mll.config import LabelParams, SolveParams
from mll.data.sdag import SDAG
from mll.labels.compute import ProbeSet, label_model
from mll.solve.task import Context

PARAMS = LabelParams(track=False)


def test_fold_entries_are_checked():
    assert Fold.from_entry("t", None) is None
    assert Fold.from_entry("t", {"remove_domains": ["b", "a", "a"]}).remove_domains == ("a", "b")
    assert Fold.from_entry("t", {"remove_domains": "clipart"}).key == "minus-clipart"
    for bad in ({"remove_domains": []}, {"domains": ["a"]}, {"remove_domains": ["a"], "x": 1}, ["a"]):
        with pytest.raises(ValueError, match="fold must be"):
            Fold.from_entry("t", bad)


def test_a_budget_fold_thins_the_node_data_per_synset_and_nests():
    probe = pd.DataFrame(
        {
            "uri": [f"img{i}" for i in range(40)],
            "synset": [f"s{i % 4}.n.01" for i in range(40)],
            "domain": ["a" if i < 30 else "b" for i in range(40)],
        }
    )
    small, large = Fold((), per_synset=2), Fold((), per_synset=5)
    assert small.key == "probe2" and Fold(("b",), per_synset=2).key == "minus-b-probe2"
    rows2, rows5 = small.probe_rows(probe), large.probe_rows(probe)
    assert rows2.groupby("synset").size().tolist() == [2] * 4 and rows5.groupby("synset").size().tolist() == [5] * 4
    assert set(rows2["uri"]) < set(rows5["uri"])  # a smaller budget's images are a larger one's
    assert (rows2["uri"].map(lambda u: int(u[3:])).diff().dropna() > 0).all()  # manifest order kept
    both = Fold(("b",), per_synset=50).probe_rows(probe)
    assert len(both) == 30 and set(both["domain"]) == {"a"}
    with pytest.raises(ValueError, match="at least 1 image"):
        Fold((), per_synset=0).probe_rows(probe)


def test_fold_labels_equal_labels_made_without_the_removed_images(tiny_world, tmp_path):
    """The fold's labels are bit for bit those of a label run on a probe manifest that never had the
    removed domain's images: no gate, temperature, node statistic or stored output can carry them."""
    hub, probe_path, sdag_path = tiny_world["hub"], tiny_world["probe"], tiny_world["sdag"]
    full = pd.read_parquet(probe_path)
    assert {"clothing", "digits"} <= set(full["domain"])  # the tiny world's probe has both
    fold = Fold(("clothing",))
    models = fold_models(fold, hub.root, hub.names())
    assert models == hub.names()  # both experts are digit experts: the fold keeps them
    root = fold_labels(
        fold,
        models,
        hub_root=hub.root,
        probe_path=probe_path,
        sdag_path=sdag_path,
        out_root=tmp_path / "folds",
        params=PARAMS,
        log=lambda *_: None,
    )
    # the reference: the label code on a manifest without the clothing rows, from scratch
    kept = full[full["domain"] != "clothing"].reset_index(drop=True)
    probe = ProbeSet(kept, log=lambda *_: None)
    sdag = SDAG.load(sdag_path)
    ref = tmp_path / "reference"
    for name in models:
        label_model(lambda name=name: hub.load(name, device="cpu"), hub.card(name), probe, sdag, ref, PARAMS)
    full_labels = tmp_path / "full"
    full_probe = ProbeSet(full, log=lambda *_: None)
    for name in models:
        label_model(
            lambda name=name: hub.load(name, device="cpu"), hub.card(name), full_probe, sdag, full_labels, PARAMS
        )
    for name in models:
        mine, theirs = (
            json.loads((root / name / "summary.json").read_text()),
            json.loads((ref / name / "summary.json").read_text()),
        )
        for volatile in [k for k in mine if k.endswith("seconds")]:  # timings
            mine.pop(volatile), theirs.pop(volatile, None)
        assert mine == theirs  # gate, temperature, key, storage, counts: identical
        arrays = sorted(p.name for p in (ref / name).glob("*.np[yz]"))
        assert arrays and arrays == sorted(p.name for p in (root / name).glob("*.np[yz]"))
        for f in arrays:  # the stored outputs the combiner is fitted on (log-probs, log-sum-exp, uris)
            a, b = np.load(root / name / f), np.load(ref / name / f)
            pairs = [(a[k], b[k]) for k in a.files] if f.endswith(".npz") else [(a, b)]
            for x, y in pairs:
                assert np.array_equal(x, y) and len(x) == len(kept) < len(full), f
        pd.testing.assert_frame_equal(
            pd.read_parquet(root / name / "nodes.parquet"), pd.read_parquet(ref / name / "nodes.parquet")
        )
        # and they differ from the labels made with the clothing images (the fold changed something)
        full_gate = json.loads((full_labels / name / "summary.json").read_text())["gate"]
        assert full_gate != mine["gate"]


def test_fold_context_solves_with_the_kept_models_only(tiny_world, tmp_path):
    hub = tiny_world["hub"]
    base = Context.load(tiny_world["sdag"], hub.root, _labels(tiny_world, tmp_path), SolveParams())
    in_world = functools.partial(
        fold_context,
        hub_root=hub.root,
        probe_path=tiny_world["probe"],
        sdag_path=tiny_world["sdag"],
        out_root=tmp_path / "folds",
        params=PARAMS,
        log=lambda *_: None,
    )
    with pytest.raises(ValueError, match="removes every hub model"):
        in_world(Fold(("digits",)), base)
    ctx = in_world(Fold(("clothing",)), base)
    assert ctx.index.models == base.index.models
    # the solver's node data: only the kept probe images are there to fit on
    n_kept = int((pd.read_parquet(tiny_world["probe"])["domain"] != "clothing").sum())
    for m in ctx.index.models:
        lse = np.load(tmp_path / "folds" / "minus-clothing" / "labels" / m / "lse.npy")
        assert len(lse) == n_kept


def _labels(world, tmp_path):
    probe = ProbeSet(pd.read_parquet(world["probe"]), log=lambda *_: None)
    sdag = SDAG.load(world["sdag"])
    root = tmp_path / "labels"
    for name in world["hub"].names():
        label_model(
            lambda name=name: world["hub"].load(name, device="cpu"), world["hub"].card(name), probe, sdag, root, PARAMS
        )
    from mll.labels.index_file import refresh_index

    refresh_index(root)
    return root

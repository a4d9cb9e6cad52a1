"""Shared backbones: heads on a frozen EfficientNet-Lite, features computed once per backbone and
image in labeling and prediction, head training (and its weak/noisy/misleading variants), derived
ImageNet specialists, and card checks."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pandas as pd
import pytest
import torch

from mll.hub.backbones import FeatureCache, backbone_key
from mll.hub.cards import CardError, ExpertCard, HeadClass, InputConfig, card_from_dict
from mll.hub.store import Hub

VARIANT = "efficientnet-lite0"
SMALL = InputConfig(size=32, channels=3, mean=(0.5,) * 3, std=(0.5,) * 3, crop_pct=1.0)


def _head_card(name: str, classes: list[tuple[str, str]], arch: str = "linear", inp: InputConfig = SMALL):
    return ExpertCard(
        name=name,
        source="backbone_head",
        architecture=arch,
        weights="",
        weights_sha256="",
        input=inp,
        head=tuple(HeadClass(n, s) for n, s in classes),
        backbone=VARIANT,
        domain="digits",
        tags=("weak",) if name.endswith("weak") else (),
    )


def _linear(n: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"weight": torch.randn(n, 1280, generator=g) * 0.05, "bias": torch.zeros(n)}


@pytest.fixture(scope="module")
def head_hub(tmp_path_factory):
    hub = Hub(tmp_path_factory.mktemp("bbhub"))
    digits = [("zero", "n13742358"), ("one", "n13742573"), ("two", "n13743269")]
    hub.add(_head_card("h-a", digits), _linear(3, 0))
    hub.add(_head_card("h-b", digits[:2]), _linear(2, 1))
    return hub


def test_classifier_head_equals_the_whole_packaged_model(tmp_path):
    """The ImageNet classifier as a head on the shared backbone gives the packaged model's logits."""
    from mll.hub.head_training import imagenet_card
    from mll.hub.sources import import_efficientnet_lite

    hub = Hub(tmp_path)
    card, state = imagenet_card("gen", VARIANT, 64)
    hub.add(card, state)
    import_efficientnet_lite(hub, VARIANT, name="whole", input_size=64)
    x = torch.randn(3, 3, 64, 64)
    a, b = hub.load("gen", device="cpu"), hub.load("whole", device="cpu")
    assert a.backbone_key is not None and b.backbone_key is None
    assert torch.allclose(a.forward(x), b.forward(x), atol=1e-5)
    assert hub.card("gen").backbone == VARIANT and hub.card("gen").domain == "general"


def test_derived_specialist_is_the_generalists_rows(tmp_path):
    from mll.hub.head_training import imagenet_card

    gen, gstate = imagenet_card("gen", VARIANT, 64)
    dogs, dstate = imagenet_card("dogs", VARIANT, 64, subtree="dog.n.01")
    rows = [i for i, h in enumerate(gen.head) if h in set(dogs.head)]
    assert len(rows) == dogs.num_classes >= 2 and "derived" in dogs.tags and dogs.domain == "photos"
    assert torch.equal(dstate["weight"], gstate["weight"][rows])
    with pytest.raises(ValueError, match="a specialist needs 2"):
        imagenet_card("cars", VARIANT, 64, subtree="jeep.n.01")


def test_features_are_computed_once_for_heads_on_one_backbone(head_hub, tmp_path):
    a, b = head_hub.load("h-a", device="cpu"), head_hub.load("h-b", device="cpu")
    assert a.backbone_key == b.backbone_key == backbone_key(head_hub.card("h-a").backbone, head_hub.card("h-a").input)
    x = torch.randn(6, 3, 32, 32)
    keys = [f"img{i}" for i in range(6)]
    cache = FeatureCache(tmp_path / "f")
    la = a.cached_logits(keys, lambda: x, cache)
    lb = b.cached_logits(keys, lambda: x, cache)
    assert cache.computed == 6  # the second head read the first one's features
    assert torch.allclose(la, a.forward(x), atol=1e-5) and torch.allclose(lb, b.forward(x), atol=1e-5)
    # a new process (a new cache on the same folder) reads them from disk
    again = FeatureCache(tmp_path / "f")
    called = []
    assert torch.allclose(b.cached_logits(keys, lambda: called.append(1) or x, again), lb) and again.computed == 0
    assert not called  # every feature was on disk: the images were never preprocessed
    # a damaged cache file is recomputed, not fatal
    for f in (tmp_path / "f").glob("*.npz"):
        f.write_bytes(b"not a zip")
    broken = FeatureCache(tmp_path / "f")
    assert torch.allclose(a.cached_logits(keys, lambda: x, broken), la, atol=1e-6) and broken.computed == 6


def test_labeling_heads_runs_the_backbone_once(head_hub, tiny_world):
    from mll.config import LabelParams
    from mll.data.sdag import SDAG
    from mll.labels.compute import ProbeSet, label_model
    from mll.labels.store import read_label

    probe = ProbeSet(pd.read_parquet(tiny_world["probe"]))
    sdag = SDAG.load(tiny_world["sdag"])
    root = tiny_world["root"] / "bb-labels"
    cfg = LabelParams(track=False)
    results = [
        label_model(lambda n=n: head_hub.load(n, device="cpu"), head_hub.card(n), probe, sdag, root, cfg)
        for n in ("h-a", "h-b")
    ]
    assert [r.status for r in results] == ["labeled", "labeled"]
    assert probe.features.computed == len(probe)  # one backbone pass for both heads
    # the stored outputs are what a plain forward pass gives
    expert = head_hub.load("h-b", device="cpu")
    x, _ = probe.tensor(head_hub.card("h-b"))
    want = torch.log_softmax(expert.forward(x), 1).numpy()
    got = read_label(root, "h-b").logp.astype(np.float32)
    assert np.allclose(got, want, atol=2e-3)  # stored as float16


def test_run_models_shares_features_across_heads(head_hub):
    from PIL import Image

    from mll.solve.outputs import OutputCache
    from mll.solve.reuse import run_models

    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)) for _ in range(5)]
    cache = OutputCache()
    loaders = {n: (lambda n=n: head_hub.load(n, device="cpu")) for n in ("h-a", "h-b")}
    keys = [f"k{i}" for i in range(5)]
    hashes = {n: head_hub.card(n).weights_sha256 for n in loaders}
    logp, _, _ = run_models(images, loaders, {}, cache=cache, keys=keys, hashes=hashes)
    assert cache.features.computed == 5
    from mll.hub.experts import preprocess

    direct = torch.log_softmax(head_hub.load("h-a", device="cpu").forward(preprocess(images, SMALL)), 1).numpy()
    assert np.allclose(logp["h-a"], direct, atol=2e-3)  # the stored form is float16


def test_bad_backbone_head_cards_are_refused(head_hub, tmp_path):
    d = head_hub.card("h-a").to_dict()
    with pytest.raises(CardError, match="names its backbone"):
        card_from_dict({**d, "backbone": ""})
    with pytest.raises(CardError, match="is not one of"):
        card_from_dict({**d, "backbone": "resnet-9000"})
    with pytest.raises(CardError, match="tags must be a list"):
        card_from_dict({**d, "tags": "weak"})
    wrong = dataclasses.replace(head_hub.card("h-a"), name="wrong")
    with pytest.raises(CardError, match="head reads 7 features"):
        Hub(tmp_path).add(wrong, {"weight": torch.zeros(3, 7), "bias": torch.zeros(3)})
    assert not (tmp_path / "wrong").exists()  # nothing left behind
    with pytest.raises(CardError, match="3 classes"):
        Hub(tmp_path).add(wrong, _linear(4, 0))


# --- training heads -----------------------------------------------------------------------------------
def _separable(n_per: int, classes: int, dim: int = 1280, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (classes, dim))
    y = np.repeat(np.arange(classes), n_per)
    x = centres[y] + rng.normal(0, 0.5, (len(y), dim))
    return torch.tensor(x * 3 + 5, dtype=torch.float32), y  # raw features need standardising


@pytest.mark.parametrize("arch", ["linear", "mlp"])
def test_fit_head_learns_and_folds_the_standardisation(arch):
    from mll.hub.backbones import make_head
    from mll.hub.head_training import HeadSpec, fit_head

    x, y = _separable(30, 3)
    spec = HeadSpec(name=f"fit-{arch}", datasets=("d",), arch=arch, epochs=60, hidden=32)
    state, m = fit_head(spec, x, y, np.arange(len(y)), 3)
    assert m["val_accuracy"] >= 0.95 and m["n_val"] > 0
    head = make_head(arch, 1280, 3, hidden=32)
    head.load_state_dict(state)
    with torch.no_grad():  # the stored head reads raw features
        assert (head(x).argmax(1).numpy() == y).mean() >= 0.95
    state2, _ = fit_head(spec, x, y, np.arange(len(y)), 3)
    assert all(torch.equal(state[k], state2[k]) for k in state)  # deterministic


def test_misleading_and_noisy_heads_are_what_they_claim():
    from mll.hub.backbones import make_head
    from mll.hub.head_training import HeadSpec, fit_head

    x, y = _separable(30, 4)
    groups = np.arange(len(y))
    bad, mis = fit_head(HeadSpec(name="mis", datasets=("d",), permute=True), x, y, groups, 4)
    assert mis["label_agreement"] == 0.0
    head = make_head("linear", 1280, 4)
    head.load_state_dict(bad)
    with torch.no_grad():
        pred = head(x).argmax(1).numpy()
    assert (pred == (y + 1) % 4).mean() >= 0.9  # confidently names the next class
    _, noisy = fit_head(HeadSpec(name="noisy", datasets=("d",), label_noise=0.6), x, y, groups, 4)
    assert 0.3 <= noisy["label_agreement"] <= 0.55  # trained on labels that are mostly wrong


def test_select_rows_by_class_names_and_by_hypernym(small_sdag):
    from mll.hub.head_training import HeadSpec, select_rows

    rows = pd.DataFrame(
        {
            "uri": [f"u{i}" for i in range(8)],
            "dataset": ["clip"] * 8,
            "split": ["expert_train"] * 7 + ["probe"],
            "class_name": ["tabby", "dog", "jeep", "car", "tabby", "sandal", "dress", "dog"],
            "synset": ["n02123045", "n02084071", "n03594945", "n02958343", "n02123045", "n04133789", "n03236735",
                       "n02084071"],
        }
    )  # fmt: skip
    spec = HeadSpec(name="hyp", datasets=("clip",), classes=("carnivore.n.01", "car.n.01", "dog.n.01"))
    got, head = select_rows(spec, rows, small_sdag)
    assert [h.synset for h in head] == ["n02075296", "n02958343", "n02084071"]
    # the most specific class wins (a dog is "dog", not "carnivore"); unrelated images and the probe stay out
    assert dict(zip(got["uri"], got["target"])) == {"u0": 0, "u1": 2, "u2": 1, "u3": 1, "u4": 0}
    named, head2 = select_rows(HeadSpec(name="n", datasets=("clip",), classes=("dog", "jeep")), rows)
    assert list(named["uri"]) == ["u1", "u2"] and [h.name for h in head2] == ["dog", "jeep"]
    with pytest.raises(ValueError, match="no expert_train images in"):
        select_rows(HeadSpec(name="n", datasets=("nope",)), rows)
    with pytest.raises(ValueError, match="either all as synset names or all as class names"):
        select_rows(HeadSpec(name="n", datasets=("clip",), classes=("dog", "car.n.01")), rows, small_sdag)


def test_train_head_writes_a_card_with_backbone_domain_and_tags(tmp_path):
    from mll.config import SplitSizes
    from mll.data.datasets import load_dataset
    from mll.data.splits import split_dataset
    from mll.hub.head_training import HeadSpec, train_head

    rows = split_dataset(load_dataset("digits"), SplitSizes(expert_train=12, probe=0, target_test=0), seed=0)
    hub = Hub(tmp_path / "hub")
    spec = HeadSpec(
        name="digits-weak", datasets=("digits",), input_size=32, per_class=6, epochs=20, tags=("weak",), domain="digits"
    )
    card = train_head(spec, rows, hub, FeatureCache(), log=lambda *_: None)
    assert card.source == "backbone_head" and card.backbone == VARIANT and card.tags == ("weak",)
    assert card.provenance["metrics"]["n_train"] + card.provenance["metrics"]["n_val"] == 60
    assert hub.load("digits-weak", device="cpu").forward(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


def test_dvc_outs_of_the_hub_stages_match_params():
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(__file__))
    r = subprocess.run([sys.executable, "scripts/dvc_outs.py", "--check"], cwd=root, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_an_images_features_do_not_depend_on_what_was_cached(head_hub):
    """A lone missing image gives the same bits as in a full batch (a batch of one would not), so
    cached and fresh features agree exactly and head training does not depend on cache history."""
    expert = head_hub.load("h-a", device="cpu")
    x = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    keys = [f"img{i}" for i in range(5)]
    full = FeatureCache()
    want = full.get("k", keys, lambda rows: expert.features(x[rows]))
    partial = FeatureCache()
    partial.get("k", keys[:4], lambda rows: expert.features(x[:4][rows]))
    got = partial.get("k", keys, lambda rows: expert.features(x[rows]))  # only image 4 is computed, alone
    assert partial.computed == 5 and torch.equal(got, want)

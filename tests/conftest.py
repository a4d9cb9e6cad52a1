"""Shared fixtures: offline env, a small SDAG, tiny generated image folders, a Prefect test server."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("MLL_ROOT", str(REPO))
os.environ.setdefault("MLL_CACHE", str(REPO / ".cache"))

from mll.env import apply_offline_defaults  # noqa: E402

apply_offline_defaults()

# Synsets the small test SDAG must cover (its ancestor closure is built).
TEST_VOCAB_NAMES = [
    "dog.n.01",
    "tabby.n.01",
    "gym_shoe.n.01",
    "sandal.n.01",
    "boot.n.01",
    "jersey.n.03",
    "trouser.n.01",
    "car.n.01",
    "jeep.n.01",
    "pullover.n.01",
    "dress.n.01",
    "coat.n.01",
    "shirt.n.01",
    "bag.n.04",
    "zero.n.02",
    "one.n.01",
    "two.n.01",
    "three.n.01",
    "four.n.01",
    "five.n.01",
    "six.n.01",
    "seven.n.01",
    "eight.n.01",
    "nine.n.01",
]


@pytest.fixture(scope="session")
def wordnet():
    from mll.data.wordnet import get_wordnet

    return get_wordnet()


@pytest.fixture(scope="session")
def small_sdag(wordnet):
    from mll.data.sdag import build_sdag
    from mll.data.wordnet import wnid

    return build_sdag([wnid(wordnet.synset(n)) for n in TEST_VOCAB_NAMES])


@pytest.fixture(scope="session")
def small_sdag_dir(small_sdag, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sdag")
    small_sdag.save(out)
    return out


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for a server a test starts)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_png(path: Path, rng: np.random.Generator, mode: str = "RGB", size: int = 16) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "L":
        Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8), "L").save(path)
    elif mode == "RGBA":
        Image.fromarray(rng.integers(0, 255, (size, size, 4), dtype=np.uint8), "RGBA").save(path)
    elif mode == "I;16":
        Image.fromarray(rng.integers(0, 65535, (size, size), dtype=np.uint16)).save(path)
    else:
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8), "RGB").save(path)
    return path


@pytest.fixture
def image_folder(tmp_path) -> Path:
    """DIR/<class>/<images>: 3 classes x 4 images in assorted modes."""
    rng = np.random.default_rng(0)
    root = tmp_path / "task"
    for c in ("cat", "dog", "car"):
        for i, mode in enumerate(("RGB", "L", "RGBA", "I;16")):
            write_png(root / c / f"{i}.png", rng, mode)
    return root


@pytest.fixture(scope="session")
def prefect_server():
    """A temporary Prefect API (SQLite) for tests that run flows; started once per session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory, small_sdag):
    """Two digit experts on disjoint classes, a probe set of digits plus unrelated Fashion-MNIST images."""
    import pandas as pd

    from mll.config import SplitSizes
    from mll.data.datasets import load_dataset
    from mll.data.splits import split_dataset
    from mll.hub.store import Hub
    from mll.hub.training import ExpertSpec, train_expert

    root = tmp_path_factory.mktemp("world")
    digits = split_dataset(load_dataset("digits"), SplitSizes(expert_train=80, probe=12, target_test=10), seed=0)
    fashion = split_dataset(load_dataset("fashion_mnist"), SplitSizes(expert_train=0, probe=6, target_test=0), seed=0)
    hub = Hub(root / "hub")
    train = digits[digits.split == "expert_train"]
    for name, classes in (("low", ("0", "1", "2")), ("high", ("3", "4", "5"))):
        train_expert(ExpertSpec(name, "digits", classes, epochs=8, input_size=16), train, hub, log=lambda *_: None)
    probe = pd.concat([digits[digits.split == "probe"], fashion[fashion.split == "probe"]], ignore_index=True)
    probe_path = root / "probe.parquet"
    probe.to_parquet(probe_path)
    sdag_dir = root / "sdag"
    small_sdag.save(sdag_dir)
    return {
        "root": root,
        "hub": hub,
        "probe": probe_path,
        "sdag": sdag_dir,
        "test": digits[digits.split == "target_test"].reset_index(drop=True),
    }


@pytest.fixture(scope="session")
def tiny_labels(tiny_world, tmp_path_factory) -> Path:
    """The tiny hub labeled once per session (read-only for the tests that solve with it)."""
    from mll.config import LabelParams
    from mll.labels.run import label_stage

    labels = tmp_path_factory.mktemp("tiny_labels")
    label_stage(
        LabelParams(track=False, device="cpu"),
        hub_root=tiny_world["hub"].root,
        probe_path=tiny_world["probe"],
        sdag_path=tiny_world["sdag"],
        labels_root=labels,
        summary_path=None,
        log=lambda *_: None,
    )
    return labels


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> tuple[str, Path]:
    """A tiny open_clip architecture with random weights saved as a checkpoint: (model name, file)."""
    import json

    import open_clip
    import torch

    root = tmp_path_factory.mktemp("clip")
    cfg = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }
    (root / "tiny-clip-test.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(str(root / "tiny-clip-test.json"))
    torch.manual_seed(0)
    torch.save(open_clip.create_model("tiny-clip-test").state_dict(), root / "tiny.pt")
    return "tiny-clip-test", root / "tiny.pt"


@pytest.fixture(scope="session")
def synthetic_task():
    """A 400-node synthetic SDAG, a 60-model synthetic label index over it, and a six-class task
    (names, target nodes) of covered nodes at depth 2 or more: for selection tests without a hub."""
    from mll.bench.synthetic import SyntheticIndex, synthetic_sdag

    sdag = synthetic_sdag(400, seed=0)
    index = SyntheticIndex(sdag, 60, seed=0)
    covered = index.nodes.loc[index.nodes["head_classes"] > 0, "node"].unique()
    targets = [str(t) for t in covered if sdag.depth(t) >= 2][:6]
    return sdag, index, [sdag.name(t) for t in targets], targets

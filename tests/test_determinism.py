"""Reproducibility: training gives bit-identical weights whatever the core count or OpenMP/MKL thread
settings, and the SDAG file holds nothing volatile (docs/method.md section 10)."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import mll
from mll.config import SplitSizes
from mll.data.datasets import load_dataset
from mll.data.sdag import build_sdag
from mll.data.splits import split_dataset
from mll.hub.training import TRAIN_THREADS, deterministic

# What flows/build_hub.py does, in a fresh process: bootstrap (kernel pins) before torch runs, then
# train a tiny expert and print the sha256 of its weights file. argv[3], when given, is the process's
# thread count before training (torch caps OMP_NUM_THREADS at the core count, set_num_threads not).
TRAIN_ONE = """
import sys
from pathlib import Path
from mll.env import bootstrap
bootstrap(training=True)
import pandas as pd
import torch
if len(sys.argv) > 3:
    torch.set_num_threads(int(sys.argv[3]))
from mll.hub.store import Hub
from mll.hub.training import ExpertSpec, train_expert
spec = ExpertSpec("tiny", "digits", ("0", "1", "3"), epochs=2, input_size=16)
card = train_expert(spec, pd.read_parquet(sys.argv[1]), Hub(Path(sys.argv[2])), log=lambda *_: None)
print(card.weights_sha256)
"""


def _train_in_subprocess(
    manifest: Path, hub: Path, env: dict[str, str], prefix: list[str] = (), threads: int | None = None
) -> str:
    src = str(Path(mll.__file__).resolve().parents[1])
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "MLL_TRAIN_THREADS")}
    env = {**base, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]), **env}
    r = subprocess.run(
        [*prefix, sys.executable, "-c", TRAIN_ONE, str(manifest), str(hub), *([str(threads)] if threads else [])],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout.split()[-1]


@pytest.mark.slow
def test_training_is_bit_identical_across_thread_settings(tmp_path):
    frame = split_dataset(load_dataset("digits"), SplitSizes(expert_train=60, probe=5, target_test=5), seed=0)
    manifest = tmp_path / "expert_train.parquet"
    frame[frame.split == "expert_train"].to_parquet(manifest)
    one_core = ["taskset", "-c", "0"] if shutil.which("taskset") and hasattr(os, "sched_getaffinity") else []
    runs = {
        "default": _train_in_subprocess(manifest, tmp_path / "a", {}),
        "one core, OMP/MKL 1": _train_in_subprocess(
            manifest, tmp_path / "b", {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}, one_core
        ),
        "OMP/MKL 3, 3 threads": _train_in_subprocess(
            manifest, tmp_path / "c", {"OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "3"}, threads=3
        ),
    }
    assert len(set(runs.values())) == 1, runs
    # the check has teeth: the thread count used for training does change the weights
    other = _train_in_subprocess(manifest, tmp_path / "d", {"MLL_TRAIN_THREADS": str(TRAIN_THREADS + 1)})
    assert other != runs["default"]


def test_deterministic_fixes_threads_and_seeds_and_restores_them():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        np.random.seed(123)
        outside = np.random.get_state()[1].copy()
        with deterministic(7, threads=1):
            assert torch.get_num_threads() == 1 and torch.are_deterministic_algorithms_enabled()
            first = (torch.rand(3), np.random.rand(3), random.random())
        with deterministic(7, threads=1):
            again = (torch.rand(3), np.random.rand(3), random.random())
        assert torch.equal(first[0], again[0]) and np.array_equal(first[1], again[1]) and first[2] == again[2]
        assert torch.get_num_threads() == 2 and not torch.are_deterministic_algorithms_enabled()
        assert np.array_equal(np.random.get_state()[1], outside)  # the caller's generator state is back
    finally:
        torch.set_num_threads(before)


SDAG_VOCAB = ("person.n.01", "dog.n.01", "sandal.n.01", "three.n.01")  # person.n.01 has two parents

BUILD_SDAG = """
import sys
from mll.data.sdag import build_sdag
from mll.data.wordnet import get_wordnet, wnid
wn = get_wordnet()
build_sdag([wnid(wn.synset(n)) for n in sys.argv[2:]]).save(sys.argv[1])
"""


def test_sdag_file_holds_no_timing_and_sorted_parents(wordnet, tmp_path):
    from mll.data.wordnet import wnid

    build_sdag([wnid(wordnet.synset(n)) for n in SDAG_VOCAB]).save(tmp_path)
    doc = json.loads((tmp_path / "sdag.json").read_bytes())
    assert set(doc["meta"]) == {"wordnet", "scope", "nodes", "edges"}
    assert doc["id"] == sorted(doc["id"])
    parents = [[doc["id"][p] for p in ps] for ps in doc["parents"]]
    assert max(map(len, parents)) > 1 and all(ps == sorted(ps) for ps in parents)


@pytest.mark.slow
def test_sdag_file_is_byte_identical_across_processes(tmp_path):
    """NLTK keeps hypernym pointers in sets: their order follows PYTHONHASHSEED."""
    src = str(Path(mll.__file__).resolve().parents[1])
    for seed in ("1", "2"):
        env = {
            **os.environ,
            "PYTHONHASHSEED": seed,
            "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
        }
        r = subprocess.run(
            [sys.executable, "-c", BUILD_SDAG, str(tmp_path / seed), *SDAG_VOCAB],
            capture_output=True,
            text=True,
            timeout=600,
            env=env,
        )
        assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "1" / "sdag.json").read_bytes() == (tmp_path / "2" / "sdag.json").read_bytes()

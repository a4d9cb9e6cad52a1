"""Train the demo hub's small experts on partial class subsets of the `expert_train` split.

Each expert is a small timm CNN that sees only its own classes, so no single expert covers a whole
benchmark task: tasks need a combination of heads, which is what MLL is for.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from mll.config import TrainedExpertParams, TrainOverrides
from mll.data.images import open_image
from mll.hub.cards import ExpertCard, HeadClass, InputConfig
from mll.hub.experts import preprocess
from mll.hub.store import Hub
from mll.tracking import Tracker

DATASET_LICENSES = {
    "fashion_mnist": "MIT (Fashion-MNIST, Zalando)",
    "mnist": "CC BY-SA 3.0 (MNIST)",
    "digits": "CC BY 4.0 (UCI optdigits)",
}


@dataclass(frozen=True)
class ExpertSpec:
    """One demo expert: which classes of which dataset, and how to train it."""

    name: str
    dataset: str
    classes: tuple[str, ...]
    arch: str = "test_resnet"  # a tiny timm ResNet (0.37 M parameters)
    epochs: int = 5
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.05
    input_size: int = 28  # 8x8 digits are upscaled to this
    val_fraction: float = 0.1  # held out of expert_train for the validation accuracy
    seed: int = 0
    shift: int = 2  # random translation (pixels) as augmentation
    extra: dict = field(default_factory=dict)


def spec_from_params(name: str, entry: TrainedExpertParams, defaults: TrainOverrides | None = None) -> ExpertSpec:
    """An `experts.trained.<name>` entry over `experts.defaults`, over ExpertSpec's own defaults."""
    given = {**(defaults.given() if defaults else {}), **entry.given()}
    return ExpertSpec(name=name, dataset=entry.dataset, classes=tuple(str(c) for c in entry.classes), **given)


# Training runs on this many intra-op threads on every machine (MLL_TRAIN_THREADS overrides it, and
# changes the weights). The thread count decides how float sums are split into partial sums
# (convolution weight gradients, batch-norm statistics), so "as many threads as there are cores"
# trained to different weights on machines with different core counts. 1 rather than 2: on 2 cores
# shared with other jobs, 2 OpenMP threads were 7x slower than 1 (they wait for each other).
TRAIN_THREADS = int(os.environ.get("MLL_TRAIN_THREADS", "1"))


@contextlib.contextmanager
def deterministic(seed: int, threads: int = TRAIN_THREADS) -> Iterator[None]:
    """Bit-reproducible training inside the block, whatever the machine's core count or OMP settings.

    Fixes the intra-op thread count (see TRAIN_THREADS), asks torch for deterministic algorithms
    (an op without one raises instead of silently varying), and seeds torch, numpy's and Python's
    global generators. Thread count, algorithm switch and generator states are restored afterwards,
    so labeling or evaluation in the same process keep their own settings.
    """
    saved = (
        torch.get_num_threads(),
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.get_rng_state(),
        np.random.get_state(),
        random.getstate(),
    )
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    try:
        yield
    finally:
        threads0, det, warn_only, torch_rng, np_rng, py_rng = saved
        torch.set_num_threads(threads0)
        torch.use_deterministic_algorithms(det, warn_only=warn_only)
        torch.set_rng_state(torch_rng)
        np.random.set_state(np_rng)
        random.setstate(py_rng)


def training_environment(threads: int = TRAIN_THREADS) -> dict:
    """What besides seed, data and params decides the weights: recorded in the card's provenance.

    The CPU kernel choices are the ones `mll.env.pin_training_kernels` sets in training processes
    (`native` where nothing pinned them); `cpu_capability` is what ATen actually runs.
    """
    return {
        "torch": str(torch.__version__),
        "threads": threads,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "native"),
        "mkl_cbwr": os.environ.get("MKL_CBWR", "native"),
    }


def _select(spec: ExpertSpec, manifest: pd.DataFrame) -> pd.DataFrame:
    rows = manifest[(manifest["dataset"] == spec.dataset) & (manifest["split"] == "expert_train")]
    missing = [c for c in spec.classes if c not in set(rows["class_name"])]
    if missing:
        known = sorted(set(rows["class_name"]))
        raise ValueError(
            f"expert {spec.name}: classes {missing} have no expert_train images in {spec.dataset} (known: {known})"
        )
    return rows[rows["class_name"].isin(spec.classes)].sort_values("uri").reset_index(drop=True)


def manifest_hash(rows: pd.DataFrame) -> str:
    """sha256 over the sorted image URIs and labels a model was trained on."""
    h = hashlib.sha256()
    for u, c in sorted(zip(rows["uri"], rows["class_name"])):
        h.update(f"{u}\t{c}\n".encode())
    return h.hexdigest()


def _augment(x: torch.Tensor, shift: int, g: torch.Generator) -> torch.Tensor:
    if shift <= 0:
        return x
    _n, _, h, w = x.shape
    padded = F.pad(x, (shift, shift, shift, shift), mode="replicate")
    dx, dy = torch.randint(0, 2 * shift + 1, (2,), generator=g).tolist()
    return padded[:, :, dy : dy + h, dx : dx + w]


def train_expert(
    spec: ExpertSpec, manifest: pd.DataFrame, hub: Hub, tracker: Tracker | None = None, log=print
) -> ExpertCard:
    """Train `spec` on its classes' expert_train images, add it to `hub`, log to `tracker`."""
    import timm

    tracker = tracker or Tracker()
    rows = _select(spec, manifest)
    class_index = {c: i for i, c in enumerate(spec.classes)}
    synset_of = dict(zip(rows["class_name"], rows["synset"]))
    y_all = torch.tensor([class_index[c] for c in rows["class_name"]])
    cfg = InputConfig(size=spec.input_size, channels=1, mean=(0.5,), std=(0.5,), interpolation="bilinear", crop_pct=1.0)
    t0 = time.perf_counter()
    with deterministic(spec.seed):  # same weights on every core count (see `deterministic`)
        x_all = preprocess([open_image(u) for u in rows["uri"]], cfg)

        rng = np.random.default_rng(spec.seed)
        val_mask = np.zeros(len(rows), dtype=bool)
        for c in range(len(spec.classes)):  # stratified hold-out
            idx = np.flatnonzero(y_all.numpy() == c)
            val_mask[rng.choice(idx, max(1, round(spec.val_fraction * len(idx))), replace=False)] = True
        tr, va = torch.from_numpy(~val_mask), torch.from_numpy(val_mask)
        x_tr, y_tr, x_va, y_va = x_all[tr], y_all[tr], x_all[va], y_all[va]

        torch.manual_seed(spec.seed)
        g = torch.Generator().manual_seed(spec.seed)
        model = timm.create_model(spec.arch, pretrained=False, num_classes=len(spec.classes), in_chans=1)
        opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
        steps = spec.epochs * ((len(x_tr) + spec.batch_size - 1) // spec.batch_size)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=spec.lr, total_steps=max(1, steps), pct_start=0.2)
        tracker.log_params(
            {**{k: v for k, v in asdict(spec).items() if k != "extra"}, "n_train": len(x_tr), "n_val": len(x_va)}
        )
        val_acc = 0.0
        for epoch in range(spec.epochs):
            model.train()
            perm = torch.randperm(len(x_tr), generator=g)
            tot_loss = tot_ok = 0.0
            for i in range(0, len(perm), spec.batch_size):
                b = perm[i : i + spec.batch_size]
                xb, yb = _augment(x_tr[b], spec.shift, g), y_tr[b]
                out = model(xb)
                loss = F.cross_entropy(out, yb, label_smoothing=0.05)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                tot_loss += float(loss.detach()) * len(b)
                tot_ok += float((out.argmax(1) == yb).sum())
            model.eval()
            with torch.inference_mode():
                val_acc = float((model(x_va).argmax(1) == y_va).float().mean())
            tracker.log_metrics(
                {"train_loss": tot_loss / len(x_tr), "train_accuracy": tot_ok / len(x_tr), "val_accuracy": val_acc},
                step=epoch,
            )
            log(
                f"{spec.name} epoch {epoch + 1}/{spec.epochs}: loss {tot_loss / len(x_tr):.3f} "
                f"train acc {tot_ok / len(x_tr):.3f} val acc {val_acc:.3f}"
            )
    seconds = time.perf_counter() - t0
    tracker.log_metrics({"final_val_accuracy": val_acc, "train_seconds": seconds})
    log(f"{spec.name}: trained in {seconds:.1f} s on {TRAIN_THREADS} thread(s)")
    card = ExpertCard(
        name=spec.name,
        source="timm",
        architecture=spec.arch,
        weights="",
        weights_sha256="",
        input=cfg,
        head=tuple(HeadClass(c, synset_of[c]) for c in spec.classes),
        license=f"trained here on {DATASET_LICENSES.get(spec.dataset, spec.dataset)}",
        provenance={
            "dataset": spec.dataset,
            "split": "expert_train",
            "training_manifest_sha256": manifest_hash(rows),
            "params": {k: v for k, v in asdict(spec).items() if k not in ("name", "extra")}
            | {"classes": list(spec.classes)},
            # no timing here: the card is a DVC output kept in git, identical whenever the weights are
            # (train_seconds goes to MLflow and the log)
            "metrics": {"val_accuracy": round(val_acc, 4), "n_train": len(x_tr), "n_val": len(x_va)},
            "training_environment": training_environment(),
            # no MLflow run id either: it changes on every retraining, weights or not; the run is found
            # by its tag weights_sha256 (set below) and the registered model's `hub` alias
        },
        description=f"{spec.arch} trained on {len(spec.classes)} {spec.dataset} classes",
        domain=str(rows["domain"].iloc[0]) if "domain" in rows.columns else "",
    )
    card = hub.add(card, model.state_dict(), overwrite=True)
    tracker.log_dict(card.to_dict(), "card.yaml.json")
    tracker.set_tags({"model_name": card.name, "weights_sha256": card.weights_sha256, "dataset": spec.dataset})
    return card

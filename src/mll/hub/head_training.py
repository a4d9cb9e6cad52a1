"""The hub's cheap experts: heads trained on frozen shared backbones, and ImageNet subtree
specialists derived from the packaged classifiers.

A head expert reads the features of a registered backbone (`mll.hub.backbones`) and is trained on
the `expert_train` images of one or more datasets (corrupted variants and clipart styles are
datasets of their own). Training images' features are computed once per (backbone, input config,
image) through a `FeatureCache` on disk, so fifty heads over three backbones cost three passes over
each image, not fifty. Classes are either dataset class names or WordNet synset names; a synset class
takes every image whose synset lies at or below it (clipart has about one image per concept, so its
experts answer hypernyms like `bird.n.01`, with augmented views for training).

Real hubs hold weak, redundant and misleading experts, and so does this one, on purpose and tagged
in their cards: `per_class`/`epochs` starve a head (weak), `label_noise` trains on partly wrong
labels (noisy), `permute` trains every class on the next class's images (misleading: confident and
wrong), and a second seed or backbone on the same data makes a near-duplicate (redundant).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from mll.data.images import open_image
from mll.data.wordnet import resolve_synset, wnid
from mll.hub.backbones import (
    FeatureCache,
    backbone_key,
    backbone_sha256,
    get_backbone,
    load_backbone,
    make_head,
    run_batched,
)
from mll.hub.cards import ExpertCard, HeadClass, InputConfig
from mll.hub.experts import preprocess
from mll.hub.store import Hub
from mll.hub.training import deterministic, manifest_hash, training_environment
from mll.tracking import Tracker

DATA_LICENSES = {
    "fashion_mnist": "MIT (Fashion-MNIST, Zalando)",
    "mnist": "CC BY-SA 3.0 (MNIST)",
    "digits": "CC BY 4.0 (UCI optdigits)",
    "clipart": "Apache-2.0 (Noto emoji) / CC-BY-4.0 (Twemoji)",
}


@dataclass(frozen=True)
class HeadSpec:
    """One head expert: its backbone, its data and classes, how it is trained, what it is."""

    name: str
    datasets: tuple[str, ...]
    classes: tuple[str, ...] = ()  # dataset class names or synset names; () = every class of the datasets
    backbone: str = "efficientnet-lite0"
    input_size: int = 64
    arch: str = "linear"  # linear | mlp
    hidden: int = 256
    epochs: int = 150  # full-batch steps (linear: L-BFGS iterations)
    lr: float = 0.01
    weight_decay: float = 1e-3  # linear: L2 penalty on the weights; mlp: Adam's weight decay
    per_class: int = 300  # training images per class at most
    augment: int = 0  # augmented views per image (clipart)
    label_noise: float = 0.0  # share of training labels replaced by another class
    permute: bool = False  # every class trained on the next class's images
    val_fraction: float = 0.1
    seed: int = 0
    domain: str = ""
    tags: tuple[str, ...] = ()
    description: str = ""

    def input_config(self) -> InputConfig:
        # the backbones' own normalisation ([0, 1] -> [-1, 1]); no centre crop: small images are the object
        return InputConfig(size=self.input_size, channels=3, mean=(0.5,) * 3, std=(0.5,) * 3, crop_pct=1.0)


def select_rows(spec: HeadSpec, manifest: pd.DataFrame, sdag=None) -> tuple[pd.DataFrame, list[HeadClass]]:
    """The expert_train rows the head learns from, with a `target` column, and its head classes."""
    rows = manifest[manifest["dataset"].isin(spec.datasets) & (manifest["split"] == "expert_train")]
    if rows.empty:
        have = sorted(set(manifest.loc[manifest["split"] == "expert_train", "dataset"]))
        raise ValueError(f"head {spec.name}: no expert_train images in {list(spec.datasets)} (datasets: {have})")
    rows = rows.sort_values("uri").reset_index(drop=True)
    names = list(spec.classes) or sorted(set(rows["class_name"]), key=lambda c: (len(c), c))
    by_synset = [".n." in c for c in names]
    if any(by_synset) and not all(by_synset):
        raise ValueError(f"head {spec.name}: give classes either all as synset names or all as class names")
    if all(by_synset):
        if sdag is None:
            raise ValueError(f"head {spec.name}: synset classes need the SDAG (pass sdag)")
        ids = [wnid(resolve_synset(c)) for c in names]
        anc_of: dict[str, set[str]] = {}

        def above(s: str) -> set[str]:
            if s not in anc_of:
                anc_of[s] = (sdag.ancestors(s) | {s}) if s in sdag else {s}
            return anc_of[s]

        target = []
        for s in rows["synset"]:
            hits = [k for k, i in enumerate(ids) if i in above(s)]
            # the most specific class: a class below another has more ancestors (WordNet depth is the
            # shortest path, which a second hypernym can shorten: dog.n.01 is "shallower" than carnivore)
            target.append(max(hits, key=lambda k: len(above(ids[k]))) if hits else -1)
        head = [HeadClass(n.split(".")[0].replace("_", " "), i) for n, i in zip(names, ids)]
    else:
        missing = [c for c in names if c not in set(rows["class_name"])]
        if missing:
            raise ValueError(
                f"head {spec.name}: classes {missing} have no expert_train images in {list(spec.datasets)}"
            )
        synset_of = dict(zip(rows["class_name"], rows["synset"]))
        index = {c: k for k, c in enumerate(names)}
        target = [index.get(c, -1) for c in rows["class_name"]]
        head = [HeadClass(c, synset_of[c]) for c in names]
    rows = rows.assign(target=target)
    rows = rows[rows["target"] >= 0]
    empty = [h.name for k, h in enumerate(head) if not (rows["target"] == k).any()]
    if empty:
        raise ValueError(f"head {spec.name}: no training images for classes {empty}")
    rng = np.random.default_rng(_seed(spec.name, spec.seed))
    keep = np.concatenate(
        [rng.permutation(np.flatnonzero(rows["target"].to_numpy() == k))[: spec.per_class] for k in range(len(head))]
    )
    return rows.iloc[np.sort(keep)].reset_index(drop=True), head


def _seed(name: str, seed: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{name}:{seed}".encode()).digest()[:4], "big")


def augment_view(im: Image.Image, seed: int) -> Image.Image:
    """A random resized crop (60-100% of the side), a mirror half the time, a small rotation."""
    rng = np.random.default_rng(seed)
    im = im.convert("RGB")
    w, h = im.size
    side = rng.uniform(0.6, 1.0)
    cw, ch = max(1, round(w * side)), max(1, round(h * side))
    x0, y0 = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
    im = im.crop((int(x0), int(y0), int(x0) + cw, int(y0) + ch)).resize((w, h), Image.Resampling.BILINEAR)
    if rng.random() < 0.5:
        im = ImageOps.mirror(im)
    return im.rotate(float(rng.uniform(-15, 15)), resample=Image.Resampling.BILINEAR, fillcolor=(255, 255, 255))


def training_features(
    spec: HeadSpec, rows: pd.DataFrame, cache: FeatureCache, batch_size: int = 128
) -> tuple[torch.Tensor, np.ndarray]:
    """Backbone features of the training rows (and their augmented views): (features, row of each)."""
    cfg = spec.input_config()
    bkey = backbone_key(spec.backbone, cfg)
    backbone = load_backbone(spec.backbone)
    uris = list(rows["uri"])
    keys = [(u, v) for v in range(spec.augment + 1) for u in uris]  # view 0 is the image itself
    names = [u if v == 0 else f"{u}~aug{v}" for u, v in keys]

    def compute(todo: list[int]) -> torch.Tensor:
        outs = []
        for i in range(0, len(todo), batch_size):
            part = [keys[j] for j in todo[i : i + batch_size]]
            ims = [open_image(u) if v == 0 else augment_view(open_image(u), _seed(f"{u}~{v}", 0)) for u, v in part]
            with torch.inference_mode():
                outs += run_batched(lambda xb: backbone(xb).float(), preprocess(ims, cfg), batch_size)
        return torch.cat(outs)

    feats = cache.get(bkey, names, compute)
    return feats, np.tile(np.arange(len(uris)), spec.augment + 1)


def fit_head(
    spec: HeadSpec, feats: torch.Tensor, y: np.ndarray, groups: np.ndarray, num_classes: int
) -> tuple[dict[str, torch.Tensor], dict]:
    """Train the head full-batch on standardised features, then fold the standardisation into its
    first layer, so the stored head reads raw backbone features. Validation images (and every
    augmented view of them) are held out by image."""
    n_img = int(groups.max()) + 1 if len(groups) else 0
    rng = np.random.default_rng(_seed(spec.name, spec.seed + 1))
    y_img = np.zeros(n_img, dtype=int)
    y_img[groups] = y
    val_img = np.zeros(n_img, dtype=bool)
    for c in range(num_classes):
        idx = np.flatnonzero(y_img == c)
        if len(idx) >= 3:  # a class with one or two images keeps them for training
            val_img[rng.choice(idx, max(1, round(spec.val_fraction * len(idx))), replace=False)] = True
    va = val_img[groups] & (np.arange(len(groups)) < n_img)  # only the original view (view 0) is validated
    tr = ~val_img[groups]
    y_train = y.copy()
    if spec.permute:  # misleading: class c is trained on class c+1's images
        y_train = (y_train + 1) % num_classes
    if spec.label_noise > 0:
        flip = rng.random(len(y_train)) < spec.label_noise
        y_train[flip] = (y_train[flip] + rng.integers(1, num_classes, flip.sum())) % num_classes
    x = feats.float()
    mu, sd = x[torch.from_numpy(tr)].mean(0), x[torch.from_numpy(tr)].std(0).clamp_min(1e-3)
    z = (x - mu) / sd
    with deterministic(spec.seed):
        head = make_head(spec.arch, x.shape[1], num_classes, spec.hidden)
        ztr, ytr = z[torch.from_numpy(tr)], torch.from_numpy(y_train[tr]).long()
        if spec.arch == "linear":  # a convex problem: L-BFGS to its optimum, the same one on every run
            opt = torch.optim.LBFGS(head.parameters(), lr=1.0, max_iter=spec.epochs, line_search_fn="strong_wolfe")

            def closure() -> torch.Tensor:
                opt.zero_grad(set_to_none=True)
                loss = F.cross_entropy(head(ztr), ytr) + spec.weight_decay * head.weight.square().sum()
                loss.backward()
                return loss

            loss = opt.step(closure)
        else:
            opt = torch.optim.Adam(head.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
            for _ in range(spec.epochs):
                loss = F.cross_entropy(head(ztr), ytr, label_smoothing=0.05)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        head.eval()
        with torch.inference_mode():
            pred = head(z).argmax(1).numpy()
    first = head if spec.arch == "linear" else head[0]
    with torch.no_grad():  # W (x - mu) / sd + b  ==  (W / sd) x + (b - W mu / sd)
        w = first.weight / sd
        first.bias.copy_(first.bias - w @ mu)
        first.weight.copy_(w)
    metrics = {
        "val_accuracy": round(float((pred[va] == y[va]).mean()), 4) if va.any() else None,
        "train_accuracy": round(float((pred[tr] == y_train[tr]).mean()), 4),
        # share of training labels that are the image's true class: 1 clean, ~1 - label_noise, 0 permuted
        "label_agreement": round(float((y_train[tr] == y[tr]).mean()), 4),
        "n_train": int(tr.sum()),
        "n_val": int(va.sum()),
        "final_loss": round(float(loss.detach()), 4),
    }
    return {k: v.detach().clone().contiguous() for k, v in head.state_dict().items()}, metrics


def train_head(
    spec: HeadSpec,
    manifest: pd.DataFrame,
    hub: Hub,
    cache: FeatureCache,
    sdag=None,
    tracker: Tracker | None = None,
    log=print,
) -> ExpertCard:
    """Select, featurise, fit and add head expert `spec` to `hub`; log it to `tracker`."""
    tracker = tracker or Tracker()
    t0 = time.perf_counter()
    rows, head = select_rows(spec, manifest, sdag)
    feats, groups = training_features(spec, rows, cache)
    y = rows["target"].to_numpy()[groups]
    t1 = time.perf_counter()
    state, metrics = fit_head(spec, feats, y, groups, len(head))
    params = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(spec).items() if k != "name"}
    tracker.log_params({k: v for k, v in params.items() if k not in ("description",)})
    tracker.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
    tracker.log_metrics({"feature_seconds": t1 - t0, "fit_seconds": time.perf_counter() - t1})
    bb = get_backbone(spec.backbone)
    card = ExpertCard(
        name=spec.name,
        source="backbone_head",
        architecture=spec.arch,
        weights="",
        weights_sha256="",
        input=spec.input_config(),
        head=tuple(head),
        license=f"head trained here on {', '.join(DATA_LICENSES.get(_root(d), d) for d in spec.datasets)}; "
        f"backbone {bb.license}",
        provenance={
            "datasets": list(spec.datasets),
            "split": "expert_train",
            "training_manifest_sha256": manifest_hash(rows),
            "backbone_sha256": backbone_sha256(spec.backbone),
            "params": params,
            "metrics": metrics,  # no timings: the card is tracked in git (they go to MLflow)
            "training_environment": training_environment(),
        },
        description=spec.description
        or f"{spec.arch} head on frozen {spec.backbone} ({spec.input_size} px), {len(head)} classes of "
        f"{', '.join(spec.datasets)}",
        backbone=spec.backbone,
        domain=spec.domain or (str(rows["domain"].iloc[0]) if "domain" in rows.columns else ""),
        tags=spec.tags,
    )
    card = hub.add(card, state, overwrite=True)
    tracker.log_dict(card.to_dict(), "card.yaml.json")
    tracker.set_tags({"model_name": card.name, "weights_sha256": card.weights_sha256, "backbone": spec.backbone})
    log(
        f"{spec.name}: {spec.arch} on {spec.backbone}@{spec.input_size}, {len(head)} classes, "
        f"{metrics['n_train']} training views, val accuracy {metrics['val_accuracy']}"
    )
    return card


def _is_under(synset, root) -> bool:
    """WordNet's own hypernym closure (instance hypernyms too): no SDAG is needed to build experts."""
    return synset == root or root in synset.closure(lambda t: t.hypernyms() + t.instance_hypernyms())


def _root(dataset: str) -> str:
    """`fashion_mnist-rotate` -> `fashion_mnist`: a variant's licence is its parent's."""
    return dataset.split("-")[0]


# --- ImageNet experts on the shared backbones ---------------------------------------------------------
def imagenet_card(
    name: str,
    variant: str,
    input_size: int,
    subtree: str | None = None,
    tags: tuple[str, ...] = (),
) -> tuple[ExpertCard, dict[str, torch.Tensor]]:
    """A packaged ImageNet classifier as a head on its own backbone; with `subtree` (a synset name)
    only the rows of the ImageNet classes under it: a derived specialist, free to build and run."""
    from mll.hub.backbones import lite_classifier
    from mll.hub.heads import imagenet_head

    head = list(imagenet_head())
    state = lite_classifier(variant)
    keep = list(range(len(head)))
    if subtree is not None:
        from mll.data.wordnet import synset_from_wnid

        root = resolve_synset(subtree)
        keep = [i for i, h in enumerate(head) if _is_under(synset_from_wnid(h.synset), root)]
        if len(keep) < 2:
            raise ValueError(f"{name}: only {len(keep)} ImageNet classes under {subtree}; a specialist needs 2+")
        state = {k: v[keep].clone() for k, v in state.items()}
    card = ExpertCard(
        name=name,
        source="backbone_head",
        architecture="linear",
        weights="",
        weights_sha256="",
        # TF-Lite preprocessing: [0,1] -> (x - 0.5) / 0.5, resize to size/0.875 then centre crop
        input=InputConfig(size=input_size, channels=3, mean=(0.5,) * 3, std=(0.5,) * 3, crop_pct=0.875),
        head=tuple(head[i] for i in keep),
        license="Apache-2.0",
        provenance={
            "dataset": "imagenet-1k",
            "origin": get_backbone(variant).origin,
            "backbone_sha256": backbone_sha256(variant),
            **({"subtree": subtree, "derived_from": f"{variant} ImageNet-1k classifier"} if subtree else {}),
        },
        description=(
            f"{variant} ImageNet-1k classifier restricted to the {len(keep)} classes under {subtree}"
            if subtree
            else f"{variant} ImageNet-1k classifier (packaged weights)"
        )
        + f" at {input_size} px",
        backbone=variant,
        domain="photos" if subtree else "general",
        tags=tuple(tags) + (("derived",) if subtree else ()),
    )
    return card, state

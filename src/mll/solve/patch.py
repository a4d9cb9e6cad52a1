"""The patch: what scores target classes that no hub head covers.

Patch kinds are registered (`PATCHES`): `semantic` (ConSE over the hub's generalists, fitted per
task from the hub itself: `mll.solve.semantic`), `open_clip` (a vision-language model, below),
`backoff` (uncovered classes are answered by the nearest covered SDAG relative's heads) and `none`
(left unanswered, flagged).

Configured in params.yaml (`solve.patch`): `model` is an open_clip architecture name or
`local-dir:PATH` (a folder with open_clip_config.json + weights), `pretrained` a checkpoint file or,
for users who are online, a pretrained tag. With nothing configured there is no patch, and uncovered
classes back off to the nearest covered SDAG relative instead (flagged in the selection).

Fusion with the experts: let U be the uncovered classes and p_clip(k|x) CLIP's zero-shot
probabilities over *all* task classes. CLIP decides how much mass goes to U,
u(x) = Σ_{k∈U} p_clip(k|x); the experts' combiner shares the rest among the covered classes:

    p(k|x) = (1 − u(x)) · p_experts(k|x)   for covered k,
    p(k|x) = p_clip(k|x)                     for k ∈ U.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from mll.config import PatchParams

TEMPLATE_SETS = ("simple", "openai")  # solve.patch.templates


def templates(name: str) -> tuple:
    """open_clip's own prompt templates: `openai` (the 80 of CLIP's ImageNet evaluation) or `simple`
    (open_clip's 7-template subset of them, about 11x cheaper per class at the same order of
    accuracy, the default)."""
    import open_clip

    if name not in TEMPLATE_SETS:
        raise ValueError(f"solve.patch.templates: {name!r} is not one of {', '.join(TEMPLATE_SETS)}")
    return tuple(open_clip.OPENAI_IMAGENET_TEMPLATES if name == "openai" else open_clip.SIMPLE_IMAGENET_TEMPLATES)


class ClipPatch:
    """Zero-shot classifier over class names with an open_clip model."""

    def __init__(self, cfg: PatchParams):
        import open_clip
        import torch

        from mll.hub.experts import select_device

        if not cfg.model:
            raise ValueError("patch: set solve.patch.model (an open_clip architecture or local-dir:PATH)")
        self.device = select_device(cfg.device)
        try:
            if cfg.model.startswith("local-dir:"):
                model, _, preprocess = open_clip.create_model_and_transforms(cfg.model)
            else:
                model, _, preprocess = open_clip.create_model_and_transforms(cfg.model, pretrained=cfg.pretrained)
        except (RuntimeError, FileNotFoundError, ValueError, OSError) as exc:
            raise ValueError(
                f"patch: cannot load open_clip model {cfg.model!r} / {cfg.pretrained!r} "
                f"({' '.join(str(exc).split())[:200]}); offline, use a checkpoint file or local-dir:"
            ) from None
        self.model = model.eval().to(self.device)
        self.preprocess = preprocess
        self.tokenizer = open_clip.get_tokenizer(cfg.model)
        self._torch = torch
        self.templates = templates(cfg.templates)
        self.name = f"{cfg.model}:{cfg.pretrained or ''}"

    def text_head(self, class_names: Sequence[str]) -> np.ndarray:
        """(D, K) zero-shot head from open_clip's classifier builder: each class's prompt embeddings
        normalised, averaged over the templates and normalised again."""
        import open_clip

        head = open_clip.build_zero_shot_classifier(
            self.model,
            tokenizer=self.tokenizer,
            classnames=[n.replace("_", " ") for n in class_names],
            templates=self.templates,
            num_classes_per_batch=10,
            device=self.device,
        )
        return head.float().cpu().numpy()

    def probs(self, images: Sequence[Image.Image], class_names: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """(N, K) zero-shot probabilities over `class_names`."""
        torch = self._torch
        head = torch.from_numpy(self.text_head(class_names)).to(self.device)
        out = []
        with torch.inference_mode():
            for i in range(0, len(images), batch_size):
                x = torch.stack([self.preprocess(im.convert("RGB")) for im in images[i : i + batch_size]]).to(
                    self.device
                )
                f = self.model.encode_image(x).float()
                f = f / f.norm(dim=-1, keepdim=True)
                scale = self.model.logit_scale.exp().float() if hasattr(self.model, "logit_scale") else 100.0
                out.append(torch.softmax(scale * f @ head, dim=1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(class_names)))


# --- the registry of patch kinds -------------------------------------------------------------------
@dataclass(frozen=True)
class PatchKind:
    """What answers the classes no head covers: a scorer (loaded lazily), or nothing."""

    key: str
    active: Callable[[PatchParams], bool]  # does this configuration score uncovered classes?
    load: Callable[[PatchParams], ClipPatch | None]
    backoff: bool  # without a scorer, may an uncovered class back off to its nearest covered relative?
    per_task: bool = False  # fitted per task from the hub (planning does it), not loaded once


PATCHES: dict[str, PatchKind] = {}


def register_patch(
    key: str,
    active: Callable[[PatchParams], bool],
    load: Callable[[PatchParams], object | None],
    backoff: bool = True,
    per_task: bool = False,
) -> None:
    PATCHES[key] = PatchKind(key, active, load, backoff, per_task)


def get_patch_kind(cfg: PatchParams) -> PatchKind:
    if cfg.kind not in PATCHES:
        raise ValueError(f"solve.patch.kind {cfg.kind!r} is unknown; choose one of {', '.join(PATCHES)}")
    return PATCHES[cfg.kind]


# semantic needs no weights of its own: planning fits it from the hub's generalists (and backs off
# when the hub has none)
register_patch("semantic", active=lambda cfg: True, load=lambda cfg: None, per_task=True)
# open_clip scores uncovered classes once a model is configured; until then it backs off
register_patch("open_clip", active=lambda cfg: bool(cfg.model), load=lambda cfg: ClipPatch(cfg) if cfg.model else None)
register_patch("backoff", active=lambda cfg: False, load=lambda cfg: None)
register_patch("none", active=lambda cfg: False, load=lambda cfg: None, backoff=False)


def patch_active(cfg: PatchParams | None) -> bool:
    """Whether the configured patch scores uncovered classes (no model is loaded to answer)."""
    return cfg is not None and get_patch_kind(cfg).active(cfg)


def load_patch(cfg: PatchParams | None) -> ClipPatch | None:
    """The configured patch's scorer, or None when it has none."""
    if cfg is None:
        return None
    return get_patch_kind(cfg).load(cfg)


def fuse(
    p_experts: np.ndarray, covered: Sequence[int], p_clip: np.ndarray | None, uncovered: Sequence[int], k: int
) -> np.ndarray:
    """Combine the experts' probabilities over covered classes with the patch's (see module doc)."""
    # p_experts has one row per image even when no class is covered (shape (N, 0))
    n = len(p_experts) if p_experts is not None else (len(p_clip) if p_clip is not None else 0)
    out = np.zeros((n, k))
    if p_clip is not None and len(uncovered):
        u = p_clip[:, list(uncovered)].sum(1)
        out[:, list(uncovered)] = p_clip[:, list(uncovered)]
    else:
        u = np.zeros(n)
    if len(covered):
        out[:, list(covered)] = (1.0 - u)[:, None] * p_experts
    return out

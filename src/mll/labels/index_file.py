"""The on-disk copy of the label index (`labels/.index/`), written by the `label` stage.

`rows.npy` is one uncompressed structured array sorted by node (memory-mapped, so a new process
reads only the target nodes' rows); `meta.npz` holds models, nodes, each node's first row and a
fingerprint of each model's `summary.json` (inode, size, mtime). A reader uses it only when every
fingerprint matches the labels on disk; it is written into a temporary folder and swapped in under
a lock, so a failed write leaves the previous index.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from mll.labels.store import NODES, SUMMARY, read_summary

COLUMNS = [
    "node",
    "head_classes",
    "support",
    "measured",
    "top1_hit",
    "gated_recall",
    "gated_false_alarm",
    "false_alarm",
    "soft_recall",
]


INDEX_DIR = ".index"


INDEX_VERSION = 1


# --- the table -------------------------------------------------------------------------------------
class _Table:
    """Label rows grouped by node: rows `perm[starts[i]:starts[i+1]]` (or that slice when `perm` is
    None) of the columns `cols` are node `node_ids[i]`'s, in the order of the frame they came from.
    `cols["model"]` holds codes into `models`, `cols["order"]` each row's position in that frame."""

    def __init__(self, models, node_ids, starts, cols, columns, perm=None):
        self.models = np.asarray(models)
        self.node_ids = np.asarray(node_ids)  # sorted
        self.starts = np.asarray(starts)
        self.cols = cols
        self.columns = list(columns)  # the frame's column order ("model", "node", ...)
        self.perm = perm

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> _Table:
        """From a model-major frame (columns "model", "node", ...): model codes in order of appearance."""
        codes, models = pd.factorize(frame["model"], sort=False)
        ncodes, uniques = pd.factorize(frame["node"], sort=True)
        perm = np.argsort(ncodes, kind="stable")
        starts = np.searchsorted(ncodes[perm], np.arange(len(uniques) + 1))
        cols = {c: frame[c].to_numpy() for c in frame.columns if c not in ("model", "node")}
        cols["model"] = codes.astype(np.int32)
        cols["order"] = np.arange(len(frame), dtype=np.int64)
        return cls(np.asarray(models, dtype=str), np.asarray(uniques, dtype=str), starts, cols, frame.columns, perm)

    def slice(self, node: str) -> np.ndarray | slice | None:
        i = int(np.searchsorted(self.node_ids, node))
        if i >= len(self.node_ids) or self.node_ids[i] != node:
            return None
        s, e = int(self.starts[i]), int(self.starts[i + 1])
        return slice(s, e) if self.perm is None else self.perm[s:e]

    def frame(self, rank: np.ndarray) -> pd.DataFrame:
        """The rows of the models with rank >= 0 as one frame, model-major by rank (then by order)."""
        code = np.asarray(self.cols["model"])
        keep = np.flatnonzero(rank[code] >= 0)
        keep = keep[np.lexsort((np.asarray(self.cols["order"])[keep], rank[code[keep]]))]
        node_of = np.repeat(np.arange(len(self.node_ids)), np.diff(self.starts))
        if self.perm is not None:
            inv = np.empty(len(self.perm), dtype=np.int64)
            inv[self.perm] = np.arange(len(self.perm))
            node_of = node_of[inv]
        data = {}
        for c in self.columns:
            if c == "model":
                data[c] = self.models[code[keep]].astype(object)
            elif c == "node":
                data[c] = self.node_ids[node_of[keep]].astype(object)
            else:
                data[c] = np.asarray(self.cols[c])[keep]
        return pd.DataFrame(data)


# --- the on-disk index ----------------------------------------------------------------------------
def _label_folders(root: Path) -> list[str]:
    if not root.is_dir():
        return []
    with os.scandir(root) as it:
        return sorted(e.name for e in it if not e.name.startswith(".") and e.is_dir())


def _fingerprint(root: Path, model: str, dir_fd: int | None = None) -> tuple[int, int, int] | None:
    """(inode, size, mtime_ns) of the label's summary.json: a label is rewritten as a whole, summary included."""
    try:
        st = os.stat(f"{model}/{SUMMARY}", dir_fd=dir_fd) if dir_fd is not None else os.stat(root / model / SUMMARY)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _fingerprints(root: Path, names: list[str]) -> list[tuple[int, int, int] | None]:
    """`_fingerprint` of many labels (one stat each, relative to the open labels folder)."""
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return [None] * len(names)
    try:
        return [_fingerprint(root, n, fd) for n in names]
    finally:
        os.close(fd)


class _StoredIndex:
    """`labels/.index/` opened (not yet checked against the labels)."""

    def __init__(self, table: _Table, all_models: np.ndarray, labeled: np.ndarray, fps: np.ndarray):
        self.table = table
        self.all_models = all_models  # every label folder seen, labeled or not (unreadable summary)
        self.labeled = labeled
        self.fps = fps

    @classmethod
    def open(cls, root: Path) -> _StoredIndex | None:
        d = Path(root) / INDEX_DIR
        try:
            before = os.stat(d).st_ino
            with np.load(d / "meta.npz", allow_pickle=False) as z:
                meta = {k: z[k] for k in z.files}
            rows = np.load(d / "rows.npy", mmap_mode="r", allow_pickle=False)
            if os.stat(d).st_ino != before:  # swapped while reading: the next reader gets the new one
                return None
            if int(meta["version"]) != INDEX_VERSION:
                return None
            cols = {c: rows[c] for c in rows.dtype.names}
            table = _Table(meta["models"], meta["node_ids"], meta["starts"], cols, meta["columns"].tolist())
            return cls(table, meta["all_models"], meta["labeled"], meta["fps"])
        except (OSError, ValueError, KeyError):
            return None

    def match(self, root: Path, names: list[str]) -> list[str] | None:
        """The labeled models among `names` when the index is current for all of them, else None."""
        pos = {m: i for i, m in enumerate(self.all_models.tolist())}
        fps = self.fps.tolist()
        labeled = []
        for n, fp in zip(names, _fingerprints(root, names)):
            i = pos.get(n)
            if i is None:
                if fp is not None:  # labeled after the index was written
                    return None
                continue
            if fp is None or list(fp) != fps[i]:
                return None
            if self.labeled[i]:
                labeled.append(n)
        return labeled

    def rank(self, models: list[str]) -> np.ndarray:
        order = {m: r for r, m in enumerate(models)}
        return np.array([order.get(m, -1) for m in self.table.models.tolist()], dtype=np.int64)


@contextlib.contextmanager
def _index_lock(root: Path):
    with open(Path(root) / f"{INDEX_DIR}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def refresh_index(root: Path, frame: pd.DataFrame | None = None) -> bool:
    """Bring `labels/.index/` up to date with the labels under `root`; True when it was (re)written.

    Reads only the node tables of labels that changed since it was written (none when nothing did,
    and then nothing is written). `frame` (tests, the synthetic benchmark hub) gives the node rows
    of every label in memory instead of reading their node tables. Written into a temporary folder
    and swapped in, under a lock; the `label` stage calls it after labeling. A failed write (disk
    full) raises OSError and leaves the previous index, which readers then find stale.
    """
    root = Path(root)
    if not root.is_dir():
        return False
    with _index_lock(root):
        names = _label_folders(root)
        fps = dict(zip(names, _fingerprints(root, names)))  # before reading: a later rewrite shows as stale
        old = _StoredIndex.open(root)
        old_fp = {}
        if old is not None:
            old_fp = {
                m: (tuple(old.fps[i].tolist()), bool(old.labeled[i])) for i, m in enumerate(old.all_models.tolist())
            }
            if set(old_fp) == set(names) and all(old_fp[n][0] == fps[n] for n in names):
                return False
        labeled, parts = {}, []
        reuse = [n for n in names if n in old_fp and old_fp[n][0] == fps[n] and fps[n] is not None]
        if frame is None and reuse:
            parts.append(old.table.frame(old.rank([n for n in reuse if old_fp[n][1]])))
            labeled.update({n: old_fp[n][1] for n in reuse})
        for n in names:
            if n in labeled or fps[n] is None:
                continue
            ok = read_summary(root, n) is not None
            labeled[n] = ok
            if ok and frame is None:
                f = pd.read_parquet(root / n / NODES, columns=COLUMNS)
                f.insert(0, "model", n)
                parts.append(f)
        keep = [n for n in names if fps[n] is not None]
        if frame is not None:
            rows = frame[frame["model"].isin({n for n in keep if labeled[n]})]
        else:
            rows = pd.concat(parts, ignore_index=True) if parts else None
        if rows is None or not len(rows):  # no label rows at all: no index (readers read the nothing there is)
            shutil.rmtree(root / INDEX_DIR, ignore_errors=True)
            return old is not None
        _write_index(root, rows, keep, [labeled[n] for n in keep], [fps[n] for n in keep])
        return True


def _write_index(root: Path, frame: pd.DataFrame, names: list[str], labeled: list[bool], fps: list) -> None:
    frame = frame[["model", *COLUMNS]]
    rank = {m: i for i, m in enumerate(sorted(set(frame["model"])))}
    # model-major in name order, each model's rows in its own order: the frame a full read builds
    pos = frame.groupby("model", sort=False).cumcount().to_numpy()
    frame = frame.iloc[np.lexsort((pos, frame["model"].map(rank).to_numpy()))].reset_index(drop=True)
    t = _Table.from_frame(frame)
    fields = [("model", np.int32), ("order", np.int64)]
    for c in COLUMNS[1:]:
        dt = frame[c].to_numpy().dtype
        if dt.hasobject:
            raise ValueError(f"label index: column {c!r} holds objects ({dt}); relabel with `mll label --force`")
        fields.append((c, dt))
    rows = np.empty(len(frame), dtype=fields)
    for c, _ in fields:
        rows[c] = np.asarray(t.cols[c])[t.perm]
    tmp = root / f"{INDEX_DIR}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _write_files(tmp, rows, t, names, labeled, fps)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    final, old = root / INDEX_DIR, root / f"{INDEX_DIR}.old-{os.getpid()}"
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def _write_files(tmp: Path, rows: np.ndarray, t: _Table, names: list[str], labeled: list[bool], fps: list) -> None:
    tmp.mkdir()
    np.save(tmp / "rows.npy", rows, allow_pickle=False)
    np.savez(
        tmp / "meta.npz",
        version=np.int64(INDEX_VERSION),
        models=t.models,
        node_ids=t.node_ids,
        starts=t.starts.astype(np.int64),
        columns=np.asarray(t.columns, dtype=str),
        all_models=np.asarray(names, dtype=str),
        labeled=np.asarray(labeled, dtype=bool),
        fps=np.asarray(fps, dtype=np.int64).reshape(len(names), 3),
    )
    for f in tmp.iterdir():  # durable before the swap
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())

"""Model labels: what an expert recognises on the SDAG's node data, and how well. Measured, not declared.

A label has two layers (docs/method.md, section 3):

1. *Stored outputs*: the model's log-probabilities on every probe image, float16 over the whole
   head for ordinary heads, top-k + the log of the remaining mass for wide heads (ImageNet). They
   let selection and reuse be fitted for a future task without running any model again.
2. *Summary statistics* per covered node v (head synsets and their ancestors): support, soft recall,
   top-1 hit rate, false-alarm rate on unrelated probe images; per model a fitted temperature and an
   in-domain gate with its AUROC.

Labels are stored per model under `labels/<model>/` (outputs.npz, nodes.parquet, summary.json),
keyed by the card hash and the probe manifest hash; a model whose key is unchanged is skipped, so
adding one model labels exactly one model. A model's folder is swapped in atomically.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mll.cards import ExpertCard
from mll.experts import Expert, preprocess
from mll.images import ImageError, open_image
from mll.sdag import SDAG

LABEL_VERSION = 3  # bump when the label definition changes: every key changes with it
OUTPUTS, NODES, SUMMARY = "outputs.npz", "nodes.parquet", "summary.json"


@dataclass(frozen=True)
class LabelConfig:
    batch_size: int = 64
    device: str = "auto"  # auto | cpu | cuda[:N]
    amp: bool = True  # float16 autocast on CUDA
    full_max_classes: int = 256  # heads up to this width store every log-probability
    top_k: int = 32  # wider heads store the top-k log-probabilities + the rest's log-mass
    gate_folds: int = 2  # cross-validation folds for the gate's AUROC


# --- probe data -------------------------------------------------------------------------------
class ProbeSet:
    """The probe manifest with decoded images and per-input-config tensors, shared across models.

    Decoding happens once; each distinct preprocessing (size, channels, mean/std, crop) is computed
    once and reused by every model that shares it.
    """

    max_cached = 2  # preprocessed variants kept at once (models are labeled grouped by input config)

    def __init__(self, manifest: pd.DataFrame, log: Callable[[str], None] = print):
        m = manifest.reset_index(drop=True)
        self.uris = list(m["uri"])
        self.synsets = list(m["synset"])
        self.datasets = list(m["dataset"])
        self.hash = hashlib.sha256("\n".join(f"{u}\t{s}" for u, s in zip(self.uris, self.synsets)).encode()).hexdigest()
        self._images = None
        self._tensors: dict = {}
        self._lock = threading.Lock()
        self.skipped: dict[str, str] = {}
        self._log = log

    def __len__(self) -> int:
        return len(self.uris)

    def images(self):
        with self._lock:
            if self._images is None:
                t0 = time.perf_counter()
                imgs = []
                for u in self.uris:
                    try:
                        imgs.append(open_image(u))
                    except ImageError as exc:  # a bad probe image is skipped, not fatal
                        self.skipped[u] = str(exc)
                        imgs.append(None)
                self._images = imgs
                self.decode_seconds = time.perf_counter() - t0
            return self._images

    def tensor(self, card: ExpertCard) -> tuple[torch.Tensor, np.ndarray]:
        """(preprocessed probe images for `card`, indices of usable images)."""
        key = card.input
        imgs = self.images()
        with self._lock:
            if key not in self._tensors:
                ok = np.flatnonzero([im is not None for im in imgs])
                while len(self._tensors) >= self.max_cached:  # big inputs (ImageNet sizes) cost ~0.4 GB each
                    self._tensors.pop(next(iter(self._tensors)))
                self._tensors[key] = (preprocess([imgs[i] for i in ok], card.input), ok)
            return self._tensors[key]


# --- the label ---------------------------------------------------------------------------------
def label_key(card: ExpertCard, probe_hash: str) -> str:
    return hashlib.sha256(f"{LABEL_VERSION}\n{card.content_hash()}\n{probe_hash}".encode()).hexdigest()


def _closure(card: ExpertCard, sdag: SDAG) -> list[str]:
    nodes = set()
    for s in card.synsets:
        if s in sdag:
            nodes.add(s)
            nodes |= sdag.ancestors(s)
    return sorted(nodes)


def _fit_temperature(logits: torch.Tensor, target: torch.Tensor) -> float:
    """Temperature T minimising the NLL of softmax(z / T) on in-domain probe images (1-D search)."""
    if len(target) < 5:
        return 1.0
    grid = torch.exp(torch.linspace(np.log(0.05), np.log(20.0), 61))
    nll = torch.stack([torch.nn.functional.cross_entropy(logits / t, target) for t in grid])
    return float(grid[int(nll.argmin())])


GATE_FULL_MAX = 32  # heads up to this width give the gate their whole log-probability vector


def _gate_features(logp: np.ndarray, lse: np.ndarray) -> np.ndarray:
    """max log-prob, normalised entropy, logit log-sum-exp (+ the log-probs of a small head)."""
    p = np.exp(logp)
    entropy = -(p * logp).sum(1) / max(np.log(max(p.shape[1], 2)), 1e-9)
    base = np.stack([logp.max(1), entropy, lse], axis=1)
    if logp.shape[1] <= GATE_FULL_MAX:
        base = np.concatenate([base, np.maximum(logp, -30.0)], axis=1)
    return base


def _auroc(score: np.ndarray, positive: np.ndarray) -> float:
    pos, neg = score[positive], score[~positive]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    ranks = pd.Series(np.concatenate([pos, neg])).rank().to_numpy()
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def _fit_gate(feats: np.ndarray, in_domain: np.ndarray, folds: int, seed: int = 0) -> tuple[dict, float]:
    """Logistic regression on the gate features (see `_gate_features`) -> P(in domain).

    Returns the gate fitted on all probe images and its cross-validated AUROC.
    """
    from sklearn.linear_model import LogisticRegression

    if in_domain.all() or not in_domain.any():
        d = feats.shape[1]
        return {"coef": [0.0] * d, "intercept": 10.0 if in_domain.all() else -10.0,
                "mean": [0.0] * d, "scale": [1.0] * d}, float("nan")
    mu, sd = feats.mean(0), feats.std(0) + 1e-6
    z = (feats - mu) / sd
    rng = np.random.default_rng(seed)
    fold = rng.integers(0, folds, len(z))
    cv = np.zeros(len(z))
    for f in range(folds):
        tr = fold != f
        if in_domain[tr].all() or not in_domain[tr].any():
            cv[~tr] = 0.5
            continue
        clf = LogisticRegression(C=1.0, max_iter=500, class_weight="balanced").fit(z[tr], in_domain[tr])
        cv[~tr] = clf.decision_function(z[~tr])
    # balanced: a narrow expert's domain is a small share of the probe set, and g = 0.5 should mean
    # "as likely mine as not", not "rarer than the base rate"
    clf = LogisticRegression(C=1.0, max_iter=500, class_weight="balanced").fit(z, in_domain)
    gate = {"coef": clf.coef_[0].tolist(), "intercept": float(clf.intercept_[0]),
            "mean": mu.tolist(), "scale": sd.tolist()}
    return gate, _auroc(cv, in_domain)


def gate_score(gate: dict, logp: np.ndarray, lse: np.ndarray) -> np.ndarray:
    """P(image is in the model's domain) from its log-probabilities and logit log-sum-exp."""
    z = (_gate_features(logp, lse) - np.asarray(gate["mean"])) / np.asarray(gate["scale"])
    return 1.0 / (1.0 + np.exp(-(z @ np.asarray(gate["coef"]) + gate["intercept"])))


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

    def dense_logp(self, num_classes: int) -> np.ndarray:
        """(N, C) log-probabilities; for top-k storage the rest mass is spread evenly (documented)."""
        if self.logp is not None:
            return self.logp.astype(np.float32)
        n, k = self.topk_idx.shape
        fill = self.rest_logp.astype(np.float32) - np.log(max(num_classes - k, 1))
        out = np.repeat(fill[:, None], num_classes, axis=1)
        np.put_along_axis(out, self.topk_idx.astype(np.int64), self.topk_logp.astype(np.float32), axis=1)
        return out


def compute_label(card: ExpertCard, logits: torch.Tensor, probe_synsets: list[str], probe_uris: list[str],
                  probe_datasets: list[str], sdag: SDAG, cfg: LabelConfig, key: str,
                  declared_recall: float | None = None) -> Label:
    """Turn a model's logits on the probe images into its label (both layers)."""
    n, c = logits.shape
    head = card.synsets
    closure = _closure(card, sdag)
    col = {v: j for j, v in enumerate(closure)}
    # M[c, v] = 1 when head class c lies in the subtree of node v
    member = np.zeros((c, len(closure)), dtype=np.float32)
    for ci, s in enumerate(head):
        if s in col:
            member[ci, col[s]] = 1.0
            for a in sdag.ancestors(s):
                member[ci, col[a]] = 1.0
    # A[x, v] = 1 when probe image x shows a concept inside v's subtree (its synset is v or below)
    anc_cache: dict[str, set[str]] = {}
    img_in = np.zeros((n, len(closure)), dtype=bool)
    img_above = np.zeros((n, len(closure)), dtype=bool)  # x's synset is a proper ancestor of v
    for i, s in enumerate(probe_synsets):
        if s not in anc_cache:
            anc_cache[s] = (sdag.ancestors(s) | {s}) if s in sdag else set()
        for a in anc_cache[s]:
            j = col.get(a)
            if j is not None:
                img_in[i, j] = True
    below_cache: dict[str, list[int]] = {}
    for i, s in enumerate(probe_synsets):
        if s in col:
            if s not in below_cache:
                below_cache[s] = [col[v] for v in sdag.descendants(s) if v in col]
            img_above[i, below_cache[s]] = True

    # in-domain images: their synset lies under a head class -> a known right answer, the most
    # specific head class above it (a T-shirt image is "T-shirt", not "shirt", when both are heads)
    target = np.full(n, -1)
    head_depth = [sdag.depth(h) if h in sdag else -1 for h in head]
    for i, s in enumerate(probe_synsets):
        hits = [ci for ci, h in enumerate(head) if s == h or (s in sdag and h in anc_cache.get(s, set()))]
        if hits:
            deepest = max(head_depth[ci] for ci in hits)
            best = [ci for ci in hits if head_depth[ci] == deepest]
            if len(best) == 1:
                target[i] = best[0]
    in_dom = target >= 0
    temperature = _fit_temperature(logits[torch.from_numpy(in_dom)], torch.from_numpy(target[in_dom]).long())

    logp_t = torch.log_softmax(logits, 1)
    logp = logp_t.numpy()
    lse = torch.logsumexp(logits, 1).numpy().astype(np.float32)
    p = np.exp(logp)
    pv = p @ member  # P_m(v | x) for every covered node
    top1 = logp.argmax(1)
    hit = member[top1] > 0  # (N, V): the argmax class lies under v

    support = img_in.sum(0)
    unrelated = ~img_in & ~img_above
    with np.errstate(invalid="ignore", divide="ignore"):
        soft_recall = (pv * img_in).sum(0) / support
        top1_hit = (hit & img_in).sum(0) / support
        false_alarm = (pv * unrelated).sum(0) / unrelated.sum(0)
        false_top1 = (hit & unrelated).sum(0) / unrelated.sum(0)
    measured = support > 0
    n_head = member.sum(0).astype(int)
    # the gate says "is this image mine at all?"; gated scores are what a closed-set head is worth
    gate, gate_auroc = _fit_gate(_gate_features(logp, lse), in_dom, cfg.gate_folds)
    g = gate_score(gate, logp, lse)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        gated_recall = (g * pv * img_in).sum(0) / support
        gated_false_alarm = (g * pv * unrelated).sum(0) / unrelated.sum(0)
    nodes = pd.DataFrame({
        "node": closure,
        "name": [sdag.name(v) for v in closure],
        "depth": [sdag.depth(v) for v in closure],
        "is_head": [v in set(head) for v in closure],
        "head_classes": n_head,
        "support": support.astype(int),
        "soft_recall": np.where(measured, soft_recall, np.nan),
        "top1_hit": np.where(measured, top1_hit, np.nan),
        "false_alarm": false_alarm,
        "false_top1": false_top1,
        "gated_recall": np.where(measured, gated_recall, np.nan),
        "gated_false_alarm": gated_false_alarm,
        "measured": measured,
    })
    if declared_recall is not None:  # nodes without node data get the card's declared accuracy
        fill = ~measured & (nodes["head_classes"] > 0)
        nodes.loc[fill, "soft_recall"] = declared_recall
        nodes.loc[fill, "top1_hit"] = declared_recall

    full = c <= cfg.full_max_classes
    if full:
        stored = dict(logp=logp.astype(np.float16), topk_idx=None, topk_logp=None, rest_logp=None)
    else:
        k = min(cfg.top_k, c)
        idx = np.argsort(-logp, axis=1)[:, :k]
        tl = np.take_along_axis(logp, idx, 1)
        rest = np.log(np.clip(1.0 - np.exp(tl).sum(1), 1e-12, 1.0))
        stored = dict(logp=None, topk_idx=idx.astype(np.int16), topk_logp=tl.astype(np.float16),
                      rest_logp=rest.astype(np.float16))
    m = nodes[nodes.measured]
    head_rows = nodes[nodes.is_head & nodes.measured]
    summary = {
        "model": card.name, "key": key, "label_version": LABEL_VERSION, "card_sha256": card.content_hash(),
        "num_classes": c, "probe_images": n, "in_domain_images": int(in_dom.sum()),
        "covered_nodes": int(len(nodes)), "measured_nodes": int(measured.sum()),
        "head_classes_measured": int(len(head_rows)),
        "mean_recall": float(head_rows.soft_recall.mean()) if len(head_rows) else None,
        "mean_top1_hit": float(head_rows.top1_hit.mean()) if len(head_rows) else None,
        "mean_false_alarm": float(m.false_alarm[m.is_head].mean()) if len(head_rows) else None,
        "mean_gated_recall": float(head_rows.gated_recall.mean()) if len(head_rows) else None,
        "mean_gated_false_alarm": float(m.gated_false_alarm[m.is_head].mean()) if len(head_rows) else None,
        "in_domain_accuracy": float((top1[in_dom] == target[in_dom]).mean()) if in_dom.any() else None,
        "temperature": temperature, "gate": gate, "gate_auroc": gate_auroc,
        "storage": "full" if full else f"top{stored['topk_idx'].shape[1]}",
        "probe_datasets": sorted(set(probe_datasets)),
        "head_synsets_missing_from_sdag": sorted(set(head) - set(closure)),
    }
    return Label(card.name, key, list(probe_uris), list(probe_synsets), stored["logp"], stored["topk_idx"], stored["topk_logp"],
                 stored["rest_logp"], lse, nodes, summary)


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
        raise OSError(exc.errno, f"cannot write the label of {label.model} into {root} ({exc.strerror or exc}); "
                                 "the previous label is untouched; free disk space or make the folder writable") from None


def _write_label(label: Label, root: Path) -> Path:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / label.model
    tmp = root / f".{label.model}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    arrays = {"uris": np.asarray(label.uris, dtype=str), "synsets": np.asarray(label.synsets, dtype=str),
              "lse": label.lse}
    for k in ("logp", "topk_idx", "topk_logp", "rest_logp"):
        v = getattr(label, k)
        if v is not None:
            arrays[k] = v
    np.savez_compressed(tmp / OUTPUTS, **arrays)
    label.nodes.to_parquet(tmp / NODES, index=False)
    sizes = {f: (tmp / f).stat().st_size for f in (OUTPUTS, NODES)}
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


def read_label(root: Path, model: str) -> Label:
    """Load a stored label (no pickle: npz with allow_pickle=False, parquet, JSON)."""
    folder = Path(root) / model
    summary = read_summary(root, model)
    if summary is None:
        raise FileNotFoundError(f"{folder}: no label; run `mll label` (or `dvc repro label`)")
    with np.load(folder / OUTPUTS, allow_pickle=False) as z:
        arr = {k: z[k] for k in z.files}
    nodes = pd.read_parquet(folder / NODES)
    return Label(model, summary["key"], arr["uris"].tolist(), arr["synsets"].tolist(), arr.get("logp"), arr.get("topk_idx"),
                 arr.get("topk_logp"), arr.get("rest_logp"), arr["lse"], nodes, summary)


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


# --- labeling one model --------------------------------------------------------------------------
@dataclass
class LabelResult:
    model: str
    status: str  # labeled | skipped
    key: str
    seconds: float = 0.0
    forward_seconds: float = 0.0
    load_seconds: float = 0.0
    images: int = 0
    summary: dict | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def label_model(expert_loader: Callable[[], Expert], card: ExpertCard, probe: ProbeSet, sdag: SDAG,
                root: Path, cfg: LabelConfig = LabelConfig(), force: bool = False,
                validate: Callable[[pd.DataFrame, SDAG], None] | None = None,
                progress: Callable[[int], None] | None = None) -> LabelResult:
    """Label one model unless its stored label already has the current key."""
    key = label_key(card, probe.hash)
    with model_lock(root, card.name):
        # leftovers of a killed run for this model (we hold its lock, so nobody else is writing them)
        for stale in (*Path(root).glob(f".{card.name}.tmp-*"), *Path(root).glob(f".{card.name}.old-*")):
            shutil.rmtree(stale, ignore_errors=True)
        current = read_summary(root, card.name)
        if not force and current is not None and current.get("key") == key and (Path(root) / card.name / OUTPUTS).is_file():
            return LabelResult(card.name, "skipped", key, summary=current)
        t0 = time.perf_counter()
        expert = expert_loader()
        load = time.perf_counter() - t0
        x, ok = probe.tensor(card)
        outs, fwd = [], 0.0
        for i in range(0, len(x), cfg.batch_size):
            xb = x[i : i + cfg.batch_size]
            if expert.device.type == "cuda":
                torch.cuda.synchronize()
            t1 = time.perf_counter()
            outs.append(expert.forward(xb, cfg.batch_size))
            fwd += time.perf_counter() - t1
            if progress:
                progress(len(xb))
        logits = torch.cat(outs) if outs else torch.empty(0, card.num_classes)
        declared = (card.provenance.get("metrics") or {}).get("val_accuracy")
        label = compute_label(card, logits, [probe.synsets[i] for i in ok], [probe.uris[i] for i in ok],
                              [probe.datasets[i] for i in ok], sdag, cfg, key,
                              float(declared) if declared is not None else None)
        if validate is not None:
            validate(label.nodes, sdag)
        label.summary["probe_hash"] = probe.hash
        label.summary["forward_seconds"] = round(fwd, 3)
        label.summary["load_seconds"] = round(load, 3)
        label.summary["label_seconds"] = round(time.perf_counter() - t0, 3)
        label.summary["device"] = str(expert.device)
        write_label(label, root)
        return LabelResult(card.name, "labeled", key, time.perf_counter() - t0, fwd, load, len(ok), label.summary)

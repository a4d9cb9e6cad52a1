"""Model labels: what an expert recognises on the SDAG's node data, and how well. Measured, not declared.

A label has two layers (docs/method.md, section 3):

1. *Stored outputs*: the model's log-probabilities on every probe image, float16 over the whole
   head for ordinary heads, top-k + the log of the remaining mass for wide heads (ImageNet). They
   let selection and reuse be fitted for a future task without running any model again.
2. *Summary statistics* per covered node v (head synsets and their ancestors): support, soft recall,
   top-1 hit rate, false-alarm rate on unrelated probe images; per model a fitted temperature and an
   in-domain gate with its AUROC.

Labels are stored per model under `labels/<model>/` (outputs.npz and one .npy per stored-output
array, nodes.parquet, summary.json), keyed by the card hash and the probe manifest hash; a model
whose key is unchanged is skipped (an old-layout label is converted, numbers unchanged), so adding
one model labels exactly one model. The files are `mll.labels.store`'s.
"""

from __future__ import annotations

import hashlib
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mll.config import LabelParams
from mll.data.images import ImageError, open_image
from mll.data.sdag import SDAG
from mll.hub.backbones import FeatureCache
from mll.hub.cards import ExpertCard
from mll.hub.experts import Expert, preprocess
from mll.labels.scores import fit_gate, fit_temperature, gate_features, gate_score
from mll.labels.store import OUTPUTS, Label, Storage, decode, model_lock, read_summary, upgrade_label, write_label

LABEL_VERSION = 4  # bump when the label definition changes: every key changes with it


# --- probe data -------------------------------------------------------------------------------
class ProbeSet:
    """The probe manifest with decoded images and per-input-config tensors, shared across models.

    Decoding happens once; each distinct preprocessing (size, channels, mean/std, crop) is computed
    once and reused by every model that shares it.
    """

    max_cached = 2  # preprocessed variants kept at once (models are labeled grouped by input config)

    def __init__(
        self, manifest: pd.DataFrame, log: Callable[[str], None] = print, features: FeatureCache | None = None
    ):
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
        # shared backbones' features of the probe images, one computation per backbone and input
        # config for every head on it (on disk when given a root: a new head reuses them)
        self.features = features if features is not None else FeatureCache()

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

    def usable(self) -> np.ndarray:
        """Indices of the probe images that decoded (a bad one is skipped, not fatal)."""
        return np.flatnonzero([im is not None for im in self.images()])

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
def label_key(card: ExpertCard, probe_hash: str, cfg: LabelParams | None = None) -> str:
    """The label's identity: label version, card, probe set and the settings that define a label."""
    definition = (cfg or LabelParams()).definition()
    return hashlib.sha256(f"{LABEL_VERSION}\n{card.content_hash()}\n{probe_hash}\n{definition}".encode()).hexdigest()


def _closure(card: ExpertCard, sdag: SDAG) -> list[str]:
    nodes = set()
    for s in card.synsets:
        if s in sdag:
            nodes.add(s)
            nodes |= sdag.ancestors(s)
    return sorted(nodes)


GATE_TARGETS = ("domain", "broad", "competence")


def gate_target(
    kind: str, top1: np.ndarray, target: np.ndarray, head: list[str], probe_synsets: list[str], sdag: SDAG
) -> np.ndarray:
    """What the gate learns to predict, per probe image (`label.gate_target`).

    - `domain`: the image's synset lies under a head class (a known right answer). For an ImageNet
      head that is mostly coverage: 28-px grayscale clothing is "in domain" because its class is
      covered, while a photo labelled at a broader synset (a bird at `bird.n.01`) is not.
    - `broad`: `domain`, plus the images labelled at a broader synset that the model answers with a
      head class under it (a bird photo answered "robin").
    - `competence`: the model's top-1 answer is consistent with the image's synset: the right head
      class when one lies above it (`target`), or any head class below it. In-domain images the
      model gets wrong are negatives too.
    """
    if kind not in GATE_TARGETS:
        raise ValueError(f"label.gate_target: {kind!r} is not one of {', '.join(GATE_TARGETS)}")
    if kind == "domain":
        return target >= 0
    below = [sdag.ancestors(h) | {h} if h in sdag else {h} for h in head]  # s is h or above it
    consistent = np.array([s in below[t] for s, t in zip(probe_synsets, top1)], dtype=bool)
    if kind == "broad":
        return (target >= 0) | consistent
    return (top1 == target) | consistent


def compute_label(
    card: ExpertCard,
    logits: torch.Tensor,
    probe_synsets: list[str],
    probe_uris: list[str],
    probe_datasets: list[str],
    sdag: SDAG,
    cfg: LabelParams,
    key: str,
    declared_recall: float | None = None,
) -> Label:
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
    head_pos: dict[str, list[int]] = {}
    for ci, h in enumerate(head):
        head_pos.setdefault(h, []).append(ci)
    target_of: dict[str, int] = {}  # per distinct synset: the probe set repeats few of them many times
    for i, s in enumerate(probe_synsets):
        if s not in target_of:
            hits = [ci for a in anc_cache[s] | {s} for ci in head_pos.get(a, ())]
            deepest = max((head_depth[ci] for ci in hits), default=None)
            best = [ci for ci in hits if head_depth[ci] == deepest]
            target_of[s] = best[0] if len(best) == 1 else -1
        target[i] = target_of[s]
    in_dom = target >= 0
    temperature = fit_temperature(logits[torch.from_numpy(in_dom)], torch.from_numpy(target[in_dom]).long())

    logp_t = torch.log_softmax(logits, 1)
    logp = logp_t.numpy()
    lse = torch.logsumexp(logits, 1).numpy().astype(np.float32)
    p = np.exp(logp)
    # P_m(v | x) for every covered node; float32 sums of a softmax can pass 1 by an ulp, which the
    # label table's checks (rightly) refuse
    pv = np.clip(p @ member, 0.0, 1.0)
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
    # the gate says "can this model be trusted on this image?"; gated scores are what a closed-set
    # head is worth. It is fitted on the outputs as stored (top-k reconstruction for wide heads),
    # which is what it is applied to at selection and prediction time.
    storage = Storage.for_head(c, cfg.full_max_classes, cfg.top_k)
    stored = storage.encode(logp)
    as_read = decode(**stored, num_classes=c)
    competent = gate_target(cfg.gate_target, top1, target, head, probe_synsets, sdag)
    gate, gate_auroc = fit_gate(gate_features(as_read, lse, storage.top_k), competent, cfg.gate_folds)
    gate["top_k"] = storage.top_k  # the feature definition travels with the gate (`gate_score`)
    g = gate_score(gate, as_read, lse)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        gated_recall = (g * pv * img_in).sum(0) / support
        gated_false_alarm = (g * pv * unrelated).sum(0) / unrelated.sum(0)
    nodes = pd.DataFrame(
        {
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
        }
    )
    if declared_recall is not None:  # nodes without node data get the card's declared accuracy
        fill = ~measured & (nodes["head_classes"] > 0)
        nodes.loc[fill, "soft_recall"] = declared_recall
        nodes.loc[fill, "top1_hit"] = declared_recall

    m = nodes[nodes.measured]
    head_rows = nodes[nodes.is_head & nodes.measured]
    summary = {
        "model": card.name,
        "key": key,
        "label_version": LABEL_VERSION,
        "card_sha256": card.content_hash(),
        "num_classes": c,
        "probe_images": n,
        "in_domain_images": int(in_dom.sum()),
        "covered_nodes": len(nodes),
        "measured_nodes": int(measured.sum()),
        "head_classes_measured": len(head_rows),
        "mean_recall": float(head_rows.soft_recall.mean()) if len(head_rows) else None,
        "mean_top1_hit": float(head_rows.top1_hit.mean()) if len(head_rows) else None,
        "mean_false_alarm": float(m.false_alarm[m.is_head].mean()) if len(head_rows) else None,
        "mean_gated_recall": float(head_rows.gated_recall.mean()) if len(head_rows) else None,
        "mean_gated_false_alarm": float(m.gated_false_alarm[m.is_head].mean()) if len(head_rows) else None,
        "in_domain_accuracy": float((top1[in_dom] == target[in_dom]).mean()) if in_dom.any() else None,
        "temperature": temperature,
        "gate": gate,
        "gate_auroc": gate_auroc,
        "gate_target": cfg.gate_target,
        "gate_positives": int(competent.sum()),
        "storage": str(storage),
        "probe_datasets": sorted(set(probe_datasets)),
        "head_synsets_missing_from_sdag": sorted(set(head) - set(closure)),
    }
    return Label(
        card.name,
        key,
        list(probe_uris),
        list(probe_synsets),
        stored["logp"],
        stored["topk_idx"],
        stored["topk_logp"],
        stored["rest_logp"],
        lse,
        nodes,
        summary,
    )


def _sync(expert: Expert) -> None:
    """Wait for queued GPU work, so forward timings measure the forward pass."""
    if expert.device.type == "cuda":
        torch.cuda.synchronize()


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


def label_model(
    expert_loader: Callable[[], Expert],
    card: ExpertCard,
    probe: ProbeSet,
    sdag: SDAG,
    root: Path,
    cfg: LabelParams = LabelParams(),
    force: bool = False,
    validate: Callable[[pd.DataFrame, SDAG], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> LabelResult:
    """Label one model unless its stored label already has the current key."""
    key = label_key(card, probe.hash, cfg)
    with model_lock(root, card.name):
        # leftovers of a killed run for this model (we hold its lock, so nobody else is writing them)
        for stale in (*Path(root).glob(f".{card.name}.tmp-*"), *Path(root).glob(f".{card.name}.old-*")):
            shutil.rmtree(stale, ignore_errors=True)
        current = read_summary(root, card.name)
        if (
            not force
            and current is not None
            and current.get("key") == key
            and (Path(root) / card.name / OUTPUTS).is_file()
        ):
            if upgrade_label(root, card.name):  # an old-layout label: same numbers, memory-mappable files
                current = read_summary(root, card.name)
            return LabelResult(card.name, "skipped", key, summary=current)
        t0 = time.perf_counter()
        expert = expert_loader()
        load = time.perf_counter() - t0
        outs, fwd = [], 0.0
        batch = cfg.gpu_batch_size if expert.device.type == "cuda" else cfg.batch_size
        if expert.backbone_key is not None:  # a head on a shared backbone: features computed once per backbone
            ok = probe.usable()
            keys = [probe.uris[i] for i in ok]
            # preprocessing only when the backbone has not seen these images, and outside the timing
            x = probe.tensor(card)[0] if probe.features.missing(expert.backbone_key, keys) else None
            _sync(expert)
            t1 = time.perf_counter()
            outs.append(expert.cached_logits(keys, lambda: x, probe.features, batch))
            _sync(expert)
            fwd = time.perf_counter() - t1
            if progress:
                progress(len(ok))
        else:
            x, ok = probe.tensor(card)
            for i in range(0, len(x), batch):
                xb = x[i : i + batch]
                _sync(expert)
                t1 = time.perf_counter()
                outs.append(expert.forward(xb, batch))
                _sync(expert)
                fwd += time.perf_counter() - t1
                if progress:
                    progress(len(xb))
        logits = torch.cat(outs) if outs else torch.empty(0, card.num_classes)
        declared = (card.provenance.get("metrics") or {}).get("val_accuracy")
        label = compute_label(
            card,
            logits,
            [probe.synsets[i] for i in ok],
            [probe.uris[i] for i in ok],
            [probe.datasets[i] for i in ok],
            sdag,
            cfg,
            key,
            float(declared) if declared is not None else None,
        )
        if validate is not None:
            validate(label.nodes, sdag)
        label.summary["probe_hash"] = probe.hash
        # timings stay out of the stored label (a DVC output): they differ on every run, so the same
        # model on the same probe set writes the same bytes; they go to MLflow via LabelResult
        label.summary["device"] = str(expert.device)
        write_label(label, root)
        return LabelResult(card.name, "labeled", key, time.perf_counter() - t0, fwd, load, len(ok), label.summary)

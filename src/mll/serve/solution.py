"""A solved task, kept: everything needed to classify images for it without the hub, the labels or
the SDAG, in one self-contained folder.

    solution.json            class names, matched synsets, the selection, the combiner's structure,
                             the patch settings, and each expert's card and weights hashes
    combiner.safetensors     the fitted stacking regression (coef, intercept, classes), when there is one
    semantic.safetensors     the semantic patch's embeddings (task classes, each generalist's head
                             classes), when it answers uncovered classes (its settings: solution.json)
    experts/<model>/         each selected expert's card.yaml and weights (heads on a shared backbone
                             name it; the backbone's weights come from its package, once for all heads)
    summaries/<model>.json   each expert's label summary: the stored-output form, temperature and gate
                             that live outputs go through, exactly as during selection

Nothing is pickled: JSON, YAML and safetensors only. `save_solution` writes the folder from a plan
(`mll.solve.task.plan`); `Solution.load` reads it back and `Solution.predict` answers images the way
`mll.solve.task.predict` does for the plan (the same combiner on the same experts' outputs).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

SOLUTION_VERSION = 1


class SolutionError(ValueError):
    """A solution folder that cannot be used (the message names the fix)."""


def save_solution(ctx, p, name: str, out: Path) -> Path:
    """Write plan `p` (solved in context `ctx`) as solution `name` into folder `out`; returns it."""
    from safetensors.numpy import save_file

    from mll.solve.task import answering_model

    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    (out / "experts").mkdir(parents=True)
    (out / "summaries").mkdir()
    comb = p.combiner
    models = list(comb.models) if comb is not None else []
    sem = getattr(p, "semantic", None)
    experts = {}
    for m in dict.fromkeys([*models, *(sem.models if sem is not None else [])]):
        card = ctx.cards[m]
        src = ctx.hub.root / m
        dst = out / "experts" / m
        dst.mkdir()
        shutil.copy2(src / "card.yaml", dst / "card.yaml")
        shutil.copy2(src / card.weights, dst / card.weights)
        summary = dict(ctx.index.summaries.get(m) or {})
        (out / "summaries" / f"{m}.json").write_text(json.dumps(summary, indent=1, default=float))
        experts[m] = {"card_sha256": card.content_hash(), "weights_sha256": card.weights_sha256}
    if comb is not None and comb.clf is not None:
        clf = comb.clf
        save_file(
            {
                "coef": np.ascontiguousarray(clf.coef_, dtype=np.float64),
                "intercept": np.ascontiguousarray(clf.intercept_, dtype=np.float64),
                "classes": np.asarray(clf.classes_, dtype=np.int64),
            },
            str(out / "combiner.safetensors"),
        )
    if sem is not None:
        tensors = {"class_emb": np.ascontiguousarray(sem.class_emb, dtype=np.float32)}
        tensors |= {f"head_emb.{m}": np.ascontiguousarray(e, dtype=np.float32) for m, e in sem.head_emb.items()}
        save_file(tensors, str(out / "semantic.safetensors"))
    doc = {
        "version": SOLUTION_VERSION,
        "name": name,
        "classes": list(p.names),
        "request": list(p.request),
        "matched": {m.name: m.synset for m in p.matches},
        "covered": list(p.covered),
        "uncovered": list(p.uncovered),
        "answered_by": [answering_model(p, k) for k in range(len(p.names))],
        "estimated_accuracy": p.selection.estimated_accuracy,
        "selection": p.selection.to_dict(),
        "combiner": None
        if comb is None
        else {
            "kind": comb.kind,
            "pairs": [list(x) for x in comb.pairs],
            "models": models,
            "classes": list(comb.classes),
            "gated": comb.gated,
            "temps": comb.temps,
            "stacked": list(comb.stacked),
            "masked": comb.masked,
        },
        "cols": [[m, node, list(map(int, c))] for (m, node), c in p.cols.items()],
        "patch": (p.cfg or ctx.cfg).patch.__dict__,
        "semantic": None
        if sem is None
        else {
            "models": list(sem.models),
            "uncovered": list(sem.uncovered),
            "top_t": sem.top_t,
            "tau": sem.tau,
            "gain": list(sem.gain),
            "masked": sem.masked,
            "calibration": sem.calibration,
        },
        "batch_size": (p.cfg or ctx.cfg).batch_size,
        "adaptation": p.adaptation,
        "experts": experts,
    }
    (out / "solution.json").write_text(json.dumps(doc, indent=1, default=float) + "\n")
    return out


@dataclass
class Solution:
    """A solution folder loaded for prediction."""

    root: Path
    doc: dict
    combiner: object | None
    cols: dict
    semantic: object | None = None  # the fitted semantic patch (mll.solve.semantic.SemanticPatch)

    @property
    def name(self) -> str:
        return self.doc["name"]

    @property
    def classes(self) -> list[str]:
        return list(self.doc["classes"])

    @classmethod
    def load(cls, root: Path) -> Solution:
        from safetensors.numpy import load_file

        from mll.solve.logreg import LogReg
        from mll.solve.reuse import Combiner

        root = Path(root)
        f = root / "solution.json"
        if not f.is_file():
            raise SolutionError(f"{root} holds no solution.json; save one with `mll solve --classes ... --save NAME`")
        try:
            doc = json.loads(f.read_text())
        except ValueError as exc:
            raise SolutionError(f"{f} is not valid JSON ({exc}); save the solution again") from None
        if doc.get("version") != SOLUTION_VERSION:
            raise SolutionError(
                f"{f}: solution format {doc.get('version')!r}, this mll reads {SOLUTION_VERSION}; save it again"
            )
        comb = None
        c = doc["combiner"]
        if c is not None:
            comb = Combiner(
                c["kind"],
                [tuple(x) for x in c["pairs"]],
                list(c["models"]),
                list(c["classes"]),
                gated=c["gated"],
                temps={k: float(v) for k, v in c["temps"].items()},
                stacked=list(c["stacked"]),
                masked={m: list(v) for m, v in (c.get("masked") or {}).items()},
            )
            if (root / "combiner.safetensors").is_file():
                state = load_file(str(root / "combiner.safetensors"))
                clf = LogReg()
                clf.coef_, clf.intercept_, clf.classes_ = state["coef"], state["intercept"], state["classes"]
                comb.clf = clf
        cols = {(m, node): list(ix) for m, node, ix in doc["cols"]}
        sem = None
        if doc.get("semantic"):
            from mll.solve.semantic import SemanticPatch

            d, state = doc["semantic"], load_file(str(root / "semantic.safetensors"))
            sem = SemanticPatch(
                list(d["models"]),
                {m: state[f"head_emb.{m}"] for m in d["models"]},
                state["class_emb"],
                list(d["uncovered"]),
                top_t=int(d["top_t"]),
                tau=float(d["tau"]),
                gain=tuple(float(v) for v in d["gain"]),
                masked={m: list(c) for m, c in d["masked"].items()},
                calibration=d.get("calibration") or {},
            )
        return cls(root, doc, comb, cols, sem)

    def stale_experts(self, hub_root: Path) -> dict[str, str]:
        """{model: why} for the experts whose card or weights in the hub at `hub_root` differ from the
        ones saved (or that the hub no longer has); empty when every one is unchanged."""
        from mll.hub.cards import CardError, read_card

        out = {}
        for m, saved in self.doc["experts"].items():
            try:
                card = read_card(Path(hub_root) / m)
            except (CardError, OSError):
                out[m] = "no longer in the hub"
                continue
            if card.weights_sha256 != saved["weights_sha256"]:
                out[m] = "weights changed"
            elif card.content_hash() != saved["card_sha256"]:
                out[m] = "card changed"
        return out

    def predict(self, images: Sequence[Image.Image], device: str = "cpu") -> np.ndarray:
        """(N, K) probabilities over the solution's classes (a row of zeros: no expert answered)."""
        from mll.config import PatchParams
        from mll.hub.experts import load_expert
        from mll.solve.patch import fuse, load_patch, patch_active
        from mll.solve.reuse import run_models

        k = len(self.classes)
        covered, uncovered = self.doc["covered"], self.doc["uncovered"]
        p_exp = np.zeros((len(images), len(covered)))
        need = [] if self.combiner is None or not covered else list(self.combiner.models)
        if self.semantic is not None and uncovered:
            need += self.semantic.models
        logp: dict = {}
        if need and len(images):  # each expert runs once, for the combiner and the patch alike
            models = sorted(set(need))
            loaders = {m: (lambda m=m: load_expert(self.root / "experts" / m, device=device)) for m in models}
            summaries = {m: json.loads((self.root / "summaries" / f"{m}.json").read_text()) for m in models}
            logp, gates, _ = run_models(list(images), loaders, summaries, int(self.doc.get("batch_size") or 64))
        if self.combiner is not None and covered and len(images):
            probs = self.combiner.predict_proba(logp, gates, self.cols)
            for j, cls in enumerate(self.combiner.classes):
                p_exp[:, covered.index(cls)] = probs[:, j]
        p_clip = None
        patch_cfg = PatchParams(**self.doc["patch"])
        if self.semantic is not None and uncovered and len(images):
            p_clip = self.semantic.probs(logp, p_exp)
        elif uncovered and len(images) and patch_active(patch_cfg) and patch_cfg.kind != "semantic":
            p_clip = load_patch(patch_cfg).probs(list(images), self.classes)
        return fuse(p_exp, covered, p_clip, uncovered if p_clip is not None else [], k)

    def answer(self, images: Sequence[Image.Image], device: str = "cpu") -> list[dict]:
        """Per image: the predicted class, its probability and the model(s) answering that class."""
        probs = self.predict(images, device)
        rows = []
        for row in probs:
            if row.max() <= 0:
                rows.append({"predicted": "", "probability": 0.0, "model": "none"})
                continue
            j = int(row.argmax())
            rows.append(
                {"predicted": self.classes[j], "probability": float(row[j]), "model": self.doc["answered_by"][j]}
            )
        return rows

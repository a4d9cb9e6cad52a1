"""Zero-shot solving end to end: class names -> matching -> CHCO -> combiner -> predictions.

`plan` needs no image and runs no model (labels only); `predict` runs the selected models once over
the task's images. `mll.solve.folders` runs them over folders of images for `mll eval` and `mll solve`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from mll.config import SolveParams
from mll.data.sdag import SDAG
from mll.hub.store import Hub
from mll.labels.index import LabelIndex
from mll.solve.chco import Selection, select
from mll.solve.masking import HeadMask, masked_index
from mll.solve.matching import Match, Matcher, check_task
from mll.solve.outputs import OutputCache
from mll.solve.patch import fuse, get_patch_kind, load_patch, patch_active
from mll.solve.rerank import Rerank
from mll.solve.reuse import Combiner, crossfit_proba, fit_combiner, run_models, simulate_accuracy
from mll.solve.semantic import SemanticPatch, fit_semantic, generalists


@dataclass
class Context:
    sdag: SDAG
    hub: Hub
    index: LabelIndex
    cards: dict
    matcher: Matcher
    cfg: SolveParams
    patch: object | None = None

    @classmethod
    def load(
        cls,
        sdag_dir: Path = Path("data/sdag"),
        hub_root: Path = Path("models"),
        labels_root: Path = Path("labels"),
        cfg: SolveParams = SolveParams(),
        models: list[str] | None = None,
        cache_dir: Path | None = None,
    ) -> Context:
        sdag = SDAG.load(Path(sdag_dir))
        hub = Hub(Path(hub_root))
        names = models if models is not None else hub.names()
        index = LabelIndex(Path(labels_root), [n for n in names if (Path(labels_root) / n / "summary.json").is_file()])
        if not index.models:
            raise FileNotFoundError(f"no labeled models in {labels_root}; run `mll label` (or `dvc repro label`)")
        cards = {m: hub.card(m) for m in index.models}
        matcher = hub_matcher(sdag, cards, index, cache_dir)
        return cls(sdag, hub, index, cards, matcher, cfg)

    def get_patch(self):
        if self.patch is None and patch_active(self.cfg.patch):
            self.patch = load_patch(self.cfg.patch)
        return self.patch

    def head_synsets(self) -> set[str]:
        return {s for c in self.cards.values() for s in c.synsets}


def hub_matcher(sdag: SDAG, cards: dict, index: LabelIndex | None, cache_dir: Path | None = None) -> Matcher:
    """A Matcher aware of the hub: its head synsets and names, and the node data its labels measured."""
    pool: set[str] = set()
    for m in (index.models if index is not None else [])[:1]:
        pool |= set(index.label(m).synsets)
    head_names: dict[str, set[str]] = {}
    for c in cards.values():
        for h in c.head:
            head_names.setdefault(h.name, set()).add(h.synset)
    heads = {s for c in cards.values() for s in c.synsets}
    return Matcher(sdag, covered=heads, embed_pool=pool, cache_dir=cache_dir, node_data=pool, head_names=head_names)


def load_matcher(
    sdag_dir: Path, hub_root: Path, labels_root: Path, cache_dir: Path | None = None
) -> tuple[SDAG, Matcher]:
    """For `mll match`, which solves nothing: the hub's labels when there are any, else its cards alone
    (coverage without node data), else the bare SDAG."""
    sdag = SDAG.load(Path(sdag_dir))
    hub = Hub(Path(hub_root))
    names = hub.names()
    labeled = [n for n in names if (Path(labels_root) / n / "summary.json").is_file()]
    index = LabelIndex(Path(labels_root), labeled) if labeled else None
    cards, _ = hub.cards()
    cards = {c.name: c for c in cards if not labeled or c.name in labeled}
    return sdag, hub_matcher(sdag, cards, index, cache_dir)


@dataclass
class Plan:
    names: list[str]
    matches: list[Match]
    selection: Selection
    combiner: Combiner | None
    cols: dict
    covered: list[int]  # class indices the experts answer
    uncovered: list[int]  # class indices with no head (patched, or left unanswerable)
    seconds: float
    cfg: SolveParams | None = None  # the settings it was planned with (predict follows them)
    request: list[str] = field(default_factory=list)  # the names as given (overrides included)
    restrict: list[str] | None = None  # the sub-hub it was planned over
    bank: object | None = field(default=None, repr=False)  # node-data scores (ScoreBank), for adaptation
    y: np.ndarray | None = field(default=None, repr=False)  # node-data class per image
    adaptation: dict | None = None  # what adapt() measured and did
    fixed: Callable[[list[list[str]]], list[list[str]]] | None = field(default=None, repr=False)  # kept by adapt
    semantic: SemanticPatch | None = None  # the fitted semantic patch for the uncovered classes
    mask: HeadMask | None = None  # hidden coverage (the masked-coverage family), kept by adapt


def plan(
    ctx: Context,
    names: Sequence[str],
    restrict_models: list[str] | None = None,
    cfg: SolveParams | None = None,
    fixed: Callable[[list[list[str]]], list[list[str]]] | None = None,
    node_weights: np.ndarray | None = None,
    mask: HeadMask | None = None,
) -> Plan:
    """Match names, select heads (CHCO) and fit the combiner: labels only, no model is run.

    `restrict_models` plans over a sub-hub; `cfg` overrides the context's solve settings; `fixed`
    (the baselines) replaces CHCO's choice: given each class's covering models, it returns the
    models that answer each class. `node_weights` weight the node images (see `adapt`). `mask`
    hides the coverage of some targets (`mll.solve.masking`, the masked-coverage family).
    """
    t0 = time.perf_counter()
    cfg = cfg or ctx.cfg
    names = [n.strip() for n in names]
    request = list(names)
    if len(names) < 2:
        raise ValueError("a task needs at least two classes")
    matches = ctx.matcher.match(names)
    check_task(matches)  # one synset per class, none unmatched (match itself only reports)
    plain = [m.name for m in matches]
    targets = [m.synset for m in matches]
    index = ctx.index if restrict_models is None else ctx.index.subset(restrict_models)
    index = masked_index(index, mask, ctx.sdag)
    kind = get_patch_kind(cfg.patch)
    patch_on = patch_active(cfg.patch)
    if kind.per_task:  # the semantic patch is made of the hub's generalists: without one, back off
        patch_on = bool(generalists({m: ctx.cards[m] for m in index.models}, index.summaries))
    may_backoff = kind.backoff
    backoffs = {}
    heads = None  # every head synset of the (sub-)hub, gathered only when some class needs a backoff
    for n, t in zip(plain, targets):
        if t and not patch_on and may_backoff and not index.covers(t):  # reads t's label rows only
            if heads is None:
                heads = {s for m in index.models for s in ctx.cards[m].synsets}
                if mask is not None:
                    heads = {s for s in heads if not mask.hides(s, ctx.sdag)}
            near = ctx.sdag.nearest_covered(t, heads)
            if near and near[1] <= cfg.max_backoff_hops:  # a far relative says nothing about the class
                backoffs[n] = near[0]
    cards = {m: ctx.cards[m] for m in index.models}
    masked = mask.model_columns(cards, ctx.sdag) if mask is not None else None
    drop = ()
    if mask is not None and mask.drop_nodes:
        drop = tuple(k for k, t in enumerate(targets) if mask.hides(t, ctx.sdag))
    chosen = None
    if fixed is not None:
        answer = [backoffs.get(n, t) for n, t in zip(plain, targets)]
        chosen = fixed([covering_models(index, a) for a in answer])
    sel, bank, y = select(
        index,
        ctx.sdag,
        plain,
        targets,
        cards,
        prune=cfg.prune,
        max_heads=cfg.max_heads,
        cost=cfg.cost_per_model,
        head_cost_ratio=cfg.head_cost_ratio,
        solver=cfg.solver,
        backoffs=backoffs,
        fixed=chosen,
        weights=node_weights,
        temperature=cfg.temperature,
        rerank=Rerank.from_params(cfg),
        masked=masked,
        drop_classes=drop,
    )
    comb, cols = (None, {})
    if sel.models:
        comb, cols = fit_combiner(
            sel,
            bank,
            y,
            ctx.sdag,
            ctx.cards,
            cfg.min_node_images,
            cfg.use_gates,
            weights=node_weights,
            combiner=cfg.combiner,
        )
        sel.estimated_accuracy = simulate_accuracy(comb, cols, bank, y, node_weights)
    covered = [k for k, c in enumerate(sel.classes) if c.models]
    uncovered = [k for k, c in enumerate(sel.classes) if not c.models]
    semantic = None
    if patch_on and uncovered and kind.per_task:
        pc = cfg.patch
        # the experts' doubt on node images they were not fitted on calibrates the patch's share
        node_exp = crossfit_proba(
            sel, bank, y, ctx.sdag, ctx.cards, cfg.min_node_images, cfg.use_gates, node_weights, cfg.combiner
        )
        semantic = fit_semantic(
            ctx.sdag,
            cards,
            index.summaries,
            targets,
            uncovered,
            bank.logp,
            y,
            node_exp,
            comb.classes if comb is not None else (),
            n_generalists=pc.generalists,
            top_t=pc.top_t,
            tau=pc.tau,
            masked=masked,
            min_node_images=cfg.min_node_images,
            cache_dir=ctx.matcher.cache_dir,
        )
    if patch_on:
        for k in uncovered:
            sel.classes[k].patched = True
            sel.classes[k].mode = "patch"
            by = semantic.describe() if semantic is not None else f"the VLM patch {cfg.patch.model}"
            sel.classes[k].why = f"no hub head covers it; scored by {by}"
    return Plan(
        plain,
        matches,
        sel,
        comb,
        cols,
        covered,
        uncovered,
        time.perf_counter() - t0,
        cfg,
        request,
        restrict_models,
        bank,
        y,
        fixed=fixed,
        semantic=semantic,
        mask=mask,
    )


def adapt(
    ctx: Context,
    p: Plan,
    images: Sequence[Image.Image],
    cache: OutputCache | None = None,
    keys: list[str] | None = None,
) -> Plan:
    """Re-plan with the node data weighted towards the task's (unlabeled) images (`mll.solve.adaptation`).

    Runs every pruned candidate once on the images (through the cache, so the selected ones are not
    run twice); returns `p` itself when there is nothing to adapt or no domain shift is detected.
    """
    from mll.solve.adaptation import domain_weights

    cfg = p.cfg or ctx.cfg
    if p.bank is None or p.y is None or not len(p.y) or not images:
        return p
    models = sorted({d["model"] for c in p.selection.classes for d in c.candidates})
    if not models:
        return p
    lse: dict = {}
    logp, _, _ = _run(ctx, cfg, models, images, {}, cache=cache, keys=keys, lse_out=lse)
    dw = domain_weights({m: p.bank.logp(m) for m in models}, {m: p.bank.lse(m) for m in models}, logp, lse)
    if dw.weights is None:
        p.adaptation = dw.to_dict()
        return p
    q = plan(ctx, p.request, restrict_models=p.restrict, cfg=cfg, fixed=p.fixed, node_weights=dw.weights, mask=p.mask)
    q.adaptation = dw.to_dict()
    q.seconds += p.seconds
    return q


def with_adaptation(
    ctx: Context,
    p: Plan,
    images: Sequence[Image.Image],
    cache: OutputCache | None = None,
    keys: list[str] | None = None,
) -> tuple[Plan, OutputCache | None, list[str] | None]:
    """`adapt` when the plan's settings ask for it, with a cache so that the selected models, which
    the adaptation already ran as candidates, do not run again in `predict`."""
    if not (p.cfg or ctx.cfg).adapt:
        return p, cache, keys
    if cache is None:
        cache, keys = OutputCache(), [f"#{i}" for i in range(len(images))]
    return adapt(ctx, p, images, cache, keys), cache, keys


def _run(
    ctx: Context,
    cfg: SolveParams,
    models: Sequence[str],
    images: Sequence[Image.Image],
    summaries: dict,
    progress: Callable[[int], None] | None = None,
    cache: OutputCache | None = None,
    keys: list[str] | None = None,
    lse_out: dict | None = None,
) -> tuple[dict, dict, dict]:
    """`run_models` over hub models, grouped by input config so each preprocessing is computed once."""
    from mll.hub.experts import batch_size_for

    order = sorted(models, key=lambda m: (repr(ctx.cards[m].input), m))
    loaders = {m: (lambda m=m: ctx.hub.load(m, device=cfg.device)) for m in order}
    # every model's stored form comes from its label, also when the caller needs no gates
    summaries = {m: summaries.get(m) or ctx.index.summaries.get(m) or {} for m in order}
    return run_models(
        images,
        loaders,
        summaries,
        batch_size_for(cfg.device, cfg.batch_size, cfg.gpu_batch_size),
        progress,
        cache,
        keys,
        {m: ctx.cards[m].weights_sha256 for m in order},
        lse_out,
    )


def covering_models(index: LabelIndex, node: str | None) -> list[str]:
    """Models with at least one head class under `node`."""
    if not node:
        return []
    rows = index.rows(node)
    return sorted(set(rows.loc[rows["head_classes"] > 0, "model"]))


def predict(
    ctx: Context,
    p: Plan,
    images: Sequence[Image.Image],
    progress: Callable[[int], None] | None = None,
    cache: OutputCache | None = None,
    keys: list[str] | None = None,
) -> tuple[np.ndarray, dict]:
    """(N, K) probabilities over the task's classes, and run info (seconds per model).

    With an output `cache` and one key per image (e.g. its URI), models skip images they have seen.
    """
    k = len(p.names)
    cfg = p.cfg or ctx.cfg
    info: dict = {"model_seconds": {}}
    experts = p.combiner is not None and p.covered
    semantic = p.semantic if p.uncovered else None
    # each model runs once, for the combiner and the semantic patch alike (a generalist may be both)
    models = sorted({*(p.combiner.models if experts else []), *(semantic.models if semantic is not None else [])})
    logp, gates = {}, {}
    if models:
        logp, gates, info["model_seconds"] = _run(ctx, cfg, models, images, {}, progress, cache, keys)
    p_exp = None
    if experts:
        probs = p.combiner.predict_proba(logp, gates, p.cols)
        # the combiner may know only some covered classes (statistics mode keeps all)
        p_exp = np.zeros((len(images), len(p.covered)))
        for j, cls in enumerate(p.combiner.classes):
            p_exp[:, p.covered.index(cls)] = probs[:, j]
    p_clip = None
    if semantic is not None:
        p_clip = semantic.probs(logp, p_exp)
    elif p.uncovered and not get_patch_kind(cfg.patch).per_task and patch_active(cfg.patch) and ctx.get_patch():
        p_clip = ctx.get_patch().probs(images, p.names)
    if p_exp is None:
        p_exp = np.zeros((len(images), len(p.covered)))
    return fuse(p_exp, p.covered, p_clip, p.uncovered if p_clip is not None else [], k), info


def weak_classes(p: Plan, warn_below: float | None = None) -> list[dict]:
    """The classes expected to be weak, with the reason, before any image is seen: uncovered and
    unanswered, answered by the patch, backed off to a relative, or with an estimated accuracy on
    node data below `warn_below` (`solve.warn_below`)."""
    cfg = p.cfg or SolveParams()
    warn_below = cfg.warn_below if warn_below is None else warn_below
    out = []
    for c in p.selection.classes:
        if not c.models and not c.patched:
            kind, why = "uncovered", "no hub head covers it and no patch answers it: its images will be answered wrong"
        elif c.patched:
            by = p.semantic.describe() if p.semantic is not None else f"the VLM patch {cfg.patch.model}"
            kind, why = "patched", f"no hub head covers it; answered by {by}"
        elif c.backoff:
            kind = "backoff"
            why = f"no hub head covers it; answered by the heads of its relative {c.backoff} (less specific)"
        elif c.estimated_accuracy is not None and c.estimated_accuracy < warn_below:
            kind = "low_estimate"
            why = (
                f"estimated accuracy {c.estimated_accuracy:.2f} on {c.node_images} node images "
                f"< solve.warn_below {warn_below:.2f}"
            )
        else:
            continue
        out.append({"class": c.name, "kind": kind, "reason": why})
    return out


def check_strict(p: Plan) -> None:
    """`--strict`: refuse a task with a class no hub head covers (patched, backed off or unanswered)."""
    bad = [w for w in weak_classes(p) if w["kind"] in ("uncovered", "patched", "backoff")]
    if bad:
        names = ", ".join(repr(w["class"]) for w in bad)
        raise ValueError(
            f"--strict: no hub head covers {names}; add an expert that covers it (`mll hub add`) "
            "or drop --strict to let the patch answer it"
        )


def answering_model(p: Plan, k: int) -> str:
    c = p.selection.classes[k]
    if c.models:
        return "+".join(c.models)
    return "patch" if c.patched else "none"


def hit_string(hit: np.ndarray) -> str:
    """Per-image correctness in image order as '0'/'1' characters: compact, and what paired tests
    between two methods on the same images need."""
    return "".join(np.where(np.asarray(hit, dtype=bool), "1", "0"))


def evaluate(
    ctx: Context,
    p: Plan,
    images: Sequence[Image.Image],
    y: np.ndarray,
    progress=None,
    cache: OutputCache | None = None,
    keys: list[str] | None = None,
) -> dict:
    """Accuracy report of plan `p` on labelled images (y = class index per image): what `mll eval`
    prints, and what the benchmark records for every method."""
    p, cache, keys = with_adaptation(ctx, p, images, cache, keys)
    probs, info = predict(ctx, p, images, progress, cache, keys)
    y = np.asarray(y)
    # an image no selected head can score (all-zero row) is abstained on, so counted wrong
    pred = np.where(probs.max(1) > 0, probs.argmax(1), -1)
    per_class = {}
    for k, n in enumerate(p.names):
        m = y == k
        per_class[n] = {
            "n": int(m.sum()),
            "accuracy": float((pred[m] == k).mean()) if m.any() else None,
            "answered_by": answering_model(p, k),
            "mode": p.selection.classes[k].mode,
        }
    return {
        "accuracy": float((pred == y).mean()),
        "n_images": len(y),
        "hits": hit_string(pred == y),
        "predictions": pred.tolist(),  # class index per image, -1 where no head answered
        "per_class": per_class,
        "selection": p.selection.by_class(),
        "uncovered": p.selection.uncovered,
        "matched": {m.name: m.synset for m in p.matches},
        "matched_names": {m.name: (ctx.sdag.name(m.synset) if m.synset else None) for m in p.matches},
        "combiner": p.selection.combiner,
        "estimated_accuracy": p.selection.estimated_accuracy,
        "models": p.selection.models,
        "adaptation": p.adaptation,
        "weak_classes": weak_classes(p),
        "plan_seconds": round(p.seconds, 3),
        "model_seconds": info["model_seconds"],
        "details": p.selection.to_dict(),
    }

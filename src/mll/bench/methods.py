"""The benchmark's methods: one registered entry each, the only list of them.

Every method is a different way to choose the heads (or no heads) for a task's classes; the
hub-based ones are then scored by the same `mll.solve.evaluate` path that `mll eval` uses, so the
benchmark compares selections, not implementations of prediction. An entry (`@register_method`)
holds everything that differs between methods: the key (params.yaml `benchmark.methods`), the
report's column label, how heads are chosen and combined, the flags the grid and the report act on,
and the function that fills the cell. `mll.bench.run.run_cell` dispatches through the registry,
`load_params` checks params.yaml against it and the report takes labels, column order (registration
order) and flags from it, so adding a method is one decorated function in this file.

The table of methods is generated from the entries (`methods_table()`):
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mll.bench.oracles import oracle_name
from mll.solve.semantic import GENERALIST_MIN_CLASSES

if TYPE_CHECKING:  # solving imports torch: the report reads this registry without it
    from mll.bench.tasks import BenchTask
    from mll.config import SolveParams
    from mll.solve.outputs import OutputCache
    from mll.solve.task import Context, Plan


# --- the cell a method fills ------------------------------------------------------------------------
@dataclass
class CellRun:
    """What a method's function gets: the task, where to solve it, and the cell to fill in place."""

    ctx: Context
    task: BenchTask
    cache: OutputCache
    cell: dict
    seed: int | None = None  # the draw of a seeded method
    restrict: list[str] | None = None  # solve over this sub-hub only (the growth curve)
    oracle_hub: Path | None = None  # where the oracle experts are (`oracles/`)
    probe: Path | None = None  # the probe manifest (node_data reads its cached backbone features)

    @property
    def static(self) -> SolveParams:
        """The solve settings without adaptation (inductive): MLL's headline, its ablations and the
        baselines use the labels and node data alone, never the task's images before predicting."""
        return replace(self.ctx.cfg, adapt=False)

    def plan(
        self, cfg: SolveParams | None = None, fixed: Callable[[list[list[str]]], list[list[str]]] | None = None
    ) -> Plan:
        from mll.solve.task import plan

        return plan(self.ctx, self.task.classes, restrict_models=self.restrict, cfg=cfg, fixed=fixed)

    def solve(
        self, cfg: SolveParams | None = None, fixed: Callable[[list[list[str]]], list[list[str]]] | None = None
    ) -> dict:
        """Plan (`cfg` overrides the solve settings, `fixed` replaces CHCO's choice), then the
        `mll eval` report on the task's images."""
        from mll.solve.task import evaluate

        return evaluate(
            self.ctx, self.plan(cfg, fixed), self.task.images(), self.task.y, cache=self.cache, keys=self.task.uris
        )

    def pool(self, p: Plan) -> list[str]:
        """Models whose heads cover at least one of the task's (answered) nodes."""
        from mll.solve.task import covering_models

        index = self.ctx.index if self.restrict is None else self.ctx.index.subset(self.restrict)
        nodes = [c.target_node for c in p.selection.classes]
        # every covering model of every class, not only CHCO's: plan already resolved backoffs
        return sorted({m for n in nodes for m in covering_models(index, n)})

    def fill(self, rep: dict, detail: str = "") -> None:
        """Fill the cell from an `evaluate` report."""
        self.cell.update(
            accuracy=round(rep["accuracy"], 4),
            hits=rep["hits"],
            predictions=rep["predictions"],
            models=rep["models"],
            answered_by=rep["selection"],
            per_class={k: v["accuracy"] for k, v in rep["per_class"].items()},
            modes={k: v.get("mode") for k, v in rep["per_class"].items()},
            matched=rep.get("matched", {}),
            matched_names=rep.get("matched_names", {}),
            detail=detail,
            combiner=rep["combiner"],
            estimated_accuracy=rep["estimated_accuracy"],
            adaptation=rep.get("adaptation"),
            plan_seconds=rep.get("plan_seconds"),  # matching + CHCO + fitting the combiner: selection time
            node_images=sum(c.get("node_images") or 0 for c in (rep.get("details") or {}).get("classes", [])),
        )

    def score(self, probs: np.ndarray, model: str, detail: str) -> None:
        """Fill the cell answered by one model over every class from its (N, K) probabilities."""
        from mll.solve.task import hit_string

        task, pred = self.task, probs.argmax(1)
        self.cell.update(
            accuracy=round(float((pred == task.y).mean()), 4),
            hits=hit_string(pred == task.y),
            predictions=pred.tolist(),
            models=[model],
            answered_by={c: [model] for c in task.classes},
            detail=detail,
            per_class={
                c: float((pred[task.y == k] == k).mean()) if (task.y == k).any() else None
                for k, c in enumerate(task.classes)
            },
        )

    def skip(self, reason: str) -> None:
        self.cell.update(status="skipped", reason=reason)


CellFn = Callable[[CellRun], None]


# --- the registry -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Method:
    """One benchmark method: how the grid runs it and how the report shows it."""

    key: str
    label: str  # the report's column header
    heads: str  # how the heads per class are chosen
    combination: str  # how their outputs are combined
    fn: CellFn
    seeded: bool = False  # one cell per seed (benchmark.random_seeds), reported as mean ± std over them
    hindsight: bool = False  # chooses with the task's test labels
    trained_on_task: bool = False  # uses the task's own training data
    growth: bool = True  # depends on the hub, so a sub-hub of the growth curve can change it
    prose: str = ""  # how the report's sentences name it; "the <label>" when empty

    @property
    def reference(self) -> bool:
        """An upper reference, not a competitor: never bolded, not one of the zero-shot baselines."""
        return self.hindsight or self.trained_on_task

    @property
    def noun(self) -> str:
        return self.prose or f"the {self.label}"


_REGISTRY: dict[str, Method] = {}


def register_method(
    key: str,
    *,
    label: str,
    heads: str,
    combination: str,
    seeded: bool = False,
    hindsight: bool = False,
    trained_on_task: bool = False,
    growth: bool = True,
    prose: str = "",
) -> Callable[[CellFn], CellFn]:
    """Decorator: register `fn(run: CellRun) -> None` as method `key`, the report's last column so far."""

    def add(fn: CellFn) -> CellFn:
        if key in _REGISTRY:
            raise ValueError(f"benchmark method {key!r} is already registered")
        _REGISTRY[key] = Method(
            key,
            label,
            heads,
            combination,
            fn,
            seeded=seeded,
            hindsight=hindsight,
            trained_on_task=trained_on_task,
            growth=growth,
            prose=prose,
        )
        return fn

    return add


def unregister_method(key: str) -> Method:
    """Remove method `key` (tests register temporary ones); returns its entry."""
    get_method(key)
    return _REGISTRY.pop(key)


def list_methods(**flags: bool) -> list[str]:
    """Registered keys in column order; `flags` keep the entries whose attribute has that value
    (`list_methods(growth=True)`, `list_methods(seeded=True)`, `list_methods(reference=True)`)."""
    return [k for k, m in _REGISTRY.items() if all(getattr(m, f) == v for f, v in flags.items())]


def did_you_mean(keys: Iterable[str]) -> str:
    """' (did you mean 'mll'?)' for the registered keys closest to `keys`; '' when none is close."""
    close = list(dict.fromkeys(c for k in keys for c in difflib.get_close_matches(str(k), list(_REGISTRY), n=1)))
    return f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""


def get_method(key: str) -> Method:
    """The entry of `key`; ValueError naming the known keys (and the closest) when there is none."""
    try:
        return _REGISTRY[key]
    except KeyError:
        raise ValueError(
            f"unknown benchmark method {key!r}{did_you_mean([key])}; known: {', '.join(_REGISTRY)}"
        ) from None


def find_method(key: str) -> Method | None:
    """The entry of `key`, or None: a cells document may name a method this code does not register."""
    return _REGISTRY.get(key)


def method_label(key: str) -> str:
    """The report's label of a method key (the key itself when not registered)."""
    m = _REGISTRY.get(key)
    return m.label if m else key


def order_methods(keys: Iterable[str]) -> list[str]:
    """Registered methods in column order, then unregistered ones in order of first appearance."""
    seen = list(dict.fromkeys(keys))
    return [k for k in _REGISTRY if k in seen] + [k for k in seen if k not in _REGISTRY]


def methods_table() -> str:
    """The registered methods as a Markdown table: key, column label, heads per class, combination, flags."""
    lines = ["| method | column | heads per class | combination | flags |", "|---|---|---|---|---|"]
    for m in _REGISTRY.values():
        flags = [
            name
            for name, on in (
                ("seeded", m.seeded),
                ("hindsight", m.hindsight),
                ("trained on the task", m.trained_on_task),
                ("grid only", not m.growth),
            )
            if on
        ]
        cols = (m.key, m.label, m.heads, m.combination, ", ".join(flags))
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cols) + " |")
    return "\n".join(lines)


# --- the methods, in column order -------------------------------------------------------------------
@register_method(
    "mll",
    label="MLL",
    heads="CHCO on the node data (inductive: the task's images are not used before predicting)",
    combination="gated stacking; statistics for a class with too few node images",
)
def _mll(run: CellRun) -> None:
    run.fill(run.solve(cfg=run.static))


@register_method(
    "mll_transductive",
    label="MLL, transductive",
    heads="CHCO on node data weighted towards the task's (unlabelled) images",
    combination="as MLL",
)
def _mll_transductive(run: CellRun) -> None:
    run.fill(run.solve(cfg=replace(run.ctx.cfg, adapt=True)))


def covered_accuracy(rep: dict) -> tuple[float | None, int]:
    """(accuracy on the images of the classes some head answers, how many such classes): a single
    model's accuracy on a task, the quantity its label predicts (`estimated_accuracy`)."""
    covered = [v for v in rep["per_class"].values() if v["answered_by"] not in ("none", "patch") and v["n"]]
    n = sum(v["n"] for v in covered)
    return (sum(v["accuracy"] * v["n"] for v in covered) / n if n else None), len(covered)


def best_single(run: CellRun) -> tuple[dict | None, str, int, dict[str, dict]]:
    """Each covering model alone (same reuse as MLL): (report of the best on the task's labels, its
    name, how many were tried, per model: its label's estimate and the measured accuracy on the
    classes it covers, and its label's task-agnostic in-domain accuracy, the INB ranking's score)."""
    pool = run.pool(run.plan())
    best, who, per_model = None, "", {}
    for m in pool:
        rep = run.solve(cfg=run.static, fixed=lambda cov, m=m: [[m] if m in c else [] for c in cov])
        measured, n = covered_accuracy(rep)
        per_model[m] = {
            "estimated": rep["estimated_accuracy"],
            "measured": None if measured is None else round(measured, 4),
            "classes": n,
            "in_domain": (run.ctx.index.summaries.get(m) or {}).get("in_domain_accuracy"),
            "accuracy": round(rep["accuracy"], 4),
        }
        if best is None or rep["accuracy"] > best["accuracy"]:
            best, who = rep, m
    return best, who, len(pool), per_model


@register_method(
    "single",
    label="best single model (hindsight)",
    heads="one model alone; the best on the test labels (hindsight, so an upper bound for one model)",
    combination="as MLL",
    hindsight=True,
    prose="the hindsight best single model",
)
def _single(run: CellRun) -> None:
    rep, who, n, per_model = best_single(run)
    if rep is None:
        run.cell.update(accuracy=0.0, detail="no hub model covers any class")
    else:
        run.fill(rep, f"{who} (best of {n} covering models, chosen on the test labels)")
    run.cell["per_model"] = per_model  # the selection-quality metrics (mll.bench.quality) read these


@register_method(
    "hindsight",
    label="best selection (hindsight)",
    heads="forward selection on the test labels from the best single model over the 8 best, and "
    "MLL's and every covering model's selections; the best of them (an upper bound)",
    combination="as MLL",
    hindsight=True,
    growth=False,
    prose="the hindsight best selection",
)
def _hindsight(run: CellRun) -> None:
    from mll.bench.baselines import hindsight_cell

    hindsight_cell(run)


PLAIN_MEAN = {"use_gates": False, "combiner": "statistics"}  # mean of P_m(t_k|x) over a class's heads
INB_MIN_CLASSES = GENERALIST_MIN_CLASSES  # a generalist's head has at least this many classes


@register_method(
    "uniform",
    label="uniform ensemble",
    heads="every covering head",
    combination="plain mean of P_m(t_k|x) (softmax at T = 1)",
)
def _uniform(run: CellRun) -> None:
    # the baseline stays plain: the models' own softmax, no temperature (MLL's ablations keep MLL's)
    run.fill(run.solve(cfg=replace(run.static, temperature="none", **PLAIN_MEAN), fixed=lambda cov: cov))


@register_method(
    "random",
    label="random selection",
    seeded=True,
    heads="every covering head of r random covering models, r = MLL's model count (several seeds)",
    combination="as MLL",
)
def _random(run: CellRun) -> None:
    p = run.plan()
    pool = run.pool(p)
    r = min(max(len(p.selection.models), 1), len(pool))
    chosen = set(np.random.default_rng(1000 + (run.seed or 0)).choice(pool, r, replace=False)) if pool else set()
    rep = run.solve(cfg=run.static, fixed=lambda cov: [[m for m in c if m in chosen] for c in cov])
    run.fill(rep, f"{r} of {len(pool)} covering models: {', '.join(sorted(chosen))}")


def _inb(run: CellRun, k: int) -> None:
    from mll.solve.semantic import generalists

    index = run.ctx.index if run.restrict is None else run.ctx.index.subset(run.restrict)
    ranked = generalists({m: run.ctx.cards[m] for m in index.models}, index.summaries, INB_MIN_CLASSES)
    if not ranked:
        run.skip(f"no generalist (a head with at least {INB_MIN_CLASSES} classes) in the hub")
        return
    chosen = set(ranked[:k])
    cfg = replace(run.static, temperature="none", **PLAIN_MEAN)
    rep = run.solve(cfg=cfg, fixed=lambda cov: [[m for m in c if m in chosen] for c in cov])
    run.fill(rep, f"{', '.join(ranked[:k])} (best {k} of {len(ranked)} generalists by their labels)")


@register_method(
    "inb",
    label="best generalist (INB)",
    heads="the generalist (domain general, 100+ classes) with the best label in-domain accuracy, for every class",
    combination="its softmax summed over each class's WordNet subtree",
    prose="the best generalist (INB)",
)
def _inb1(run: CellRun) -> None:
    _inb(run, 1)


@register_method(
    "inb_top3",
    label="top-3 generalists",
    heads="the three generalists with the best label in-domain accuracy",
    combination="plain mean of their subtree sums",
    prose="the top-3 generalists' ensemble",
)
def _inb3(run: CellRun) -> None:
    _inb(run, 3)


@register_method(
    "node_data",
    label="logistic regression on node data",
    growth=False,
    heads="no head: a logistic regression on frozen backbone features of the task's node images "
    "(backbone chosen by 3-fold cross-validation on them)",
    combination="its softmax",
    prose="the node-data classifier",
)
def _node_data(run: CellRun) -> None:
    from mll.bench.baselines import node_data_cell

    node_data_cell(run)


@register_method(
    "top1",
    label="per-class top-1",
    heads="the single best head by label statistics (no CHCO)",
    combination="as MLL",
)
def _top1(run: CellRun) -> None:
    run.fill(run.solve(cfg=replace(run.static, prune=1, max_heads=1)))


@register_method(
    "ungated",
    label="MLL w/o gates or stacking",
    heads="CHCO (same choice)",
    combination="plain mean of P_m(t_k|x): no gates and no stacking",
)
def _ungated(run: CellRun) -> None:
    run.fill(run.solve(cfg=replace(run.static, **PLAIN_MEAN)))


@register_method(
    "stack_ungated",
    label="MLL w/o gates",
    heads="CHCO (same choice)",
    combination="as MLL without the gates (no gate features, ungated statistics for thin classes)",
)
def _stack_ungated(run: CellRun) -> None:
    run.fill(run.solve(cfg=replace(run.static, use_gates=False)))


@register_method(
    "stack_all",
    label="MLL w/o CHCO",
    heads="every covering head (no CHCO selection)",
    combination="as MLL",
)
def _stack_all(run: CellRun) -> None:
    run.fill(run.solve(cfg=run.static, fixed=lambda cov: cov))


@register_method(
    "one_head",
    label="MLL, one head per class",
    heads="CHCO with one head per class and no model cost",
    combination="as MLL",
)
def _one_head(run: CellRun) -> None:
    run.fill(run.solve(cfg=replace(run.static, max_heads=1, cost_per_model=0.0)))


@register_method(
    "mll_proxy",
    label="MLL, proxy alone",
    heads="CHCO by the per-class AUROC proxy alone (no re-ranking by the combined objective)",
    combination="as MLL",
)
def _mll_proxy(run: CellRun) -> None:
    run.fill(run.solve(cfg=replace(run.static, rerank=0)))


@register_method(
    "oracle",
    label="oracle expert",
    trained_on_task=True,
    growth=False,
    heads="an expert trained on the task's own training data (when it has any)",
    combination="its softmax",
)
def _oracle(run: CellRun) -> None:
    from mll.hub.store import Hub
    from mll.solve.reuse import run_models

    task = run.task
    if task.oracle is None:
        run.skip("no training data for this task's classes (no oracle)")
        return
    name = oracle_name(task.oracle)
    hub = Hub(Path(run.oracle_hub or "oracles"))
    if name not in hub.names():
        run.skip(f"oracle expert {name} not built (dvc repro oracles)")
        return
    card = hub.card(name)
    logp, _, _ = run_models(
        task.images(),
        {name: lambda: hub.load(name, device=run.ctx.cfg.device)},
        {},
        run.ctx.cfg.batch_size,
        cache=run.cache,
        keys=task.uris,
        hashes={name: card.weights_sha256},
    )
    p_fine = np.exp(logp[name])
    col = {c: i for i, c in enumerate(card.class_names)}
    # a coarse class's probability is the sum over its member classes (the oracle knows the fine ones)
    probs = np.stack([p_fine[:, [col[m] for _, m in task.members[c] if m in col]].sum(1) for c in task.classes], 1)
    run.score(
        probs,
        name,
        f"{card.architecture} trained on {task.oracle} expert_train "
        f"(val accuracy {card.provenance.get('metrics', {}).get('val_accuracy')})",
    )


_CLIP_BASELINES: dict[tuple, object] = {}  # the clip baseline's loaded checkpoints


@register_method(
    "clip",
    label="CLIP zero-shot",
    growth=False,
    heads="the open_clip patch model alone over every class name (skipped when none is configured)",
    combination="zero-shot",
)
def _clip(run: CellRun) -> None:
    if not run.ctx.cfg.patch.model:
        run.skip("no open_clip checkpoint configured (set solve.patch.model/pretrained)")
        return
    from mll.solve.patch import ClipPatch

    # the configured checkpoint, whichever patch kind MLL itself uses (loaded once per process)
    cfg = replace(run.ctx.cfg.patch, kind="open_clip")
    key = (cfg.model, cfg.pretrained, cfg.templates, cfg.device)
    patch = _CLIP_BASELINES.get(key) or _CLIP_BASELINES.setdefault(key, ClipPatch(cfg))
    run.score(patch.probs(run.task.images(), run.task.classes), "patch", patch.name)


__doc__ = f"{__doc__}\n{methods_table()}\n"

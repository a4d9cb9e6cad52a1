"""The masked-coverage family: the patch measured on classes whose heads exist but are hidden.

For every task of the `in_domain` and `cross_style` families, subsets of 1, 2 and 3 of its classes
(`benchmark.masked.sizes`; at most `subsets` per size, drawn with a seed from the task's name) have
their coverage hidden (`mll.solve.masking`) in two variants, `heads_hidden` (node data kept, so the
patch can calibrate on the hidden classes' node images) and `heads_and_nodes_hidden` (removed too).
Each patch kind (`benchmark.masked.kinds`: semantic | backoff | none; open_clip has no weights
offline) then solves the task with MLL's settings (inductive), and a row records the accuracy on
the hidden classes' images and on all of the task's images, per image, so the report can give
intervals and paired tests. `none` is the semantic plan with the patch removed (same selection).
"""

from __future__ import annotations

import itertools
import zlib
from dataclasses import replace
from typing import Any

import numpy as np

from mll.bench.families import p_text
from mll.bench.stats import family_bootstrap, hits_array, mcnemar
from mll.solve.masking import VARIANTS, HeadMask

MASK_FAMILIES = ("in_domain", "cross_style")
KINDS = ("semantic", "backoff", "none")


def masked_tasks(state: dict) -> list:
    """The tasks the family hides classes of: in_domain and cross_style, no user-name variants."""
    return [t for t in state["tasks"].values() if t.family in MASK_FAMILIES and not t.base]


def hidden_subsets(name: str, k: int, sizes: tuple[int, ...], per_size: int) -> list[tuple[int, ...]]:
    """Class-index subsets to hide: every one of a size when there are at most `per_size`, else
    `per_size` of them drawn without replacement, seeded by the task's name (reproducible)."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    out: list[tuple[int, ...]] = []
    for s in sizes:
        if s >= k:  # hiding every class (or all but none) leaves nothing to compare
            continue
        combos = list(itertools.combinations(range(k), s))
        if len(combos) > per_size:
            combos = [combos[i] for i in sorted(rng.choice(len(combos), per_size, replace=False))]
        out += combos
    return out


def run_masked(state: dict, sizes: tuple[int, ...], per_size: int, kinds: tuple[str, ...], log=print) -> list[dict]:
    """Rows {task, family, split, variant, kind, size, hidden, hits, hidden_hits, ...} (module doc)."""
    from mll.bench.run import task_context
    from mll.solve.task import evaluate, plan

    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise ValueError(f"benchmark.masked.kinds: {', '.join(sorted(unknown))} unknown; choose from {KINDS}")
    rows: list[dict] = []
    for t in masked_tasks(state):
        ctx = task_context(state, t, log)
        static = replace(ctx.cfg, adapt=False)
        images, y = t.images(), np.asarray(t.y)
        p0 = plan(ctx, t.classes, cfg=static)
        base = evaluate(ctx, p0, images, y, cache=state["cache"], keys=t.uris)
        synsets = [m.synset for m in p0.matches]
        for subset in hidden_subsets(t.name, len(t.classes), sizes, per_size):
            hidden = np.isin(y, subset)
            for variant in VARIANTS:
                mask = HeadMask.of([synsets[k] for k in subset], variant)
                reports = _solve_kinds(ctx, static, t, images, y, mask, kinds, state["cache"], plan, evaluate)
                for kind, rep in reports.items():
                    pred = np.asarray(rep["predictions"])
                    rows.append(
                        {
                            "task": t.name,
                            "family": t.family,
                            "split": t.split,
                            "variant": variant,
                            "kind": kind,
                            "size": len(subset),
                            "hidden": [t.classes[k] for k in subset],
                            "accuracy": round(rep["accuracy"], 4),
                            "unmasked_accuracy": round(base["accuracy"], 4),
                            "hits": rep["hits"],
                            "hidden_hits": "".join("1" if h else "0" for h in (pred == y)[hidden]),
                            "answered_by": {
                                t.classes[k]: rep["per_class"][t.classes[k]]["answered_by"] for k in subset
                            },
                        }
                    )
        done = [r for r in rows if r["task"] == t.name]
        log(f"masked coverage {t.name}: {len(done)} rows; hidden-class accuracy {_means(done)}")
    return rows


def _solve_kinds(ctx, static, t, images, y, mask, kinds, cache, plan, evaluate) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for kind in sorted(kinds, key=lambda k: k != "semantic"):  # semantic first: `none` may reuse its plan
        if kind in out:
            continue
        cfg = replace(static, patch=replace(static.patch, kind=kind))
        p = plan(ctx, t.classes, cfg=cfg, mask=mask)
        out[kind] = evaluate(ctx, p, images, y, cache=cache, keys=t.uris)
        if kind == "semantic" and "none" in kinds and p.semantic is not None:
            for k in p.uncovered:  # the same selection, nothing answering the hidden classes
                c = p.selection.classes[k]
                c.patched, c.mode, c.why = False, None, "no hub head covers this class"
            out["none"] = evaluate(ctx, replace(p, semantic=None), images, y, cache=cache, keys=t.uris)
    return {k: out[k] for k in kinds if k in out}


def _means(rows: list[dict]) -> dict[str, float]:
    by: dict[str, list[np.ndarray]] = {}
    for r in rows:
        by.setdefault(f"{r['variant']}/{r['kind']}", []).append(hits_array(r["hidden_hits"]))
    return {k: round(float(np.concatenate(v).mean()), 3) for k, v in by.items()}


def summarize_masked(rows: list[dict], n_boot: int = 2000) -> dict[str, Any]:
    """`patch: {split: {variant: {kind: {hidden_class_acc, overall_acc, ci_low, ci_high, ...}}}}` for
    `reports/benchmark.json`: accuracies pooled over subsets, 95% intervals by the two-level bootstrap
    over tasks then images (`ci_*` for the hidden-class accuracy), the single-hidden-class in-domain
    accuracy against the unmasked task, and exact McNemar tests of the semantic patch against the
    other kinds on the same hidden images."""
    out: dict[str, dict] = {}
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["split"], r["variant"]), []).append(r)
    for (sp, variant), rs in sorted(groups.items()):
        block: dict[str, dict] = {}
        for kind in dict.fromkeys(r["kind"] for r in rs):
            kr = [r for r in rs if r["kind"] == kind]
            hid = _per_task(kr, "hidden_hits")
            allh = _per_task(kr, "hits")
            seed = zlib.crc32(f"{sp}/{variant}/{kind}".encode())
            m, lo, hi = family_bootstrap(list(hid.values()), n_boot, seed)
            om, olo, ohi = family_bootstrap(list(allh.values()), n_boot, seed + 1)
            one = [r for r in kr if r["size"] == 1 and r["family"] == "in_domain"]
            e = {
                "hidden_class_acc": round(m, 4),
                "ci_low": round(lo, 4),
                "ci_high": round(hi, 4),
                "overall_acc": round(om, 4),
                "overall_ci_low": round(olo, 4),
                "overall_ci_high": round(ohi, 4),
                "n_hidden": int(sum(len(h) for h in hid.values())),
                "n_subsets": len(kr),
                "n_tasks": len(hid),
            }
            if one:
                e["in_domain_one_hidden_overall"] = round(float(np.mean([r["accuracy"] for r in one])), 4)
                e["in_domain_unmasked"] = round(float(np.mean([r["unmasked_accuracy"] for r in one])), 4)
            block[kind] = e
        if "semantic" in block:
            sem = [r for r in rs if r["kind"] == "semantic"]
            for kind in block:
                if kind == "semantic":
                    continue
                other = {_key(r): r for r in rs if r["kind"] == kind}
                a = "".join(r["hidden_hits"] for r in sem if _key(r) in other)
                b = "".join(other[_key(r)]["hidden_hits"] for r in sem if _key(r) in other)
                if a:
                    p = mcnemar(a, b)
                    block[kind]["vs_semantic"] = {
                        "semantic_only": p.a_only,
                        "other_only": p.b_only,
                        "p": round(p.p_value, 6),
                    }
        out.setdefault(sp, {})[variant] = block
    return out


def _key(r: dict) -> tuple:
    return (r["task"], r["variant"], tuple(r["hidden"]))


def _per_task(rows: list[dict], field: str) -> dict[str, np.ndarray]:
    by: dict[str, list[np.ndarray]] = {}
    for r in rows:
        if r[field]:
            by.setdefault(r["task"], []).append(hits_array(r[field]))
    return {t: np.concatenate(v).astype(float) for t, v in by.items()}


def masked_table(patch: dict) -> str:
    """Markdown: per split and variant, each patch kind's accuracy on the hidden classes [95% CI],
    overall accuracy, and the paired test of the semantic patch against it."""
    if not patch:
        return "_The masked-coverage family did not run (benchmark.masked)._"
    lines = [
        "| split | variant | patch | hidden-class accuracy [95% CI] | overall [95% CI] | hidden images "
        "| semantic-only / its-only (p) |",
        "|---|---|---|---|---|---:|---|",
    ]
    for sp in [s for s in ("test", "dev") if s in patch]:
        for variant, block in patch[sp].items():
            for kind, e in block.items():
                v = e.get("vs_semantic")
                test = "–" if v is None else f"{v['semantic_only']} / {v['other_only']} ({p_text(v['p'])})"
                hid = f"{e['hidden_class_acc']:.3f} [{e['ci_low']:.3f}, {e['ci_high']:.3f}]"
                lines.append(
                    f"| {sp} | {variant} | {kind} | {hid} "
                    f"| {e['overall_acc']:.3f} [{e['overall_ci_low']:.3f}, {e['overall_ci_high']:.3f}] "
                    f"| {e['n_hidden']} | {test} |"
                )
    return "\n".join(lines)

"""`mll match`, `mll eval` and `mll solve`: zero-shot tasks against the labeled hub."""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import replace
from pathlib import Path

from tqdm import tqdm

from mll.cli.common import write_json
from mll.config import SolveParams, load_section
from mll.paths import cache_dir
from mll.solve.folders import evaluate_folder, solve_folder
from mll.solve.task import Context
from mll.tracking import log_task_run


def _context(a: argparse.Namespace) -> Context:
    cfg = load_section("solve", a.params) if Path(a.params).is_file() else SolveParams()
    if getattr(a, "device", None):
        cfg = replace(cfg, device=a.device)
    return Context.load(Path(a.sdag), Path(a.hub), Path(a.labels), cfg, cache_dir=cache_dir())


def _print_selection(sel: dict, explain: bool) -> None:
    """A selection as `Selection.to_dict()` (the report's `details`) gives it: one line per class."""
    for c in sel["classes"]:
        models = ", ".join(f"{m}[{'/'.join(c['head_classes'].get(m, [])[:3])}]" for m in c["models"]) or (
            "VLM patch" if c["patched"] else "NONE (uncovered)"
        )
        est = f"{c['estimated_accuracy']:.2f}" if c["estimated_accuracy"] is not None else "  - "
        mode = f" ({c['mode']})" if c.get("mode") else ""
        print(f"  {c['name']:20s} -> {models}{mode}  est {est}")
        if explain:
            print(f"      why: {c['why']}")
            for cand in c["candidates"]:
                print(
                    f"      candidate {cand['model']}: prune score {cand['prune_score']:.3f}, "
                    f"gated recall {cand['gated_recall']:.3f}, gated false alarm {cand['gated_false_alarm']:.3f}"
                )
    est = f"{sel['estimated_accuracy']:.3f}" if sel["estimated_accuracy"] is not None else "-"
    print(
        f"  models run: {len(sel['models'])} ({', '.join(sel['models'])}); solver {sel['solver']}; "
        f"combiner {sel['combiner']}; estimated accuracy on node data {est}"
    )
    shared = {u: ms for u, ms in sel.get("cost_units", {}).items() if len(ms) > 1}
    if shared:  # heads on one backbone share its forward pass, paid once
        print("  shared backbones: " + "; ".join(f"{u} ({', '.join(ms)})" for u, ms in shared.items()))


def match(a: argparse.Namespace) -> int:
    """Every name gets a line and a JSON object, matched or not; the batch is never refused over one
    name (a task to solve is checked strictly by `plan`)."""
    from mll.solve.task import load_matcher

    _, matcher = load_matcher(Path(a.sdag), Path(a.hub), Path(a.labels), cache_dir())
    results = matcher.match(a.names, top=a.top)
    for m in results:
        chosen = f"{m.synset} {m.synset_name}" if m.synset else f"none ({m.problem})"
        nested = f"  (nested in {', '.join(m.nested_in)})" if m.nested_in else ""
        print(f"{m.name!r} -> {chosen}  [{m.method}]{nested}")
        for c in m.candidates:
            covered = "covered" if c.covered else "       "
            how = f"{c.via}, for {c.widened_from}" if c.widened_from else c.via
            print(f"    {c.score:6.3f}  {c.id} {c.name:24s} {covered}  [{how}] {c.definition[:60]}")
    write_json([m.to_dict() for m in results], a.json)
    unmatched = sum(m.synset is None for m in results)
    if unmatched:
        print(f"{unmatched} of {len(results)} name(s) unmatched", file=sys.stderr)
    return 0


def evaluate(a: argparse.Namespace) -> int:
    ctx = _context(a)
    with tqdm(desc="run models", unit="model", leave=False) as bar:
        rep = evaluate_folder(ctx, Path(a.task_dir), progress=bar.update)
    print(f"accuracy {rep['accuracy']:.4f} on {rep['n_images']} images ({len(rep['per_class'])} classes)")
    print(f"  {'class':20s} {'matched synset':28s} {'n':>5s} {'acc':>6s}  {'mode':10s}  answered by")
    for n, pc in rep["per_class"].items():
        acc = f"{pc['accuracy']:.3f}" if pc["accuracy"] is not None else "  -  "
        mode = pc.get("mode") or "-"
        print(f"  {n:20s} {rep['matched_names'][n]!s:28s} {pc['n']:5d} {acc:>6s}  {mode:10s}  {pc['answered_by']}")
    print("selection:")
    _print_selection(rep["details"], a.explain)
    ad = rep.get("adaptation")
    if ad:
        what = (
            f"reweighted the node data (effective {ad['effective_node_images']:.0f} node images)"
            if ad["reweighted"]
            else "node data kept as is"
        )
        print(f"adaptation: task images vs node data AUROC {ad['auroc']:.3f} (z {ad['z']:.1f}): {what}")
    if rep["skipped_images"]:
        first = "; ".join(list(rep["skipped_images"].values())[:3])
        print(f"skipped {len(rep['skipped_images'])} unreadable image(s): {first}")
    write_json(rep, a.json)
    if not a.no_track:
        log_task_run(
            "eval",
            list(rep["per_class"]),
            rep["matched"],
            rep["details"],
            {"accuracy": rep["accuracy"], "n_images": rep["n_images"]},
        )
    return 0


def solve(a: argparse.Namespace) -> int:
    names = [c.strip() for c in a.classes.split(",")]
    ctx = _context(a)
    with tqdm(desc="run models", unit="model", leave=False) as bar:
        rows, p = solve_folder(ctx, names, Path(a.images), progress=bar.update)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    with open(a.out, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["path", "predicted", "score", "model"])
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {len(rows)} predictions to {a.out}")
    selection = p.selection.to_dict()
    if a.explain:
        _print_selection(selection, True)
    if not a.no_track:
        log_task_run("solve", p.names, {m.name: m.synset for m in p.matches}, selection, {"n_images": len(rows)})
    return 0

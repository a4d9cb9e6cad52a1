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
            "patch" if c["patched"] else "NONE (uncovered)"
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


def _before_running(a: argparse.Namespace):
    """What the CLI does with a plan before any model runs: `--strict` refuses a class no head covers,
    and the classes expected to be weak are printed with the reason (stderr: the report stays clean)."""
    from mll.solve.task import check_strict, weak_classes

    def hook(p) -> None:
        if getattr(a, "strict", False):
            check_strict(p)
        for w in weak_classes(p):
            print(f"warning: class {w['class']!r} may be weak ({w['kind']}): {w['reason']}", file=sys.stderr)

    return hook


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
    if a.save:
        from mll.serve.registry import model_name

        model_name(a.save)  # a bad name fails before the evaluation
    with tqdm(desc="run models", unit="model", leave=False) as bar:
        rep = evaluate_folder(ctx, Path(a.task_dir), progress=bar.update, on_plan=_before_running(a))
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
            per_class={n: pc["accuracy"] for n, pc in rep["per_class"].items()},
        )
    if a.save:  # the inductive solution of these class names (the task's images are not baked in)
        from mll.solve.task import plan

        _save(ctx, plan(ctx, list(rep["per_class"])), a.save)
    return 0


def _save(ctx: Context, p, name: str) -> None:
    """Keep plan `p` as solution `name`: a self-contained folder, logged and registered in MLflow
    as `mll-task-NAME` with alias `champion` (`mll.serve`)."""
    import tempfile
    import time

    from mll.serve.registry import model_name, register_solution
    from mll.serve.solution import save_solution

    model_name(name)  # a bad name fails before any work
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mll-solution-") as tmp:
        folder = save_solution(ctx, p, name, Path(tmp) / name)
        info = register_solution(folder, name)
    est = p.selection.estimated_accuracy
    print(
        f"saved solution {name}: registered {info['name']} version {info['version']} as @champion "
        f"({len(p.combiner.models) if p.combiner else 0} experts, estimated accuracy "
        f"{'-' if est is None else f'{est:.3f}'}, {time.perf_counter() - t0:.1f} s); serve it with\n"
        f"  mlflow models serve -m {info['uri']} --env-manager local -h 127.0.0.1 -p 5001"
    )


def solve(a: argparse.Namespace) -> int:
    names = [c.strip() for c in a.classes.split(",")]
    if not a.images and not a.save:
        raise ValueError("give --images DIR (and --out CSV) to predict, or --save NAME to keep the solved task")
    if a.images and not a.out:
        raise ValueError("--images needs --out CSV for the predictions")
    ctx = _context(a)
    if not a.images:  # inductive: the selection and combiner need no images
        from mll.solve.task import plan

        p = plan(ctx, names)
        _before_running(a)(p)
        if a.explain:
            _print_selection(p.selection.to_dict(), True)
        _save(ctx, p, a.save)
        return 0
    with tqdm(desc="run models", unit="model", leave=False) as bar:
        rows, p = solve_folder(ctx, names, Path(a.images), progress=bar.update, on_plan=_before_running(a))
    _write_rows(rows, Path(a.out), ["path", "predicted", "score", "model"])
    print(f"wrote {len(rows)} predictions to {a.out}")
    selection = p.selection.to_dict()
    if a.explain:
        _print_selection(selection, True)
    if not a.no_track:
        log_task_run("solve", p.names, {m.name: m.synset for m in p.matches}, selection, {"n_images": len(rows)})
    if a.json:
        from mll.solve.task import weak_classes

        write_json({"classes": p.names, "weak_classes": weak_classes(p), "selection": selection}, a.json)
    if a.save:
        _save(ctx, p, a.save)  # adapted to these images when solve.adapt is on (recorded in the solution)
    return 0


def _write_rows(rows: list[dict], out: Path, fields: list[str]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)


def predict_saved(a: argparse.Namespace) -> int:
    """`mll predict --solution NAME --images DIR --out CSV`: the registered solution's answers."""
    import time

    from mll.serve.pyfunc import SolutionModel
    from mll.serve.registry import load_solution_model, model_name
    from mll.solve.folders import list_images, open_images

    model = load_solution_model(a.solution)
    inner: SolutionModel = model.unwrap_python_model()
    stale = inner.solution.stale_experts(Path(a.hub)) if Path(a.hub).is_dir() and not a.allow_stale else {}
    if stale:
        what = ", ".join(f"{m} ({why})" for m, why in sorted(stale.items()))
        classes = ",".join(inner.solution.classes)
        raise ValueError(
            f"solution {a.solution} was saved with experts that changed in {a.hub}: {what}; re-solve it with "
            f'`mll solve --classes "{classes}" --save {a.solution}` (or --allow-stale to use the saved copies)'
        )
    paths = list_images(Path(a.images))
    images, ok, skipped = open_images(paths)
    t0 = time.perf_counter()
    answers = inner.solution.answer(images, device=a.device or "cpu") if images else []
    rows = [
        {"path": paths[i], "predicted": r["predicted"], "probability": round(r["probability"], 4), "model": r["model"]}
        for i, r in zip(ok, answers, strict=True)
    ]
    for path, why in skipped.items():
        rows.append({"path": path, "predicted": "", "probability": float("nan"), "model": f"skipped: {why}"})
    _write_rows(rows, Path(a.out), ["path", "predicted", "probability", "model"])
    print(
        f"{model_name(a.solution)}@champion: wrote {len(rows)} predictions to {a.out} "
        f"({len(images)} images in {time.perf_counter() - t0:.1f} s, {len(skipped)} unreadable)"
    )
    return 0

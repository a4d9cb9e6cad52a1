"""The `mll` command line. `main(argv)` is callable from tests; user errors exit 2 with one line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mll.env import apply_offline_defaults


class UserError(Exception):
    """Bad input from the user: reported as one line, never as a traceback."""


# Exceptions that mean "the input or the setup is wrong", reported as one line.
def _user_errors() -> tuple[type[BaseException], ...]:
    from mll.hub.cards import CardError
    from mll.data.images import ImageError
    from mll.solve.matching import MatchError
    from mll.data.validation import ValidationError
    from mll.data.wordnet import WordNetMissingError

    from mll.labels.run import LabelingFailed

    return (UserError, CardError, MatchError, LabelingFailed, ValueError, KeyError, FileNotFoundError, PermissionError, ImageError,
            ValidationError, WordNetMissingError, IsADirectoryError, NotADirectoryError)


def _err_text(exc: BaseException) -> str:
    msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    return " ".join(str(msg).split())


# --- sdag ---------------------------------------------------------------------------------------
def _cmd_sdag_build(a: argparse.Namespace) -> int:
    from mll.config import SdagParams, load_section
    from mll.data.stages import sdag_stage

    params = load_section("sdag", a.params) if Path(a.params).is_file() else SdagParams()
    if a.scope:
        params = SdagParams(scope=a.scope)
    vocab = None
    if a.vocab:
        vocab = [ln.split()[0] for ln in Path(a.vocab).read_text().splitlines() if ln.strip()]
    sdag_stage(params, Path(a.out), vocab)
    return 0


def _cmd_sdag_show(a: argparse.Namespace) -> int:
    from mll.data.sdag import SDAG

    g = SDAG.load(Path(a.sdag))
    hits = g.lookup(a.node)
    if not hits:
        raise UserError(f"{a.node!r} names no SDAG node; try a synset id (n02084071), a name (dog.n.01) or a noun")
    node = hits[0]
    attrs = g.node(node)
    print(f"{node}  {attrs['name']}  (depth {attrs['depth']})")
    print(f"  lemmas:     {', '.join(attrs['lemmas'])}")
    print(f"  definition: {attrs['definition']}")
    print(f"  children:   {len(g.children(node))}   descendants: {len(g.descendants(node))}")
    print("  path to root: " + " > ".join(f"{g.name(n)}" for n in reversed(g.path_to_root(node))))
    if len(hits) > 1:
        print(f"  other senses: {', '.join(f'{h} {g.name(h)}' for h in hits[1:6])}")
    return 0



# --- hub ----------------------------------------------------------------------------------------
def _load_sdag_or_none(path: str):
    from mll.data.sdag import SDAG

    try:
        return SDAG.load(Path(path))
    except FileNotFoundError:
        return None


def _labels_root() -> Path:
    from mll.paths import project_root

    return project_root() / "labels"


def _is_labeled(name: str) -> bool:
    return (_labels_root() / name / "summary.json").is_file()


def _cmd_hub_list(a: argparse.Namespace) -> int:
    from mll.hub.store import Hub, coverage_summary

    hub = Hub(Path(a.hub) if a.hub else None)
    cards, bad = hub.cards()
    if not cards and not bad:
        print(f"hub {hub.root} is empty; `mll hub add ...` or `make demo` fills it")
        return 0
    sdag = _load_sdag_or_none(a.sdag)
    rows = [("NAME", "SOURCE", "CLASSES", "COVERS", "LABELED")]
    for c in cards:
        cov = coverage_summary(c, sdag) if sdag else "(no SDAG: run `mll sdag build`)"
        rows.append((c.name, c.source, str(c.num_classes), cov, "yes" if _is_labeled(c.name) else "no"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(x.ljust(w) for x, w in zip(r, widths)).rstrip())
    for name, reason in bad.items():
        print(f"{name}: INVALID ({reason})")
    print(f"{len(cards)} models" + (f", {len(bad)} invalid" if bad else ""))
    return 1 if bad else 0


def _cmd_hub_show(a: argparse.Namespace) -> int:
    from mll.hub.store import Hub

    hub = Hub(Path(a.hub) if a.hub else None)
    card = hub.card(a.name)
    sdag = _load_sdag_or_none(a.sdag)
    print(f"{card.name}: {card.description or card.architecture}")
    print(f"  source:       {card.source} ({card.architecture})")
    print(f"  weights:      {card.weights}  sha256 {card.weights_sha256[:16]}...")
    i = card.input
    print(f"  input:        {i.size}x{i.size}, {i.channels} channel(s), mean {list(i.mean)}, std {list(i.std)}, "
          f"{i.interpolation}, crop {i.crop_pct}")
    print(f"  license:      {card.license}")
    for k, v in card.provenance.items():
        print(f"  {k + ':':13s} {v}")
    if _is_labeled(card.name):
        _print_label(card.name)
    print(f"  classes ({card.num_classes}):")
    limit = card.num_classes if a.all else min(card.num_classes, 20)
    for k, h in enumerate(card.head[:limit]):
        sname = sdag.name(h.synset) if sdag and h.synset in sdag else ""
        print(f"    {k:4d}  {h.name:28s} {h.synset}  {sname}")
    if limit < card.num_classes:
        print(f"    ... {card.num_classes - limit} more (--all lists every class)")
    return 0


def _print_label(name: str) -> None:
    import json

    import pandas as pd

    folder = _labels_root() / name
    summ = json.loads((folder / "summary.json").read_text())

    def f(x):
        return "-" if x is None else f"{x:.3f}" if isinstance(x, float) else str(x)

    print(f"  label:        {summ['measured_nodes']}/{summ['covered_nodes']} covered nodes measured on "
          f"{summ['probe_images']} probe images ({summ['storage']} outputs, "
          f"{sum(summ.get('store_bytes', {}).values()) / 1024:.0f} KiB)")
    print(f"                mean recall {f(summ['mean_recall'])}, top-1 hit {f(summ['mean_top1_hit'])}, "
          f"false alarm {f(summ['mean_false_alarm'])} -> gated {f(summ['mean_gated_false_alarm'])}, "
          f"gate AUROC {f(summ['gate_auroc'])}, temperature {f(summ['temperature'])}")
    nodes = pd.read_parquet(folder / "nodes.parquet")
    heads = nodes[nodes.measured & (nodes.support >= 3) & (nodes.head_classes < nodes.head_classes.max())]
    if heads.empty:
        heads = nodes[nodes.measured & (nodes.support >= 3)]
    ranked = heads.sort_values(["top1_hit", "support"], ascending=[False, False])
    for title, part in (("best", ranked.head(3)), ("worst", ranked.tail(3).iloc[::-1])):
        text = ", ".join(f"{r.name.split('.')[0]} {r.top1_hit:.2f} (n={r.support})" for r in part.itertuples())
        print(f"  {title + ' concepts:':13s} {text}")


def _parse_map(items: list[str] | None) -> dict[str, str]:
    out = {}
    for it in items or []:
        name, sep, syn = it.rpartition("=")
        if not sep or not name or not syn:
            raise UserError(f"--map {it!r}: expected name=synset (e.g. sneaker=n04120489 or sneaker=gym_shoe.n.01)")
        out[name] = syn
    return out


def _cmd_hub_add(a: argparse.Namespace) -> int:
    from mll.hub.cards import InputConfig
    from mll.hub.store import Hub
    from mll.hub.sources import LITE_VARIANTS, import_efficientnet_lite, import_file, import_timm_pretrained

    hub = Hub(Path(a.hub) if a.hub else None)
    src = a.source
    if src in LITE_VARIANTS:
        card = import_efficientnet_lite(hub, src, name=a.name, overwrite=a.overwrite)
    elif src.startswith(("timm:", "hf-hub:")):
        card = import_timm_pretrained(hub, src, name=a.name, weights=Path(a.weights) if a.weights else None,
                                      overwrite=a.overwrite)
    else:
        if not a.name:
            raise UserError("give the new model a name: --name NAME")
        classes = [c.strip() for c in (a.classes or "").split(",") if c.strip()]
        if a.classes_file:
            classes = [ln.strip() for ln in Path(a.classes_file).read_text().splitlines() if ln.strip()]
        channels = a.channels
        mean = tuple(a.mean) if a.mean else ((0.5,) if channels == 1 else (0.485, 0.456, 0.406))
        std = tuple(a.std) if a.std else ((0.5,) if channels == 1 else (0.229, 0.224, 0.225))
        cfg = InputConfig(size=a.input_size, channels=channels, mean=mean, std=std, interpolation=a.interpolation,
                          crop_pct=a.crop_pct)
        card = import_file(hub, a.name, Path(src), classes, arch=a.arch, torchscript=a.torchscript, input_cfg=cfg,
                           overrides=_parse_map(a.map), license=a.license, overwrite=a.overwrite)
    print(f"added {card.name}: {card.num_classes} classes, {card.source} ({card.architecture}) -> {hub.root / card.name}")
    print("label it with `mll label` (only the new model is labeled)")
    return 0


def _cmd_hub_remove(a: argparse.Namespace) -> int:
    from mll.hub.store import Hub

    path = Hub(Path(a.hub) if a.hub else None).remove(a.name)
    print(f"removed {a.name} ({path})")
    return 0


# --- label --------------------------------------------------------------------------------------
def _check_labels(a: argparse.Namespace) -> int:
    """Validate every stored label of the hub with great_expectations; fail if one is missing or bad."""
    import pandas as pd

    from mll.hub.store import Hub
    from mll.labels.compute import read_summary
    from mll.data.sdag import SDAG
    from mll.data.validation import check_label_table

    sdag = SDAG.load(Path(a.sdag))
    names = a.models or Hub(Path(a.hub)).names()
    missing = [n for n in names if read_summary(Path(a.labels), n) is None]
    if missing:
        raise UserError(f"no label for {', '.join(missing)}; run `mll label`")
    for n in names:
        check_label_table(pd.read_parquet(Path(a.labels) / n / "nodes.parquet"), sdag.__contains__, n)
    print(f"{len(names)} labels pass the great_expectations suite")
    return 0


def _cmd_label(a: argparse.Namespace) -> int:
    from dataclasses import replace

    from mll.config import LabelParams, load_section
    from mll.labels.run import label_stage

    if a.check:
        return _check_labels(a)
    params = load_section("label", a.params) if Path(a.params).is_file() else LabelParams()
    over = {k: v for k, v in dict(device=a.device, batch_size=a.batch_size).items() if v is not None}
    if a.no_track:
        over["track"] = False
    params = replace(params, **over)
    report = label_stage(params, hub_root=Path(a.hub), probe_path=Path(a.probe), sdag_path=Path(a.sdag),
                         labels_root=Path(a.labels), summary_path=Path(a.summary) if a.summary else None,
                         models=a.models or None, force=a.force)
    if report["forward_seconds"]:
        print(f"overhead: labeling wall time is {report['overhead_ratio']:.2f}x the models' pure forward time")
    return 0


# --- match / eval / solve -------------------------------------------------------------------------
def _solve_context(a: argparse.Namespace):
    from dataclasses import replace

    from mll.config import SolveParams, load_section
    from mll.paths import cache_dir
    from mll.solve.task import Context

    cfg = load_section("solve", a.params) if Path(a.params).is_file() else SolveParams()
    if getattr(a, "device", None):
        cfg = replace(cfg, device=a.device)
    return Context.load(Path(a.sdag), Path(a.hub), Path(a.labels), cfg, cache_dir=cache_dir())


def _write_json(data, path: str | None) -> None:
    if path:
        import json

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(data, indent=2, default=str) + "\n")


def _cmd_match(a: argparse.Namespace) -> int:
    from mll.solve.matching import MatchError  # noqa: F401

    ctx = _solve_context(a)
    results = ctx.matcher.match(a.names, top=a.top)
    for m in results:
        chosen = f"{m.synset} {ctx.sdag.name(m.synset)}" if m.synset else "none"
        print(f"{m.name!r} -> {chosen}  [{m.method}]" + (f"  (nested in {', '.join(m.nested_in)})" if m.nested_in else ""))
        for c in m.candidates:
            print(f"    {c.score:6.3f}  {c.id} {c.name:24s} {'covered' if c.covered else '       '}  {c.definition[:60]}")
    _write_json([m.to_dict() for m in results], a.json)
    return 0


def _print_selection(sel, explain: bool) -> None:
    for c in sel.classes:
        models = ", ".join(f"{m}[{'/'.join(c.head_classes.get(m, [])[:3])}]" for m in c.models) or (
            "VLM patch" if c.patched else "NONE (uncovered)")
        est = f"{c.estimated_accuracy:.2f}" if c.estimated_accuracy is not None else "  - "
        print(f"  {c.name:20s} -> {models}  est {est}")
        if explain:
            print(f"      why: {c.why}")
            for cand in c.candidates:
                print(f"      candidate {cand['model']}: prune score {cand['prune_score']:.3f}, "
                      f"gated recall {cand['gated_recall']:.3f}, gated false alarm {cand['gated_false_alarm']:.3f}")
    est = f"{sel.estimated_accuracy:.3f}" if sel.estimated_accuracy is not None else "-"
    print(f"  models run: {len(sel.models)} ({', '.join(sel.models)}); solver {sel.solver}; combiner {sel.combiner}; "
          f"estimated accuracy on node data {est}")


def _track_task(kind: str, names: list[str], matched: dict, selection: dict, metrics: dict) -> None:
    from mll.tracking import start_run

    with start_run(kind, f"{kind}-{len(names)}-classes") as t:
        t.log_params({"classes": ",".join(names)[:5000], "n_classes": len(names)})
        t.log_dict({"matched": matched, "selection": selection}, "selection.json")
        t.log_metrics(metrics)


def _cmd_eval(a: argparse.Namespace) -> int:
    from tqdm import tqdm

    from mll.solve.task import evaluate_folder

    ctx = _solve_context(a)
    with tqdm(desc="run models", unit="model", leave=False) as bar:
        rep = evaluate_folder(ctx, Path(a.task_dir), progress=bar.update)
    print(f"accuracy {rep['accuracy']:.4f} on {rep['n_images']} images ({len(rep['per_class'])} classes)")
    print(f"  {'class':20s} {'matched synset':28s} {'n':>5s} {'acc':>6s}  answered by")
    for n, pc in rep["per_class"].items():
        acc = f"{pc['accuracy']:.3f}" if pc["accuracy"] is not None else "  -  "
        print(f"  {n:20s} {str(rep['matched_names'][n]):28s} {pc['n']:5d} {acc:>6s}  {pc['answered_by']}")
    from mll.solve.chco import Selection  # noqa: F401

    print("selection:")
    _print_selection(_selection_from(rep["details"]), a.explain)
    ad = rep.get("adaptation")
    if ad:
        what = (f"reweighted the node data (effective {ad['effective_node_images']:.0f} node images)" if ad["reweighted"]
                else "node data kept as is")
        print(f"adaptation: task images vs node data AUROC {ad['auroc']:.3f} (z {ad['z']:.1f}): {what}")
    if rep["skipped_images"]:
        print(f"skipped {len(rep['skipped_images'])} unreadable image(s): " + "; ".join(list(rep["skipped_images"].values())[:3]))
    _write_json(rep, a.json)
    if not a.no_track:
        _track_task("eval", list(rep["per_class"]), rep["matched"], rep["details"],
                    {"accuracy": rep["accuracy"], "n_images": rep["n_images"]})
    return 0


def _selection_from(d: dict):
    from mll.solve.chco import ClassChoice, Selection

    classes = [ClassChoice(**c) for c in d["classes"]]
    return Selection(**{**d, "classes": classes})


def _cmd_solve(a: argparse.Namespace) -> int:
    import csv

    from tqdm import tqdm

    from mll.solve.task import solve_folder

    names = [c.strip() for c in a.classes.split(",")]
    ctx = _solve_context(a)
    with tqdm(desc="run models", unit="model", leave=False) as bar:
        rows, p = solve_folder(ctx, names, Path(a.images), progress=bar.update)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    with open(a.out, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["path", "predicted", "score", "model"])
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {len(rows)} predictions to {a.out}")
    if a.explain:
        _print_selection(p.selection, True)
    if not a.no_track:
        _track_task("solve", p.names, {m.name: m.synset for m in p.matches}, p.selection.to_dict(),
                    {"n_images": len(rows)})
    return 0

# --- data ---------------------------------------------------------------------------------------
def _cmd_data_split(a: argparse.Namespace) -> int:
    from mll.config import load_section
    from mll.data.stages import data_stage

    data_stage(load_section("data", a.params), Path(a.out), Path(a.summary))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mll", description="Model Label Learning: zero-shot tasks from a hub of experts.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sd = sub.add_parser("sdag", help="build and inspect the Semantic DAG of WordNet concepts")
    sds = sd.add_subparsers(dest="sub", required=True, metavar="SUBCOMMAND")
    b = sds.add_parser("build", help="build the SDAG from WordNet and save it")
    b.add_argument("--out", default="data/sdag", help="output folder (default: data/sdag)")
    b.add_argument("--scope", choices=["all", "closure"], help="override sdag.scope from params.yaml")
    b.add_argument("--vocab", help="file of synset ids (first column) for --scope closure")
    b.add_argument("--params", default="params.yaml")
    b.set_defaults(func=_cmd_sdag_build)
    s = sds.add_parser("show", help="print a node: path to the root, definition, children")
    s.add_argument("node", help="synset id (n02084071), synset name (dog.n.01) or noun (dog)")
    s.add_argument("--sdag", default="data/sdag", help="SDAG folder (default: data/sdag)")
    s.set_defaults(func=_cmd_sdag_show)

    h = sub.add_parser("hub", help="list, inspect, add and remove hub models")
    hs = h.add_subparsers(dest="sub", required=True, metavar="SUBCOMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--hub", help="hub folder (default: models/)")
    common.add_argument("--sdag", default="data/sdag", help="SDAG folder for concept names (default: data/sdag)")
    hl = hs.add_parser("list", parents=[common], help="one line per model: source, classes, concepts, labeled")
    hl.set_defaults(func=_cmd_hub_list)
    hsh = hs.add_parser("show", parents=[common], help="a model's card and its classes with synsets")
    hsh.add_argument("name")
    hsh.add_argument("--all", action="store_true", help="list every class (default: the first 20)")
    hsh.set_defaults(func=_cmd_hub_show)
    ha = hs.add_parser("add", parents=[common], help="register a model from a file, a timm id or a packaged model",
                       description="SOURCE is efficientnet-lite0|1|2 (packaged ImageNet weights), timm:<id> "
                                   "(timm / Hugging Face pretrained id, from the local cache or --weights), or a "
                                   "weights file: .safetensors/.pth with --arch, or TorchScript with --torchscript.")
    ha.add_argument("source")
    ha.add_argument("--name", help="hub name for the model (required for files)")
    ha.add_argument("--weights", help="local weights for a timm: id (offline)")
    ha.add_argument("--arch", help="timm architecture of a .safetensors/.pth file")
    ha.add_argument("--torchscript", action="store_true", help="the file is a TorchScript archive")
    ha.add_argument("--classes", help="comma-separated head classes, in output order")
    ha.add_argument("--classes-file", help="file with one head class per line, in output order")
    ha.add_argument("--map", nargs="*", metavar="NAME=SYNSET", help="explicit synsets for ambiguous class names")
    ha.add_argument("--input-size", type=int, default=224)
    ha.add_argument("--channels", type=int, choices=[1, 3], default=3)
    ha.add_argument("--mean", type=float, nargs="+")
    ha.add_argument("--std", type=float, nargs="+")
    ha.add_argument("--interpolation", default="bilinear", choices=["bilinear", "bicubic", "nearest"])
    ha.add_argument("--crop-pct", type=float, default=1.0)
    ha.add_argument("--license", default="unknown")
    ha.add_argument("--overwrite", action="store_true", help="replace a model of the same name")
    ha.set_defaults(func=_cmd_hub_add)
    hr = hs.add_parser("remove", parents=[common], help="delete a model from the hub")
    hr.add_argument("name")
    hr.set_defaults(func=_cmd_hub_remove)

    lb = sub.add_parser("label", help="label hub models on the probe split (only models whose label is stale)")
    lb.add_argument("models", nargs="*", help="models to label (default: the whole hub)")
    lb.add_argument("--force", action="store_true", help="relabel even when the stored label is current")
    lb.add_argument("--device", help="auto | cpu | cuda[:N] (default from params.yaml)")
    lb.add_argument("--batch-size", type=int)
    lb.add_argument("--no-track", action="store_true", help="do not log MLflow runs")
    lb.add_argument("--check", action="store_true", help="only validate the stored labels (great_expectations)")
    lb.add_argument("--hub", default="models")
    lb.add_argument("--probe", default="data/splits/probe.parquet")
    lb.add_argument("--sdag", default="data/sdag")
    lb.add_argument("--labels", default="labels")
    lb.add_argument("--summary", default="reports/labels_summary.json")
    lb.add_argument("--params", default="params.yaml")
    lb.set_defaults(func=_cmd_label)

    ctxp = argparse.ArgumentParser(add_help=False)
    ctxp.add_argument("--hub", default="models")
    ctxp.add_argument("--labels", default="labels")
    ctxp.add_argument("--sdag", default="data/sdag")
    ctxp.add_argument("--params", default="params.yaml")
    mt = sub.add_parser("match", parents=[ctxp], help="how class names map to SDAG nodes (no solving)")
    mt.add_argument("names", nargs="+", help="class names as a user types them; name=synset overrides")
    mt.add_argument("--top", type=int, default=5, help="candidates to list per name")
    mt.add_argument("--json", help="write the matches as JSON")
    mt.set_defaults(func=_cmd_match)
    ev = sub.add_parser("eval", parents=[ctxp], help="solve an ImageFolder task zero-shot and score it")
    ev.add_argument("--task-dir", required=True, help="one sub-folder per class, named as the class")
    ev.add_argument("--json", help="write the report as JSON")
    ev.add_argument("--explain", action="store_true", help="print why each head was chosen")
    ev.add_argument("--device")
    ev.add_argument("--no-track", action="store_true", help="do not log an MLflow run")
    ev.set_defaults(func=_cmd_eval)
    so = sub.add_parser("solve", parents=[ctxp], help="predict classes for a folder of images zero-shot")
    so.add_argument("--classes", required=True, help='comma-separated class names, e.g. "sneaker,bag,7"')
    so.add_argument("--images", required=True, help="folder of images (searched recursively)")
    so.add_argument("--out", required=True, help="CSV: path, predicted, score, model")
    so.add_argument("--explain", action="store_true")
    so.add_argument("--device")
    so.add_argument("--no-track", action="store_true")
    so.set_defaults(func=_cmd_solve)

    d = sub.add_parser("data", help="dataset splits")
    dss = d.add_subparsers(dest="sub", required=True, metavar="SUBCOMMAND")
    sp = dss.add_parser("split", help="write expert_train / probe / target_test manifests")
    sp.add_argument("--out", default="data/splits")
    sp.add_argument("--summary", default="reports/data_summary.json")
    sp.add_argument("--params", default="params.yaml")
    sp.set_defaults(func=_cmd_data_split)
    return p


def main(argv: list[str] | None = None) -> int:
    apply_offline_defaults()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except _user_errors() as exc:
        print(f"mll: error: {_err_text(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mll: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `mll hub list | head`: not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())

"""The `mll` argument parser: every command, flag and default, and which handler runs it.

Handlers are named `module:function` within mll.cli and imported only when their command runs:
the command modules import torch, pandas and MLflow at their top, and `mll --help` must not wait
for them. This module imports nothing but argparse and mll.cli.common.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable

from mll.cli.common import default_labels


def _handler(target: str) -> Callable[[argparse.Namespace], int]:
    """`module:function` of mll.cli as a handler that imports its module on the first call."""
    module, _, name = target.partition(":")

    def run(args: argparse.Namespace) -> int:
        return getattr(importlib.import_module(f"mll.cli.{module}"), name)(args)

    run.__qualname__ = f"mll.cli.{module}.{name}"
    return run


def _labels_option(p: argparse.ArgumentParser) -> None:
    """`--labels`, one default for every command that reads or writes labels."""
    p.add_argument("--labels", default=default_labels(), help="labels folder (default: the project's labels/)")


def _sdag(sub) -> None:
    sd = sub.add_parser("sdag", help="build and inspect the Semantic DAG of WordNet concepts")
    sds = sd.add_subparsers(dest="sub", required=True, metavar="SUBCOMMAND")
    b = sds.add_parser("build", help="build the SDAG from WordNet and save it")
    b.add_argument("--out", default="data/sdag", help="output folder (default: data/sdag)")
    b.add_argument("--scope", choices=["all", "closure"], help="override sdag.scope from params.yaml")
    b.add_argument("--vocab", help="file of synset ids (first column) for --scope closure")
    b.add_argument("--params", default="params.yaml")
    b.set_defaults(func=_handler("data:build_sdag"))
    s = sds.add_parser("show", help="print a node: path to the root, definition, children")
    s.add_argument("node", help="synset id (n02084071), synset name (dog.n.01) or noun (dog)")
    s.add_argument("--sdag", default="data/sdag", help="SDAG folder (default: data/sdag)")
    s.set_defaults(func=_handler("data:show_node"))


def _hub(sub) -> None:
    h = sub.add_parser("hub", help="list, inspect, add and remove hub models")
    hs = h.add_subparsers(dest="sub", required=True, metavar="SUBCOMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--hub", help="hub folder (default: models/)")
    common.add_argument("--sdag", default="data/sdag", help="SDAG folder for concept names (default: data/sdag)")
    hl = hs.add_parser(
        "list",
        parents=[common],
        help="one line per model: domain, source, classes, tags, concepts, labeled; filters",
        description="One line per model, sorted by domain then name, and a footer counting models by "
        "domain and those tagged weak/redundant/noisy/misleading. Filters combine: a model is listed "
        "when it passes every one given.",
    )
    _labels_option(hl)
    hf = hl.add_argument_group("filters (combined: all must hold)")
    hf.add_argument("--domain", metavar="D", help="models of this domain (clothing, digits, clipart, photos, ...)")
    hf.add_argument("--source", metavar="S", help="models of this source kind (timm, efficientnet_lite, ...)")
    hf.add_argument("--backbone", metavar="B", help="heads on this shared backbone (efficientnet-lite0, ...)")
    hf.add_argument(
        "--tag",
        action="append",
        metavar="T",
        help="models tagged T or T:<anything> (--tag corrupted matches corrupted:blur); repeat: all must match",
    )
    hf.add_argument(
        "--concept",
        metavar="NAME",
        help="models with a head class at or below this SDAG concept: a word (dog), synset id or name",
    )
    hf.add_argument("--name", metavar="GLOB", help="model names matching this glob (fmnist-*)")
    hl.add_argument(
        "--json",
        nargs="?",
        const="-",
        metavar="PATH",
        help="the rows as a JSON list: to stdout instead of the table, or written to PATH",
    )
    hl.add_argument("--group-by", choices=["domain"], help="a header line before each domain's models")
    hl.set_defaults(func=_handler("hub:list_models"))
    hsh = hs.add_parser("show", parents=[common], help="a model's card and its classes with synsets")
    _labels_option(hsh)
    hsh.add_argument("name")
    hsh.add_argument("--all", action="store_true", help="list every class (default: the first 20)")
    hsh.set_defaults(func=_handler("hub:show_model"))
    ha = hs.add_parser(
        "add",
        parents=[common],
        help="register a model from a file, a timm id or a packaged model",
        description="SOURCE is efficientnet-lite0|1|2 (packaged ImageNet weights), timm:<id> "
        "(timm / Hugging Face pretrained id, from the local cache or --weights), or a "
        "weights file: .safetensors/.pth with --arch, or TorchScript with --torchscript. Preprocessing "
        "options left unset come from timm's data config for --arch (resolve_data_config), else 224 px, "
        "ImageNet mean/std, bilinear, no crop.",
    )
    ha.add_argument("source")
    ha.add_argument("--name", help="hub name for the model (required for files)")
    ha.add_argument("--weights", help="local weights for a timm: id (offline)")
    ha.add_argument("--arch", help="timm architecture of a .safetensors/.pth file")
    ha.add_argument("--torchscript", action="store_true", help="the file is a TorchScript archive")
    ha.add_argument("--classes", help="comma-separated head classes, in output order")
    ha.add_argument("--classes-file", help="file with one head class per line, in output order")
    ha.add_argument("--map", nargs="*", metavar="NAME=SYNSET", help="explicit synsets for ambiguous class names")
    # preprocessing: unset options come from timm's data config for --arch, else 224 px, ImageNet
    # mean/std, bilinear, crop 1.0
    ha.add_argument("--input-size", type=int, help="square input side (default: see above)")
    ha.add_argument("--channels", type=int, choices=[1, 3], default=3)
    ha.add_argument("--mean", type=float, nargs="+")
    ha.add_argument("--std", type=float, nargs="+")
    ha.add_argument("--interpolation", choices=["bilinear", "bicubic", "nearest"])
    ha.add_argument("--crop-pct", type=float)
    ha.add_argument("--license", default="unknown")
    ha.add_argument("--overwrite", action="store_true", help="replace a model of the same name")
    ha.add_argument(
        "--no-dvc", action="store_true", help="do not `dvc add` the weights (default: DVC-tracked inside a DVC repo)"
    )
    ha.set_defaults(func=_handler("hub:add_model"))
    hr = hs.add_parser("remove", parents=[common], help="delete a model from the hub")
    hr.add_argument("name")
    hr.set_defaults(func=_handler("hub:remove_model"))


def _label(sub) -> None:
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
    _labels_option(lb)
    lb.add_argument("--summary", default="reports/labels_summary.json")
    lb.add_argument("--params", default="params.yaml")
    lb.set_defaults(func=_handler("label:label"))


def _tasks(sub) -> None:
    ctxp = argparse.ArgumentParser(add_help=False)
    ctxp.add_argument("--hub", default="models")
    _labels_option(ctxp)
    ctxp.add_argument("--sdag", default="data/sdag")
    ctxp.add_argument("--params", default="params.yaml")
    mt = sub.add_parser("match", parents=[ctxp], help="how class names map to SDAG nodes (no solving)")
    mt.add_argument("names", nargs="+", help="class names as a user types them; name=synset overrides")
    mt.add_argument("--top", type=int, default=5, help="candidates to list per name")
    mt.add_argument("--json", help="write the matches as JSON")
    mt.set_defaults(func=_handler("tasks:match"))
    ev = sub.add_parser("eval", parents=[ctxp], help="solve an ImageFolder task zero-shot and score it")
    ev.add_argument("--task-dir", required=True, help="one sub-folder per class, named as the class")
    ev.add_argument("--json", help="write the report as JSON")
    ev.add_argument("--explain", action="store_true", help="print why each head was chosen")
    ev.add_argument("--device")
    ev.add_argument("--no-track", action="store_true", help="do not log an MLflow run")
    ev.add_argument("--strict", action="store_true", help="refuse a task with a class no hub head covers")
    ev.set_defaults(func=_handler("tasks:evaluate"))
    ev.add_argument("--save", metavar="NAME", help="also keep the solved task as MLflow model mll-task-NAME@champion")
    so = sub.add_parser(
        "solve", parents=[ctxp], help="predict classes for a folder of images zero-shot, or save the solved task"
    )
    so.add_argument("--classes", required=True, help='comma-separated class names, e.g. "sneaker,bag,7"')
    so.add_argument("--images", help="folder of images (searched recursively)")
    so.add_argument("--out", help="CSV: path, predicted, score, model (with --images)")
    so.add_argument(
        "--save",
        metavar="NAME",
        help="keep the solved task: register MLflow model mll-task-NAME@champion (self-contained: experts, "
        "combiner); without --images it is inductive",
    )
    so.add_argument("--explain", action="store_true")
    so.add_argument("--device")
    so.add_argument("--no-track", action="store_true")
    so.add_argument("--strict", action="store_true", help="refuse a task with a class no hub head covers")
    so.add_argument("--json", help="write the selection and the classes expected to be weak as JSON")
    so.set_defaults(func=_handler("tasks:solve"))
    pr = sub.add_parser("predict", help="answer a folder of images with a saved solution (mll solve --save)")
    pr.add_argument("--solution", required=True, metavar="NAME", help="the saved solution (mll-task-NAME@champion)")
    pr.add_argument("--images", required=True, help="folder of images (searched recursively)")
    pr.add_argument("--out", required=True, help="CSV: path, predicted, probability, model")
    pr.add_argument("--hub", default="models", help="refuse when this hub's copies of the experts changed")
    pr.add_argument("--allow-stale", action="store_true", help="use the saved experts even if the hub's changed")
    pr.add_argument("--device")
    pr.set_defaults(func=_handler("tasks:predict_saved"))


def _data(sub) -> None:
    d = sub.add_parser("data", help="dataset splits")
    dss = d.add_subparsers(dest="sub", required=True, metavar="SUBCOMMAND")
    sp = dss.add_parser("split", help="write expert_train / probe / target_test manifests")
    sp.add_argument("--out", default="data/splits")
    sp.add_argument("--summary", default="reports/data_summary.json")
    sp.add_argument("--params", default="params.yaml")
    sp.set_defaults(func=_handler("data:split"))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mll", description="Model Label Learning: zero-shot tasks from a hub of experts.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _sdag(sub)
    _hub(sub)
    _label(sub)
    _tasks(sub)
    _data(sub)
    return p

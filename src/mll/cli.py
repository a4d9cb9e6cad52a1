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
    from mll.images import ImageError
    from mll.validation import ValidationError
    from mll.wordnet import WordNetMissingError

    return (UserError, ValueError, KeyError, FileNotFoundError, PermissionError, ImageError,
            ValidationError, WordNetMissingError, IsADirectoryError, NotADirectoryError)


def _err_text(exc: BaseException) -> str:
    msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    return " ".join(str(msg).split())


# --- sdag ---------------------------------------------------------------------------------------
def _cmd_sdag_build(a: argparse.Namespace) -> int:
    from mll.config import SdagParams, load_section
    from mll.pipeline import sdag_stage

    params = load_section("sdag", SdagParams, a.params) if Path(a.params).is_file() else SdagParams()
    if a.scope:
        params = SdagParams(scope=a.scope)
    vocab = None
    if a.vocab:
        vocab = [ln.split()[0] for ln in Path(a.vocab).read_text().splitlines() if ln.strip()]
    sdag_stage(params, Path(a.out), vocab)
    return 0


def _cmd_sdag_show(a: argparse.Namespace) -> int:
    from mll.sdag import SDAG

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


# --- data ---------------------------------------------------------------------------------------
def _cmd_data_split(a: argparse.Namespace) -> int:
    from mll.config import DataParams, load_section
    from mll.pipeline import data_stage

    data_stage(load_section("data", DataParams, a.params), Path(a.out), Path(a.summary))
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

"""`mll sdag build|show` and `mll data split`."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from mll.cli.common import UserError
from mll.config import SdagParams, load_section
from mll.data.sdag import SDAG
from mll.data.stages import data_stage, sdag_stage


def build_sdag(a: argparse.Namespace) -> int:
    params = load_section("sdag", a.params) if Path(a.params).is_file() else SdagParams()
    if a.scope:
        params = replace(params, scope=a.scope)
    vocab = [ln.split()[0] for ln in Path(a.vocab).read_text().splitlines() if ln.strip()] if a.vocab else None
    sdag_stage(params, Path(a.out), vocab)
    return 0


def show_node(a: argparse.Namespace) -> int:
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


def split(a: argparse.Namespace) -> int:
    data_stage(load_section("data", a.params), Path(a.out), Path(a.summary))
    return 0

"""`mll hub list|show|add|remove`."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from mll.cli.common import UserError, write_json
from mll.data.sdag import SDAG
from mll.hub.backbones import backbone_names
from mll.hub.listing import HubFilter, footer, format_table, list_hub, resolve_concept
from mll.hub.sources import add_from_source, source_kinds
from mll.hub.store import Hub, coverage_summary
from mll.hub.versioning import track_weights
from mll.labels.run import label_overview
from mll.labels.store import read_summary


def _hub(a: argparse.Namespace) -> Hub:
    return Hub(Path(a.hub) if a.hub else None)


def _sdag_or_none(path: str) -> SDAG | None:
    try:
        return SDAG.load(Path(path))
    except FileNotFoundError:
        return None


def list_models(a: argparse.Namespace) -> int:
    hub = _hub(a)
    cards, bad = hub.cards()  # each card read once
    if not cards and not bad:
        print(f"hub {hub.root} is empty; `mll hub add ...` or `make demo` fills it")
        return 0
    sdag = _sdag_or_none(a.sdag)
    flt = HubFilter(domain=a.domain, source=a.source, backbone=a.backbone, tags=tuple(a.tag or ()), name=a.name)
    flt.check(cards, source_kinds(), backbone_names())
    if a.concept:
        if sdag is None:
            raise UserError(f"--concept needs the SDAG; there is none at {a.sdag} (`mll sdag build` makes it)")
        flt = replace(flt, concept=resolve_concept(sdag, a.concept, cards))
    labels = Path(a.labels)
    rows = list_hub(
        cards,
        flt,
        covers=(lambda c: coverage_summary(c, sdag)) if sdag else (lambda c: "-"),
        labeled=lambda name: read_summary(labels, name) is not None,
    )
    with_concept = flt.concept is not None
    if a.json is not None:
        data = [r.to_dict(with_concept) for r in rows]
        if a.json == "-":
            print(json.dumps(data, indent=2))
            for name, reason in bad.items():
                print(f"{name}: INVALID ({reason})", file=sys.stderr)
            return 1 if bad else 0
        write_json(data, a.json)
    if flt.concept is not None:
        print(flt.concept.describe())
    if rows:
        print("\n".join(format_table(rows, with_concept, group_by_domain=a.group_by == "domain")))
    for name, reason in bad.items():
        print(f"{name}: INVALID ({reason})")
    if sdag is None:
        print(f"(COVERS needs the SDAG: none at {a.sdag}; `mll sdag build` makes it)")
    print(footer(rows, len(cards), len(bad)))
    return 1 if bad else 0


def show_model(a: argparse.Namespace) -> int:
    card = _hub(a).card(a.name)
    sdag = _sdag_or_none(a.sdag)
    print(f"{card.name}: {card.description or card.architecture}")
    print(f"  source:       {card.source} ({card.architecture})")
    if card.backbone:  # the head's weights are in the folder; the backbone's are shared (mll.hub.backbones)
        print(f"  backbone:     {card.backbone} (shared; features computed once per image for every head on it)")
    print(f"  weights:      {card.weights}  sha256 {card.weights_sha256[:16]}...")
    print(f"  domain:       {card.domain or '-'}; tags: {', '.join(card.tags) or '-'}")
    i = card.input
    print(
        f"  input:        {i.size}x{i.size}, {i.channels} channel(s), mean {list(i.mean)}, std {list(i.std)}, "
        f"{i.interpolation}, crop {i.crop_pct}"
    )
    print(f"  license:      {card.license}")
    for k, v in card.provenance.items():
        print(f"  {k + ':':13s} {v}")
    overview = label_overview(Path(a.labels), card.name)
    if overview is not None:
        _print_label(overview)
    print(f"  classes ({card.num_classes}):")
    limit = card.num_classes if a.all else min(card.num_classes, 20)
    for k, h in enumerate(card.head[:limit]):
        sname = sdag.name(h.synset) if sdag and h.synset in sdag else ""
        print(f"    {k:4d}  {h.name:28s} {h.synset}  {sname}")
    if limit < card.num_classes:
        print(f"    ... {card.num_classes - limit} more (--all lists every class)")
    return 0


def _print_label(overview: dict) -> None:
    summ = overview["summary"]

    def f(x):
        return "-" if x is None else f"{x:.3f}" if isinstance(x, float) else str(x)

    print(
        f"  label:        {summ['measured_nodes']}/{summ['covered_nodes']} covered nodes measured on "
        f"{summ['probe_images']} probe images ({summ['storage']} outputs, "
        f"{sum(summ.get('store_bytes', {}).values()) / 1024:.0f} KiB)"
    )
    print(
        f"                mean recall {f(summ['mean_recall'])}, top-1 hit {f(summ['mean_top1_hit'])}, "
        f"false alarm {f(summ['mean_false_alarm'])} -> gated {f(summ['mean_gated_false_alarm'])}, "
        f"gate AUROC {f(summ['gate_auroc'])}, temperature {f(summ['temperature'])}"
    )
    for title in ("best", "worst"):
        text = ", ".join(f"{r['concept']} {r['top1_hit']:.2f} (n={r['support']})" for r in overview[title])
        print(f"  {title + ' concepts:':13s} {text}")


def _parse_map(items: list[str] | None) -> dict[str, str]:
    out = {}
    for it in items or []:
        name, sep, syn = it.rpartition("=")
        if not sep or not name or not syn:
            raise UserError(f"--map {it!r}: expected name=synset (e.g. sneaker=n04120489 or sneaker=gym_shoe.n.01)")
        out[name] = syn
    return out


def add_model(a: argparse.Namespace) -> int:
    hub = _hub(a)
    card = add_from_source(
        hub,
        a.source,
        name=a.name,
        weights=a.weights,
        arch=a.arch,
        torchscript=a.torchscript,
        classes=(a.classes or "").split(","),
        classes_file=a.classes_file,
        overrides=_parse_map(a.map),
        input_size=a.input_size,
        channels=a.channels,
        mean=a.mean,
        std=a.std,
        interpolation=a.interpolation,
        crop_pct=a.crop_pct,
        license=a.license,
        overwrite=a.overwrite,
    )
    print(
        f"added {card.name}: {card.num_classes} classes, {card.source} ({card.architecture}) -> {hub.root / card.name}"
    )
    if not a.no_dvc:  # the card goes to git, the weights to DVC (mll.hub.versioning)
        print(track_weights(hub.root / card.name, card.weights).advice())
    print("label it with `mll label` or `dvc repro label` (only the new model is labeled)")
    return 0


def remove_model(a: argparse.Namespace) -> int:
    hub = _hub(a)
    versioned = any(hub.path(a.name).glob("*.dvc"))  # added by `mll hub add` in a DVC repo
    path = hub.remove(a.name)
    print(f"removed {a.name} ({path})")
    if versioned:
        print(f"its card and .dvc file were in git: commit the removal with `git rm -r --cached {path}`")
    return 0

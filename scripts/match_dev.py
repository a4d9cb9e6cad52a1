"""Measure name matching on the development list `tests/data/match_dev_names.tsv`.

Each task of the list (names between blank lines) is matched together, as `mll match` would, against
the full SDAG and a hub like the demo's: ImageNet-1k heads plus the Fashion-MNIST and digit heads of
`data/class_synsets.csv` cover the graph, the probe classes (`class_synsets.csv`, `tuxpaint_synsets.csv`)
are the node data. The hub's own class names are left out on purpose: the ImageNet-derived names
would otherwise get an exact-name bonus for free. A name counts as right when the chosen synset is one
of the expected ones. The held-out split (sha1 of the name = 0 mod 3) is reported only with
`--split heldout` or `--split all`: tune on `dev`, read `heldout` once.

    python scripts/match_dev.py --sdag data/sdag [--split dev] [--errors] [--no-hub]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEV = REPO / "tests" / "data" / "match_dev_names.tsv"
MARKER = "# --- hand-written ---"


def read_tasks(path: Path = DEV) -> list[list[tuple[str, set[str], str]]]:
    """Tasks of (name, expected synset names, part) with part "imagenet" or "hand-written"."""
    tasks: list[list[tuple[str, set[str], str]]] = [[]]
    part = "imagenet"
    for line in path.read_text().splitlines():
        if line.startswith(MARKER):
            part = "hand-written"
        if not line.strip():
            tasks.append([])
        elif not line.startswith("#"):
            name, expected = line.split("\t")
            tasks[-1].append((name, set(expected.split("|")), part))
    return [t for t in tasks if t]


def split_of(name: str) -> str:
    return "heldout" if int(hashlib.sha1(name.encode()).hexdigest(), 16) % 3 == 0 else "dev"


def demo_hub() -> tuple[set[str], set[str], dict[str, set[str]]]:
    """(head synsets, node-data synsets, head names) of a hub like the demo's, from committed files."""
    import timm

    info = Path(timm.__file__).parent / "data" / "_info"
    heads = set(info.joinpath("imagenet_synsets.txt").read_text().split())
    node_data: set[str] = set()
    for f in ("class_synsets.csv", "tuxpaint_synsets.csv"):
        with open(REPO / "data" / f) as fh:
            node_data |= {r["synset"] for r in csv.DictReader(fh)}
    with open(REPO / "data" / "class_synsets.csv") as fh:
        rows = list(csv.DictReader(fh))
    heads |= {r["synset"] for r in rows}
    return heads, node_data, {}


def run(matcher, tasks, sdag) -> list[tuple[str, str | None, set[str], str]]:
    """(name, chosen synset name or None, expected, part) for every name of every task."""
    from mll.solve.matching import MatchError

    out = []
    for task in tasks:
        names = [n for n, _, _ in task]
        try:
            got = {i: m.synset for i, m in enumerate(matcher.match(names))}
        except MatchError:  # matchers before issue 13 refused a batch with one unmatched name
            ok = []
            for i, n in enumerate(names):
                try:
                    matcher.match([n])
                    ok.append(i)
                except MatchError:
                    pass
            got = dict.fromkeys(range(len(names)))
            if ok:
                res = matcher.match([names[i] for i in ok])
                got.update({i: m.synset for i, m in zip(ok, res)})
        for i, (n, exp, part) in enumerate(task):
            out.append((n, sdag.name(got[i]) if got[i] else None, exp, part))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sdag", default="data/sdag", help="an SDAG over all WordNet nouns (mll sdag build)")
    ap.add_argument("--file", type=Path, default=DEV)
    ap.add_argument("--split", choices=["dev", "heldout", "all"], default="dev")
    ap.add_argument("--no-hub", action="store_true", help="match against the bare SDAG (no coverage)")
    ap.add_argument("--errors", action="store_true", help="list the wrong names")
    a = ap.parse_args()
    from mll.data.sdag import SDAG
    from mll.paths import cache_dir
    from mll.solve.matching import Matcher

    sdag = SDAG.load(Path(a.sdag))
    heads, node_data, head_names = (set(), set(), {}) if a.no_hub else demo_hub()
    matcher = Matcher(
        sdag,
        covered=heads,
        embed_pool=node_data,
        cache_dir=cache_dir(),
        node_data=node_data,
        head_names=head_names,
    )
    t0 = time.perf_counter()
    rows = run(matcher, read_tasks(a.file), sdag)
    secs = time.perf_counter() - t0
    splits = ["dev", "heldout"] if a.split == "all" else [a.split]
    for s in splits:
        sel = [r for r in rows if split_of(r[0]) == s]
        right = [r for r in sel if r[1] in r[2]]
        parts = []
        for part in ("imagenet", "hand-written"):
            p = [r for r in sel if r[3] == part]
            parts.append(f"{part} {sum(r[1] in r[2] for r in p)}/{len(p)}")
        print(f"{s}: {len(right)}/{len(sel)} = {len(right) / max(len(sel), 1):.3f}  ({', '.join(parts)})")
        if a.errors:
            for n, got, exp, _ in sel:
                if got not in exp:
                    print(f"    {n!r:40s} -> {got}  (expected {'|'.join(sorted(exp))})")
    print(f"{len(rows)} names matched in {secs:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

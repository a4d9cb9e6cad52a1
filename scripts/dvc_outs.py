"""Keep the outs of dvc.yaml's one-process hub stages equal to the experts params.yaml lists.

Why: the `imagenet-experts` and `heads` stages build many experts in one process (one process per
expert would pay 15-20 s of imports each), so DVC cannot template their outs with `foreach`; the
lists are generated from `experts.imagenet` and `experts.heads` between marker comments instead:

    python scripts/dvc_outs.py --check   # exit 1 naming the stages whose outs are stale
    python scripts/dvc_outs.py --write   # rewrite the generated blocks (nothing else is touched)
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
_BLOCK = re.compile(
    r"(?P<head>( *)# generated from params\.yaml experts\.(?P<key>\w+) by scripts/dvc_outs\.py --write\n)"
    r"(?P<body>.*?)(?P<tail> *# end generated\n)",
    re.S,
)


def outs_block(names: list[str], indent: str) -> str:
    lines = []
    for n in names:
        lines += [
            f"{indent}- models/{n}/weights.safetensors\n",
            f"{indent}- models/{n}/card.yaml:\n",
            f"{indent}    cache: false\n",
        ]
    return "".join(lines)


def render(dvc_text: str, params: dict) -> str:
    experts = params.get("experts") or {}

    def sub(m: re.Match) -> str:
        names = list(experts.get(m["key"]) or {})
        return m["head"] + outs_block(names, m.group(2)) + m["tail"]

    return _BLOCK.sub(sub, dvc_text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="exit 1 when a generated outs block is stale")
    mode.add_argument("--write", action="store_true", help="rewrite the generated outs blocks in place")
    ap.add_argument("--root", type=Path, default=REPO)
    a = ap.parse_args(argv)
    dvc_yaml, params_yaml = a.root / "dvc.yaml", a.root / "params.yaml"
    text = dvc_yaml.read_text()
    new = render(text, yaml.safe_load(params_yaml.read_text()) or {})
    if a.check:
        if new != text:
            print("dvc.yaml: the hub stages' outs differ from params.yaml; fix: python scripts/dvc_outs.py --write")
            return 1
        print("dvc.yaml: the hub stages' outs match params.yaml")
        return 0
    if new != text:
        yaml.safe_load(new)  # never write a file DVC cannot read
        dvc_yaml.write_text(new)
    print(f"dvc.yaml: {'outs rewritten' if new != text else 'already up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

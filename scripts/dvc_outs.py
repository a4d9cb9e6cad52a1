"""Keep the outs of dvc.yaml's one-process model stages equal to the lists in params.yaml.

Why: the `experts`, `imagenet-experts`, `heads` and `oracles` stages build many models in one
process (one process per model would pay 15-20 s of imports each), so DVC cannot template their
outs with `foreach`; the
lists are generated from `experts.trained`, `experts.imagenet`, `experts.heads` and
`benchmark.oracles` between marker comments instead:

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
    r"(?P<head>( *)# generated from params\.yaml (?P<section>\w+)\.(?P<key>\w+) by scripts/dvc_outs\.py --write\n)"
    r"(?P<body>.*?)(?P<tail> *# end generated\n)",
    re.S,
)


FOLDER = {"experts": "models/{}", "benchmark": "oracles/oracle-{}"}  # params section -> model folder


def outs_block(folders: list[str], indent: str) -> str:
    lines = []
    for f in folders:
        lines += [
            f"{indent}- {f}/weights.safetensors\n",
            f"{indent}- {f}/card.yaml:\n",
            f"{indent}    cache: false\n",
        ]
    return "".join(lines)


def render(dvc_text: str, params: dict) -> str:
    def sub(m: re.Match) -> str:
        names = list((params.get(m["section"]) or {}).get(m["key"]) or {})
        folders = [FOLDER[m["section"]].format(n) for n in names]
        return m["head"] + outs_block(folders, m.group(2)) + m["tail"]

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

"""`python -m benchmarks [selection scale labeling input_size]`: run the named benchmarks (default: all but
input_size, which takes minutes)."""

from __future__ import annotations

import sys

from mll.env import apply_offline_defaults

apply_offline_defaults()

from benchmarks import input_size, labeling, scale, selection  # noqa: E402

BENCHES = {"selection": selection.run, "scale": scale.run, "labeling": labeling.run, "input_size": input_size.run}
DEFAULT = ("selection", "scale", "labeling")  # `make bench`; input_size (minutes) only when named


def main(argv: list[str]) -> int:
    names = argv or list(DEFAULT)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {list(BENCHES)}", file=sys.stderr)
        return 2
    for n in names:
        print(f"== {n} ==")
        BENCHES[n]()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

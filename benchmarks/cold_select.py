"""One CHCO selection in a fresh process, as `mll eval` pays it: `python -m benchmarks.cold_select DIR TASK SOLVER`.

DIR is a hub written by `mll.bench.synthetic.write_synthetic_hub`; TASK a JSON file with the task's
names and targets. Prints one JSON line: seconds for the imports, the SDAG load, the cards, the
label index load and the selection (with its stages, and the CPU time of both), and the selection
itself (without timings),
so the caller can check it is the one an in-memory index gives.
"""

from __future__ import annotations

import time

T0 = time.perf_counter()

import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from mll.bench.synthetic import SyntheticCards  # noqa: E402
from mll.data.sdag import SDAG  # noqa: E402
from mll.labels.index import LabelIndex  # noqa: E402
from mll.solve.chco import select  # noqa: E402


def main(root: str, task: str, solver: str) -> dict:
    t_imports = time.perf_counter() - T0
    root_p = Path(root)
    t = time.perf_counter()
    sdag = SDAG.load(root_p / "sdag")
    t_sdag = time.perf_counter() - t
    t = time.perf_counter()
    cards = SyntheticCards(root_p / "cards.json")
    t_cards = time.perf_counter() - t
    spec = json.loads(Path(task).read_text())
    cpu = time.process_time()
    t = time.perf_counter()
    index = LabelIndex(root_p / "labels")
    t_index = time.perf_counter() - t
    t = time.perf_counter()
    sel, _, _ = select(index, sdag, spec["names"], spec["targets"], cards, solver=solver)
    t_select = time.perf_counter() - t
    cpu = time.process_time() - cpu
    d = sel.to_dict()
    timings = d.pop("timings")
    for k in ("seconds", "solver_note"):
        d.pop(k)
    return {
        "imports_s": t_imports,
        "sdag_s": t_sdag,
        "cards_s": t_cards,
        "index_s": t_index,
        "select_s": t_select,
        "cpu_s": cpu,  # CPU time of the index load and the selection (wall time minus waiting for others)
        "index_source": index.source,
        "stages": timings,
        "labels_read": len(index._labels),
        "selection": d,
    }


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:4]), default=float))

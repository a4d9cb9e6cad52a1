"""How label storage, loading, matching and CHCO grow with the hub (synthetic hubs, 20,000 nodes).

For hub sizes 1k..10k models: build the label index, write it as the label stage does
(`labels/.index/`) and load it in a LabelIndex, write 20 models' labels to measure stored outputs per
model, and time warm CHCO selections for 10/50/200-class tasks (heuristic) and 10/30-class tasks (exact, with the
gap to the heuristic), each with the process's peak memory. Matching 100 class names is timed on the
real SDAG. Writes reports/scale.md and reports/scale.png.
"""

from __future__ import annotations

import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mll.bench.synthetic import SyntheticIndex, synthetic_sdag, write_synthetic_hub
from mll.labels.index import LabelIndex
from mll.labels.index_file import INDEX_DIR, refresh_index
from mll.solve.chco import select


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _task(index: SyntheticIndex, sdag, k: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    covered = index.nodes.loc[index.nodes["head_classes"] > 0, "node"].unique()
    deep = [n for n in covered if sdag.depth(n) >= 3]
    return list(rng.choice(deep, size=min(k, len(deep)), replace=False))


def _time_select(index, sdag, targets, solver: str) -> tuple[float, float]:
    names = [sdag.name(t) for t in targets]
    select(index, sdag, names, targets, index.cards, solver=solver)  # warm: candidates' outputs in memory
    t = time.perf_counter()
    sel, _, _ = select(index, sdag, names, targets, index.cards, solver=solver)
    return time.perf_counter() - t, sel.objective


def matching_time(n_names: int = 100) -> float | None:
    from mll.data.sdag import SDAG
    from mll.solve.matching import Matcher

    path = Path("data/sdag")
    if not (path / "sdag.json").is_file():
        return None
    g = SDAG.load(path)
    words = [
        "dog",
        "cat",
        "car",
        "truck",
        "shoe",
        "boot",
        "shirt",
        "apple",
        "banana",
        "bird",
        "fish",
        "tree",
        "chair",
        "table",
        "lamp",
        "clock",
        "phone",
        "horse",
        "sheep",
        "cow",
    ]
    rng = np.random.default_rng(0)
    lemmas = sorted({lm.lower() for n in rng.choice(list(g), 4000) for lm in g.node(n)["lemmas"] if "_" not in lm})
    names = list(dict.fromkeys(words + list(rng.choice(lemmas, n_names * 2))))[:n_names]
    m = Matcher(g, use_embeddings=False)
    m.match(names[:3])  # builds the lemma index once
    t = time.perf_counter()
    m.match(names)
    return time.perf_counter() - t


def run(sizes: tuple[int, ...] = (1000, 2500, 5000, 10000), n_nodes: int = 20_000) -> list[dict]:
    sdag = synthetic_sdag(n_nodes, seed=0)
    rows = []
    for n in sizes:
        t = time.perf_counter()
        index = SyntheticIndex(sdag, n, seed=0)
        build = time.perf_counter() - t
        with tempfile.TemporaryDirectory() as d:
            sample = index.models[:20]
            write_synthetic_hub(index, Path(d), sample)  # summaries, 20 full labels, the label index
            labels = Path(d) / "labels"
            shutil.rmtree(labels / INDEX_DIR)
            t = time.perf_counter()
            refresh_index(labels, frame=index.nodes)
            write = time.perf_counter() - t
            size = sum(f.stat().st_size for f in (labels / INDEX_DIR).iterdir())
            t = time.perf_counter()
            loaded = LabelIndex(labels)
            load = time.perf_counter() - t
            assert loaded.source == "index file"
            # stored outputs: what the label store wrote for the sample (outputs.npz and the .npy files)
            out_bytes = sum(
                f.stat().st_size for m in sample for f in (labels / m).iterdir() if f.suffix in (".npz", ".npy")
            )
        row = {
            "models": n,
            "label_rows": len(index.nodes),
            "build_s": build,
            "index_mb": size / 2**20,
            "index_write_s": write,
            "index_load_s": load,
            "outputs_mb_per_model": out_bytes / len(sample) / 2**20,
        }
        for k in (10, 50, 200):
            row[f"heur{k}_s"], _ = _time_select(index, sdag, _task(index, sdag, k, k), "heuristic")
        for k in (10, 30):
            targets = _task(index, sdag, k, 100 + k)
            te, oe = _time_select(index, sdag, targets, "exact")
            _, oh = _time_select(index, sdag, targets, "heuristic")
            row[f"exact{k}_s"], row[f"gap{k}"] = te, oe - oh
        row["peak_mb"] = _rss_mb()
        rows.append(row)
        print(
            f"  {n:6d} models: {row['label_rows']:8d} label rows, index {row['index_mb']:.1f} MiB "
            f"(write {write:.2f} s, load {load:.2f} s), heuristic 10/50/200 classes "
            f"{row['heur10_s']:.2f}/{row['heur50_s']:.2f}/{row['heur200_s']:.2f} s, exact 10/30 "
            f"{row['exact10_s']:.2f}/{row['exact30_s']:.2f} s (gap {row['gap10']:.4f}/{row['gap30']:.4f}), "
            f"peak {row['peak_mb']:.0f} MiB"
        )
        del index
    mt = matching_time()
    if mt is not None:
        print(f"  matching 100 class names on the 82,115-node SDAG: {mt:.2f} s")
    _report(rows, mt)
    return rows


def _report(rows: list[dict], match_s: float | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path("reports")
    out.mkdir(exist_ok=True)
    df = pd.DataFrame(rows)
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    for col, label in (
        ("heur10_s", "CHCO 10 classes"),
        ("heur50_s", "CHCO 50 classes"),
        ("heur200_s", "CHCO 200 classes"),
        ("index_load_s", "index load"),
    ):
        ax[0].plot(df["models"], df[col], marker="o", label=label)
    ax[0].set_xlabel("models in hub")
    ax[0].set_ylabel("seconds")
    ax[0].legend()
    ax[0].set_title("time vs hub size (20,000 nodes)")
    ax[1].plot(df["models"], df["peak_mb"], marker="o", color="tab:red")
    ax[1].set_xlabel("models in hub")
    ax[1].set_ylabel("peak RSS (MiB)")
    ax[1].set_title("memory")
    fig.tight_layout()
    fig.savefig(out / "scale.png", dpi=100)
    cols = [
        "models",
        "label_rows",
        "index_mb",
        "index_load_s",
        "outputs_mb_per_model",
        "heur10_s",
        "heur50_s",
        "heur200_s",
        "exact10_s",
        "exact30_s",
        "gap10",
        "gap30",
        "peak_mb",
    ]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(f"{r[c]:.3g}" if isinstance(r[c], float) else str(r[c]) for c in cols) + " |")
    text = "# Scale (synthetic hubs, 20,000 nodes; `make bench`)\n\n" + "\n".join(lines) + "\n"
    if match_s is not None:
        text += f"\nMatching 100 class names on the 82,115-node SDAG: {match_s:.2f} s.\n"
    (out / "scale.md").write_text(text)

"""A synthetic hub for scale tests: thousands of labeled models over a large random concept tree.

Nodes form a random tree (each node hangs under an earlier one), about one probe image per node;
each model has 2-20 head classes drawn from the tree, and its stored outputs are generated on
demand (deterministically per model): logits favour the right head class for images under it, so
selection has real signal. Node tables look like real labels (head nodes and ancestors, with
recall and false-alarm statistics). Nothing is written to disk unless `write_synthetic_hub` writes
it as a labels folder, for the benchmark that times CHCO in a new process.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from mll.data.sdag import SDAG
from mll.hub.cards import ExpertCard, HeadClass, InputConfig
from mll.labels.index import LabelIndex
from mll.labels.index_file import refresh_index
from mll.labels.store import SUMMARY, Label, write_label
from mll.solve.problem import Problem


def synthetic_sdag(n_nodes: int, seed: int = 0) -> SDAG:
    rng = np.random.default_rng(seed)
    ids = [f"n{90000000 + i:08d}" for i in range(n_nodes)]
    parent = [-1] + [int(rng.integers(max(0, i - 2000), i)) for i in range(1, n_nodes)]  # bushy, depth ~10-40
    depth = [0] * n_nodes
    for i in range(1, n_nodes):
        depth[i] = depth[parent[i]] + 1
    nodes = {
        ids[i]: {
            "name": f"concept{i}.n.01",
            "lemmas": [f"concept{i}"],
            "definition": f"synthetic concept {i}",
            "depth": depth[i],
            "lexname": "noun.Tops",
            "counts": [1],
        }
        for i in range(n_nodes)
    }
    edges = [(ids[parent[i]], ids[i]) for i in range(1, n_nodes)]
    return SDAG.from_edges(nodes, edges, {"scope": "synthetic"})


class SyntheticIndex(LabelIndex):
    """A LabelIndex over `n_models` synthetic models; labels are generated when first used."""

    def __init__(self, sdag: SDAG, n_models: int, seed: int = 0, max_classes: int = 20):
        self.sdag = sdag
        self.seed = seed
        rng = np.random.default_rng(seed)
        node_ids = list(sdag)
        self.probe_uris = [f"synthetic://{n}/0" for n in node_ids]
        self.probe_synsets = node_ids
        self.cards: dict[str, ExpertCard] = {}
        frames = []
        anc_cache: dict[str, set[str]] = {}
        for m in range(n_models):
            name = f"synth-{m:05d}"
            k = int(rng.integers(2, max_classes + 1))
            # models specialise: heads cluster under one random subtree root
            heads = list(dict.fromkeys(node_ids[int(j)] for j in rng.integers(1, len(node_ids), k)))
            self.cards[name] = synthetic_card(name, heads)
            covered: dict[str, int] = {}
            for h in heads:
                if h not in anc_cache:
                    anc_cache[h] = sdag.ancestors(h) | {h}
                for a in anc_cache[h]:
                    covered[a] = covered.get(a, 0) + 1
            quality = rng.uniform(0.3, 0.95)
            nodes = sorted(covered)  # not set order: that varies with the hash seed of each process
            frames.append(
                pd.DataFrame(
                    {
                        "model": name,
                        "node": nodes,
                        "head_classes": [covered[v] for v in nodes],
                        "support": 1,
                        "measured": True,
                        "top1_hit": quality,
                        "gated_recall": np.clip(quality + rng.normal(0, 0.05, len(nodes)), 0, 1),
                        "gated_false_alarm": rng.uniform(0, 0.1, len(nodes)),
                        "false_alarm": rng.uniform(0, 0.5, len(nodes)),
                        "soft_recall": quality,
                    }
                )
            )
        self._set_frame(pd.concat(frames, ignore_index=True))
        # an uninformative gate of the right width (3 summary features + the small head's log-probs)
        self.summaries = {
            n: {
                "gate": {
                    "coef": [0.0] * (3 + c.num_classes),
                    "intercept": 4.0,
                    "mean": [0.0] * (3 + c.num_classes),
                    "scale": [1.0] * (3 + c.num_classes),
                },
                "probe_hash": "synthetic",
                "key": f"synthetic-{seed}-{n}",
                "storage": "full",
            }
            for n, c in self.cards.items()
        }
        self._labels = {}
        self.root = None

    @property
    def models(self) -> list[str]:
        return sorted(self.cards)

    def label(self, model: str) -> Label:
        if model not in self._labels:
            card = self.cards[model]
            rng = np.random.default_rng([self.seed, int(model.split("-")[1])])
            n, c = len(self.probe_uris), card.num_classes
            logits = rng.normal(0, 1, (n, c)).astype(np.float32)
            pos = {u: i for i, u in enumerate(self.probe_synsets)}
            for j, h in enumerate(card.synsets):
                sub = self.sdag.descendants(h) | {h}
                rows = [pos[s] for s in sub if s in pos]
                logits[rows, j] += 3.0  # the model recognises its own concepts
            logp = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
            self._labels[model] = Label(
                model,
                "synthetic",
                self.probe_uris,
                self.probe_synsets,
                logp.astype(np.float16),
                None,
                None,
                None,
                np.logaddexp.reduce(logits, axis=1).astype(np.float32),
                self.nodes.iloc[0:0],
                self.summaries[model],
            )
        return self._labels[model]


# --- on disk ----------------------------------------------------------------------------------------
def synthetic_card(name: str, heads: list[str]) -> ExpertCard:
    return ExpertCard(
        name, "timm", "synthetic", "w", "0" * 64, InputConfig(size=8), tuple(HeadClass(h, h) for h in heads)
    )


def write_synthetic_hub(index: SyntheticIndex, root: Path, outputs_for: list[str]) -> Path:
    """Write the hub as a labels folder a new process reads like a real one: `root/sdag/`,
    `root/labels/` (every model's summary, the label index; full labels, stored outputs included,
    for the models in `outputs_for`) and `root/cards.json` (each model's head synsets).

    Only the models in `outputs_for` and the first model (whose label gives selection the probe
    images' uris and synsets) get stored outputs and a node table: the benchmark passes the
    candidates its tasks prune to, the only ones selection reads. Every model's node rows are in the
    label index, which is what the prune reads. Returns `root`.
    """
    root = Path(root)
    index.sdag.save(root / "sdag")
    labels = root / "labels"
    labels.mkdir(parents=True, exist_ok=True)
    full = {*outputs_for, index.models[0]}
    by_model = index.nodes.groupby("model", sort=False).indices
    for m in index.models:
        if m in full:
            lab = index.label(m)
            nodes = index.nodes.iloc[by_model[m]].drop(columns="model").reset_index(drop=True)
            write_label(
                Label(m, lab.key, lab.uris, lab.synsets, lab.logp, None, None, None, lab.lse, nodes, lab.summary),
                labels,
            )
        else:
            (labels / m).mkdir(exist_ok=True)
            (labels / m / SUMMARY).write_text(json.dumps(index.summaries[m]) + "\n")
    refresh_index(labels, frame=index.nodes)
    (root / "cards.json").write_text(json.dumps({m: c.synsets for m, c in index.cards.items()}))
    return root


class SyntheticCards(Mapping):
    """The synthetic hub's cards from `cards.json`, each built when first used (like reading only
    the cards of the candidates)."""

    def __init__(self, path: Path):
        self._heads = json.loads(Path(path).read_text())
        self._cards: dict[str, ExpertCard] = {}

    def __getitem__(self, name: str) -> ExpertCard:
        if name not in self._cards:
            self._cards[name] = synthetic_card(name, self._heads[name])
        return self._cards[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._heads)

    def __len__(self) -> int:
        return len(self._heads)


# --- CHCO problems ----------------------------------------------------------------------------------
def random_problem(
    rng: np.random.Generator,
    k: int,
    models: int,
    per_class: int = 3,
    max_heads: int = 2,
    cost: float = 0.01,
    low: float = 0.5,
    backbones: int = 0,
    head_share: float = 0.5,
    head_cost_ratio: float = 0.1,
) -> Problem:
    """A CHCO problem as selection builds it: `k` classes, each with `per_class` candidates drawn
    from `models` models and every set of 1..`max_heads` of them as an option, accuracies uniform
    in [low, 1] (the benchmark's exact-vs-heuristic problems).

    With `backbones` > 0, each model is, with probability `head_share`, a head on one of that many
    shared backbones (cost units: the backbone at `cost`, its own head at `cost * head_cost_ratio`),
    drawn after everything else, so the options and accuracies are those of the same seed without."""
    import itertools

    names = [f"m{i}" for i in range(models)]
    options, acc = [], []
    for _ in range(k):
        cands = list(rng.choice(names, size=min(per_class, models), replace=False))
        opts = [o for r in range(1, max_heads + 1) for o in itertools.combinations(cands, r)]
        options.append(opts)
        acc.append(list(rng.uniform(low, 1.0, len(opts))))
    if not backbones:
        return Problem(options, acc, cost)
    units, unit_costs = {}, {}
    for m, b in zip(names, rng.integers(0, backbones, models)):
        if rng.random() < head_share:
            units[m] = (f"backbone{b}", m)
            unit_costs[f"backbone{b}"], unit_costs[m] = cost, cost * head_cost_ratio
    return Problem(options, acc, cost, units, unit_costs)

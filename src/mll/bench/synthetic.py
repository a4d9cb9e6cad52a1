"""A synthetic hub for scale tests: thousands of labeled models over a large random concept tree.

Nodes form a random tree (each node hangs under an earlier one), about one probe image per node;
each model has 2-20 head classes drawn from the tree, and its stored outputs are generated on
demand (deterministically per model): logits favour the right head class for images under it, so
selection has real signal. Node tables look like real labels (head nodes and ancestors, with
recall and false-alarm statistics), and nothing is written to disk.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mll.data.sdag import SDAG
from mll.hub.cards import ExpertCard, HeadClass, InputConfig
from mll.labels.compute import Label
from mll.labels.index import LabelIndex


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
            self.cards[name] = ExpertCard(
                name, "timm", "synthetic", "w", "0" * 64, InputConfig(size=8), tuple(HeadClass(h, h) for h in heads)
            )
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
        self.nodes = pd.concat(frames, ignore_index=True)
        self._by_node = self.nodes.groupby("node").indices
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

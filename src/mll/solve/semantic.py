"""The semantic patch: classes no head covers, scored from the generalists' outputs by meaning (ConSE).

After Norouzi et al. (2014), "Zero-shot learning by convex combination of semantic embeddings",
with the hub's own parts and no vision-language model:

- the *generalists* (card domain `general`, at least `GENERALIST_MIN_CLASSES` head classes; best
  first by their label's measured in-domain accuracy) answer every image over their head classes;
- each head class c and each task class k is embedded with the packaged MiniLM sentence encoder
  from its WordNet lemmas and definition (`node_text`), e(c) and e(k), unit length;
- an image's embedding is the probability-weighted mean of its T most probable head classes,
  averaged over the generalists used: f(x) = mean_g Σ_{t ≤ T} p_g(c_t|x) e(c_t) / Σ_t p_g(c_t|x);
- every task class is scored by cosine similarity, s_k(x) = cos(f(x), e(k)), and
  p_sem(k|x) = softmax_k(s_k(x) / τ).

Calibration on stored outputs (no image of the task is needed): τ minimises the negative
log-likelihood of p_sem on the task's node images (every class that has some). The mass given to
the uncovered classes U is then recalibrated with what the experts say: with u(x) = Σ_{k∈U}
p_sem(k|x) and r(x) = 1 − max_k p_exp(k|x) (how unsure the experts' combiner is among the covered
classes), u'(x) = σ(a · logit u(x) + c · logit r(x) + b), a logistic regression on the node images
(positive: an image of an uncovered class; unweighted, so u' is a posterior at the node data's
class balance rather than a balanced score), fitted when the uncovered classes have at least
`min_node_images` of them; a fitted a < 0 (ConSE anti-informative on this task) is refitted with
a = 0. Without such node images, each covered class with node images plays the uncovered one in
turn (u from its own p_sem, r from the experts' probabilities with its column removed and
renormalised), the pooled fit's intercept raised by log |U|; with fewer than two such classes
u' = u. The fusion with the experts is the open_clip patch's (`mll.solve.patch.fuse`), with p_sem
in place of CLIP's.

Masked generalist classes (`mll.solve.masking`) are removed before the top T are taken.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mll.data.sdag import SDAG
from mll.solve.nodedata import mask_logp

GENERALIST_MIN_CLASSES = 100  # a generalist's head has at least this many classes (the ImageNet heads: 1000)
TAU_GRID = np.exp(np.linspace(np.log(0.005), np.log(1.0), 60))  # τ searched on the node images
MIN_CALIBRATION_IMAGES = 10  # fewer node images than this: τ keeps its configured default


def generalists(cards: dict, summaries, min_classes: int | None = None) -> list[str]:
    """The hub's generalists, best first by their label's measured in-domain top-1 accuracy
    (task-agnostic, like LOVM's ImageNet-best ranking); ties by name.

    A generalist is a model whose card says `domain: general` and whose head has at least
    `min_classes` classes; without any `general` card, every head that wide. A wide head cut from a
    generalist for one domain (the ImageNet containers, say) is that domain's expert, not a generalist.
    `min_classes` defaults to `GENERALIST_MIN_CLASSES`."""
    min_classes = GENERALIST_MIN_CLASSES if min_classes is None else min_classes
    wide = [m for m, c in cards.items() if c.num_classes >= min_classes]
    if any(cards[m].domain == "general" for m in wide):
        wide = [m for m in wide if cards[m].domain == "general"]

    def acc(m: str) -> float:
        v = (summaries.get(m) or {}).get("in_domain_accuracy")
        return float(v) if isinstance(v, (int, float)) else -1.0

    return sorted(wide, key=lambda m: (-acc(m), m))


# --- text embeddings ----------------------------------------------------------------------------------
def node_text(sdag: SDAG, node: str) -> str:
    """What a synset is embedded from: its first three lemmas and its definition."""
    a = sdag.node(node)
    return f"{', '.join(lm.replace('_', ' ') for lm in a['lemmas'][:3])}: {a['definition']}"


_EMBEDDINGS: dict[str, np.ndarray] = {}


def embed_nodes(sdag: SDAG, nodes: Sequence[str], cache_dir: Path | None = None) -> np.ndarray:
    """(len(nodes), D) unit-length MiniLM embeddings of the nodes' texts, cached in memory and, with
    `cache_dir`, on disk (a generalist's 1000 head classes take ~10 s to embed on 2 cores)."""
    from mll.solve.matching import load_text_encoder

    texts = [node_text(sdag, n) if n in sdag else n.replace("_", " ") for n in nodes]
    key = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    if key in _EMBEDDINGS:
        return _EMBEDDINGS[key]
    path = Path(cache_dir) / f"node_embeddings_{key}.npy" if cache_dir else None
    if path is not None and path.is_file():
        mat = np.load(path, allow_pickle=False)
    else:
        mat = load_text_encoder().encode(texts, normalize_embeddings=True, batch_size=64, show_progress_bar=False)
        mat = np.asarray(mat, dtype=np.float32)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, mat)
    _EMBEDDINGS[key] = mat
    return mat


# --- the patch ----------------------------------------------------------------------------------------
@dataclass
class SemanticPatch:
    """A task's fitted semantic patch: which generalists, the embeddings, and the calibration."""

    models: list[str]  # the generalists used
    head_emb: dict[str, np.ndarray] = field(repr=False)  # model -> (C, D) head-class embeddings
    class_emb: np.ndarray = field(repr=False)  # (K, D) task-class embeddings
    uncovered: list[int]  # task class indices it answers
    top_t: int = 10
    tau: float = 0.05
    gain: tuple[float, float, float] = (1.0, 0.0, 0.0)  # (a, c, b): u' = σ(a · logit u + c · logit r + b)
    masked: dict[str, list[int]] = field(default_factory=dict)  # hidden head columns per generalist
    calibration: dict = field(default_factory=dict)  # what τ and the gain were fitted on

    def similarities(self, logp: dict[str, np.ndarray]) -> np.ndarray:
        """(N, K) cosine similarity of each image's ConSE embedding to each task class."""
        f = None
        for m in self.models:
            lp = mask_logp(np.asarray(logp[m], dtype=np.float64), self.masked.get(m))
            t = min(self.top_t, lp.shape[1])
            top = np.argpartition(-lp, t - 1, axis=1)[:, :t]
            p = np.exp(np.take_along_axis(lp, top, axis=1))
            p /= np.maximum(p.sum(1, keepdims=True), 1e-12)
            fm = np.einsum("nt,ntd->nd", p, self.head_emb[m][top])
            f = fm if f is None else f + fm
        f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
        return f @ self.class_emb.T

    def probs(self, logp: dict[str, np.ndarray], p_experts: np.ndarray | None = None) -> np.ndarray:
        """(N, K) p_sem over all task classes, with the calibrated mass u'(x) on the uncovered ones
        (the form `mll.solve.patch.fuse` takes: only the uncovered columns are read). `p_experts`:
        the experts' combined probabilities over the covered classes (N, covered), for r(x)."""
        p = _softmax(self.similarities(logp) / self.tau)
        if not self.uncovered:
            return p
        u = p[:, self.uncovered].sum(1)
        a, c, b = self.gain
        u2 = _sigmoid(a * _logit(u) + c * _logit(unsure(p_experts, len(u))) + b)
        share = p[:, self.uncovered] / np.maximum(u[:, None], 1e-12)
        p = p.copy()
        p[:, self.uncovered] = share * u2[:, None]
        return p

    def describe(self) -> str:
        return (
            f"semantic patch (ConSE over the top {self.top_t} classes of {', '.join(self.models)}; "
            f"τ {self.tau:.3g}, gain a={self.gain[0]:.2f} c={self.gain[1]:.2f} b={self.gain[2]:.2f})"
        )


def fit_semantic(
    sdag: SDAG,
    cards: dict,
    summaries,
    targets: Sequence[str],
    uncovered: Sequence[int],
    node_logp: Callable[[str], np.ndarray],
    y: np.ndarray,
    node_experts: np.ndarray | None = None,
    expert_classes: Sequence[int] = (),
    *,
    n_generalists: int = 1,
    top_t: int = 10,
    tau: float = 0.05,
    masked: dict[str, list[int]] | None = None,
    min_node_images: int = 5,
    cache_dir: Path | None = None,
) -> SemanticPatch | None:
    """The semantic patch for a task (module doc), calibrated on the node images (`node_logp(model)`:
    a generalist's stored log-probabilities on them, `y` their class, `node_experts` the experts'
    combined probabilities on them over `expert_classes`). None without a generalist."""
    gens = generalists(cards, summaries)[: max(n_generalists, 1)]
    if not gens:
        return None
    masked = {m: list(c) for m, c in (masked or {}).items() if m in gens}
    head_emb = {m: embed_nodes(sdag, cards[m].synsets, cache_dir) for m in gens}
    patch = SemanticPatch(
        gens,
        head_emb,
        embed_nodes(sdag, list(targets), cache_dir),
        list(uncovered),
        top_t=top_t,
        tau=tau,
        masked=masked,
    )
    y = np.asarray(y)
    has = y >= 0
    if has.sum() < MIN_CALIBRATION_IMAGES or len(set(y[has].tolist())) < 2:
        patch.calibration = {"tau": "default", "gain": "identity", "node_images": int(has.sum())}
        return patch
    sims = patch.similarities({m: node_logp(m)[has] for m in gens})
    yy = y[has]
    nll = [-np.log(np.maximum(_softmax(sims / t)[np.arange(len(yy)), yy], 1e-12)).mean() for t in TAU_GRID]
    patch.tau = float(TAU_GRID[int(np.argmin(nll))])
    patch.calibration = {"tau": "node images", "node_images": int(has.sum()), "gain": "identity"}
    pos = np.isin(yy, list(uncovered))
    p_sem = _softmax(sims / patch.tau)
    exp = None if node_experts is None else np.asarray(node_experts)[has]
    if pos.sum() >= min_node_images and (~pos).sum() >= min_node_images:
        u = _logit(p_sem[:, list(uncovered)].sum(1))
        patch.gain = _fit_gain(u, _logit(unsure(exp, len(u))), pos)
        patch.calibration["gain"] = f"logistic on {int(pos.sum())} uncovered / {int((~pos).sum())} covered node images"
    elif exp is not None and expert_classes:
        # no node image of an uncovered class: each covered class in turn plays the uncovered one
        us, rs, ps = [], [], []
        for j, k in enumerate(expert_classes):
            pos_k = yy == k
            if pos_k.sum() < min_node_images or (~pos_k).sum() < min_node_images:
                continue
            rest = np.delete(exp, j, axis=1)  # the experts without class k, renormalised
            rest = rest / np.maximum(rest.sum(1, keepdims=True), 1e-12)
            us.append(_logit(p_sem[:, k]))
            rs.append(_logit(unsure(rest, len(yy))))
            ps.append(pos_k)
        if len(us) >= 2:
            a, c, b = _fit_gain(np.concatenate(us), np.concatenate(rs), np.concatenate(ps))
            # the simulation's uncovered share is one class's; |U| classes have about |U| times the odds
            patch.gain = (a, c, b + float(np.log(len(uncovered))))
            patch.calibration["gain"] = f"logistic on {len(us)} covered classes, each playing the uncovered one"
    return patch


def _fit_gain(u: np.ndarray, r: np.ndarray, pos: np.ndarray) -> tuple[float, float, float]:
    """(a, c, b) of u' = σ(a · u + c · r + b) (u, r: logits), unweighted so that u' is a posterior at
    the node data's class balance; an a < 0 (ConSE mass meaning "less likely uncovered") is refitted
    with a = 0, keeping only the experts' doubt."""
    from mll.solve.logreg import LogReg

    clf = LogReg(C=1.0, max_iter=200, balanced=False).fit(np.stack([u, r], axis=1), pos)
    a, c = (float(v) for v in clf.coef_[0])
    if a < 0:
        clf = LogReg(C=1.0, max_iter=200, balanced=False).fit(r[:, None], pos)
        a, c = 0.0, float(clf.coef_[0][0])
    return a, c, float(clf.intercept_[0])


def unsure(p_experts: np.ndarray | None, n: int) -> np.ndarray:
    """r(x) = 1 − max_k p_exp(k|x): the experts' doubt among the covered classes (1 with none)."""
    if p_experts is None or not np.size(p_experts):
        return np.ones(n)
    return 1.0 - np.asarray(p_experts).max(1)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))


def _logit(u: np.ndarray) -> np.ndarray:
    u = np.clip(u, 1e-6, 1 - 1e-6)
    return np.log(u) - np.log1p(-u)

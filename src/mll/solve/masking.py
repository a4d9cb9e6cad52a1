"""Hidden coverage: solve a task as if no hub head covered some of its classes.

The masked-coverage family (docs/method.md section 9c) measures the patch on classes whose heads
exist but are hidden, so there is ground truth for what the patch should have answered. A
`HeadMask` hides target synsets:

- every head class at or under a hidden target is masked **at the logit level** in every model: its
  logit is removed and the softmax renormalised over the rest (`mask_logp`), on the stored outputs
  that selection and the combiner read and on the live outputs alike;
- the label rows of nodes at or under a hidden target count no head class (`masked_index`), so CHCO
  sees the class as uncovered and the patch (or back-off, or nothing) answers it;
- with `drop_nodes` (variant `heads_and_nodes_hidden`) the hidden classes' node images are removed
  from everything solving reads (selection, combiner, patch calibration), so nothing can calibrate on
  them. The labels themselves (gates, statistics) were measured on the whole probe set: removing the
  images there would mean relabeling the hub per hidden subset (what leave-one-domain-out does per
  domain), which this family does not do.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from mll.data.sdag import SDAG
from mll.labels.index import LabelIndex
from mll.solve.nodedata import mask_logp, up_closure

__all__ = ["VARIANTS", "HeadMask", "mask_logp", "masked_index"]

VARIANTS = ("heads_hidden", "heads_and_nodes_hidden")


@dataclass(frozen=True)
class HeadMask:
    """Target synsets whose head classes no model may use (and, with `drop_nodes`, whose node
    images solving may not read)."""

    hidden: frozenset[str]
    drop_nodes: bool = False

    @classmethod
    def of(cls, synsets: Iterable[str], variant: str = "heads_hidden") -> HeadMask:
        if variant not in VARIANTS:
            raise ValueError(f"mask variant {variant!r} is not one of {', '.join(VARIANTS)}")
        return cls(frozenset(s for s in synsets if s), drop_nodes=variant == "heads_and_nodes_hidden")

    @property
    def variant(self) -> str:
        return VARIANTS[1] if self.drop_nodes else VARIANTS[0]

    def hides(self, node: str | None, sdag: SDAG) -> bool:
        """Whether `node` is a hidden target or lies under one."""
        if not node or not self.hidden:
            return False
        return node in sdag and bool(self.hidden & up_closure(sdag, node))

    def columns(self, card, sdag: SDAG) -> list[int]:
        """A card's head columns at or under a hidden target."""
        return [i for i, s in enumerate(card.synsets) if s in sdag and self.hides(s, sdag)]

    def model_columns(self, cards: dict, sdag: SDAG) -> dict[str, list[int]]:
        """{model: masked columns} for the models with any (the others are untouched)."""
        out = {}
        for m, card in cards.items():
            cols = self.columns(card, sdag)
            if cols:
                out[m] = cols
        return out


class _MaskedIndex(LabelIndex):
    """A LabelIndex whose rows at or under hidden targets count no head class (see `masked_index`)."""

    def row_arrays(self, node: str) -> dict[str, np.ndarray]:
        rows = super().row_arrays(node)
        if self._mask.hides(node, self._sdag) and len(rows["model"]):
            rows = dict(rows)
            rows["head_classes"] = np.zeros_like(rows["head_classes"])
        return rows


def masked_index(index: LabelIndex, mask: HeadMask | None, sdag: SDAG) -> LabelIndex:
    """`index` with every node at or under a hidden target uncovered; the same object without a mask."""
    if mask is None or not mask.hidden:
        return index
    out = _MaskedIndex.__new__(_MaskedIndex)
    out.__dict__.update({k: v for k, v in index.__dict__.items() if k != "_subsets"})
    out._mask, out._sdag = mask, sdag
    return out

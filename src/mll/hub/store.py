"""The hub: a folder of experts, one sub-folder per model with `card.yaml` + weights.

Cards live in git and weights are DVC outputs. `Hub.add` is the single way models get in: it
writes the weights as safetensors (whatever they came as), hashes them, and writes the card, so
every model in the hub can be loaded without unpickling anything.
"""

from __future__ import annotations

import difflib
import os
import shutil
from dataclasses import replace
from pathlib import Path

import torch

from mll.hub.cards import CARD_FILE, CardError, ExpertCard, read_card, sha256_file, verify_weights, write_card
from mll.hub.experts import Expert, load_expert
from mll.hub.sources import build_module, source_kind
from mll.paths import models_dir

WEIGHTS_FILE = "weights.safetensors"


class Hub:
    """Experts under `root` (default: the project's `models/`)."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root or models_dir())

    def names(self) -> list[str]:
        """Names of every folder that holds a card (valid or not), sorted."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / CARD_FILE).is_file())

    def path(self, name: str) -> Path:
        if name not in self.names():
            close = difflib.get_close_matches(name, self.names(), n=3)
            hint = (
                f"; did you mean {', '.join(close)}?"
                if close
                else f"; `mll hub list` shows the {len(self.names())} models"
            )
            raise KeyError(f"no model {name!r} in hub {self.root}{hint}")
        return self.root / name

    def card(self, name: str) -> ExpertCard:
        return read_card(self.path(name))

    def cards(self) -> tuple[list[ExpertCard], dict[str, str]]:
        """(valid cards, {name: reason} for cards that fail validation)."""
        good, bad = [], {}
        for n in self.names():
            try:
                good.append(read_card(self.root / n))
            except CardError as exc:
                bad[n] = str(exc)
        return good, bad

    def load(self, name: str, device: str = "auto", amp: bool = True) -> Expert:
        return load_expert(self.path(name), device=device, amp=amp)

    def add(
        self, card: ExpertCard, state: dict[str, torch.Tensor] | Path, overwrite: bool = False, verify: bool = True
    ) -> ExpertCard:
        """Register `card` with weights (a state dict, or the archive file for kinds that keep one, e.g. TorchScript).

        The weights are written into the model folder, hashed into the card, and the result is
        loaded once to prove card and weights agree; on failure nothing is left behind.
        """
        from safetensors.torch import save_file

        kind = source_kind(card.source)
        dest = self.root / card.name
        if dest.exists() and not overwrite:
            raise ValueError(f"model {card.name!r} already exists in {self.root}; remove it first or pass overwrite")
        tmp = self.root / f".{card.name}.adding"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            if kind.archive_name:  # kept as is: the archive is the model
                fname = kind.archive_name
                shutil.copyfile(Path(state), tmp / fname)
            else:
                fname = WEIGHTS_FILE
                tensors = {k: v.detach().cpu().contiguous() for k, v in dict(state).items()}
                save_file(tensors, str(tmp / fname))
            card = replace(card, weights=fname, weights_sha256=sha256_file(tmp / fname))
            write_card(card, tmp)
            if verify:
                _verify_staged(tmp, card)
            if dest.exists():
                if (dest / ".gitignore").is_file():  # written by DVC for the weights output
                    shutil.copyfile(dest / ".gitignore", tmp / ".gitignore")
                shutil.rmtree(dest)
            os.replace(tmp, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return card

    def remove(self, name: str) -> Path:
        """Delete a model folder (its labels are left for the labeling stage to drop)."""
        path = self.path(name)
        shutil.rmtree(path)
        return path


def _verify_staged(folder: Path, card: ExpertCard) -> None:
    """Load a staged model folder once (card name != folder name while staged)."""
    weights = verify_weights(card, folder)
    expert = Expert(card, build_module(card, weights), device="cpu")
    expert.forward(torch.zeros(1, card.input.channels, card.input.size, card.input.size))


def coverage_summary(card: ExpertCard, sdag, depth: int = 6) -> str:
    """The concepts a head covers, in words: the classes' lowest common ancestor when it is specific;
    else, for small heads, their ancestors at `depth` (`clothing 2, container 1`); for wide heads the
    biggest WordNet domains (`artifact 518, animal 398`)."""
    present = [s for s in card.synsets if s in sdag]
    if not present:
        return "-"
    lca = present[0]
    for s in present[1:]:
        lca = sdag.lca(lca, s)
    if len(present) == 1 or sdag.depth(lca) >= 5:
        return sdag.name(lca).split(".")[0]
    counts: dict[str, int] = {}
    for s in present:
        if len(present) <= 50:
            path = sdag.path_to_root(s)  # leaf first
            key = sdag.name(path[max(0, len(path) - 1 - depth)]).split(".")[0]
        else:
            key = sdag.node(s)["lexname"].removeprefix("noun.") or "?"
        counts[key] = counts.get(key, 0) + 1
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    text = ", ".join(f"{d} {n}" for d, n in top[:3])
    return text + (f", +{len(top) - 3} more" if len(top) > 3 else "")

"""The benchmark's oracle experts: one per dataset with training data, trained on its whole
expert_train split (every class), the practical upper limit for tasks drawn from that dataset.
Kept out of the hub (`oracles/`), so MLL never selects them.

A module of its own so that the `oracles` DVC stage depends on training code only: an edit to
selection or reuse must not retrain the oracles.
"""

from __future__ import annotations

from pathlib import Path

from mll.config import TrainedExpertParams, load_params, load_section
from mll.data.splits import read_manifest
from mll.hub.cards import ExpertCard
from mll.hub.store import Hub
from mll.hub.training import spec_from_params, train_expert
from mll.tracking import start_run


def oracle_name(dataset: str) -> str:
    return f"oracle-{dataset}"


# --- oracle experts ---------------------------------------------------------------------------------
def hub_twin(spec, params) -> str | None:
    """The hub expert (`experts.trained`) that the oracle `spec` would reproduce: same dataset, the
    same classes (in any order) and the same training settings, so the same rows and weights. An
    oracle that is a hub member measures that member, not an upper limit."""
    from dataclasses import replace

    mine = replace(spec, name="", classes=tuple(sorted(spec.classes)))
    for name, entry in params.experts.trained.items():
        other = spec_from_params(name, entry, params.experts.defaults)
        if replace(other, name="", classes=tuple(sorted(other.classes))) == mine:
            return name
    return None


def train_oracle(dataset: str, params_file: Path | str, manifest: Path, out_root: Path, log=print) -> ExpertCard:
    """Train the oracle expert for `dataset` (a key of `benchmark.oracles`) into `out_root`."""
    bp = load_section("benchmark", params_file)
    if dataset not in bp.oracles:
        raise KeyError(f"params: no oracle {dataset!r} under benchmark.oracles (have: {', '.join(bp.oracles)})")
    rows = read_manifest(Path(manifest))
    rows = rows[(rows["dataset"] == dataset) & (rows["split"] == "expert_train")]
    if rows.empty:
        raise ValueError(f"oracle {dataset}: no expert_train images (is it under data.datasets?)")
    classes = list(rows.drop_duplicates("class_name").sort_values("label")["class_name"])
    entry = TrainedExpertParams(dataset=dataset, classes=tuple(classes), **bp.oracles[dataset].given())
    params = load_params(params_file)
    spec = spec_from_params(oracle_name(dataset), entry, params.experts.defaults)
    if twin := hub_twin(spec, params):
        raise ValueError(
            f"oracle {dataset}: its training settings equal hub expert {twin}'s (same data, classes and "
            f"settings), so it would be that expert; give it its own under benchmark.oracles.{dataset} "
            f"(say seed: {spec.seed + 1})"
        )
    with start_run("experts", spec.name, enabled=bp.track) as tracker:
        card = train_expert(spec, rows, Hub(Path(out_root)), tracker, log=log)
    log(f"{spec.name}: val accuracy {card.provenance['metrics']['val_accuracy']:.3f} on {len(classes)} classes")
    return card

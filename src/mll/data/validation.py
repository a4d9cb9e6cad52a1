"""great_expectations suites that guard the data the pipeline writes.

Each suite validates a real pandas frame in an ephemeral GX context; `check` raises
`ValidationError` naming every failing expectation and a few offending values, so a DVC stage fails
with a readable reason. Derived columns (does the file exist, does the synset resolve) are computed
first, because GX expectations look at columns, not at the file system.

Every suite run is a GX validation definition run, so its result is kept in the context's
validation results store; `build_data_docs` renders those of this process as a GX Data Docs site
(the data stage: `reports/data_docs/manifests/`, the label stage: `reports/data_docs/labels/`).
The pages carry run times, so the sites are git-ignored and no DVC output.
"""

from __future__ import annotations

import functools
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mll.data.images import uri_exists
from mll.data.sampling import SPLITS
from mll.data.wordnet import is_wnid

SYNSET_REGEX = r"^n\d{8}$"


class ValidationError(ValueError):
    """A frame failed its expectation suite."""


@dataclass(frozen=True)
class Outcome:
    suite: str
    success: bool
    failures: list[str]

    def raise_for_failures(self) -> None:
        if not self.success:
            raise ValidationError(f"{self.suite}: " + "; ".join(self.failures))


@functools.lru_cache(maxsize=1)
def _context():
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    return ctx


def run_suite(name: str, frame: pd.DataFrame, expectations: Iterable) -> Outcome:
    """Validate `frame` against `expectations` (GX expectation objects) under suite `name`; the
    result is kept for `build_data_docs`."""
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier

    ctx = _context()
    source = ctx.data_sources.add_or_update_pandas(name=f"src_{name}")
    asset = source.add_dataframe_asset(name=f"asset_{name}")
    batch_def = asset.add_batch_definition_whole_dataframe(f"all_{name}")
    suite = ctx.suites.add_or_update(gx.ExpectationSuite(name=name, expectations=list(expectations)))
    definition = ctx.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=name, data=batch_def, suite=suite)
    )
    res = definition.run(batch_parameters={"dataframe": frame}, run_id=RunIdentifier(run_name=name))
    failures = []
    for r in res.results:
        if not r.success:
            cfg = r.expectation_config
            col = cfg.kwargs.get("column", "")
            bad = (r.result or {}).get("partial_unexpected_list") or (r.result or {}).get("observed_value")
            failures.append(f"{cfg.type}({col}) failed, e.g. {bad!r:.200}")
    return Outcome(name, bool(res.success), failures)


def build_data_docs(site_dir: Path) -> Path | None:
    """Render every suite run of this process as a GX Data Docs site in `site_dir` (its static
    pages and assets are replaced); returns the site's index.html, or None when nothing ran."""
    ctx = _context()
    if not ctx.validation_results_store.list_keys():
        return None
    site_dir = Path(site_dir).resolve()
    if (site_dir / "index.html").is_file():  # one site per stage run: no pages of earlier runs
        shutil.rmtree(site_dir)
    elif site_dir.is_dir() and any(site_dir.iterdir()):
        raise ValueError(f"{site_dir}: not a Data Docs site and not empty; give an empty or new folder")
    config = {
        "class_name": "SiteBuilder",
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(site_dir)},
    }
    if "mll" in (ctx.variables.data_docs_sites or {}):
        ctx.update_data_docs_site("mll", config)
    else:
        ctx.add_data_docs_site("mll", config)
    ctx.build_data_docs(site_names=["mll"])
    return site_dir / "index.html"


def manifest_expectations(min_per_class: int, max_per_class: int | None = None) -> list:
    import great_expectations as gx

    E = gx.expectations
    return [
        E.ExpectColumnValuesToNotBeNull(column="uri"),
        E.ExpectColumnValuesToBeUnique(column="uri"),  # across all splits: no image in two splits
        E.ExpectColumnValuesToBeInSet(column="path_exists", value_set=[True]),
        E.ExpectColumnValuesToMatchRegex(column="synset", regex=SYNSET_REGEX),
        E.ExpectColumnValuesToBeInSet(column="synset_valid", value_set=[True]),
        E.ExpectColumnValuesToBeInSet(column="split", value_set=list(SPLITS)),
        E.ExpectColumnValuesToBeBetween(column="label", min_value=0),
        E.ExpectColumnValuesToNotBeNull(column="domain"),
    ]


def count_expectations(min_per_class: int, max_per_class: int | None) -> list:
    import great_expectations as gx

    return [gx.expectations.ExpectColumnValuesToBeBetween(column="n", min_value=min_per_class, max_value=max_per_class)]


def validate_manifests(
    frame: pd.DataFrame,
    synset_ok: Callable[[str], bool],
    min_per_class: int = 1,
    max_per_class: int | None = None,
) -> list[Outcome]:
    """Validate the union of all split manifests; returns the outcomes (raise with `check_manifests`)."""
    f = frame.copy()
    f["path_exists"] = [uri_exists(u) for u in f["uri"]]
    known = {s: (is_wnid(s) and synset_ok(s)) for s in f["synset"].dropna().unique()}
    f["synset_valid"] = [known.get(s, False) for s in f["synset"]]
    counts = f.groupby(["dataset", "split", "class_name"]).size().reset_index(name="n")
    return [
        run_suite("manifests", f, manifest_expectations(min_per_class, max_per_class)),
        run_suite("class_counts", counts, count_expectations(min_per_class, max_per_class)),
    ]


def check_manifests(
    frame: pd.DataFrame, synset_ok: Callable[[str], bool], min_per_class: int = 1, max_per_class: int | None = None
) -> None:
    """Raise ValidationError naming the failing expectation(s), else return None."""
    for outcome in validate_manifests(frame, synset_ok, min_per_class, max_per_class):
        outcome.raise_for_failures()


def label_expectations(many: bool = False) -> list:
    """The checks on a label's node table; `many`: on several models' tables stacked (column `model`)."""
    import great_expectations as gx

    E = gx.expectations
    score_cols = ("soft_recall", "top1_hit", "false_alarm", "false_top1", "gated_recall", "gated_false_alarm")
    return [
        E.ExpectColumnValuesToNotBeNull(column="node"),
        E.ExpectCompoundColumnsToBeUnique(column_list=["model", "node"])
        if many
        else E.ExpectColumnValuesToBeUnique(column="node"),
        E.ExpectColumnValuesToMatchRegex(column="node", regex=SYNSET_REGEX),
        E.ExpectColumnValuesToBeInSet(column="node_valid", value_set=[True]),
        E.ExpectColumnValuesToBeBetween(column="support", min_value=0),
        E.ExpectColumnValuesToBeInSet(column="support_ok", value_set=[True]),  # measured rows have support > 0
        E.ExpectColumnValuesToBeBetween(column="head_classes", min_value=1),
        *[E.ExpectColumnValuesToBeBetween(column=c, min_value=0.0, max_value=1.0) for c in score_cols],
    ]


def _label_frame(nodes: pd.DataFrame, node_ok: Callable[[str], bool]) -> pd.DataFrame:
    f = nodes.copy()
    f["node_valid"] = [bool(node_ok(n)) for n in f["node"]]
    f["support_ok"] = (~f["measured"]) | (f["support"] > 0)
    # GX treats NaN as a value in range checks; unmeasured scores are NaN by design, so map them to None
    return f.astype(object).where(pd.notna(f), None)


def check_label_table(nodes: pd.DataFrame, node_ok: Callable[[str], bool], model: str = "") -> None:
    """Validate one model's node table before the label is accepted (ValidationError otherwise)."""
    f = _label_frame(nodes, node_ok)
    run_suite(f"labels_{model}".strip("_") or "labels", f, label_expectations()).raise_for_failures()


def check_label_tables(tables: dict[str, pd.DataFrame], node_ok: Callable[[str], bool]) -> dict[str, str]:
    """Validate many models' node tables in one suite run (one run per model cost about half a
    second each, more than labeling a head); returns {model: reason} for the tables that fail,
    found by checking each table alone once the stacked run has failed."""
    if not tables:
        return {}
    stacked = pd.concat([_label_frame(n, node_ok).assign(model=m) for m, n in tables.items()], ignore_index=True)
    if run_suite("labels", stacked, label_expectations(many=True)).success:
        return {}
    bad = {}
    for m, nodes in tables.items():
        try:
            check_label_table(nodes, node_ok, m)
        except ValidationError as exc:
            bad[m] = " ".join(str(exc).split())
    return bad

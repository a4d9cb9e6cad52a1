"""Benchmark tasks: class names resolved to labelled `target_test` images.

A task is data (params.yaml `benchmark.tasks`): class names, each with the images that belong to it
given as dataset class names (`fashion_mnist: [Sandal, Sneaker]`) or WordNet subtrees
(`tuxpaint: [bird.n.01]`), or a whole dataset (`source: digits`). Only `target_test` images are
used: never expert training or probe (node) data, so no method has seen a task's test images.

*User-name tasks* (params.yaml `benchmark.user_names`, a file such as `data/user_names.yaml`): for a
base task and a naming, the same images and labels with the class names a user types instead of the
dataset's own (task `fashion-10@everyday`). They measure what naming costs: each is compared with
its base task. A name the matcher cannot resolve fails that task's cells, not the grid.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from mll.bench.folds import Fold
from mll.config import BenchmarkParams
from mll.data.images import open_image
from mll.data.sdag import SDAG

_SYNSET_NAME = re.compile(r"^[a-z0-9_\-'.]+\.n\.\d\d$")

# The task families of the evaluation protocol (docs/method.md section 9): a task's `family:` in
# params.yaml (default in_domain); user-name tasks are their own family.
FAMILIES = ("in_domain", "leave_one_domain_out", "cross_style", "no_expert_classes", "user_names")
SPLITS = ("dev", "test")  # dev: every tuning decision; test: the frozen final evaluation only


@dataclass
class BenchTask:
    """One benchmark task: class names and its labelled target_test images."""

    name: str
    classes: list[str]
    uris: list[str]
    y: np.ndarray
    support: dict[str, int]
    datasets: list[str]
    members: dict[str, list[tuple[str, str]]]  # class -> (dataset, class name or synset name)
    oracle: str | None = None  # dataset whose oracle expert answers this task
    dropped: int = 0  # images that matched two classes (ambiguous), left out
    base: str | None = None  # a user-name task: the task whose images and labels it reuses
    naming: str | None = None  # ... and the name of its naming in the user-names file
    family: str = "in_domain"  # its task family (FAMILIES)
    split: str = "dev"  # dev | test (SPLITS)
    fold: Fold | None = None  # domains taken out of the hub and the node data (mll.bench.folds)
    _images: list[Image.Image] | None = field(default=None, repr=False)
    _same_images: BenchTask | None = field(default=None, repr=False)  # decode once for a base and its namings

    def images(self) -> list[Image.Image]:
        if self._same_images is not None:
            return self._same_images.images()
        if self._images is None:
            self._images = [open_image(u) for u in self.uris]
        return self._images

    def describe(self) -> dict:
        return {
            "classes": self.classes,
            "support": self.support,
            "n_images": len(self.uris),
            "datasets": self.datasets,
            "oracle": self.oracle,
            "family": self.family,
            "split": self.split,
            **({"fold": {"remove_domains": list(self.fold.remove_domains)}} if self.fold else {}),
            "dropped_ambiguous": self.dropped,
            "members": {c: [f"{d}:{m}" for d, m in ms] for c, ms in self.members.items()},
            **({"base": self.base, "naming": self.naming} if self.base else {}),
        }


def _members(name: str, entry, test: pd.DataFrame) -> dict[str, list[tuple[str, str]]]:
    if isinstance(entry, dict) and "source" in entry:
        ds = entry["source"]
        rows = test[test["dataset"] == ds]
        if rows.empty:
            raise ValueError(
                f"benchmark task {name}: dataset {ds!r} has no target_test images "
                f"(have: {sorted(set(test['dataset']))})"
            )
        order = rows.drop_duplicates("class_name").sort_values("label")["class_name"]
        return {c: [(ds, c)] for c in order}
    classes = entry.get("classes") if isinstance(entry, dict) else None
    if not isinstance(classes, dict) or len(classes) < 2:
        raise ValueError(
            f"benchmark task {name}: give `source: <dataset>` or "
            "`classes: {name: {dataset: [members]}}` with at least two classes"
        )
    out = {}
    for cname, sources in classes.items():
        if not isinstance(sources, dict):
            raise ValueError(
                f"benchmark task {name}, class {cname!r}: expected {{dataset: [class names or synset names]}}"
            )
        out[str(cname)] = [(ds, str(m)) for ds, ms in sources.items() for m in ([ms] if isinstance(ms, str) else ms)]
    return out


def build_task(
    name: str,
    entry: dict,
    test: pd.DataFrame,
    sdag: SDAG,
    max_per_class: int,
    seed: int,
    oracle_datasets: set[str] = frozenset(),
) -> BenchTask:
    """Resolve a task entry against the target_test manifest (deterministic per-class sample)."""
    from mll.data.wordnet import resolve_synset, wnid

    family = entry.get("family", "in_domain") if isinstance(entry, dict) else "in_domain"
    split = entry.get("split", "dev") if isinstance(entry, dict) else "dev"
    if family not in FAMILIES or family == "user_names":
        raise ValueError(
            f"benchmark task {name}: family {family!r} is not one of {', '.join(FAMILIES[:-1])} "
            "(user_names tasks come from benchmark.user_names)"
        )
    if split not in SPLITS:
        raise ValueError(f"benchmark task {name}: split {split!r} is not one of {', '.join(SPLITS)}")
    fold = Fold.from_entry(name, entry.get("fold")) if isinstance(entry, dict) else None
    if family == "leave_one_domain_out" and fold is None:
        raise ValueError(f"benchmark task {name}: a leave_one_domain_out task needs fold: {{remove_domains: [...]}}")
    members = _members(name, entry, test)
    hit = np.zeros((len(test), len(members)), dtype=bool)
    ds_col, cls_col, syn_col = test["dataset"].to_numpy(), test["class_name"].to_numpy(), test["synset"].to_numpy()
    for k, (cname, ms) in enumerate(members.items()):
        for ds, m in ms:
            in_ds = ds_col == ds
            if not in_ds.any():
                raise ValueError(f"benchmark task {name}, class {cname!r}: no target_test images from {ds!r}")
            if _SYNSET_NAME.match(m):
                root = wnid(resolve_synset(m))
                nodes = (sdag.descendants(root) | {root}) if root in sdag else {root}
                sel = in_ds & np.isin(syn_col, list(nodes))
            else:
                sel = in_ds & (cls_col == m)
            if not sel.any():
                known = sorted(set(cls_col[in_ds]))[:12]
                raise ValueError(
                    f"benchmark task {name}, class {cname!r}: {ds}:{m} matches no target_test image "
                    f"(class names there include {known}; or give a synset name like bird.n.01)"
                )
            hit[:, k] |= sel
    single = hit.sum(1) == 1
    dropped = int((hit.sum(1) > 1).sum())
    rng = np.random.default_rng(seed)
    uris, y, support = [], [], {}
    for k, cname in enumerate(members):
        idx = np.flatnonzero(hit[:, k] & single)
        if len(idx) > max_per_class:
            idx = np.sort(rng.choice(idx, max_per_class, replace=False))
        uris += list(test["uri"].to_numpy()[idx])
        y += [k] * len(idx)
        support[cname] = len(idx)
    datasets = sorted({d for ms in members.values() for d, _ in ms})
    named = all(not _SYNSET_NAME.match(m) for ms in members.values() for _, m in ms)
    oracle = datasets[0] if len(datasets) == 1 and named and datasets[0] in oracle_datasets else None
    return BenchTask(
        name, list(members), uris, np.asarray(y), support, datasets, members, oracle, dropped,
        family=family, split=split, fold=fold,
    )  # fmt: skip


def build_tasks(
    tasks: dict,
    test: pd.DataFrame,
    sdag: SDAG,
    bp: BenchmarkParams,
    oracle_datasets: set[str] = frozenset(),
    user_names: dict | None = None,
) -> list[BenchTask]:
    """Every task of `benchmark.tasks`, resolved against the manifest's target_test rows, then the
    user-name tasks of `user_names` (`load_user_names`)."""
    test = test[test["split"] == "target_test"] if "split" in test else test
    built = [
        build_task(n, e, test.reset_index(drop=True), sdag, bp.max_per_class, bp.seed, oracle_datasets)
        for n, e in tasks.items()
    ]
    return built + (user_name_tasks(user_names, {t.name: t for t in built}) if user_names else [])


TEST_PREFIX = "test:"


def build_test_tasks(
    tasks: dict,
    final: pd.DataFrame,
    sdag: SDAG,
    bp: BenchmarkParams,
    oracle_datasets: set[str] = frozenset(),
    user_names: dict | None = None,
) -> tuple[list[BenchTask], dict[str, str]]:
    """The same task definitions on the `final_test` images: tasks named `test:<task>`, split
    `test`. A task whose classes have no final-test image (MNIST, Tux Paint: nothing was left to
    hold out) is left out; returns (tasks, {task: why it was left out})."""
    final = final[final["split"] == "final_test"] if "split" in final else final
    built, missing = [], {}
    for n, e in tasks.items():
        try:
            t = build_task(n, e, final.reset_index(drop=True), sdag, bp.max_per_class, bp.seed, oracle_datasets)
        except ValueError as exc:  # no final-test image for one of its classes
            missing[n] = str(exc)
            continue
        built.append(replace(t, name=TEST_PREFIX + n, split="test"))
    users = {}
    if user_names:
        users = {TEST_PREFIX + b: v for b, v in user_names.items() if TEST_PREFIX + b in {t.name for t in built}}
    return built + (user_name_tasks(users, {t.name: t for t in built}) if users else []), missing


USER_TASK_SEP = "@"


def load_user_names(path: Path | str) -> dict[str, dict[str, dict[str, str]]]:
    """The user-names file: {base task: {naming: {dataset's class name: user's name}}}, checked."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"benchmark.user_names: {path} does not exist")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected {{task: {{naming: {{class: name}}}}}}")
    out: dict[str, dict[str, dict[str, str]]] = {}
    for task, namings in raw.items():
        if not isinstance(namings, dict) or not all(isinstance(m, dict) for m in namings.values()):
            raise ValueError(f"{path}: task {task!r} must map each naming to {{class: name}}")
        out[str(task)] = {str(n): {str(c): str(u) for c, u in m.items()} for n, m in namings.items()}
    return out


def user_name_tasks(user_names: dict[str, dict[str, dict[str, str]]], base: dict[str, BenchTask]) -> list[BenchTask]:
    """One task per (base task, naming): the base task's images and labels under the user's names."""
    out = []
    for task, namings in user_names.items():
        if task not in base:
            raise ValueError(f"user names: {task!r} is not a benchmark task (benchmark.tasks has {', '.join(base)})")
        b = base[task]
        for naming, names in namings.items():
            missing = [c for c in b.classes if c not in names]
            extra = sorted(set(names) - set(b.classes))
            if missing or extra:
                raise ValueError(
                    f"user names {task}{USER_TASK_SEP}{naming}: "
                    + (f"no name for class(es) {missing}" if missing else "")
                    + ("; " if missing and extra else "")
                    + (f"class(es) {extra} are not classes of {task}" if extra else "")
                )
            classes = [names[c] for c in b.classes]
            out.append(
                replace(
                    b,
                    name=f"{task}{USER_TASK_SEP}{naming}",
                    classes=classes,
                    support={names[c]: n for c, n in b.support.items()},
                    members={names[c]: ms for c, ms in b.members.items()},
                    oracle=None,  # the oracle's answer does not depend on names: its base task has it
                    base=task,
                    naming=naming,
                    family="user_names",
                    _images=None,
                    _same_images=b,
                )
            )
    return out

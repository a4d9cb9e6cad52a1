"""The benchmark report: summary numbers by hand, Markdown tables, PNG plots, README sync, the CLI."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from mll.bench.methods import register_method, unregister_method
from mll.bench.plots import answer_matrix, plots
from mll.bench.readme import sync_readme
from mll.bench.report import main, markdown, readme_block, write_report
from mll.bench.summary import summarize

HUB = ["fmnist-tops", "fmnist-shoes", "mnist-lenet", "imagenet-r18", "cifar-vgg"]
TASKS = {
    "fashion-10": {
        "classes": ["T-shirt/top", "Trouser", "Sneaker", "Bag"],
        "support": {"T-shirt/top": 40, "Trouser": 35, "Sneaker": 45, "Bag": 30},
        "n_images": 150,
        "datasets": ["fashion_mnist"],
        "oracle": "fashion_mnist",
    },
    "digits-5": {
        "classes": ["zero", "one", "two"],
        "support": {"zero": 20, "one": 22, "two": 18},
        "n_images": 60,
        "datasets": ["mnist"],
        "oracle": "mnist",
    },
    "photo-animals": {
        "classes": ["dog", "tabby", "jeep"],
        "support": {"dog": 10, "tabby": 12, "jeep": 8},
        "n_images": 30,
        "datasets": ["photos"],
        "oracle": None,
    },
}
# task -> method -> accuracy (a list for the seeded random baseline); None = skipped
ACC = {
    "fashion-10": {
        "mll": 0.82,
        "single": 0.78,
        "uniform": 0.60,
        "random": [0.50, 0.56, 0.62],
        "top1": 0.70,
        "ungated": 0.75,
        "oracle": 0.90,
    },
    "digits-5": {
        "mll": 0.70,
        "single": 0.72,
        "uniform": 0.55,
        "random": [0.40, 0.45, 0.50],
        "top1": 0.74,
        "ungated": 0.68,
        "oracle": 0.95,
    },
    "photo-animals": {
        "mll": 0.64,
        "single": 0.60,
        "uniform": 0.50,
        "random": [0.30, 0.33, 0.36],
        "top1": 0.58,
        "ungated": 0.66,
        "oracle": None,
    },
}
ANSWERED = {
    "fashion-10": {
        "T-shirt/top": ["fmnist-tops"],
        "Trouser": ["fmnist-tops"],
        "Sneaker": ["fmnist-shoes"],
        "Bag": ["fmnist-tops", "imagenet-r18"],
    },
    "digits-5": {"zero": ["mnist-lenet"], "one": ["mnist-lenet"], "two": ["mnist-lenet"]},
    "photo-animals": {"dog": ["imagenet-r18"], "tabby": ["imagenet-r18", "cifar-vgg"], "jeep": ["imagenet-r18"]},
}
CLIP_REASON = "no open_clip checkpoint configured (solve.patch.model)"
TASK_OFFSET = {"fashion-10": 0.0, "digits-5": 0.06, "photo-animals": -0.06}


def _cell(task: str, method: str, acc: float | None, seed: int | None = None, reason: str = "") -> dict:
    ok = acc is not None
    answered = ANSWERED[task] if method == "mll" else {}
    return {
        "task": task,
        "method": method,
        "seed": seed,
        "status": "ok" if ok else "skipped",
        "reason": reason,
        "accuracy": acc,
        "models": sorted({m for ms in answered.values() for m in ms}),
        "answered_by": answered,
        "per_class": {c: acc for c in TASKS[task]["classes"]} if ok else {},
        "seconds": 1.0 if ok else 0.0,
        "detail": "",
    }


def _growth() -> list[dict]:
    rows = []
    for size in (1, 2, 3):
        for seed in (0, 1, 2):
            for task, off in TASK_OFFSET.items():
                mll = round(0.3 + 0.15 * size + 0.01 * seed + off, 6)
                skipped = size == 1 and seed == 0 and task == "photo-animals"  # one sub-hub lacks a task
                rows.append(
                    {
                        "size": size,
                        "seed": seed,
                        "models": HUB[:size],
                        "task": task,
                        "method": "mll",
                        "accuracy": None if skipped else mll,
                        "status": "skipped" if skipped else "ok",
                    }
                )
                rows.append(
                    {
                        "size": size,
                        "seed": seed,
                        "models": HUB[:size],
                        "task": task,
                        "method": "uniform",
                        "accuracy": round(0.6 - 0.05 * size + off, 6),
                    }
                )
    return rows


def make_cells() -> dict:
    cells = []
    for task, by_method in ACC.items():
        for method, acc in by_method.items():
            if isinstance(acc, list):
                cells += [_cell(task, method, a, seed=s) for s, a in enumerate(acc)]
            elif acc is None:
                cells.append(_cell(task, method, None, reason="no training data for this task"))
            else:
                cells.append(_cell(task, method, acc))
        cells.append(_cell(task, "clip", None, reason=CLIP_REASON))
    return {"hub": HUB, "tasks": TASKS, "cells": cells, "growth": _growth()}


def _main_header(md: str) -> str:
    """The per-task table's header line (the report opens with the family table)."""
    return next(line for line in md.splitlines() if line.startswith("| task |"))


@pytest.fixture(scope="module")
def cells() -> dict:
    return make_cells()


@pytest.fixture(scope="module")
def summary(cells) -> dict:
    return summarize(cells)


# --- summary ----------------------------------------------------------------------------------------
def test_methods_in_display_order(summary):
    assert summary["methods"] == ["mll", "single", "uniform", "random", "top1", "ungated", "oracle", "clip"]


def test_unknown_method_goes_last_labelled_by_key(cells):
    c = copy.deepcopy(cells)
    c["cells"].insert(0, _cell("digits-5", "my-new", 0.5))
    s = summarize(c)
    assert s["methods"][-1] == "my-new"
    assert "| my-new |" in _main_header(markdown(c, s))


def test_registry_flags_drive_columns_bolding_and_legend(cells):
    """A registered method heads its own column; a reference (here: hindsight) is neither bolded nor a
    zero-shot baseline; a seeded one gets a std and joins the legend."""

    @register_method(
        "peek", label="test-label peek", heads="-", combination="-", hindsight=True, seeded=True, prose="the peek"
    )
    def _peek(run):
        raise AssertionError("the report never runs a method")

    try:
        c = copy.deepcopy(cells)
        c["cells"] += [_cell(t, "peek", 0.99, seed=0) for t in TASKS]
        s = summarize(c)
        md = markdown(c, s)
        assert s["methods"][-1] == "peek" and "peek" not in s["zero_shot_baselines_beaten"]
        assert _main_header(md).endswith("| CLIP zero-shot | test-label peek |")
        fashion = _table_row(md, "fashion-10")
        assert fashion[-1] == "0.990 ± 0.000" and fashion[3] == "**0.820**"  # MLL stays the row's best
        assert "random selection and test-label peek are the mean ± std over their seeds" in md
        assert (
            "(the oracle expert, the hindsight best single model, the hindsight best selection and the peek "
            "are references, not bolded)" in md
        )
        assert "; random = mean ± std over seeds; peek = mean ± std over seeds)._" in readme_block(s, c)
    finally:
        unregister_method("peek")


def test_means_by_hand(summary):
    assert summary["mean"]["mll"] == pytest.approx((0.82 + 0.70 + 0.64) / 3, abs=1e-4)
    assert summary["mean"]["top1"] == pytest.approx((0.70 + 0.74 + 0.58) / 3, abs=1e-4)
    assert summary["mean"]["oracle"] == pytest.approx((0.90 + 0.95) / 2, abs=1e-4)
    # oracle lacks photo-animals: in "mean" but not in "mean_all_tasks"
    assert "oracle" not in summary["mean_all_tasks"]
    assert summary["mean_all_tasks"]["mll"] == summary["mean"]["mll"]
    assert summary["tasks"]["digits-5"]["single"] == 0.72


def test_random_mean_and_std_over_seeds(summary):
    row = summary["tasks"]["fashion-10"]
    assert row["random"] == pytest.approx(0.56, abs=1e-4)
    assert row["random_std"] == pytest.approx(0.06, abs=1e-4)  # sample std of 0.50, 0.56, 0.62
    assert summary["tasks"]["photo-animals"]["random_std"] == pytest.approx(0.03, abs=1e-4)
    assert "mll_std" not in row  # unseeded methods get no std
    assert summary["mean"]["random"] == pytest.approx((0.56 + 0.45 + 0.33) / 3, abs=1e-4)


def test_oracle_ratio_over_tasks_with_both(summary):
    o = summary["oracle"]
    assert o["tasks"] == ["fashion-10", "digits-5"]
    assert o["mll_mean"] == pytest.approx(0.76, abs=1e-4)
    assert o["oracle_mean"] == pytest.approx(0.925, abs=1e-4)
    assert o["ratio"] == pytest.approx(round(0.76 / 0.925, 4), abs=1e-9)


def test_oracle_ratio_null_without_oracle(cells):
    c = copy.deepcopy(cells)
    c["cells"] = [x for x in c["cells"] if x["method"] != "oracle"]
    assert summarize(c)["oracle"] == {"tasks": [], "mll_mean": None, "oracle_mean": None, "ratio": None}


def test_skipped_absent_and_listed(summary):
    for row in summary["tasks"].values():
        assert "clip" not in row and "clip_std" not in row
        assert all(isinstance(v, float) for v in row.values())  # never null: DVC metrics stay numeric
    assert "oracle" not in summary["tasks"]["photo-animals"]
    assert summary["skipped"] == {"clip": CLIP_REASON}  # oracle ran on some tasks: not listed
    assert "clip" not in summary["mean"]


def test_zero_shot_flags_and_losses(summary, cells):
    assert summary["zero_shot_baselines_beaten"] == {"uniform": True, "random": True, "top1": True, "ungated": True}
    assert summary["per_task_losses"] == [
        {"task": "digits-5", "method": "top1", "mll": 0.70, "baseline": 0.74},
        {"task": "photo-animals", "method": "ungated", "mll": 0.64, "baseline": 0.66},
    ]
    # single (hindsight) beats MLL on digits-5 but is not a zero-shot baseline
    assert all(x["method"] != "single" for x in summary["per_task_losses"])
    c = copy.deepcopy(cells)
    for x in c["cells"]:
        if x["method"] == "ungated":
            x["accuracy"] += 0.2
    s = summarize(c)
    assert s["zero_shot_baselines_beaten"]["ungated"] is False
    assert s["zero_shot_baselines_beaten"]["top1"] is True


def test_growth_averages_tasks_first_then_seeds(summary):
    g = summary["growth"]["mll"]
    assert list(g) == ["1", "2", "3"]
    # size 1: sub-hub seed 0 lacks photo-animals -> (0.45 + 0.51) / 2 = 0.48; seeds 1, 2 -> 0.46, 0.47
    assert g["1"] == {"mean": 0.47, "std": 0.01, "min": 0.46, "max": 0.48, "n": 3}
    assert g["3"]["mean"] == pytest.approx(0.76, abs=1e-4)
    assert summary["growth"]["uniform"]["2"] == {"mean": 0.5, "std": 0.0, "min": 0.5, "max": 0.5, "n": 3}
    assert summary["growth_non_decreasing"] == {"mll": True, "uniform": False}


@pytest.mark.parametrize("dip, expected", [(0.003, True), (0.0, True), (0.01, False)])
def test_growth_non_decreasing_tolerance(dip, expected):
    rows = [
        {"size": s, "seed": 0, "task": "t", "method": "mll", "accuracy": a}
        for s, a in ((1, 0.5), (2, 0.6), (4, 0.6 - dip))
    ]
    s = summarize({"hub": [], "tasks": {}, "cells": [], "growth": rows})
    assert s["growth_non_decreasing"] == {"mll": expected}
    assert list(s["growth"]["mll"]) == ["1", "2", "4"]


def test_floats_rounded_to_4_decimals(cells):
    c = copy.deepcopy(cells)
    c["cells"][0]["accuracy"] = 0.123456789
    text = json.dumps(summarize(c))
    assert "0.1235" in text and "0.123456" not in text


def test_bad_document_is_a_value_error():
    with pytest.raises(ValueError, match="'cells'"):
        summarize({"tasks": {}})


# --- markdown ---------------------------------------------------------------------------------------
def _table_row(md: str, first: str) -> list[str]:
    line = next(x for x in md.splitlines() if x.startswith(f"| {first} |"))
    return [p.strip() for p in line.strip("|").split("|")]


def test_markdown_tables(cells, summary):
    md = markdown(cells, summary)
    assert md.startswith("# ")
    assert "target_test" in md
    assert (
        "| task | classes | images | MLL | best single model (hindsight) | uniform ensemble | random selection | "
        "per-class top-1 | MLL w/o gates or stacking | oracle expert | CLIP zero-shot |"
    ) in md
    fashion = _table_row(md, "fashion-10")
    assert fashion[:4] == ["fashion-10", "4", "150", "**0.820**"]
    assert fashion[4] == "0.780" and fashion[6] == "0.560 ± 0.060" and fashion[9] == "0.900" and fashion[10] == "–"
    digits = _table_row(md, "digits-5")
    assert digits[3] == "0.700" and digits[7] == "**0.740**"  # top1 wins the row
    assert digits[4] == "0.720" and digits[9] == "0.950"  # single and oracle are never bolded
    animals = _table_row(md, "photo-animals")
    assert animals[8] == "**0.660**" and animals[9] == "–"
    mean = _table_row(md, "**mean**")
    assert mean[3] == "**0.720**" and mean[-1] == "–"
    assert mean[9].startswith("0.925") and mean[9].endswith("\\*")  # oracle mean over 2 of 3 tasks
    assert "0.822" in md and "oracle" in md  # MLL/oracle line
    assert "| Sneaker | 45 |" in md  # per-class support
    assert "| 1 | 0.470 ± 0.010 (3) |" in md  # growth table
    assert "CLIP zero-shot (" + CLIP_REASON + ")" in md


def test_readme_block(cells, summary):
    block = readme_block(summary, cells)
    assert "| **mean** |" in block and "MLL reaches" in block and "make results" in block
    assert "reports/benchmark.md" in block
    assert "## Accuracy against hub size" not in block


def test_answer_matrix(cells):
    labels, models, mat = answer_matrix(cells)
    assert len(labels) == 4 + 3 + 3 and labels[0] == "fashion-10: T-shirt/top"
    assert models == HUB
    assert mat[labels.index("photo-animals: tabby")].tolist() == [0, 0, 0, 1, 1]
    assert int(mat.sum()) == sum(len(ms) for t in ANSWERED.values() for ms in t.values())


# --- plots ------------------------------------------------------------------------------------------
def _check_png(path: Path) -> None:
    from PIL import Image

    assert path.is_file()
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.width > 100 and im.height > 100
        assert im.width <= 14 * 110 + 20  # <= 14 in at dpi 110 (+ tight-bbox padding)


def test_plots_are_pngs(cells, summary, tmp_path):
    paths = plots(cells, summary, tmp_path / "plots")
    assert [p.name for p in paths] == [
        "accuracy_by_task.png",
        "growth.png",
        "growth_fixed_coverage.png",
        "families.png",
        "answers.png",
    ]
    for p in paths:
        _check_png(p)


def test_plots_without_growth_or_mll(tmp_path):
    c = {"hub": [], "tasks": {}, "cells": [_cell("digits-5", "uniform", 0.5)], "growth": []}
    for p in plots(c, summarize(c), tmp_path):
        _check_png(p)


# --- README sync ------------------------------------------------------------------------------------
def test_sync_readme_replaces_only_the_block(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(
        "# Title\n\nintro\n<!-- benchmark:start -->\nold table\nold line\n<!-- benchmark:end -->\n\nafter\n"
    )
    assert sync_readme(readme, "| new |\n|---|\n") is True
    assert readme.read_text() == (
        "# Title\n\nintro\n<!-- benchmark:start -->\n| new |\n|---|\n<!-- benchmark:end -->\n\nafter\n"
    )
    assert sync_readme(readme, "| new |\n|---|") is True  # idempotent
    assert readme.read_text().count("| new |") == 1


def test_sync_readme_without_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# Title\nno markers\n")
    assert sync_readme(readme, "x") is False
    assert readme.read_text() == "# Title\nno markers\n"


@pytest.mark.parametrize(
    "marker, missing", [("<!-- benchmark:start -->", "benchmark:end"), ("<!-- benchmark:end -->", "benchmark:start")]
)
def test_sync_readme_single_marker_raises(tmp_path, marker, missing):
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n{marker}\ntext\n")
    with pytest.raises(ValueError, match=missing):
        sync_readme(readme, "x")
    assert readme.read_text() == f"# Title\n{marker}\ntext\n"


# --- files and CLI ----------------------------------------------------------------------------------
def test_write_report(cells, tmp_path):
    path = tmp_path / "cells.json"
    path.write_text(json.dumps(cells))
    summary = write_report(path, tmp_path / "reports")
    assert json.loads((tmp_path / "reports" / "benchmark.json").read_text()) == summary
    assert (tmp_path / "reports" / "benchmark.md").read_text() == markdown(cells, summary)
    for name in ("accuracy_by_task.png", "growth.png", "growth_fixed_coverage.png", "families.png", "answers.png"):
        assert (tmp_path / "reports" / "plots" / name).is_file()


def test_cli_main(cells, tmp_path, capsys):
    path = tmp_path / "bench" / "cells.json"
    path.parent.mkdir()
    path.write_text(json.dumps(cells))
    readme = tmp_path / "README.md"
    readme.write_text("top\n<!-- benchmark:start -->\n<!-- benchmark:end -->\nbottom\n")
    out = tmp_path / "reports"
    assert main(["--cells", str(path), "--out", str(out), "--readme", str(readme)]) == 0
    assert (out / "benchmark.json").is_file() and (out / "benchmark.md").is_file()
    assert len(list((out / "plots").glob("*.png"))) == 5
    text = readme.read_text()
    assert (
        text.startswith("top\n<!-- benchmark:start -->\n")
        and "\n| task |" in text
        and text.endswith("<!-- benchmark:end -->\nbottom\n")
    )
    line = capsys.readouterr().out.strip()
    assert len(line.splitlines()) == 1
    assert "MLL mean 0.720" in line and "MLL/oracle 0.822" in line and str(out) in line


def test_cli_help_and_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "--readme" in capsys.readouterr().out
    assert main(["--cells", str(tmp_path / "missing.json"), "--out", str(tmp_path)]) == 2
    assert "missing.json" in capsys.readouterr().err


def test_user_name_tasks_are_compared_with_their_base_task(cells, summary):
    """A user-name task (same images, the user's names) stays out of the main table and its means; the
    report gives its gap to the base task, the matcher's failures, and the classes matched elsewhere."""
    doc = copy.deepcopy(cells)
    base = doc["tasks"]["digits-5"]
    doc["tasks"]["digits-5@words"] = {**base, "classes": ["nought", "one", "deuce"], "base": "digits-5", "naming": "w"}
    doc["tasks"]["digits-5@bad"] = {**base, "classes": ["zero", "blorp", "two"], "base": "digits-5", "naming": "bad"}
    mll = next(c for c in doc["cells"] if c["task"] == "digits-5" and c["method"] == "mll")
    mll["matched"] = {"zero": "n13742358", "one": "n13742573", "two": "n13743269"}
    mll["matched_names"] = {"zero": "zero.n.02", "one": "one.n.01", "two": "two.n.01"}
    words = {
        **_cell("digits-5", "mll", 0.60),
        "task": "digits-5@words",
        "per_class": {"nought": 0.9, "one": 0.7, "deuce": 0.2},
        "matched": {"nought": "n13742358", "one": "n13742573", "deuce": "n02000000"},
        "matched_names": {"nought": "zero.n.02", "one": "one.n.01", "deuce": "deuce.n.04"},
    }
    bad = {**_cell("digits-5", "mll", None), "task": "digits-5@bad", "status": "failed"}
    bad["reason"] = "matching: no SDAG node matches 'blorp'"
    doc["cells"] += [words, bad, {**_cell("digits-5", "top1", 0.80), "task": "digits-5@words"}]
    s = summarize(doc)
    assert s["tasks"] == summary["tasks"] and s["mean"] == summary["mean"]  # the main table is unchanged
    block = s["user_names"]
    assert block["n_tasks"] == 2 and block["failed"] == ["digits-5@bad"]
    row = block["tasks"]["digits-5@words"]
    assert row["mll"] == 0.6 and row["mll_gap"] == pytest.approx(-0.1) and row["top1_gap"] == pytest.approx(0.06)
    assert block["mean_gap"] == {"mll": pytest.approx(-0.1), "top1": pytest.approx(0.06)}
    assert list(row["other_synsets"]) == ["deuce"] and row["other_synsets"]["deuce"]["base_name"] == "two.n.01"
    assert "matching" in block["tasks"]["digits-5@bad"]["failed"]
    md = markdown(doc, s)
    assert "## User-typed names" in md and "| digits-5 | w | 0.600 (-0.100) |" in md
    assert "| digits-5 | bad | failed |" in md and "no SDAG node matches 'blorp'" in md
    assert "| digits-5@words | deuce | deuce.n.04 | two | two.n.01 | 0.200 vs 0.700 |" in md
    assert "### digits-5@words" not in md  # per-class support: base tasks only
    assert not any(label.startswith("digits-5@") for label in answer_matrix(doc)[0])
    assert "## User-typed names" not in markdown(cells, summary)  # no user-name task, no section


# --- the protocol: families, splits, paired tests, the committed schema ---------------------------------
def _protocol_cells() -> dict:
    """Two dev in-domain tasks, one test task, one user-name task; per-image hits chosen so that MLL
    beats `uniform` clearly on one task (36 vs 0 discordant images) and ties `top1` everywhere."""

    def hits(n_right: int, n: int) -> str:
        return "1" * n_right + "0" * (n - n_right)

    tasks = {
        "a": {"classes": ["x", "y"], "n_images": 100, "family": "in_domain", "split": "dev"},
        "b": {"classes": ["x", "y"], "n_images": 50, "family": "in_domain", "split": "dev"},
        "c": {"classes": ["x", "y"], "n_images": 60, "family": "cross_style", "split": "test"},
        "a@kids": {"classes": ["p", "q"], "n_images": 100, "base": "a", "naming": "kids"},
    }
    right = {  # task -> method -> images right (the first ones)
        "a": {"mll": 90, "uniform": 54, "top1": 89},
        "b": {"mll": 40, "uniform": 39, "top1": 40},
        "c": {"mll": 30, "uniform": 30, "top1": 31},
        "a@kids": {"mll": 70, "uniform": 71, "top1": 70},
    }
    cells = [
        {"task": t, "method": m, "seed": None, "status": "ok", "accuracy": k / tasks[t]["n_images"],
         "hits": hits(k, tasks[t]["n_images"])}
        for t, by in right.items() for m, k in by.items()
    ]  # fmt: skip
    return {"tasks": tasks, "cells": cells, "growth": []}


def test_families_splits_and_paired_tests():
    s = summarize(_protocol_cells())
    assert s["split"] == {"a": "dev", "b": "dev", "c": "test", "a@kids": "dev"}
    dev = s["families"]["dev"]
    assert set(dev) == {"in_domain", "user_names"} and set(s["families"]["test"]) == {"cross_style"}
    e = dev["in_domain"]["mll"]
    assert e["mean"] == pytest.approx((0.9 + 0.8) / 2) and e["n_tasks"] == 2 and e["n_images"] == 150
    assert e["ci_low"] < e["mean"] < e["ci_high"]
    row = s["tasks"]["a"]  # per task: a bootstrap over its images
    assert row["mll_ci_low"] < row["mll"] == 0.9 < row["mll_ci_high"] and "c" not in s["tasks"]  # c: test split
    p = s["paired"]["dev"]["in_domain"]
    assert (p["uniform"]["wins"], p["uniform"]["ties"], p["uniform"]["losses"]) == (1, 1, 0)
    assert p["uniform"]["tasks"]["a"]["mll_only"] == 36 and p["uniform"]["tasks"]["a"]["p_holm"] < 0.05
    assert p["top1"]["wins"] == p["top1"]["losses"] == 0 and p["top1"]["mll_only"] == 1
    # Holm: the adjusted p is never below the raw one
    assert all(r["p_holm"] >= r["p"] for m in p.values() for r in m["tasks"].values())


def test_report_matches_the_committed_schema():
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((Path(__file__).parents[1] / "reports" / "benchmark.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    v = jsonschema.Draft202012Validator(schema)
    masked = [
        {
            "task": "a", "family": "in_domain", "split": "dev", "variant": variant, "kind": kind, "size": 1,
            "hidden": ["x"], "accuracy": 0.5, "unmasked_accuracy": 0.75, "hits": "1010", "hidden_hits": "10",
        }
        for variant in ("heads_hidden", "heads_and_nodes_hidden")
        for kind in ("semantic", "backoff", "none")
    ]  # fmt: skip
    with_patch = summarize({**_protocol_cells(), "masked": masked})
    assert with_patch["patch"]["dev"]["heads_hidden"]["backoff"]["vs_semantic"]["p"] == 1.0
    for doc in (summarize(_protocol_cells()), summarize(make_cells()), with_patch):
        assert not [e.message for e in v.iter_errors(json.loads(json.dumps(doc)))]
    bad = summarize(_protocol_cells())
    bad["families"]["dev"]["in_domain"]["mll"]["ci_low"] = 1.5
    bad["split"]["a"] = "train"
    assert len(list(v.iter_errors(json.loads(json.dumps(bad))))) == 2
    committed = Path(__file__).parents[1] / "reports" / "benchmark.json"  # what `make demo` wrote
    assert not [e.message for e in v.iter_errors(json.loads(committed.read_text()))]

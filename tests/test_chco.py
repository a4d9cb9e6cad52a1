"""CHCO's solvers (heuristic vs exact, HiGHS's status, HiGHS from several threads), the label files and
the on-disk label index it reads, and the selections they lead to on the tiny hub."""

import json
import os
import shutil
import threading

import numpy as np
import pandas as pd
import pytest

import mll.solve.heuristic as heuristic
import mll.solve.problem as problem
import mll.solve.solvers as solvers
from mll.bench.synthetic import SyntheticIndex, random_problem, synthetic_sdag, write_synthetic_hub
from mll.labels.index import LabelIndex
from mll.labels.index_file import INDEX_DIR, refresh_index
from mll.labels.store import OUTPUTS, Label, Storage, has_mapped_outputs, read_label, upgrade_label, write_label
from mll.solve.chco import select
from mll.solve.heuristic import solve_heuristic
from mll.solve.solvers import solve_exact


# --- the solvers -----------------------------------------------------------------------------------
def test_heuristic_is_within_one_point_of_the_optimum_on_benchmark_sized_problems():
    gaps = []
    for seed in range(12):  # the benchmark's problems: 30 classes x 100 models, 3 candidates, 1-2 heads
        p = random_problem(np.random.default_rng(30_000 + seed), 30, 100)
        (ex, how), (he, _) = solve_exact(p), solve_heuristic(p)
        assert how == "highs"
        gaps.append(p.objective(ex) - p.objective(he))
    assert min(gaps) >= -1e-9 and max(gaps) <= 0.01, gaps
    assert np.mean(gaps) <= 0.002, gaps
    p = random_problem(np.random.default_rng(30), 30, 100)  # where greedy + coordinate ascent was 0.021 short
    assert p.objective(solve_exact(p)[0]) - p.objective(solve_heuristic(p)[0]) <= 0.01


def test_heuristic_answers_are_valid_and_never_below_coordinate_ascent():
    rng = np.random.default_rng(5)
    for _ in range(10):
        p = random_problem(rng, int(rng.integers(2, 20)), int(rng.integers(3, 40)), cost=float(rng.uniform(0, 0.05)))
        he, _ = solve_heuristic(p)
        assert all(0 <= o < len(opts) for o, opts in zip(he, p.options))
        greedy = heuristic._coordinate_ascent(p, [int(np.argmax(a)) for a in p.acc], 3)
        assert p.objective(he) >= p.objective(greedy) - 1e-12


def test_heuristic_copes_with_long_chains_of_classes_without_a_choice():
    # 100 classes with one option each, chained by shared models, then two classes with a choice
    options = [[(f"m{i}", f"m{i + 1}")] for i in range(100)] + [[("a",), ("b",)], [("a",), ("c",)]]
    p = problem.Problem(options, [[0.9]] * 100 + [[0.8, 0.9], [0.8, 0.9]], 0.01)
    choice, _ = solve_heuristic(p)
    assert choice == [0] * 100 + [0, 0]  # sharing "a" beats two better but separate heads
    assert p.objective(choice) == pytest.approx(p.objective(solve_exact(p)[0]))


def test_highs_time_limit_falls_back_to_the_heuristic_with_the_reason():
    p = random_problem(np.random.default_rng(3), 30, 100)
    notes: list[str] = []
    choice, how = solve_exact(p, time_limit=1e-6, notes=notes)
    assert how == "greedy+local (HiGHS fallback)" and choice == solve_heuristic(p)[0]
    assert len(notes) == 1 and "Time limit reached" in notes[0] and "heuristic answered" in notes[0]


class _Stops:
    """A HiGHS instance whose solve ends with a given model status (any non-optimal one)."""

    def __init__(self, h, status):
        self._h, self._status = h, status

    def __getattr__(self, name):
        return getattr(self._h, name)

    def getModelStatus(self):
        return self._status


def test_any_non_optimal_highs_status_is_not_read_as_a_solution(monkeypatch):
    import highspy

    real = solvers._quiet_highs
    monkeypatch.setattr(solvers, "_quiet_highs", lambda hs: _Stops(real(hs), highspy.HighsModelStatus.kSolveError))
    p = random_problem(np.random.default_rng(4), 30, 100)
    notes: list[str] = []
    choice, how = solve_exact(p, notes=notes)
    assert "fallback" in how and choice == solve_heuristic(p)[0]
    assert "Solve error" in notes[0]


def test_concurrent_exact_solves_lose_no_output_and_agree(capfd):
    import sys

    problems = [random_problem(np.random.default_rng(s), 30, 100) for s in (1, 2)]
    expected = [solve_exact(p)[0] for p in problems]
    got: list[list] = [[], []]
    errors: list[BaseException] = []
    done = threading.Event()
    written = []

    def solve(i: int) -> None:
        try:
            for _ in range(12):
                got[i].append(solve_exact(problems[i])[0])
        except BaseException as exc:
            errors.append(exc)

    def write() -> None:  # straight to file descriptor 1, as any library or print's flush does
        n = 0
        while not done.is_set() or n < 500:
            os.write(1, f"line {n}\n".encode())
            n += 1
        written.append(n)

    threads = [threading.Thread(target=solve, args=(i,)) for i in (0, 1)]
    printer = threading.Thread(target=write)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, so a write can land inside any window
    capfd.readouterr()
    try:
        printer.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        done.set()
        printer.join()
    finally:
        sys.setswitchinterval(interval)
    out = capfd.readouterr().out
    assert not errors, errors
    assert got == [[expected[0]] * 12, [expected[1]] * 12]
    assert out.splitlines() == [f"line {i}" for i in range(written[0])]  # nothing lost, no HiGHS banner


# --- label files -----------------------------------------------------------------------------------
def _label(model: str, n: int = 40, c: int = 5, top_k: int | None = None, seed: int = 0) -> Label:
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, c)).astype(np.float32)
    logp = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
    storage = Storage(top_k)
    enc = storage.encode(logp)
    nodes = pd.DataFrame(
        {
            "node": ["n00000001", f"n000001{seed:02d}"],
            "head_classes": [1, 1],
            "support": [3, 2],
            "measured": [True, True],
            "top1_hit": [0.5, 0.6],
            "gated_recall": [0.4, np.nan],
            "gated_false_alarm": [0.1, 0.2],
            "false_alarm": [0.2, 0.3],
            "soft_recall": [0.5, 0.7],
        }
    )
    summary = {"key": f"key-{model}", "storage": str(storage), "probe_hash": "p"}
    return Label(
        model,
        summary["key"],
        [f"img://{i}" for i in range(n)],
        [f"n{i % 7:08d}" for i in range(n)],
        enc["logp"],
        enc["topk_idx"],
        enc["topk_logp"],
        enc["rest_logp"],
        np.logaddexp.reduce(logits, axis=1).astype(np.float32),
        nodes,
        summary,
    )


def _as_old_layout(root, model: str) -> None:
    """Rewrite a label the way labels were written before the .npy files: every array in outputs.npz."""
    folder = root / model
    with np.load(folder / OUTPUTS, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    for f in folder.glob("*.npy"):
        arrays[f.stem] = np.load(f, allow_pickle=False)
        f.unlink()
    np.savez_compressed(folder / OUTPUTS, **arrays)


@pytest.mark.parametrize("top_k", [None, 2])
def test_label_files_memory_mapped_and_old_layout_still_loads(tmp_path, top_k):
    lab = _label("m", top_k=top_k)
    write_label(lab, tmp_path)
    files = sorted(p.name for p in (tmp_path / "m").iterdir())
    arrays = ["logp.npy"] if top_k is None else ["rest_logp.npy", "topk_idx.npy", "topk_logp.npy"]
    assert files == sorted([OUTPUTS, "lse.npy", "nodes.parquet", "summary.json", *arrays])
    new = read_label(tmp_path, "m")
    assert isinstance(new.lse, np.memmap) and has_mapped_outputs(tmp_path, "m")
    assert new.uris == lab.uris and new.synsets == lab.synsets and new.key == lab.key
    dense = lab.dense_logp(5)
    rows = np.array([3, 7, 8, 30])
    assert np.array_equal(new.dense_logp(5), dense) and np.array_equal(new.dense_logp(5, rows), dense[rows])
    assert set(read_label(tmp_path, "m").summary["store_bytes"]) == set(files) - {"summary.json"}

    _as_old_layout(tmp_path, "m")
    old = read_label(tmp_path, "m")
    assert not has_mapped_outputs(tmp_path, "m") and not isinstance(old.lse, np.memmap)
    assert np.array_equal(old.dense_logp(5), dense) and old.uris == lab.uris
    assert upgrade_label(tmp_path, "m") and not upgrade_label(tmp_path, "m")  # converted once
    again = read_label(tmp_path, "m")
    assert has_mapped_outputs(tmp_path, "m") and np.array_equal(again.dense_logp(5), dense)
    assert again.summary["key"] == lab.key and np.array_equal(again.lse, lab.lse)


def test_a_failed_write_of_the_new_files_leaves_the_previous_label(tmp_path, monkeypatch):
    import mll.labels.store as store

    write_label(_label("m", seed=1), tmp_path)
    before = read_label(tmp_path, "m").dense_logp(5)
    real_save = np.save

    def full_disk(path, arr, *a, **k):
        if str(path).endswith("lse.npy"):
            raise OSError(28, "No space left on device")
        return real_save(path, arr, *a, **k)

    monkeypatch.setattr(store.np, "save", full_disk)
    with pytest.raises(OSError, match="previous label is untouched"):
        write_label(_label("m", seed=2), tmp_path)
    monkeypatch.undo()
    assert np.array_equal(read_label(tmp_path, "m").dense_logp(5), before)
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temporary folder left


# --- the label index on disk -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def synthetic_hub(tmp_path_factory):
    """A small synthetic hub in memory and written to disk, with a 12-class task over it."""
    sdag = synthetic_sdag(3000, seed=0)
    index = SyntheticIndex(sdag, 300, seed=0)
    rng = np.random.default_rng(0)
    covered = index.nodes.loc[index.nodes["head_classes"] > 0, "node"].unique()
    targets = [str(t) for t in rng.choice([n for n in covered if sdag.depth(n) >= 3], 12, replace=False)]
    names = [sdag.name(t) for t in targets]
    sel, _, _ = select(index, sdag, names, targets, index.cards)
    cands = sorted({c["model"] for cl in sel.classes for c in cl.candidates})
    root = write_synthetic_hub(index, tmp_path_factory.mktemp("hub"), cands)
    return {"index": index, "sdag": sdag, "root": root, "targets": targets, "names": names, "sel": sel}


def _comparable(sel) -> dict:
    d = sel.to_dict()
    for k in ("seconds", "timings", "solver_note"):
        d.pop(k)
    return json.loads(json.dumps(d, default=float))


def test_index_file_gives_the_same_rows_and_selection_as_memory(synthetic_hub):
    mem = synthetic_hub["index"]
    disk = LabelIndex(synthetic_hub["root"] / "labels")
    assert disk.source == "index file" and disk.models == mem.models
    pd.testing.assert_frame_equal(disk.nodes, mem.nodes)
    assert disk.covered_nodes() == mem.covered_nodes()
    for node in [*synthetic_hub["targets"], "n90000000", "not-a-node"]:
        pd.testing.assert_frame_equal(disk.rows(node), mem.rows(node))
        assert disk.covers(node) == mem.covers(node)
    some = mem.models[::7]
    pd.testing.assert_frame_equal(disk.subset(some).nodes, mem.subset(some).nodes)
    pd.testing.assert_frame_equal(
        disk.subset(some).rows(synthetic_hub["targets"][0]), mem.subset(some).rows(synthetic_hub["targets"][0])
    )
    cards = synthetic_hub["index"].cards
    for solver in ("exact", "heuristic"):
        a, _, _ = select(
            mem, synthetic_hub["sdag"], synthetic_hub["names"], synthetic_hub["targets"], cards, solver=solver
        )
        b, _, _ = select(
            disk, synthetic_hub["sdag"], synthetic_hub["names"], synthetic_hub["targets"], cards, solver=solver
        )
        assert _comparable(a) == _comparable(b)
    assert set(disk._labels) <= {c["model"] for cl in a.classes for c in cl.candidates} | {mem.models[0]}


def test_a_model_order_other_than_the_index_files_is_kept(synthetic_hub):
    root = synthetic_hub["root"] / "labels"
    names = synthetic_hub["index"].models[::-1]
    disk = LabelIndex(root, names)
    assert disk.source == "index file"
    node = synthetic_hub["targets"][1]
    assert list(disk.rows(node)["model"]) == sorted(disk.rows(node)["model"], reverse=True)
    nodes = synthetic_hub["index"].nodes
    frame = LabelIndex.__new__(LabelIndex)  # the frame a full read in that order builds
    frame._set_frame(pd.concat([nodes[nodes["model"] == m] for m in names], ignore_index=True))
    pd.testing.assert_frame_equal(disk.rows(node), frame.rows(node))
    pd.testing.assert_frame_equal(disk.nodes, frame.nodes)


def test_a_stale_index_file_is_not_used_and_refreshing_reads_only_changed_labels(tmp_path, monkeypatch):
    root = tmp_path / "labels"
    for i, m in enumerate(("a", "b", "c")):
        write_label(_label(m, seed=i), root)
    assert LabelIndex(root).source == "node tables"  # no index file yet
    assert refresh_index(root) and not refresh_index(root)  # written once; nothing changed since
    fresh = LabelIndex(root)
    assert fresh.source == "index file"
    reads = []
    real = pd.read_parquet
    monkeypatch.setattr(pd, "read_parquet", lambda *a, **k: reads.append(a[0]) or real(*a, **k))
    full = LabelIndex(root, ["a", "b", "c", "not-labeled"])
    assert full.source == "index file" and full.models == ["a", "b", "c"] and not reads

    lab = read_label(root, "b")
    write_label(
        Label(
            "b",
            lab.key,
            lab.uris,
            lab.synsets,
            np.asarray(lab.logp),
            None,
            None,
            None,
            np.asarray(lab.lse),
            lab.nodes,
            {"key": "new"},
        ),
        root,
    )
    stale = LabelIndex(root)
    assert stale.source == "node tables" and stale.summaries["b"]["key"] == "new"
    reads.clear()
    assert refresh_index(root) and [p.parent.name for p in reads] == ["b"]
    after = LabelIndex(root)
    assert after.source == "index file" and after.summaries["b"]["key"] == "new"
    pd.testing.assert_frame_equal(after.nodes, stale.nodes)

    shutil.rmtree(root / "c")  # a removed label: its rows are left out (or, asked for by name, stale)
    assert LabelIndex(root).models == ["a", "b"] and LabelIndex(root).source == "index file"
    assert LabelIndex(root, ["a", "b", "c"]).source == "node tables"
    assert refresh_index(root) and LabelIndex(root, ["a", "b", "c"]).source == "index file"
    write_label(_label("d"), root)
    assert LabelIndex(root).source == "node tables" and "d" in LabelIndex(root).models
    assert not [p for p in root.iterdir() if p.is_dir() and p.name.startswith(f"{INDEX_DIR}.")]  # no temporary index


# --- the tiny hub: the same selections through every path ------------------------------------------
TASKS = {
    ("0", "1", "3", "4"): {"0": ["low"], "1": ["low"], "3": ["high"], "4": ["high"]},
    ("0", "3", "car"): {"0": ["low"], "3": ["high"], "car": []},
    ("digit", "0", "5"): {"digit": ["high", "low"], "0": ["low"], "5": ["high"]},
}


def test_tiny_hub_selections_are_the_same_from_index_file_node_tables_and_old_layout(tiny_world, tiny_labels, tmp_path):
    from mll.config import SolveParams
    from mll.solve.task import Context, plan

    labels = tmp_path / "labels"
    shutil.copytree(tiny_labels, labels)

    def selections(expect_source: str) -> dict:
        ctx = Context.load(tiny_world["sdag"], tiny_world["hub"].root, labels, SolveParams(device="cpu"))
        ctx.matcher.use_embeddings = False
        assert ctx.index.source == expect_source
        out = {}
        for names, by_class in TASKS.items():
            sel = plan(ctx, list(names)).selection
            assert sel.by_class() == by_class
            out[names] = _comparable(sel)
        return out

    copied = selections("node tables")  # copies have new inodes: the copied index file is stale
    assert refresh_index(labels)
    assert selections("index file") == copied
    for m in ("low", "high"):
        _as_old_layout(labels, m)
    refresh_index(labels)
    assert selections("index file") == copied


def test_auroc_rows_equals_auroc_to_the_last_bit():
    from mll.labels.scores import auroc, auroc_rows

    rng = np.random.default_rng(0)
    for n_pos, n_neg in ((7, 300), (1, 5), (40, 900), (0, 10)):
        pos = np.round(rng.random((6, n_pos)), 2)  # rounded: plenty of ties
        neg = np.round(rng.random((6, n_neg)), 2)
        assert auroc_rows(pos, neg) == [auroc(p, n) for p, n in zip(pos, neg)]

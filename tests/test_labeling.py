"""Labels: the two layers, storage keyed by card and probe hashes, atomic writes, real kills, the flow."""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mll.config import LabelParams
from mll.data.validation import ValidationError, check_label_table
from mll.labels.compute import ProbeSet, compute_label, label_key
from mll.labels.run import label_stage
from mll.labels.store import read_label, read_summary

NO_TRACK = LabelParams(track=False)


def _paths(w, labels):
    return {"hub_root": w["hub"].root, "probe_path": w["probe"], "sdag_path": w["sdag"], "labels_root": labels}


def test_label_layers_and_what_they_reveal(tiny_world, tmp_path, small_sdag):
    report = label_stage(
        NO_TRACK, **_paths(tiny_world, tmp_path / "labels"), summary_path=tmp_path / "s.json", log=lambda *_: None
    )
    assert report["labeled"] == 2 and report["skipped"] == 0
    lab = read_label(tmp_path / "labels", "low")
    n = len(pd.read_parquet(tiny_world["probe"]))
    assert lab.logp.shape == (n, 3) and lab.logp.dtype == np.float16  # layer 1: stored outputs
    assert np.allclose(np.exp(lab.logp.astype(np.float32)).sum(1), 1, atol=0.02)
    nodes = lab.nodes.set_index("name")
    zero = nodes.loc["zero.n.02"]
    assert zero.is_head and zero.measured and zero.support == 12 and zero.soft_recall > 0.5
    digit = nodes.loc["digit.n.01"]  # covers all three head classes: a closed-set head says "digit" for anything
    assert digit.false_alarm > 0.99 and digit.gated_false_alarm < digit.false_alarm
    assert nodes.loc["three.n.01" if "three.n.01" in nodes.index else "digit.n.01"].support > 0
    s = lab.summary
    assert s["gate_auroc"] > 0.5 and 0.05 < s["temperature"] < 20 and s["storage"] == "full"
    # the gate tells the expert's own domain from another dataset's images
    from mll.labels.scores import auroc, gate_score

    probe = pd.read_parquet(tiny_world["probe"])
    g = gate_score(s["gate"], lab.logp.astype(np.float32), lab.lse)
    own = probe["class_name"].isin(["0", "1", "2"]).to_numpy() & (probe["dataset"] == "digits").to_numpy()
    other = (probe["dataset"] == "fashion_mnist").to_numpy()
    sc, pos = g[own | other], own[own | other]
    assert auroc(sc[pos], sc[~pos]) > 0.65  # chance is 0.5; the demo hub reaches 0.78-0.94
    assert s["in_domain_images"] == 36 and sum(s["store_bytes"].values()) > 0
    assert json.loads((tmp_path / "s.run.json").read_text())["labeled"] == 2  # the run log
    stable = json.loads((tmp_path / "s.json").read_text())  # the DVC metrics file
    assert stable["models"] == 2 and stable["per_model"]["low"]["key"] == lab.summary["key"]
    assert stable["per_model"]["low"]["gate_auroc"] == s["gate_auroc"]


def test_the_stored_label_and_the_stage_metrics_hold_nothing_volatile(tiny_world, tmp_path):
    """A rerun that labels nothing, and a forced relabel of the same models, write the same bytes
    into the DVC outputs (labels/<model>/summary.json, the stage's metrics file); statuses and
    timings go to the run log beside the metrics file."""
    labels, summary = tmp_path / "labels", tmp_path / "labels_summary.json"
    run = dict(**_paths(tiny_world, labels), summary_path=summary, log=lambda *_: None)

    def outputs() -> dict[str, bytes]:
        per_model = {m: (labels / m / "summary.json").read_bytes() for m in ("low", "high")}
        return {"metrics": summary.read_bytes(), **per_model}

    label_stage(NO_TRACK, **run)
    first = outputs()
    assert not {"forward_seconds", "load_seconds", "label_seconds"} & set(json.loads(first["low"]))
    assert json.loads((tmp_path / "labels_summary.run.json").read_text())["labeled"] == 2
    assert (tmp_path / "data_docs" / "labels" / "index.html").is_file()  # the label checks, as GX Data Docs
    label_stage(NO_TRACK, **run)  # every label up to date
    assert json.loads((tmp_path / "labels_summary.run.json").read_text())["skipped"] == 2
    assert summary.read_bytes() == first["metrics"]
    label_stage(NO_TRACK, **run, force=True)  # computed again from scratch
    assert outputs() == first


def test_relabel_skips_unchanged_and_labels_only_the_new_model(tiny_world, tmp_path):
    labels = tmp_path / "labels"
    label_stage(NO_TRACK, **_paths(tiny_world, labels), summary_path=None, log=lambda *_: None)
    before = {m: (labels / m / "summary.json").stat().st_mtime_ns for m in ("low", "high")}
    hub = tiny_world["hub"]
    import shutil

    shutil.copytree(hub.root / "low", hub.root / "low2")
    card_file = hub.root / "low2" / "card.yaml"
    card_file.write_text(card_file.read_text().replace("name: low", "name: low2", 1))
    try:
        report = label_stage(NO_TRACK, **_paths(tiny_world, labels), summary_path=None, log=lambda *_: None)
        assert report["per_model"]["low2"]["status"] == "labeled"
        assert report["labeled"] == 1 and report["skipped"] == 2
        assert {m: (labels / m / "summary.json").stat().st_mtime_ns for m in ("low", "high")} == before
    finally:
        shutil.rmtree(hub.root / "low2")
    report = label_stage(NO_TRACK, **_paths(tiny_world, labels), summary_path=None, log=lambda *_: None)
    assert "low2" in report["pruned"] and not (labels / "low2").exists()


def test_key_follows_card_and_probe(tiny_world):
    card = tiny_world["hub"].card("low")
    assert label_key(card, "a") != label_key(card, "b")
    assert label_key(card, "a") != label_key(replace(card, description="changed"), "a")
    # the settings that define what a label holds are part of its key; how labeling runs is not
    assert label_key(card, "a", LabelParams(gate_target="competence")) != label_key(card, "a")
    assert label_key(card, "a", LabelParams(top_k=8)) != label_key(card, "a")
    assert label_key(card, "a", LabelParams(batch_size=7, concurrency=3)) == label_key(card, "a")


def test_wide_heads_store_top_k(tiny_world, small_sdag):
    import torch

    card = tiny_world["hub"].card("low")
    probe = ProbeSet(pd.read_parquet(tiny_world["probe"]))
    logits = torch.randn(len(probe), 3)
    cfg = LabelParams(full_max_classes=2, top_k=2)
    lab = compute_label(card, logits, probe.synsets, probe.uris, probe.datasets, small_sdag, cfg, "k")
    assert lab.logp is None and lab.topk_idx.shape == (len(probe), 2) and lab.summary["storage"] == "top2"
    dense = lab.dense_logp(3)
    exact = torch.log_softmax(logits, 1).numpy()
    top = np.argsort(-exact, 1)[:, :2]
    assert np.allclose(np.take_along_axis(dense, top, 1), np.take_along_axis(exact, top, 1), atol=1e-2)
    assert np.allclose(np.exp(dense).sum(1), 1, atol=1e-2)  # the rest mass is kept


def test_gate_is_fitted_on_the_outputs_as_stored(tiny_world, small_sdag):
    """A wide head's gate sees the top-k reconstruction at fit, as it does at selection and prediction:
    the gated statistics in the node table follow from the stored outputs and the stored gate alone,
    and live outputs decode exactly as the stored ones."""
    import torch

    from mll.labels.scores import gate_score
    from mll.labels.store import Storage

    card = tiny_world["hub"].card("low")
    probe = ProbeSet(pd.read_parquet(tiny_world["probe"]))
    logits = torch.randn(len(probe), 3, generator=torch.Generator().manual_seed(0)) * 3
    cfg = LabelParams(full_max_classes=2, top_k=1)  # a crude reconstruction: the rest spread evenly
    lab = compute_label(card, logits, probe.synsets, probe.uris, probe.datasets, small_sdag, cfg, "k")
    dense = lab.dense_logp(3)
    assert not np.allclose(dense, torch.log_softmax(logits, 1).numpy(), atol=1e-2)
    g = gate_score(lab.summary["gate"], dense, lab.lse)
    head = lab.nodes[lab.nodes.is_head & lab.nodes.measured].iloc[0]
    members = [i for i, s in enumerate(probe.synsets) if s == head.node or head.node in small_sdag.ancestors(s)]
    col = card.synsets.index(head.node)
    expect = (g[members] * np.exp(torch.log_softmax(logits, 1).numpy()[members, col])).mean()
    assert head.gated_recall == pytest.approx(expect, rel=1e-5)
    assert np.array_equal(Storage(1).live(logits), dense)  # one code path, to the last bit


def test_top_k_gate_features_are_what_the_stored_form_determines():
    """For a head stored as its top k, the gate's features from the full outputs and from the
    stored reconstruction agree (to float16 rounding); a full entropy would not."""
    import torch

    from mll.labels.scores import gate_features
    from mll.labels.store import Storage

    logits = torch.randn(50, 400, generator=torch.Generator().manual_seed(1)) * 2
    full = torch.log_softmax(logits, 1).numpy()
    stored = Storage(8).live(logits)
    lse = torch.logsumexp(logits, 1).numpy()
    assert np.allclose(gate_features(full, lse, 8), gate_features(stored, lse, 8), atol=2e-3)
    assert not np.allclose(gate_features(full, lse)[:, 1], gate_features(stored, lse)[:, 1], atol=2e-3)
    h = gate_features(full, lse, 8)[:, 1]
    assert (h > 0).all() and (h <= 1 + 1e-9).all()


def test_gate_learns_competence_not_coverage(small_sdag):
    """Gate targets: `domain` marks images under a head class; `competence` marks images the model's
    top-1 answers consistently: right below a head class, or a head class under a broader label."""
    from nltk.corpus import wordnet as wn

    from mll.data.wordnet import wnid
    from mll.labels.compute import gate_target

    sid = {n: wnid(wn.synset(n)) for n in ("dog.n.01", "tabby.n.01", "car.n.01", "jeep.n.01", "trouser.n.01")}
    head = [sid["tabby.n.01"], sid["jeep.n.01"]]
    # images: a jeep answered jeep; a jeep answered tabby; a car (broader than jeep) answered jeep;
    # a car answered tabby; trousers answered jeep (not the model's at all)
    synsets = [sid["jeep.n.01"], sid["jeep.n.01"], sid["car.n.01"], sid["car.n.01"], sid["trouser.n.01"]]
    top1 = np.array([1, 0, 1, 0, 1])
    target = np.array([1, 1, -1, -1, -1])
    domain = gate_target("domain", top1, target, head, synsets, small_sdag)
    competence = gate_target("competence", top1, target, head, synsets, small_sdag)
    broad = gate_target("broad", top1, target, head, synsets, small_sdag)
    assert domain.tolist() == [True, True, False, False, False]
    assert broad.tolist() == [True, True, True, False, False]
    assert competence.tolist() == [True, False, True, False, False]
    with pytest.raises(ValueError, match="domain, broad, competence"):
        gate_target("coverage", top1, target, head, synsets, small_sdag)


def test_label_table_validation_names_the_failure(tiny_world, tmp_path, small_sdag):
    label_stage(NO_TRACK, **_paths(tiny_world, tmp_path / "labels"), summary_path=None, log=lambda *_: None)
    nodes = read_label(tmp_path / "labels", "low").nodes
    check_label_table(nodes, small_sdag.__contains__, "low")
    bad = nodes.copy()
    bad.loc[bad.index[0], "soft_recall"] = 1.5
    with pytest.raises(ValidationError, match="expect_column_values_to_be_between"):
        check_label_table(bad, small_sdag.__contains__, "low")
    bad = nodes.copy()
    bad.loc[bad.index[0], "node"] = "n99999999"
    with pytest.raises(ValidationError, match="node_valid"):
        check_label_table(bad, small_sdag.__contains__, "low")


def test_stage_checks_all_node_tables_at_once_and_drops_a_bad_label(tiny_world, tmp_path, small_sdag):
    """The stage validates every labeled model's table in one run; a failing table names its model,
    and that model's label is removed (so the next run labels it again), the others stay."""
    from mll.data.validation import check_label_tables
    from mll.labels.run import validate_labels

    labels = tmp_path / "labels"
    label_stage(NO_TRACK, **_paths(tiny_world, labels), summary_path=None, log=lambda *_: None)
    tables = {m: read_label(labels, m).nodes for m in ("low", "high")}
    assert check_label_tables(tables, small_sdag.__contains__) == {}
    bad = tables["high"].copy()
    bad.loc[bad.index[0], "soft_recall"] = 1.5
    refused = check_label_tables({**tables, "high": bad}, small_sdag.__contains__)
    assert list(refused) == ["high"] and "soft_recall" in refused["high"]
    bad.to_parquet(labels / "high" / "nodes.parquet")  # a table that would not have passed

    class Done:
        def __init__(self, model):
            self.model, self.status = model, "labeled"

    out = validate_labels([Done("low"), Done("high")], labels, tiny_world["sdag"], log=lambda *_: None)
    assert list(out) == ["high"] and not (labels / "high").exists() and (labels / "low" / "nodes.parquet").is_file()


@pytest.mark.slow
def test_sigkill_mid_hub_keeps_finished_labels(tiny_world, tmp_path):
    """A real SIGKILL while labeling: finished labels survive, nothing half-written, rerun completes."""
    import shutil

    hub_root = tmp_path / "hub"
    for i in range(6):  # six models, so the kill lands mid-hub
        src = tiny_world["hub"].root / ("low" if i % 2 == 0 else "high")
        shutil.copytree(src, hub_root / f"m{i}")
        f = hub_root / f"m{i}" / "card.yaml"
        f.write_text(f.read_text().replace(f"name: {src.name}", f"name: m{i}", 1))
    labels = tmp_path / "labels"
    cmd = [
        sys.executable,
        "-m",
        "mll",
        "label",
        "--no-track",
        "--hub",
        str(hub_root),
        "--probe",
        str(tiny_world["probe"]),
        "--sdag",
        str(tiny_world["sdag"]),
        "--labels",
        str(labels),
        "--summary",
        "",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240

    def finished() -> list[str]:  # pathlib's glob also matches the hidden temp folders a label is staged in
        return sorted(p.parent.name for p in labels.glob("*/summary.json") if not p.parent.name.startswith("."))

    while time.time() < deadline and not finished():
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = finished()
    assert 1 <= len(done) < 6, done
    for m in done:  # every finished label is complete and readable
        assert read_label(labels, m).logp.shape[1] == 3
    visible = [p for p in labels.iterdir() if not p.name.startswith(".")]
    assert all((p / "summary.json").is_file() for p in visible)  # no half-written label in place
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert finished() == [f"m{i}" for i in range(6)]
    stale = [p for p in labels.iterdir() if p.is_dir() and p.name.startswith(".") and p.name != ".index"]
    assert not stale  # stale temp folders gone (.index is the label index)
    for m in done:
        assert read_summary(labels, m)["key"] == read_label(labels, m).key


def test_label_hub_flow_and_mlflow_runs(prefect_server, tiny_world, tmp_path, monkeypatch):
    from flows.label_hub import label_hub_flow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    params = tmp_path / "params.yaml"
    params.write_text("label:\n  device: cpu\n  concurrency: 2\n  track: true\n")
    kw = dict(
        params_file=str(params),
        hub=str(tiny_world["hub"].root),
        probe=str(tiny_world["probe"]),
        sdag=str(tiny_world["sdag"]),
        labels=str(tmp_path / "labels"),
        summary=str(tmp_path / "s.json"),
    )
    report = label_hub_flow(**kw)
    assert report["labeled"] == 2
    assert label_hub_flow(**kw)["skipped"] == 2
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["labeling"])
    passes = runs[runs["tags.mll.kind"] == "labeling-pass"]  # one parent run per pass, a child per labeled model
    assert list(passes["metrics.labeled"]) == [0, 2] or list(passes["metrics.labeled"]) == [2, 0]
    runs = runs[runs["tags.mll.kind"] != "labeling-pass"]
    assert set(runs["tags.mlflow.parentRunId"]) <= set(passes["run_id"])
    assert sorted(runs["params.model"]) == ["high", "low"]
    assert (runs["metrics.covered_nodes"] > 0).all() and runs["metrics.gate_auroc"].notna().all()
    art = mlflow.artifacts.list_artifacts(run_id=runs.iloc[0]["run_id"], artifact_path="label")
    assert {Path(a.path).name for a in art} == {"nodes.parquet", "summary.json"}


def test_cli_label_and_hub_show(tiny_world, tmp_path, capsys, monkeypatch):
    from mll.cli import main

    monkeypatch.setenv("MLL_ROOT", str(tmp_path))  # `hub show` reads labels/ under the project root
    (tmp_path / "params.yaml").write_text("label:\n  device: cpu\n  track: false\n")
    args = [
        "--hub",
        str(tiny_world["hub"].root),
        "--probe",
        str(tiny_world["probe"]),
        "--sdag",
        str(tiny_world["sdag"]),
        "--labels",
        str(tmp_path / "labels"),
        "--params",
        str(tmp_path / "params.yaml"),
    ]
    assert main(["label", *args, "--summary", str(tmp_path / "s.json")]) == 0
    capsys.readouterr()
    assert main(["hub", "show", "low", "--hub", str(tiny_world["hub"].root), "--sdag", str(tiny_world["sdag"])]) == 0
    out = capsys.readouterr().out
    assert "gate AUROC" in out and "best concepts:" in out and "worst concepts:" in out
    assert main(["label", "nosuchmodel", *args]) == 2
    assert "no model 'nosuchmodel'" in capsys.readouterr().err


@pytest.mark.slow
def test_two_label_runs_at_once_leave_valid_labels(tiny_world, tmp_path, small_sdag):
    """Two processes label the same hub into the same folder: the per-model lock serialises writes."""
    labels = tmp_path / "labels"
    cmd = [
        sys.executable,
        "-m",
        "mll",
        "label",
        "--force",
        "--no-track",
        "--hub",
        str(tiny_world["hub"].root),
        "--probe",
        str(tiny_world["probe"]),
        "--sdag",
        str(tiny_world["sdag"]),
        "--labels",
        str(labels),
        "--summary",
        "",
    ]
    procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-1000:]
    for m in ("low", "high"):
        lab = read_label(labels, m)
        check_label_table(lab.nodes, small_sdag.__contains__, m)
        assert lab.logp.shape[1] == 3
    assert not [p for p in labels.iterdir() if p.is_dir() and p.name.startswith(".") and p.name != ".index"]


def _hub_copy(tiny_world, dest):
    import shutil

    shutil.copytree(tiny_world["hub"].root, dest)
    return dest


def test_a_corrupt_model_fails_alone(tiny_world, tmp_path):
    """A bit-flipped weight file: that model is refused by name, the rest of the hub is labeled."""
    from mll.labels.run import LabelingFailed

    hub = _hub_copy(tiny_world, tmp_path / "hub")
    w = hub / "high" / "weights.safetensors"
    data = bytearray(w.read_bytes())
    data[-5] ^= 0x55
    w.write_bytes(bytes(data))
    paths = {
        "hub_root": hub,
        "probe_path": tiny_world["probe"],
        "sdag_path": tiny_world["sdag"],
        "labels_root": tmp_path / "labels",
    }
    with pytest.raises(LabelingFailed) as e:
        label_stage(NO_TRACK, **paths, summary_path=tmp_path / "s.json", log=lambda *_: None)
    assert list(e.value.failed) == ["high"] and "weights.safetensors" in e.value.failed["high"]
    assert read_summary(tmp_path / "labels", "low") is not None
    report = json.loads((tmp_path / "s.json").read_text())  # the labels: the failure is named
    assert list(report["failed"]) == ["high"] and list(report["per_model"]) == ["low"] and report["models"] == 2
    assert json.loads((tmp_path / "s.run.json").read_text())["labeled"] == 1  # the run


@pytest.mark.slow
def test_disk_full_while_writing_keeps_the_previous_label(tiny_world, tmp_path):
    """RLIMIT_FSIZE makes every write past 2 KiB fail with EFBIG, as a full disk would."""
    import resource

    labels = tmp_path / "labels"
    cmd = [
        sys.executable,
        "-m",
        "mll",
        "label",
        "--no-track",
        "--hub",
        str(tiny_world["hub"].root),
        "--probe",
        str(tiny_world["probe"]),
        "--sdag",
        str(tiny_world["sdag"]),
        "--labels",
        str(labels),
        "--summary",
        "",
    ]
    assert subprocess.run(cmd, capture_output=True, timeout=600).returncode == 0
    before = read_label(labels, "low").summary["key"]

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))

    r = subprocess.run([*cmd, "--force"], capture_output=True, text=True, timeout=600, preexec_fn=limit)
    assert r.returncode == 2
    err = r.stderr.strip().splitlines()[-1]
    assert err.startswith("mll: error:") and "cannot write the label" in err and "previous label is untouched" in err
    assert read_label(labels, "low").summary["key"] == before  # still there, still whole
    assert not [p for p in labels.iterdir() if p.name.startswith(".") and p.is_dir() and p.name != ".index"]

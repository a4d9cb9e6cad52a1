"""Solved tasks kept and served: the solution folder, the registered pyfunc model, REST serving."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import free_port
from mll.config import SolveParams
from mll.serve.solution import Solution, SolutionError, save_solution
from mll.solve.task import Context, plan, predict

CLASSES = ["0", "1", "2", "3", "4", "5"]


@pytest.fixture(scope="module")
def ctx(tiny_world, tiny_labels):
    return Context.load(tiny_world["sdag"], tiny_world["hub"].root, tiny_labels, SolveParams(device="cpu"))


@pytest.fixture(scope="module")
def test_images(tiny_world):
    from mll.data.images import open_image

    t = tiny_world["test"]
    t = t[t["class_name"].isin(CLASSES)].reset_index(drop=True)
    return [open_image(u) for u in t["uri"]], [CLASSES.index(c) for c in t["class_name"]]


@pytest.fixture(scope="module")
def saved(ctx, tmp_path_factory):
    p = plan(ctx, CLASSES)
    return p, save_solution(ctx, p, "digits-six", tmp_path_factory.mktemp("sol") / "digits-six")


def _b64(im) -> str:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def test_a_saved_solution_predicts_like_the_plan(ctx, saved, test_images):
    p, root = saved
    images, y = test_images
    expected, _ = predict(ctx, p, images)
    sol = Solution.load(root)
    assert sol.classes == CLASSES and sorted(sol.doc["experts"]) == sorted(p.combiner.models)
    assert np.allclose(sol.predict(images), expected, atol=1e-6)
    rows = sol.answer(images)
    assert np.mean([CLASSES.index(r["predicted"]) == k for r, k in zip(rows, y, strict=True)]) > 0.6
    assert {r["model"] for r in rows} <= {"low", "high"}
    # self-contained: nothing pickled, the experts' files copied
    files = {f.suffix for f in root.rglob("*") if f.is_file()}
    assert files <= {".json", ".yaml", ".safetensors", ".pt"} and not any(root.rglob("*.pkl"))


def test_a_changed_hub_expert_makes_the_solution_stale(saved, tiny_world, tmp_path):
    import shutil

    _, root = saved
    sol = Solution.load(root)
    hub = tmp_path / "hub"
    shutil.copytree(tiny_world["hub"].root, hub)
    assert sol.stale_experts(hub) == {}
    card = (hub / "low" / "card.yaml").read_text()
    (hub / "low" / "card.yaml").write_text(card.replace("weights_sha256: ", "weights_sha256: 0", 1))
    shutil.rmtree(hub / "high")
    assert sol.stale_experts(hub) == {"low": "weights changed", "high": "no longer in the hub"}


def test_bad_solution_folders_are_refused(tmp_path, saved):
    with pytest.raises(SolutionError, match="mll solve --classes"):
        Solution.load(tmp_path)
    (tmp_path / "solution.json").write_text("{not json")
    with pytest.raises(SolutionError, match="not valid JSON"):
        Solution.load(tmp_path)


def test_registered_solution_loads_and_answers_base64_images(saved, test_images, tmp_path, monkeypatch):
    import mlflow
    from mlflow.exceptions import MlflowException

    from mll.serve.registry import load_solution_model, register_solution

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    _, root = saved
    info = register_solution(root, "digits-six")
    assert info["name"] == "mll-task-digits-six" and info["version"] == "1"
    model = load_solution_model("digits-six")
    images, y = test_images
    out = model.predict(pd.DataFrame({"image": [_b64(im) for im in images]}))
    assert list(out.columns) == ["predicted", "probability", "model"] and len(out) == len(images)
    assert (out["predicted"].map(CLASSES.index) == np.asarray(y)).mean() > 0.6
    assert mlflow.models.get_model_info("models:/mll-task-digits-six@champion").signature is not None
    for bad, why in (
        (pd.DataFrame({"img": ["x"]}), "needs a column 'image'"),
        (pd.DataFrame({"image": ["%%%"]}), "not valid base64"),
        (pd.DataFrame({"image": [base64.b64encode(b"hello").decode()]}), "not a readable image"),
    ):
        with pytest.raises(MlflowException, match=why):
            model.unwrap_python_model().predict(None, bad)
    with pytest.raises(LookupError, match="--save nothing"):
        load_solution_model("nothing")


def _post(url: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


@contextlib.contextmanager
def served(uri: str, tracking_uri: str):
    """`mlflow models serve -m URI --env-manager local` on a free port of 127.0.0.1; yields the
    /invocations URL once /ping answers, stops the server after."""
    # the server runs `uvicorn` from PATH: the environment's own bin folder first, as an activated venv has it
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "PATH": path}
    port = free_port()
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    server = subprocess.Popen(
        [str(mlflow_bin), "models", "serve", "-m", uri, "--env-manager", "local",
         "-h", "127.0.0.1", "-p", str(port), "-w", "1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.time() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.time() > deadline:
                raise AssertionError(f"server did not start: {server.stderr.read().decode()[-2000:]}")
            time.sleep(1)
        yield f"http://127.0.0.1:{port}/invocations"
        assert server.poll() is None  # bad requests never take the server down
    finally:
        server.terminate()
        server.wait(timeout=30)


def _split(images) -> dict:
    return {"dataframe_split": {"columns": ["image"], "data": [[_b64(im)] for im in images]}}


@pytest.mark.slow
def test_mlflow_models_serve_answers_over_http(saved, test_images, tmp_path, monkeypatch):
    from mll.serve.registry import register_solution

    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking)
    register_solution(saved[1], "served")
    with served("models:/mll-task-served@champion", tracking) as url:
        images, y = test_images
        status, body = _post(url, _split(images))
        assert status == 200
        preds = pd.DataFrame(body["predictions"])
        assert (preds["predicted"].map(CLASSES.index) == np.asarray(y)).mean() > 0.6
        for bad, why in (
            ({"dataframe_split": {"columns": ["image"], "data": [["not base64!"]]}}, "base64"),
            ({"dataframe_split": {"columns": ["photo"], "data": [["x"]]}}, "image"),
        ):
            status, body = _post(url, bad)
            assert 400 <= status < 500 and why in body.get("message", "")


ROOT = Path(__file__).parents[1]


@pytest.mark.slow
@pytest.mark.skipif(
    not (ROOT / "labels" / ".index").is_dir() or not (ROOT / "data" / "splits" / "target_test.parquet").is_file(),
    reason="needs the demo's hub and labels: run `make demo` first",
)
def test_the_demo_task_is_served_over_http(tmp_path, monkeypatch, capsys):
    """The README's path on the real hub: `mll solve --classes "sneaker,bag,trouser" --save demo-task`,
    then `mlflow models serve` answers Fashion-MNIST target_test images of those classes."""
    from mll.cli import main
    from mll.data.images import open_image

    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"  # a throwaway registry: the project's is left alone
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking)
    where = ["--hub", str(ROOT / "models"), "--labels", str(ROOT / "labels"), "--sdag", str(ROOT / "data" / "sdag")]
    assert (
        main(
            [
                "solve",
                "--classes",
                "sneaker,bag,trouser",
                "--save",
                "demo-task",
                *where,
                "--params",
                str(ROOT / "params.yaml"),
            ]
        )
        == 0
    )
    assert "registered mll-task-demo-task version 1 as @champion" in capsys.readouterr().out
    test = pd.read_parquet(ROOT / "data" / "splits" / "target_test.parquet")
    test = test[(test["dataset"] == "fashion_mnist") & test["class_name"].isin(["Sneaker", "Bag", "Trouser"])]
    test = test.groupby("class_name").head(10)
    images = [open_image(u) for u in test["uri"]]
    with served("models:/mll-task-demo-task@champion", tracking) as url:
        status, body = _post(url, _split(images))
    assert status == 200
    predicted = pd.DataFrame(body["predictions"])["predicted"]
    assert (predicted.to_numpy() == test["class_name"].str.lower().to_numpy()).mean() >= 0.9


def test_cli_solve_save_then_predict_and_refuse_a_changed_hub(
    ctx, tiny_world, tiny_labels, tmp_path, monkeypatch, capsys
):
    import shutil

    from mll.cli import main

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    hub = tmp_path / "hub"
    shutil.copytree(tiny_world["hub"].root, hub)
    where = ["--hub", str(hub), "--labels", str(tiny_labels), "--sdag", str(tiny_world["sdag"]), "--params", "none"]
    assert main(["solve", "--classes", ",".join(CLASSES), "--save", "cli-six", *where]) == 0
    out = capsys.readouterr().out
    assert "registered mll-task-cli-six version 1 as @champion" in out and "mlflow models serve -m" in out
    folder = tmp_path / "images"
    folder.mkdir()
    t = tiny_world["test"]
    t = t[t["class_name"].isin(CLASSES)].reset_index(drop=True)
    from mll.data.images import open_image

    for i, u in enumerate(t["uri"]):
        open_image(u).save(folder / f"{i:03d}.png")
    (folder / "broken.png").write_bytes(b"not an image")
    csv_out = tmp_path / "preds.csv"
    assert (
        main(["predict", "--solution", "cli-six", "--images", str(folder), "--out", str(csv_out), "--hub", str(hub)])
        == 0
    )
    preds = pd.read_csv(csv_out, dtype={"predicted": str})
    ok = preds[~preds["model"].astype(str).str.startswith("skipped")]
    assert (
        len(ok) == len(t)
        and (ok["predicted"].astype(str).map(CLASSES.index) == t["class_name"].map(CLASSES.index)).mean() > 0.6
    )
    assert preds["model"].astype(str).str.startswith("skipped").sum() == 1
    card = (hub / "high" / "card.yaml").read_text()
    (hub / "high" / "card.yaml").write_text(card.replace("weights_sha256: ", "weights_sha256: 0", 1))
    capsys.readouterr()
    assert (
        main(["predict", "--solution", "cli-six", "--images", str(folder), "--out", str(csv_out), "--hub", str(hub)])
        == 2
    )
    err = capsys.readouterr().err
    assert "high (weights changed)" in err and "--save cli-six" in err and err.count("\n") == 1
    assert main(["predict", "--solution", "nope", "--images", str(folder), "--out", str(csv_out)]) == 2
    assert main(["solve", "--classes", "0,1", *where]) == 2  # neither --images nor --save
    assert main(["solve", "--classes", "0,1", "--save", "bad name!", *where]) == 2


def test_a_solution_with_a_semantic_patch_predicts_like_the_plan(ctx, test_images, tmp_path, monkeypatch):
    """A class answered by the semantic patch is kept with its embeddings and calibration, and the
    saved folder answers exactly as the plan (the patch's generalists are saved as experts)."""
    from dataclasses import replace

    from mll.config import PatchParams
    from mll.solve import semantic
    from mll.solve.masking import HeadMask

    monkeypatch.setattr(semantic, "GENERALIST_MIN_CLASSES", 3)  # the tiny experts count as generalists
    cfg = replace(ctx.cfg, adapt=False, patch=PatchParams(kind="semantic", device="cpu"))
    three = ctx.matcher.match(["3"])[0].synset
    p = plan(ctx, CLASSES, cfg=cfg, mask=HeadMask.of([three]))
    assert p.semantic is not None and p.uncovered == [3]
    images, _ = test_images
    expected, _ = predict(ctx, p, images)
    sol = Solution.load(save_solution(ctx, p, "digits-masked", tmp_path / "digits-masked"))
    assert sol.semantic is not None and set(sol.semantic.models) <= set(sol.doc["experts"])
    assert sol.combiner.masked == p.combiner.masked
    assert np.allclose(sol.predict(images), expected, atol=1e-6)
    assert (sol.predict(images)[:, 3] > 0).all()

"""Solutions in the MLflow model registry: `mll-task-NAME`, alias `champion`.

`register_solution` logs a solution folder as a pyfunc model (models-from-code, `model_code.py`;
the folder is its artifact), with a signature and an input example, in a run of experiment
`solutions` that carries the classes, the selection (as a table) and the estimated accuracy; it
registers the model as `mll-task-NAME` and points the alias `champion` at the new version.
`load_solution_model` loads it back (`models:/mll-task-NAME@champion`), as `mlflow models serve`
does.
"""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import pandas as pd

PREFIX = "mll-task-"
ALIAS = "champion"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def model_name(name: str) -> str:
    """The registered model name of solution `name`; a clear error for a name MLflow would refuse."""
    if not _NAME.match(name or ""):
        raise ValueError(
            f"solution name {name!r}: use 1-64 letters, digits, '-', '_' or '.', starting with a letter or digit"
        )
    return PREFIX + name


def model_uri(name: str) -> str:
    return f"models:/{model_name(name)}@{ALIAS}"


def example_frame() -> pd.DataFrame:
    """A one-row input example: a small gray PNG, base64-encoded."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (28, 28), 128).save(buf, format="PNG")
    return pd.DataFrame({"image": [base64.b64encode(buf.getvalue()).decode("ascii")]})


def selection_table(doc: dict) -> pd.DataFrame:
    """One row per class, in the shape every `selection.json` table has (`mll.tracking_tables`):
    matched synset, answering models, their head classes, mode, estimated accuracy."""
    from mll.tracking_tables import selection_rows

    return pd.DataFrame(selection_rows(doc["selection"], matched=doc["matched"]))


def register_solution(solution_dir: Path, name: str) -> dict:
    """Log `solution_dir` as a pyfunc model, register it as `mll-task-NAME` and set `@champion` on
    the new version; returns {name, version, uri, run_id}."""
    import json

    import mlflow
    from mlflow import MlflowClient
    from mlflow.models import infer_signature

    from mll.tracking import default_tracking_uri, start_run

    registered = model_name(name)
    doc = json.loads((Path(solution_dir) / "solution.json").read_text())
    example = example_frame()
    out = pd.DataFrame({"predicted": [doc["classes"][0]], "probability": [0.5], "model": ["expert"]})
    signature = infer_signature(example, out)
    code = Path(__file__).with_name("model_code.py")
    with start_run("solutions", registered, tags={"solution": name}) as t:
        t.log_params(
            {
                "classes": ",".join(doc["classes"])[:5000],
                "n_classes": len(doc["classes"]),
                "models": ",".join(sorted(doc["experts"]))[:5000],
                "combiner": (doc["combiner"] or {}).get("kind", "none"),
                "adapted": bool(doc.get("adaptation")),
            }
        )
        if doc.get("estimated_accuracy") is not None:
            t.log_metrics({"estimated_accuracy": float(doc["estimated_accuracy"])})
        mlflow.log_table(selection_table(doc), "selection.json")
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(code),
            artifacts={"solution": str(solution_dir)},
            signature=signature,
            input_example=example,
            registered_model_name=registered,
        )
        run_id = mlflow.active_run().info.run_id
    client = MlflowClient(default_tracking_uri())
    version = str(info.registered_model_version)
    client.set_registered_model_alias(registered, ALIAS, version)
    return {"name": registered, "version": version, "uri": f"models:/{registered}@{ALIAS}", "run_id": run_id}


def load_solution_model(name: str):
    """The registered champion of solution `name` as a pyfunc model; a one-line error naming the fix
    when it is not registered."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from mll.tracking import default_tracking_uri

    mlflow.set_tracking_uri(default_tracking_uri())
    try:
        return mlflow.pyfunc.load_model(model_uri(name))
    except MlflowException as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise LookupError(
            f"no registered solution {model_name(name)}@{ALIAS} ({first}); "
            f"save one with `mll solve --classes ... --save {name}`"
        ) from None


def solution_dir_of(model) -> Path:
    """The solution folder inside a loaded pyfunc model (where `predict` reads its experts)."""
    return Path(model.unwrap_python_model().solution.root)

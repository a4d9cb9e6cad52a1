"""The MLflow pyfunc model of a saved solution: base64-encoded images in, one answer per row out.

Logged models-from-code (`model_code.py` next to this file is the model's code; MLflow copies it and
runs it at load, so nothing is unpickled) with the solution folder as its one artifact. Input: a
DataFrame with a column `image` of base64-encoded image bytes (PNG, JPEG, ...). Output per row:
`predicted` (a class name, "" when no expert answered), `probability`, `model` (the expert(s)
answering that class). A request it cannot serve raises `MlflowException(INVALID_PARAMETER_VALUE)`,
which the scoring server turns into a 400 with the one-line reason; it never crashes the server.
"""

from __future__ import annotations

import base64
import binascii
import io

import pandas as pd

MAX_IMAGE_BYTES = 10 * 1024 * 1024  # an encoded image above this is refused (a 4xx, not a memory blow-up)
MAX_PIXELS = 4096 * 4096  # decoded size limit, checked before decoding the pixels
COLUMN = "image"


def _bad(message: str):
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def decode_images(frame: pd.DataFrame) -> list:
    """The images of `frame[COLUMN]`, decoded and checked; the first bad row raises a one-line reason."""
    from PIL import Image, UnidentifiedImageError

    if not isinstance(frame, pd.DataFrame) or COLUMN not in frame.columns:
        cols = list(getattr(frame, "columns", []))
        raise _bad(f"the input needs a column {COLUMN!r} of base64-encoded image bytes; got columns {cols}")
    images = []
    for i, value in enumerate(frame[COLUMN]):
        if isinstance(value, bytes):
            value = value.decode("ascii", errors="replace")
        if not isinstance(value, str) or not value:
            raise _bad(f"row {i}: {COLUMN!r} must be a base64 string of image bytes, got {type(value).__name__}")
        if len(value) > MAX_IMAGE_BYTES * 4 // 3 + 4:
            raise _bad(f"row {i}: image larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MiB; send a smaller image")
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise _bad(f"row {i}: {COLUMN!r} is not valid base64") from None
        try:
            im = Image.open(io.BytesIO(raw))
            if im.width * im.height > MAX_PIXELS:
                raise _bad(f"row {i}: image of {im.width}x{im.height} pixels is too large (at most {MAX_PIXELS})")
            im.load()
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError, SyntaxError) as exc:
            raise _bad(f"row {i}: not a readable image ({' '.join(str(exc).split())})") from None
        images.append(im.convert("RGB") if im.mode not in ("L", "RGB") else im)
    return images


class SolutionModel:
    """The pyfunc python model (an `mlflow.pyfunc.PythonModel` once MLflow is imported: see
    `python_model()`); `load_context` reads the solution artifact, `predict` answers a DataFrame."""

    solution = None

    def load_context(self, context) -> None:
        from mll.serve.solution import Solution

        self.solution = Solution.load(context.artifacts["solution"])

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        images = decode_images(model_input)
        rows = self.solution.answer(images) if images else []
        return pd.DataFrame(rows, columns=["predicted", "probability", "model"])


def python_model():
    """A `SolutionModel` that is an `mlflow.pyfunc.PythonModel` (MLflow is imported only here)."""
    import mlflow.pyfunc

    class _Model(SolutionModel, mlflow.pyfunc.PythonModel):
        pass

    return _Model()

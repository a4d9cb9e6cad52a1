"""The code of a logged solution model (MLflow models-from-code): MLflow runs this file at load time."""

import mlflow.models

from mll.serve.pyfunc import python_model

mlflow.models.set_model(python_model())

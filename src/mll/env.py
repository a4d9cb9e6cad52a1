"""Defaults for quiet, offline runs of the MLOps stack (set only where the user has not)."""

from __future__ import annotations

import os

from mll.paths import project_root

OFFLINE_DEFAULTS = {
    "DO_NOT_TRACK": "true",  # MLflow honours only "true"
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",  # no orphan huey consumers after `mlflow server`
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",  # the default 20 s is tight on 2 cores
    "PREFECT_LOGGING_LEVEL": "INFO",  # flows report progress (epochs, labeled models)
    "DVC_NO_ANALYTICS": "1",
    "HF_HUB_OFFLINE": "1",  # timm / open_clip fail fast instead of retrying downloads
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "GX_ANALYTICS_ENABLED": "false",
    "TOKENIZERS_PARALLELISM": "false",
}


def apply_offline_defaults() -> None:
    """Set the offline/quiet environment defaults, plus a project-local PREFECT_HOME."""
    for k, v in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(k, v)
    os.environ.setdefault("PREFECT_HOME", str(project_root() / ".prefect"))

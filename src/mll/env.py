"""The offline, quiet environment for the MLOps stack, and the bootstrap every entry point runs.

The variables live in one file, `offline.env` beside this module, which the Makefile exports too.
Why each matters: MLflow honours only DO_NOT_TRACK=true; MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false
leaves no huey consumers behind `mlflow server`; Prefect's ephemeral server needs more than its
default 20 s to start on 2 cores; HF_HUB_OFFLINE makes timm and open_clip fail fast instead of
retrying downloads. Prefect reads its settings when it is imported, so a flow calls `bootstrap()`
before importing Prefect.
"""

from __future__ import annotations

import os
from importlib.resources import files

from mll.paths import project_root


def offline_defaults() -> dict[str, str]:
    """The variables of `offline.env` (KEY=VALUE lines; blank lines and # comments ignored)."""
    out = {}
    for line in files("mll").joinpath("offline.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def apply_offline_defaults() -> None:
    """Set the offline/quiet defaults where the user has not, plus a project-local PREFECT_HOME."""
    for k, v in offline_defaults().items():
        os.environ.setdefault(k, v)
    os.environ.setdefault("PREFECT_HOME", str(project_root() / ".prefect"))


def bootstrap() -> None:
    """What every flow script and the CLI run first: the offline environment, before Prefect loads."""
    apply_offline_defaults()

"""Project-relative locations. Functions, not constants, so nothing happens at import time."""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The project folder: MLL_ROOT if set, else the nearest parent of the cwd holding params.yaml."""
    env = os.environ.get("MLL_ROOT")
    if env:
        return Path(env).resolve()
    here = Path.cwd().resolve()
    for p in (here, *here.parents):
        if (p / "params.yaml").is_file():
            return p
    return here


def cache_dir() -> Path:
    """Scratch space that is safe to delete (prepared WordNet, decoded datasets)."""
    env = os.environ.get("MLL_CACHE")
    return Path(env) if env else project_root() / ".cache"


def data_dir() -> Path:
    return project_root() / "data"


def models_dir() -> Path:
    return project_root() / "models"


def reports_dir() -> Path:
    return project_root() / "reports"

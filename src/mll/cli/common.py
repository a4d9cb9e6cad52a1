"""What the command modules share: the user-error type, the default labels folder, JSON output.

Imports nothing heavy: the parser uses it while building `mll --help`.
"""

from __future__ import annotations

import json
from pathlib import Path

from mll.paths import project_root


class UserError(Exception):
    """Bad input from the user: reported as one line, never as a traceback."""


def default_labels() -> Path:
    """Where labels live unless `--labels` says otherwise: the project's `labels/` (every command)."""
    return project_root() / "labels"


def write_json(data, path: str | None) -> None:
    """Write `data` as indented JSON to `path` (nothing when no path was given)."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(data, indent=2, default=str) + "\n")

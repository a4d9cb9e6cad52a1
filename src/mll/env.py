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
import platform
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


# CPU kernels for training processes. Which SIMD code path runs (ATen's vectorised kernels, oneDNN's
# convolutions, MKL's matrix products) decides the order of float sums, so the same seed trained to
# different weights with this machine's AVX-512 kernels than with AVX2 ones (measured by forcing each
# variable alone: every one of the three changed the weights). Training processes therefore pin ATen
# and oneDNN to AVX2, which nearly every x86-64 CPU since 2013 has, and MKL to its COMPATIBLE branch
# (its AVX2 branch is reproducible on Intel CPUs only; MKL does little work here, so SSE2 costs
# nothing measurable). Each is read once, when torch first needs it, so they are set before torch
# runs anything; inference keeps the fastest kernels.
TRAINING_KERNELS = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "COMPATIBLE"}


def pin_training_kernels() -> dict[str, str]:
    """Set TRAINING_KERNELS where the user has not, on x86-64 CPUs with AVX2 (elsewhere, e.g. on
    ARM, nothing: native kernels). Returns what is in effect."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return {}
    from torch.cpu import _is_avx2_supported  # CPU feature test only: selects no kernels

    if not _is_avx2_supported():  # ATen would take the pin on trust and fault on AVX2 instructions
        return {}
    for k, v in TRAINING_KERNELS.items():
        os.environ.setdefault(k, v)
    return {k: os.environ[k] for k in TRAINING_KERNELS}


def bootstrap(training: bool = False) -> None:
    """What every flow script and the CLI run first: the offline environment, before Prefect loads;
    for a process that trains models, also the pinned CPU kernels (`pin_training_kernels`)."""
    apply_offline_defaults()
    if training:
        pin_training_kernels()

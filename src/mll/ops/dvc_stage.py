"""One story with DVC for every flow that writes a stage's outputs, however it is started.

- Under `dvc repro` (DVC sets `DVC_STAGE` for a stage's command), DVC records the outputs itself:
  the flow only takes the pipeline lock.
- Started any other way (a Prefect deployment, `python flows/...`) on the stage's own output paths
  in a DVC repository, the flow takes the pipeline lock, runs, and then records what it wrote with
  `dvc commit -f STAGE` (under DVC's repository lock), so `dvc status` stays clean and a later
  `dvc push` pushes exactly what dvc.lock names. This is also what stops the recursion a flow that
  is itself a stage's command would otherwise have: under `DVC_STAGE` it never commits.
- On other paths (tests, scratch folders) or outside a DVC repository: nothing of this.

The pipeline lock (`.dvc/tmp/mll-pipeline.lock`, an fcntl lock) is one per repository, held for a
whole flow run, so a deployment and a `dvc repro` never write outputs at the same time: the second
waits. DVC's own repository lock cannot do this: `dvc repro` releases it while a stage's command
runs, and another `dvc repro` fails at once instead of waiting.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

LOCK_FILE = Path(".dvc") / "tmp" / "mll-pipeline.lock"


@dataclass(frozen=True)
class StageWrite:
    """How a flow run that writes `stage`'s outputs agrees with DVC: `mode` is `dvc` (run by
    `dvc repro`, which records), `record` (this run commits them afterwards) or `off`."""

    stage: str
    mode: str
    root: Path | None = None


def dvc_root(start: Path | None = None) -> Path | None:
    """The DVC repository holding `start` (default: the cwd): DVC_ROOT under `dvc repro`, else
    the nearest folder with a `.dvc` directory and a dvc.yaml."""
    if os.environ.get("DVC_ROOT"):
        return Path(os.environ["DVC_ROOT"]).resolve()
    here = (start or Path.cwd()).resolve()
    for p in (here, *here.parents):
        if (p / ".dvc").is_dir() and (p / "dvc.yaml").is_file():
            return p
    return None


def stage_paths(root: Path, stage: str) -> list[Path]:
    """The outs, metrics and plots of `stage` in `root`/dvc.yaml, as absolute paths ([] when the
    stage is not there)."""
    import yaml

    spec = (yaml.safe_load((root / "dvc.yaml").read_text()) or {}).get("stages", {}).get(stage)
    if not spec:
        return []
    wdir = root / spec.get("wdir", ".")
    paths = []
    for key in ("outs", "metrics", "plots"):
        for entry in spec.get(key) or []:
            name = entry if isinstance(entry, str) else next(iter(entry))
            paths.append((wdir / name).resolve())
    return paths


def _overlaps(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


def stage_write(stage: str, outputs: list[str | Path | None], cwd: Path | None = None) -> StageWrite:
    """Decide how this run of a flow writing `outputs` (paths; None = not written) agrees with DVC."""
    if os.environ.get("DVC_STAGE"):
        return StageWrite(stage, "dvc", dvc_root(cwd))
    root = dvc_root(cwd)
    if root is None:
        return StageWrite(stage, "off")
    base = (cwd or Path.cwd()).resolve()
    written = [(base / p).resolve() for p in outputs if p is not None]
    ours = stage_paths(root, stage)
    if any(_overlaps(w, o) for w in written for o in ours):
        return StageWrite(stage, "record", root)
    return StageWrite(stage, "off", root)


@contextlib.contextmanager
def pipeline_lock(
    root: Path, what: str, log: Callable[[str], None] = print, wait_s: float = 6 * 3600
) -> Iterator[None]:
    """Hold the repository's pipeline lock (waiting up to `wait_s` for another holder)."""
    path = root / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        t0, told = time.monotonic(), False
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not told:
                    fh.seek(0)
                    log(f"{what}: waiting for the pipeline lock {path}, held by {fh.read().strip() or 'another run'}")
                    told = True
                if time.monotonic() - t0 > wait_s:
                    raise TimeoutError(
                        f"{what}: the pipeline lock {path} stayed held for {wait_s:.0f} s; if no mll flow or "
                        "`dvc repro` is running, remove the file and run again"
                    ) from None
                time.sleep(1.0)
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"pid": os.getpid(), "what": what}) + "\n")
        fh.flush()
        try:
            yield
        finally:
            fh.seek(0)
            fh.truncate()
            fcntl.flock(fh, fcntl.LOCK_UN)


def commit_stage(
    root: Path, stage: str, log: Callable[[str], None] = print, timeout_s: float = 1800, busy_s: float = 15
) -> bool:
    """`dvc commit -f STAGE` in `root`, waiting for DVC's repository lock. Returns False (and says
    why) when a running `dvc repro` still holds the stage's outputs after `busy_s`: a repro of
    this very stage waits for the pipeline lock this run holds, and records the outputs itself."""
    # not -q: it silences the error too, and "is busy" is how a concurrent repro shows
    cmd = [sys.executable, "-m", "dvc", "--wait-for-lock", "commit", "-f", stage]
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    env.pop("DVC_STAGE", None)
    t0 = time.monotonic()
    while True:
        r = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=timeout_s, env=env)
        if r.returncode == 0:
            log(f"dvc: stage {stage!r} recorded in dvc.lock (dvc commit)")
            return True
        err = " ".join((r.stderr + r.stdout).split())
        if "is busy" not in err:
            raise RuntimeError(
                f"dvc commit -f {stage} failed in {root} (run it there by hand to see why): {err[:1000]}"
            )
        if time.monotonic() - t0 > busy_s:  # a reader saving its stage lets go in seconds; a repro of ours never
            log(
                f"dvc: not committing {stage!r}: a running `dvc repro` holds its outputs ({err[:300]}); a repro of "
                f"this stage records them when it ends, otherwise run `dvc commit {stage}` after it"
            )
            return False
        time.sleep(2.0)


@contextlib.contextmanager
def writing_stage(
    stage: str, outputs: list[str | Path | None], log: Callable[[str], None] = print, wait_s: float = 6 * 3600
) -> Iterator[StageWrite]:
    """Run the body as a writer of `stage`'s outputs (see the module docstring): the pipeline lock
    around it and, when this run is not DVC's own, `dvc commit` of the stage after it succeeds."""
    sw = stage_write(stage, outputs)
    if sw.mode == "off" or sw.root is None:
        yield sw
        return
    with pipeline_lock(sw.root, f"stage {stage} (pid {os.getpid()})", log, wait_s):
        yield sw
        if sw.mode == "record":
            commit_stage(sw.root, stage, log)

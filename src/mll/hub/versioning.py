"""Versioning a hub model the user adds: its weights under DVC, its card in git.

The demo hub's models are DVC stage outputs (`dvc.yaml`: experts, imagenet-experts, heads). A model
added with `mll hub add` is no stage's product, so its weights are `dvc add`ed: a small
`weights.safetensors.dvc` (content hash) and a `.gitignore` line go to git beside the card, the
bytes go to the DVC cache and remote. `dvc status` then shows only what the new model changes (the
`label` stage, whose dependency `models` it modified), and a clone gets the weights with `dvc pull`.

DVC is part of the `pipeline` extra; without it, or outside a DVC repository, the model is added
all the same and `track_weights` says how to version it by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Tracked:
    """What `track_weights` did: `dvc_file` when the weights are now DVC-tracked, else `reason`."""

    weights: Path
    dvc_file: Path | None = None
    reason: str = ""
    git_paths: tuple[Path, ...] = ()  # what the user commits: card, .dvc file, .gitignore

    @property
    def tracked(self) -> bool:
        return self.dvc_file is not None

    def advice(self) -> str:
        """One line for the user: what to commit, or why the weights are not tracked and the fix."""
        if self.tracked:
            paths = " ".join(str(p) for p in self.git_paths)
            return f"weights tracked by DVC ({self.dvc_file.name}); commit with: git add {paths}"
        return f"weights not DVC-tracked: {self.reason}"


def _relative(path: Path, root: Path) -> Path:
    try:
        return path.resolve().relative_to(root)
    except ValueError:
        return path


def track_weights(model_dir: Path, weights_file: str) -> Tracked:
    """`dvc add` the model's weights file when the folder lies in a DVC repository.

    Weights that a pipeline stage already produces are left to that stage (DVC refuses a second
    owner). Never raises for a missing DVC or repository: the model is in the hub either way."""
    model_dir = Path(model_dir)
    weights = model_dir / weights_file
    try:
        from dvc.exceptions import DvcException, NotDvcRepoError
        from dvc.repo import Repo
    except ModuleNotFoundError:
        return Tracked(weights, reason=f"DVC is not installed (pip install -e '.[pipeline]'; then dvc add {weights})")
    try:
        root = Path(Repo.find_root(str(model_dir))).resolve()
    except NotDvcRepoError:
        return Tracked(weights, reason=f"{model_dir} is not inside a DVC repository (dvc init, then dvc add {weights})")
    target = weights.resolve()
    rel = _relative(target, root)
    try:
        with Repo(str(root)) as repo:
            producer = next((s for s in repo.index.stages if any(o.fs_path == str(target) for o in s.outs)), None)
            if producer is not None and not producer.is_data_source:
                return Tracked(weights, reason=f"stage {producer.name!r} produces {rel}; `dvc repro` rebuilds it there")
            # DVC's own "git add ..." hint names paths relative to the caller's directory; `advice`
            # names them from the repository root instead
            repo.scm_context.quiet = True
            stages = repo.add([str(target)])
    except DvcException as exc:
        return Tracked(weights, reason=f"dvc add {rel} failed ({' '.join(str(exc).split())[:200]})")
    dvc_file = Path(stages[0].path) if stages else target.with_name(target.name + ".dvc")
    git_paths = tuple(
        _relative(p, root) for p in (model_dir / "card.yaml", dvc_file, model_dir / ".gitignore") if p.is_file()
    )
    return Tracked(weights, dvc_file=dvc_file, git_paths=git_paths)

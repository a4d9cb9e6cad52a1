"""Solving tasks given as folders of images: `mll eval` (an ImageFolder with class-named
sub-folders -> accuracy report) and `mll solve` (a folder of images -> one prediction per image).
An unreadable image is reported and skipped, never fatal."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from mll.data.datasets import IMAGE_SUFFIXES, image_folder
from mll.data.images import ImageError, open_image
from mll.solve.task import Context, Plan, answering_model, evaluate, plan, predict, with_adaptation


def open_images(paths: Sequence[str]) -> tuple[list[Image.Image], list[int], dict[str, str]]:
    images, ok, skipped = [], [], {}
    for i, p in enumerate(paths):
        try:
            images.append(open_image(p))
            ok.append(i)
        except ImageError as exc:  # one bad file is reported, not fatal
            skipped[p] = str(exc)
    return images, ok, skipped


def evaluate_folder(ctx: Context, task_dir: Path, progress=None, on_plan: Callable[[Plan], None] | None = None) -> dict:
    """`mll eval`: an ImageFolder whose sub-folder names are the class names -> accuracy report.
    `on_plan` sees the plan before any model runs (the CLI's warnings and `--strict`)."""
    ds = image_folder(Path(task_dir))
    p = plan(ctx, list(ds.class_names))
    if on_plan is not None:
        on_plan(p)
    images, ok, skipped = open_images(ds.uris)
    if not images:
        raise ValueError(f"{task_dir}: no readable image ({len(skipped)} unreadable)")
    rep = evaluate(ctx, p, images, ds.labels[ok], progress)
    return {"task_dir": str(task_dir), **rep, "skipped_images": skipped}


def list_images(folder: Path) -> list[str]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder of images")
    files = sorted(str(f) for f in folder.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"{folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def solve_folder(
    ctx: Context,
    class_names: Sequence[str],
    images_dir: Path,
    progress=None,
    on_plan: Callable[[Plan], None] | None = None,
) -> tuple[list[dict], Plan]:
    """`mll solve`: predictions for every image under `images_dir` (`on_plan`: as `evaluate_folder`)."""
    p = plan(ctx, class_names)
    if on_plan is not None:
        on_plan(p)
    paths = list_images(images_dir)
    images, ok, skipped = open_images(paths)
    if not images:
        probs = np.zeros((0, len(p.names)))
    else:
        p, cache, keys = with_adaptation(ctx, p, images)
        probs, _ = predict(ctx, p, images, progress, cache, keys)
    rows = []
    for j, i in enumerate(ok):
        k = int(probs[j].argmax())
        rows.append(
            {
                "path": paths[i],
                "predicted": p.names[k],
                "score": round(float(probs[j, k]), 4),
                "model": answering_model(p, k),
            }
        )
    for path, reason in skipped.items():
        rows.append({"path": path, "predicted": "", "score": float("nan"), "model": f"skipped: {reason}"})
    return rows, p

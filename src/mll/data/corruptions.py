"""Corrupted variants of an image, named by URI so that nothing is stored.

`corrupt:<kind>:<inner uri>` is the image behind `<inner uri>` with corruption `<kind>` applied
(`mll.data.images.open_image` resolves it). The inner URI may be any URI, a corrupted one included.
Every corruption is a pure function of the image and a seed; the seed is a hash of the kind and the
inner URI, never global random state, so an image reads the same in every process and run.

Kinds (`CORRUPTIONS`):
- `rotate`: a fixed 90-degree counter-clockwise rotation. Fixed rather than a random angle per
  image: a whole domain shares one geometric shift, no corners are filled in, and 6/9 stay apart
  (a 180-degree turn would swap them).
- `invert`: 255 - x per channel (light ink on a dark ground becomes dark on light).
- `noise`: additive Gaussian noise, sigma 0.25 of the 0-255 range, clipped to it.
- `blur`: Gaussian blur of radius 1.5 px at 28 px, scaled with the image's shorter side.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from mll.data.images import ImageError

PREFIX = "corrupt:"
NOISE_SIGMA = 0.25 * 255.0
BLUR_RADIUS_AT_28 = 1.5


def _rotate(im: Image.Image, seed: int) -> Image.Image:
    return im.transpose(Image.Transpose.ROTATE_90)


def _invert(im: Image.Image, seed: int) -> Image.Image:
    return ImageOps.invert(im)


def _noise(im: Image.Image, seed: int) -> Image.Image:
    arr = np.asarray(im, dtype=np.float64)
    noisy = arr + np.random.default_rng(seed).normal(0.0, NOISE_SIGMA, size=arr.shape)
    return Image.fromarray(noisy.round().clip(0, 255).astype(np.uint8), im.mode)


def _blur(im: Image.Image, seed: int) -> Image.Image:
    return im.filter(ImageFilter.GaussianBlur(BLUR_RADIUS_AT_28 * min(im.size) / 28.0))


# kind -> function(image in mode L or RGB, seed) -> image of the same mode and size (rotate: turned)
CORRUPTIONS: dict[str, Callable[[Image.Image, int], Image.Image]] = {
    "rotate": _rotate,
    "invert": _invert,
    "noise": _noise,
    "blur": _blur,
}


def check_kind(kind: str) -> str:
    """`kind` itself, or ImageError naming the known kinds."""
    if kind not in CORRUPTIONS:
        raise ImageError(f"unknown corruption {kind!r}; known kinds: {', '.join(CORRUPTIONS)}")
    return kind


def corruption_seed(kind: str, inner_uri: str) -> int:
    """The seed of one corrupted image: a hash of its kind and inner URI (stable across processes,
    unlike Python's salted `hash`)."""
    digest = hashlib.sha256(f"{kind}\0{inner_uri}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def corrupt_uri(kind: str, inner_uri: str) -> str:
    """The URI of `inner_uri` with corruption `kind` (ImageError for an unknown kind)."""
    return f"{PREFIX}{check_kind(kind)}:{inner_uri}"


def is_corrupt_uri(uri: str) -> bool:
    return uri.startswith(PREFIX)


def parse_corrupt_uri(uri: str) -> tuple[str, str]:
    """(kind, inner uri) of a `corrupt:<kind>:<inner>` URI; ImageError when it is not one."""
    if not is_corrupt_uri(uri):
        raise ImageError(f"{uri}: not a corrupted-image URI (expected {PREFIX}<kind>:<inner uri>)")
    kind, sep, inner = uri[len(PREFIX) :].partition(":")
    if not sep or not inner:
        raise ImageError(f"{uri}: expected {PREFIX}<kind>:<inner uri>")
    return check_kind(kind), inner


def apply_corruption(kind: str, im: Image.Image, inner_uri: str) -> Image.Image:
    """`im` (the image behind `inner_uri`) with corruption `kind`, seeded from both."""
    return CORRUPTIONS[check_kind(kind)](im, corruption_seed(kind, inner_uri))


__all__ = [
    "CORRUPTIONS",
    "apply_corruption",
    "check_kind",
    "corrupt_uri",
    "corruption_seed",
    "is_corrupt_uri",
    "parse_corrupt_uri",
]

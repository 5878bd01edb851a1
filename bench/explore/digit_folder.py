"""MNIST-like image folders (train/ and test/ class sub-folders, 28x28 grayscale PNG) made from
scikit-learn's digits: stand-ins for the small grayscale folders we do not have.

    python -m bench.explore.digit_folder OUT [COPIES] [centred|jittered]

``centred`` (as MNIST: a 20x20 digit, rotated up to 8 degrees, centred by its centre of mass;
raw-pixel k-NN 0.965); ``jittered`` (scaled 0.8-1.1, rotated up to 15 degrees, shifted up to 3
pixels; raw-pixel k-NN 0.87-0.90). 400 test images, COPIES augmented copies of the other 1397.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits


def centred(g: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, tuple[int, int]]:
    g = g.rotate(rng.uniform(-8, 8), resample=Image.BILINEAR)
    a = np.asarray(g, dtype=float)
    ys, xs = np.indices(a.shape)
    cy, cx = (a * ys).sum() / a.sum(), (a * xs).sum() / a.sum()
    return g, (round(float(14 - cx)), round(float(14 - cy)))


def jittered(g: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, tuple[int, int]]:
    g = g.rotate(rng.uniform(-15, 15), resample=Image.BILINEAR, expand=False)
    s = round(20 * rng.uniform(0.8, 1.1))
    g = g.resize((s, s), Image.BILINEAR)
    x0, y0 = (28 - s) // 2 + rng.integers(-3, 4, 2)
    return g, (int(x0), int(y0))


def write(out: Path, copies: int = 3, kind: str = "centred", n_test: int = 400) -> None:
    place = {"centred": centred, "jittered": jittered}[kind]
    d = load_digits()
    rng = np.random.default_rng(1 if kind == "centred" else 0)
    perm = rng.permutation(len(d.images))
    for split, idx in (("test", perm[:n_test]), ("train", perm[n_test:])):
        for i in idx:
            for c in range(copies if split == "train" else 1):
                g = Image.fromarray((d.images[i] / 16 * 255).astype(np.uint8)).resize((20, 20), Image.BICUBIC)
                g, corner = place(g, rng)
                canvas = Image.new("L", (28, 28))
                canvas.paste(g, corner)
                p = out / split / str(d.target[i])
                p.mkdir(parents=True, exist_ok=True)
                canvas.save(p / f"{i}_{c}.png")


if __name__ == "__main__":
    args = sys.argv[1:]
    write(Path(args[0]), int(args[1]) if len(args) > 1 else 3, args[2] if len(args) > 2 else "centred")

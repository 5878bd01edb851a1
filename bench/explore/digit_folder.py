"""An MNIST-like image folder (train/ and test/ class sub-folders, 28x28 grayscale PNG) made from
scikit-learn's digits: upscaled, rotated, scaled and shifted copies. A stand-in for the small
grayscale folders we do not have.

    python -m bench.explore.digit_folder OUT [COPIES]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits


def write(out: Path, copies: int = 3, n_test: int = 400) -> None:
    d = load_digits()
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(d.images))
    for split, idx in (("test", perm[:n_test]), ("train", perm[n_test:])):
        for i in idx:
            for c in range(copies if split == "train" else 1):
                g = Image.fromarray((d.images[i] / 16 * 255).astype(np.uint8)).resize((20, 20), Image.BICUBIC)
                g = g.rotate(rng.uniform(-15, 15), resample=Image.BILINEAR, expand=False)
                s = round(20 * rng.uniform(0.8, 1.1))
                g = g.resize((s, s), Image.BILINEAR)
                canvas = Image.new("L", (28, 28))
                x0, y0 = (28 - s) // 2 + rng.integers(-3, 4, 2)
                canvas.paste(g, (int(x0), int(y0)))
                p = out / split / str(d.target[i])
                p.mkdir(parents=True, exist_ok=True)
                canvas.save(p / f"{i}_{c}.png")


if __name__ == "__main__":
    write(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 3)

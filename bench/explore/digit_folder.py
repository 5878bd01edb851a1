"""MNIST-like image folders (train/ and test/ class sub-folders, grayscale PNG) made from
scikit-learn's digits: stand-ins for the small grayscale folders we do not have.

    python -m bench.explore.digit_folder OUT [COPIES] [centred|jittered] [--size 28|32]
        [--stroke thin|normal|thick|mixed] [--seed S]

``centred`` (as MNIST: a digit of 20/28 of the side, rotated up to 8 degrees, centred by its
centre of mass; raw-pixel k-NN 0.965 at 28 px); ``jittered`` (scaled 0.8-1.1, rotated up to 15
degrees, shifted up to 3/28 of the side; raw-pixel k-NN 0.87-0.90). ``--stroke`` thins or thickens
the strokes (a 3x3 min / max filter at twice the digit's size; ``mixed`` draws one of the three per
image). 400 test images, COPIES augmented copies of the other 1,397 (so 1,397 to ~10,000 training
images). ``--seed`` draws another split and other augmentations (default: 1 centred, 0 jittered).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter
from sklearn.datasets import load_digits

STROKES = ("thin", "normal", "thick")


def centred(g: Image.Image, rng: np.random.Generator, side: int) -> tuple[Image.Image, tuple[int, int]]:
    g = g.rotate(rng.uniform(-8, 8), resample=Image.BILINEAR)
    a = np.asarray(g, dtype=float)
    ys, xs = np.indices(a.shape)
    cy, cx = (a * ys).sum() / a.sum(), (a * xs).sum() / a.sum()
    return g, (round(float(side / 2 - cx)), round(float(side / 2 - cy)))


def jittered(g: Image.Image, rng: np.random.Generator, side: int) -> tuple[Image.Image, tuple[int, int]]:
    g = g.rotate(rng.uniform(-15, 15), resample=Image.BILINEAR, expand=False)
    s = round(g.width * rng.uniform(0.8, 1.1))
    g = g.resize((s, s), Image.BILINEAR)
    shift = round(3 * side / 28)
    x0, y0 = (side - s) // 2 + rng.integers(-shift, shift + 1, 2)
    return g, (int(x0), int(y0))


def glyph(image: np.ndarray, digit: int, stroke: str) -> Image.Image:
    """An 8x8 digit (values 0-16) as a ``digit``-pixel glyph with the stroke width asked for."""
    g = Image.fromarray((image / 16 * 255).astype(np.uint8))
    if stroke == "normal":  # as before the stroke option: the same images
        return g.resize((digit, digit), Image.BICUBIC)
    g = g.resize((2 * digit, 2 * digit), Image.BICUBIC)
    if stroke == "thin":
        g = g.filter(ImageFilter.MinFilter(3))
    elif stroke == "thick":
        g = g.filter(ImageFilter.MaxFilter(3))
    return g.resize((digit, digit), Image.BILINEAR)


def write(
    out: Path,
    copies: int = 3,
    kind: str = "centred",
    n_test: int = 400,
    size: int = 28,
    stroke: str = "normal",
    seed: int | None = None,
) -> None:
    place = {"centred": centred, "jittered": jittered}[kind]
    if stroke not in (*STROKES, "mixed"):
        raise ValueError(f"stroke must be one of {[*STROKES, 'mixed']}, got {stroke!r}")
    d = load_digits()
    rng = np.random.default_rng((1 if kind == "centred" else 0) if seed is None else seed)
    perm = rng.permutation(len(d.images))
    digit = round(20 * size / 28)  # MNIST's 20-pixel digit in a 28-pixel field, scaled
    for split, idx in (("test", perm[:n_test]), ("train", perm[n_test:])):
        for i in idx:
            for c in range(copies if split == "train" else 1):
                s = STROKES[int(rng.integers(3))] if stroke == "mixed" else stroke
                g, corner = place(glyph(d.images[i], digit, s), rng, size)
                canvas = Image.new("L", (size, size))
                canvas.paste(g, corner)
                p = out / split / str(d.target[i])
                p.mkdir(parents=True, exist_ok=True)
                canvas.save(p / f"{i}_{c}.png")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("copies", type=int, nargs="?", default=3)
    ap.add_argument("kind", nargs="?", default="centred", choices=("centred", "jittered"))
    ap.add_argument("--size", type=int, default=28)
    ap.add_argument("--stroke", default="normal", choices=(*STROKES, "mixed"))
    ap.add_argument("--seed", type=int)
    a = ap.parse_args()
    write(a.out, a.copies, a.kind, size=a.size, stroke=a.stroke, seed=a.seed)

"""PNG grids of built-in samples (README): ``digits-cluttered`` at full clutter and at the
quickstart's, and ``shapes`` one row per kind.

python -m bench.sample_grid docs/digits-cluttered.png docs/shapes.png
"""

from __future__ import annotations

import sys

from PIL import Image, ImageDraw

from vitforge.data.builtin import SHAPES, digits_cluttered, shapes


def grid(out: str, per_row: int = 12, scale: int = 3) -> None:
    rows = [
        ("clutter 1 (default)", digits_cluttered(clutter=1.0)),
        ("clutter 0 (quickstart)", digits_cluttered(clutter=0.0)),
    ]
    cell, label_w = 34, 150
    img = Image.new("RGB", (label_w + per_row * cell * scale, 2 * len(rows) * cell * scale), "white")
    draw = ImageDraw.Draw(img)
    for r, (label, data) in enumerate(rows):
        recs = data["train"][: 2 * per_row]
        draw.text((6, (2 * r + 1) * cell * scale - 6), label, fill="black")
        for k, rec in enumerate(recs):
            x = label_w + (k % per_row) * cell * scale
            y = (2 * r + k // per_row) * cell * scale
            img.paste(rec["image"].resize((32 * scale, 32 * scale), Image.NEAREST), (x + scale, y + scale))
    img.save(out)


def shapes_grid(out: str, per_row: int = 10, scale: int = 3) -> None:
    """One row per kind: the quickstart's CLOOB half's drawings (any rotation, 9 places, 5 backgrounds)."""
    recs = shapes(n=600)["train"]
    cell, label_w = 34, 90
    img = Image.new("RGB", (label_w + per_row * cell * scale, len(SHAPES) * cell * scale), "white")
    draw = ImageDraw.Draw(img)
    for r, kind in enumerate(SHAPES):
        draw.text((6, r * cell * scale + cell * scale // 2 - 6), kind, fill="black")
        for k, rec in enumerate([x for x in recs if x["label"] == r][:per_row]):
            img.paste(
                rec["image"].resize((32 * scale, 32 * scale), Image.NEAREST),
                (label_w + k * cell * scale, r * cell * scale),
            )
    img.save(out)


if __name__ == "__main__":
    grid(sys.argv[1] if len(sys.argv) > 1 else "docs/digits-cluttered.png")
    shapes_grid(sys.argv[2] if len(sys.argv) > 2 else "docs/shapes.png")

"""A PNG grid of ``digits-cluttered`` samples (README), at full clutter and at the quickstart's.

python -m bench.sample_grid docs/digits-cluttered.png
"""

from __future__ import annotations

import sys

from PIL import Image, ImageDraw

from vitforge.data.builtin import digits_cluttered


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


if __name__ == "__main__":
    grid(sys.argv[1] if len(sys.argv) > 1 else "docs/digits-cluttered.png")

"""Dataset statistics for normalization, from a sample, and export of built-ins as Parquet."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np

from vitforge.data.builtin import builtin_parquet
from vitforge.data.sources import DataError, Source, load_image, warn_skipped
from vitforge.data.stream import Reader, Window, read_rows


def sample_rows(source: Source, max_images: int, seed: int = 0) -> dict[str, list]:
    """Up to ``max_images`` rows spread over the source, read in this process: the first rows of
    up to ``max_images`` random pieces (files, row groups), as evenly as their sizes allow."""
    p = source.pieces
    picked = np.random.default_rng(seed).permutation(len(p))[:max_images]
    rows = p["rows"].to_numpy()[picked]
    per = max(1, math.ceil(max_images / max(1, len(picked))))
    take = np.minimum(rows, per)
    keep = np.cumsum(take) - take < max_images  # stop once enough rows are planned
    picked, take = picked[keep], take[keep]
    col = {c: p[c].to_numpy(zero_copy_only=False)[picked].tolist() for c in ("uri", "part", "first_id", "label")}
    window = Window(0, col["uri"], col["part"], [0] * len(picked), take.tolist(), col["first_id"], col["label"])
    out = read_rows(Reader.of(source), window)
    return {k: v[:max_images] for k, v in out.items()}


def channel_stats(
    source: Source, max_images: int = 1024, seed: int = 0, on_bad: str = "raise"
) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of pixel values in [0, 1] over up to ``max_images`` sampled rows.

    ``on_bad="skip"``: unreadable rows are left out (one warning with the count and the first
    reasons), as in training; if none is readable it raises.
    """
    rows = sample_rows(source, max_images, seed)
    total, total_sq, count, skipped = np.zeros(3), np.zeros(3), 0, []
    for i, cell in zip(rows["id"], rows["image"], strict=True):
        try:
            img = load_image(cell, f"row {i} of {source.name}")
        except DataError as e:
            if on_bad != "skip":
                raise
            skipped.append(str(e))
            continue
        x = np.asarray(img, dtype=np.float64) / 255.0  # (H, W, 3)
        total += x.sum((0, 1))
        total_sq += (x**2).sum((0, 1))
        count += x.shape[0] * x.shape[1]
    warn_skipped(skipped, len(rows["id"]))
    if count == 0:
        raise DataError(f"none of the {len(rows['id'])} rows read for the mean/std is a readable image: {skipped[0]}")
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 1e-12))
    return mean.round(4).tolist(), std.round(4).tolist()


def export_builtin(name: str, out_dir: str | Path, **options) -> list[Path]:
    """Write every split of a built-in as ``OUT/<split>.parquet`` (image bytes, label, caption)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for split in ("train", "test"):
        path = out / f"{split}.parquet"
        shutil.copyfile(builtin_parquet(name, split, options), path)
        written.append(path)
    return written

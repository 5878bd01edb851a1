"""Dataset statistics for normalization, and export of built-ins as Parquet."""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np

from vitforge.data.sources import DataError, load_image, load_source, warn_skipped


def channel_stats(
    ds: datasets.Dataset, max_images: int = 1024, seed: int = 0, on_bad: str = "raise"
) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of pixel values in [0, 1] over up to ``max_images`` random rows.

    ``on_bad="skip"``: unreadable rows are left out (one warning with the count and the first
    reasons), as in training; if none is readable it raises.
    """
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(ds), size=min(max_images, len(ds)), replace=False)
    total, total_sq, count, skipped = np.zeros(3), np.zeros(3), 0, []
    for i in rows.tolist():
        try:
            img = load_image(ds[i]["image"], f"row {i}")
        except DataError as e:
            if on_bad != "skip":
                raise
            skipped.append(str(e))
            continue
        x = np.asarray(img, dtype=np.float64) / 255.0  # (H, W, 3)
        total += x.sum((0, 1))
        total_sq += (x**2).sum((0, 1))
        count += x.shape[0] * x.shape[1]
    warn_skipped(skipped, len(rows))
    if count == 0:
        raise DataError(f"none of the {len(rows)} rows read for the mean/std is a readable image: {skipped[0]}")
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 1e-12))
    return mean.round(4).tolist(), std.round(4).tolist()


def export_builtin(name: str, out_dir: str | Path, **options) -> list[Path]:
    """Write every split of a built-in as ``OUT/<split>.parquet`` (image bytes, label, caption)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for split in ("train", "test"):
        ds = load_source(name, split=split, builtin_options=options)
        path = out / f"{split}.parquet"
        ds.remove_columns("index").to_parquet(str(path))
        written.append(path)
    return written

"""What every source format shares: the error type, the column names, file suffixes, and the
piece table (a row per file or row group: uri, part, rows, first id, label)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
CAPTION_SUFFIXES = (".txt", ".caption", ".json")


class DataError(ValueError):
    """Bad input data: the message names the file or row and the column."""


@dataclass(frozen=True)
class Columns:
    """The source's own names for the image, label and caption columns (Parquet, Arrow)."""

    image: str = "image"
    label: str | None = "label"
    caption: str | None = "caption"


def uri_of(fs, path: str) -> str:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return path if protocol in ("file", "local") else f"{protocol}://{path}"


def piece_table(uris: list[str], parts: list[int], rows: list[int], labels: list[int] | None = None) -> pa.Table:
    rows_a = np.asarray(rows, dtype=np.int64)
    first = np.concatenate([[0], np.cumsum(rows_a)[:-1]]).astype(np.int64) if len(rows_a) else rows_a
    return pa.table(
        {
            "uri": pa.array(uris, pa.string()),
            "part": pa.array(parts, pa.int32()),
            "rows": rows_a,
            "first_id": first,
            "label": pa.array(labels if labels is not None else [-1] * len(uris), pa.int64()),
        }
    )

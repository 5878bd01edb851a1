"""``vitforge data prepare``: any source rewritten as shards (Parquet or WebDataset tar) with
images capped in size, as img2dataset and FFCV prepare a set once so that training decodes less.

A shard is one window of the source in listing order (``data/stream.py``), written by one call of
``write_shard`` — a pure function of (source, window), so shards are written by Ray tasks on the
cluster or in this process alike, and a shard that exists already is not written again.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from vitforge.data.builtin import BUILTINS
from vitforge.data.sources import DataError, Source, load_image
from vitforge.data.stream import Reader, Window, epoch_windows, read_rows

SHARD_FORMATS = ("parquet", "webdataset")
KEEP_AS_IS = {"JPEG", "PNG", "WEBP"}  # small enough already: written back unchanged


@dataclass(frozen=True)
class ShardResult:
    path: str
    rows: int
    skipped: list[str]  # each bad row: its id, file and reason
    bytes_in: int
    bytes_out: int


def splits_of(path: str) -> list[str]:
    """The splits a source has: ``train``/``test``/``validation`` sub-folders or file-name prefixes,
    the built-ins' two; else the whole source as ``train``."""
    if path in BUILTINS:
        return ["train", "test"]
    fs, root = fsspec.core.url_to_fs(path)
    if fs.isfile(root):
        return ["train"]
    names = [Path(p).name for p in fs.ls(root, detail=False)]
    found = [s for s in ("train", "validation", "val", "test") if any(n == s or n.startswith(f"{s}-") or
             n.startswith(f"{s}.") or n.startswith(f"{s}_") for n in names)]  # fmt: skip
    return found or ["train"]


def capped(cell: object, where: str, max_side: int | None, quality: int) -> tuple[bytes, int]:
    """The image's bytes with the longest side at most ``max_side`` (re-encoded as JPEG when shrunk
    or when not JPEG/PNG/WebP); (bytes, bytes read). A bad file raises ``DataError`` naming it."""
    path = cell.get("path") if isinstance(cell, dict) else cell if isinstance(cell, str) else None
    try:
        raw = _read(cell)
    except OSError as e:
        raise DataError(f"{where} (file {path}), column 'image': cannot read: {e}") from e
    img = load_image({"bytes": raw, "path": path}, where)  # decodes fully: a bad file fails here
    fmt = Image.open(io.BytesIO(raw)).format
    if (max_side is None or max(img.size) <= max_side) and fmt in KEEP_AS_IS:
        return raw, len(raw)
    if max_side is not None and max(img.size) > max_side:
        scale = max_side / max(img.size)
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue(), len(raw)


def _read(cell: object) -> bytes:
    if isinstance(cell, dict):
        if cell.get("bytes") is not None:
            return cell["bytes"]
        cell = cell.get("path")
    if isinstance(cell, bytes | bytearray | memoryview):
        return bytes(cell)
    with fsspec.open(cell, "rb") as f:
        return f.read()


def write_shard(
    reader: Reader, window: Window, out: str, fmt: str, max_side: int | None, quality: int = 95
) -> ShardResult:
    """Read the window's rows, cap their images and write them as one shard at ``out`` (written
    to a temporary name, then renamed: a shard that exists is whole)."""
    rows = read_rows(reader, window)
    kept: dict[str, list] = {"image": [], "label": [], "caption": [], "id": []}
    skipped, bytes_in = [], 0
    for i, cell, label, caption in zip(rows["id"], rows["image"], rows["label"], rows["caption"], strict=True):
        try:
            data, n = capped(cell, f"row {i} of {reader.name}", max_side, quality)
        except DataError as e:
            skipped.append(str(e))
            continue
        bytes_in += n
        for k, v in (("image", data), ("label", label), ("caption", caption), ("id", i)):
            kept[k].append(v)
    fs, path = fsspec.core.url_to_fs(out)
    tmp = f"{path}.tmp-{os.getpid()}"
    if fmt == "parquet":
        cols = {"image": pa.array(kept["image"], pa.binary()), "label": pa.array(kept["label"], pa.int64())}
        if any(c is not None for c in kept["caption"]):  # no empty caption column: it would claim captions
            cols["caption"] = pa.array(kept["caption"], pa.string())
        table = pa.table(cols)
        with fs.open(tmp, "wb") as f:
            pq.write_table(table, f, row_group_size=256)
    else:
        with fs.open(tmp, "wb") as f, tarfile.open(fileobj=f, mode="w") as tar:
            for i, data, label, caption in zip(kept["id"], kept["image"], kept["label"], kept["caption"], strict=True):
                ext = {"PNG": "png", "WEBP": "webp"}.get(Image.open(io.BytesIO(data)).format, "jpg")
                members = [(ext, data)] + ([("cls", str(label).encode())] if label >= 0 else [])
                members += [("txt", caption.encode())] if caption is not None else []
                for e, payload in members:
                    info = tarfile.TarInfo(f"{i:09d}.{e}")
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))
    fs.mv(tmp, path)
    return ShardResult(out, len(kept["id"]), skipped, bytes_in, sum(len(d) for d in kept["image"]))


def shard_plan(source: Source, out_dir: str, shard_size: int, fmt: str) -> list[tuple[Window, str]]:
    """(window, shard path) per shard of a split, in listing order."""
    ext = "parquet" if fmt == "parquet" else "tar"
    windows = epoch_windows(source, 0, 0, window_rows=shard_size, shuffle=False, drop=False)
    return [(w, f"{out_dir.rstrip('/')}/{source.split}-{i:05d}.{ext}") for i, w in enumerate(windows)]


def write_manifest(out_dir: str, source: Source, shards: list[str], results: list[ShardResult], options: dict) -> None:
    """``OUT/<split>.json``: where the shards came from, how they were made, what this run wrote
    and skipped (a resumed run: the shards it added)."""
    fs, root = fsspec.core.url_to_fs(out_dir)
    record = {
        "source": source.name,
        "split": source.split,
        "classes": source.classes,
        "shards": [Path(p).name for p in shards],
        "written": [Path(r.path).name for r in results],
        "rows_written": sum(r.rows for r in results),
        "skipped": [s for r in results for s in r.skipped],
        "bytes_in": sum(r.bytes_in for r in results),
        "bytes_out": sum(r.bytes_out for r in results),
        **options,
    }
    with fs.open(f"{root}/{source.split}.json", "w") as f:
        json.dump(record, f, indent=1)

"""Image folders: class sub-folders as labels, and captions (or labels) from a ``metadata.jsonl`` /
``metadata.csv`` beside the images, as Hugging Face's imagefolder has them. Listing only: no image
is read here."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.compute as pc

from vitforge.data.pieces import IMAGE_SUFFIXES, Columns, DataError, piece_table, uri_of


def folder_pieces(path: str, split: str, columns: Columns) -> tuple[pa.Table, list[str]]:
    """Class sub-folders -> labels (sorted names); ``DIR/train`` and ``DIR/test`` are splits if present.
    One piece per image file: the listing is the only pass, and it reads no image. Captions (and
    labels) from ``metadata.jsonl`` or ``metadata.csv`` beside the images, as Hugging Face's
    imagefolder has them: ``file_name`` relative to the folder, a caption column."""
    fs, root = fsspec.core.url_to_fs(path)
    if fs.isdir(f"{root}/{split}"):
        root = f"{root}/{split}"
    classes = sorted(Path(p).name for p in fs.ls(root, detail=False) if fs.isdir(p))
    paths, labels = [], []
    if classes:
        for label, cls in enumerate(classes):
            found = [p for p in sorted(fs.find(f"{root}/{cls}")) if Path(p).suffix.lower() in IMAGE_SUFFIXES]
            paths += found
            labels += [label] * len(found)
    else:
        paths = [p for p in sorted(fs.find(root)) if Path(p).suffix.lower() in IMAGE_SUFFIXES]
        labels = [-1] * len(paths)
    uris = [uri_of(fs, p) for p in paths]
    table = piece_table(uris, [-1] * len(uris), [1] * len(uris), labels)
    meta = _folder_metadata(fs, root, columns)
    if meta is not None:
        names, captions, meta_labels = meta
        rel = [p[len(root) + 1 :] for p in paths]
        table = table.append_column("caption", pa.array([captions.get(r) for r in rel], pa.string()))
        if meta_labels and not classes:
            table = table.set_column(4, "label", pa.array([meta_labels.get(r, -1) for r in rel], pa.int64()))
        missing = [r for r in rel if r not in names]
        if missing:
            raise DataError(
                f"{path}: {len(missing)} images have no row in {meta_file(fs, root)}, e.g. {missing[0]!r}"
                " (file_name is the path relative to the folder)"
            )
    return table, classes


def meta_file(fs, root: str) -> str | None:
    for name in ("metadata.jsonl", "metadata.csv"):
        if fs.isfile(f"{root}/{name}"):
            return f"{root}/{name}"
    return None


def _folder_metadata(fs, root: str, columns: Columns) -> tuple[set, dict, dict] | None:
    """(file names, file -> caption, file -> label) from the folder's metadata file, or None."""
    path = meta_file(fs, root)
    if path is None:
        return None
    with fs.open(path, "r") as f:
        if path.endswith(".jsonl"):
            rows = [json.loads(line) for line in f if line.strip()]
        else:
            rows = list(csv.DictReader(f))
    if not rows or "file_name" not in rows[0]:
        raise DataError(f"{path}: needs a file_name column (found {sorted(rows[0]) if rows else 'no rows'})")
    cap = next((c for c in (columns.caption, "text", "caption") if c and c in rows[0]), None)
    if cap is None:
        raise DataError(f"{path}: no caption column {columns.caption!r} (nor 'text'); columns are {sorted(rows[0])}")
    names = {r["file_name"] for r in rows}
    captions = {r["file_name"]: r[cap] for r in rows if r.get(cap) not in (None, "")}
    labels = {
        r["file_name"]: int(r[columns.label]) for r in rows if columns.label and r.get(columns.label) not in (None, "")
    }
    return names, captions, labels


def check_folder_captions(path: str, pieces: pa.Table) -> None:
    missing = pc.is_null(pieces["caption"])
    if pc.any(missing).as_py():
        first = pieces.filter(missing)["uri"][0].as_py()
        n = pc.sum(missing.cast(pa.int64())).as_py()
        raise DataError(f"{path}: {n} images have no caption in the folder's metadata file, e.g. {first}")

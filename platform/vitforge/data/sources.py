"""Data sources planned on the driver from metadata alone: which files (and Parquet row groups)
hold how many rows. Rows themselves are read later, window by window (``data/stream.py``), by Ray
Data tasks on the cluster or by the process that needs them.

Every source, whatever its format, reads as rows of one schema: ``id`` (int64, a stable sample id:
the piece's first id plus the row's place in it, from the listing order), ``image`` (bytes, a path
or a ``{"bytes", "path"}`` cell, decoded later), ``label`` (int64, -1 when absent) and ``caption``
(string or None).
"""

from __future__ import annotations

import io
import json
import tarfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image, UnidentifiedImageError

from vitforge.data.builtin import BUILTINS, CLASS_NAMES, builtin_parquet
from vitforge.data.folders import check_folder_captions, folder_pieces
from vitforge.data.pieces import CAPTION_SUFFIXES, IMAGE_SUFFIXES, Columns, DataError, piece_table, uri_of

FORMATS = ("builtin", "imagefolder", "parquet", "arrow", "saved", "webdataset")


@dataclass
class Source:
    """A planned source: its pieces (a Parquet row group, an Arrow file, a tar shard or one image
    file) with their row counts and first ids — metadata only, a few bytes per piece.

    ``pieces`` columns: ``uri``, ``part`` (row group; -1 otherwise), ``rows``, ``first_id``, ``label``
    (an image folder's class; -1 otherwise). ``kind`` says how a piece is read.
    """

    name: str
    format: str
    split: str
    kind: str  # "parquet" | "arrow" | "file" | "tar"
    columns: Columns
    pieces: pa.Table
    # Names of the labels 0..C-1: a folder's sub-folders, a built-in's, or those `data prepare` recorded.
    classes: list[str] = field(default_factory=list)
    num_classes: int | None = None
    has_captions: bool = False

    def __len__(self) -> int:
        return self.num_rows

    @property
    def num_rows(self) -> int:
        return int(pc.sum(self.pieces["rows"]).as_py() or 0)


def detect_format(path: str) -> str:
    """Guess the source format from a path or URI (see ``FORMATS``)."""
    if path in BUILTINS:
        return "builtin"
    fs, root = fsspec.core.url_to_fs(path)
    if not fs.exists(root):
        raise DataError(f"data source {path!r} does not exist (built-ins: {', '.join(BUILTINS)})")
    if fs.isfile(root):
        for suffix, fmt in ((".parquet", "parquet"), (".arrow", "arrow"), (".tar", "webdataset")):
            if root.endswith(suffix):
                return fmt
        raise DataError(f"cannot tell the format of file {path!r}: expected .parquet, .arrow or .tar")
    names = {Path(p).name for p in fs.ls(root, detail=False)}
    if "state.json" in names or "dataset_dict.json" in names:
        return "saved"
    if any(n.endswith(".parquet") for n in names):
        return "parquet"
    if any(n.endswith(".tar") for n in names):
        return "webdataset"
    return "imagefolder"


def _split_files(path: str, split: str, suffix: str) -> list[str]:
    """Files of a split: ``DIR/<split>*<suffix>`` (or ``DIR/<split>/*``), else every file; a file
    path is itself. Files that do not end in ``suffix`` are never handed on (a log file beside the
    shards, say)."""
    fs, root = fsspec.core.url_to_fs(path)
    if fs.isfile(root):
        return [path]
    if fs.isdir(f"{root}/{split}"):
        root = f"{root}/{split}"
    files = sorted(p for p in fs.find(root) if p.endswith(suffix))
    chosen = [p for p in files if Path(p).name.startswith(split)] or files
    if not chosen:
        raise DataError(f"{path}: no {suffix} files")
    return [uri_of(fs, p) for p in chosen]


def _parquet_pieces(files: list[str], columns: Columns, name: str) -> tuple[pa.Table, int | None, bool]:
    """Row groups from the footers (read in parallel threads; no row is read). The label's largest
    value comes from the row groups' statistics where they have it."""
    import pyarrow.parquet as pq

    def footer(uri: str):
        with fsspec.open(uri, "rb") as f:
            return pq.ParquetFile(f).metadata

    with ThreadPoolExecutor(16) as pool:
        metas = list(pool.map(footer, files))
    schema = metas[0].schema.to_arrow_schema()
    _check_columns(schema, columns, name)
    uris, parts, rows, top = [], [], [], -1
    label_at = schema.get_field_index(columns.label) if columns.label in schema.names else -1
    for uri, meta in zip(files, metas, strict=True):
        for g in range(meta.num_row_groups):
            rg = meta.row_group(g)
            uris.append(uri)
            parts.append(g)
            rows.append(rg.num_rows)
            if label_at >= 0:
                stats = _leaf(rg, meta, columns.label).statistics
                top = max(top, int(stats.max)) if stats is not None and stats.has_min_max else top
    has_caption = columns.caption in schema.names
    return piece_table(uris, parts, rows), (top + 1 if top >= 0 else None), has_caption


def _leaf(rg, meta, name: str):
    for i in range(meta.num_columns):
        if rg.column(i).path_in_schema == name:
            return rg.column(i)
    raise DataError(f"column {name!r} is not a leaf column")


def _check_columns(schema: pa.Schema, columns: Columns, name: str) -> None:
    cols = set(schema.names)
    if columns.image not in cols:
        raise DataError(f"{name}: no image column {columns.image!r}; columns are {sorted(cols)}")
    if columns.caption in cols:
        t = schema.field(columns.caption).type
        if not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t)):
            raise DataError(f"{name}: caption column {columns.caption!r} must hold strings, found {t}")


def _arrow_pieces(files: list[str], columns: Columns, name: str) -> tuple[pa.Table, int | None, bool]:
    """Arrow IPC stream files (``save_to_disk``): one piece a file; rows counted memory-mapped."""
    rows, schema, top = [], None, -1
    for uri in files:
        with pa.memory_map(uri) as src:
            table = pa.ipc.open_stream(src).read_all()
        schema = table.schema
        rows.append(table.num_rows)
        if columns.label in table.column_names and table.num_rows:
            top = max(top, int(pc.max(table[columns.label]).as_py() or -1))
    _check_columns(schema, columns, name)
    return piece_table(files, [-1] * len(files), rows), (top + 1 if top >= 0 else None), columns.caption in schema.names


def tar_samples(f) -> list[tuple[str, dict[str, tarfile.TarInfo]]]:
    """A WebDataset shard's samples in file order: key -> its members by extension
    (``000123.jpg``, ``000123.txt``, ``000123.cls``: one sample)."""
    samples: dict[str, dict[str, tarfile.TarInfo]] = {}
    with tarfile.open(fileobj=f, mode="r|*") if not f.seekable() else tarfile.open(fileobj=f) as tar:
        for m in tar:
            if not m.isfile():
                continue
            base = m.name.rsplit("/", 1)[-1]
            key, _, ext = base.partition(".")
            samples.setdefault(f"{m.name.rsplit('/', 1)[0]}/{key}" if "/" in m.name else key, {})["." + ext] = m
    return list(samples.items())


def _tar_pieces(files: list[str]) -> tuple[pa.Table, bool]:
    def count(uri: str) -> tuple[int, bool]:
        with fsspec.open(uri, "rb") as f:
            samples = tar_samples(f)
        return sum(any(e in IMAGE_SUFFIXES for e in m) for _, m in samples), any(
            any(e in CAPTION_SUFFIXES for e in m) for _, m in samples
        )

    with ThreadPoolExecutor(16) as pool:
        counts = list(pool.map(count, files))
    return piece_table(files, [-1] * len(files), [c for c, _ in counts]), any(c for _, c in counts)


def _manifest_classes(path: str, split: str) -> list[str]:
    """Class names that ``vitforge data prepare`` recorded beside its shards (``<split>.json``)."""
    fs, root = fsspec.core.url_to_fs(path)
    manifest = f"{root}/{split}.json"
    if fs.isdir(root) and fs.isfile(manifest):
        with fs.open(manifest, "r") as f:
            return list(json.load(f).get("classes") or [])
    return []


def load_source(
    path: str,
    split: str = "train",
    format: str | None = None,
    columns: Columns | None = None,
    require_captions: bool = False,
    builtin_options: dict | None = None,
) -> Source:
    """Plan a source: list its files and read their footers, never their rows. ``format`` is
    detected when None. A built-in is written once as Parquet (``builtin_parquet``) and read as such.

    Columns are checked here, before any training starts: a missing image (or, with
    ``require_captions``, caption) column, a caption column that is not text and an empty source
    raise :class:`DataError` naming the column and what is there.
    """
    columns = columns or Columns()
    fmt = format or detect_format(path)
    if fmt not in FORMATS:
        raise DataError(f"data format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    classes: list[str] = []
    num_classes: int | None = None
    if fmt == "builtin":
        if path not in BUILTINS:
            raise DataError(f"unknown built-in dataset {path!r}; allowed: {', '.join(BUILTINS)}")
        file = builtin_parquet(path, split, builtin_options or {})
        pieces, num_classes, captions = _parquet_pieces([str(file)], Columns(), path)
        kind, columns, classes = "parquet", Columns(), list(CLASS_NAMES[path])
    elif fmt in ("parquet",):
        pieces, num_classes, captions = _parquet_pieces(_split_files(path, split, ".parquet"), columns, path)
        kind, classes = "parquet", _manifest_classes(path, split)
    elif fmt in ("arrow", "saved"):
        pieces, num_classes, captions = _arrow_pieces(_split_files(path, split, ".arrow"), columns, path)
        kind = "arrow"
    elif fmt == "webdataset":
        pieces, captions = _tar_pieces(_split_files(path, split, ".tar"))
        kind, columns, classes = "tar", Columns(label="cls", caption="txt"), _manifest_classes(path, split)
        num_classes = len(classes) or None
    else:
        pieces, classes = folder_pieces(path, split, columns)
        kind, captions = "file", "caption" in pieces.column_names
        if captions and require_captions:
            check_folder_captions(path, pieces)
        num_classes = len(classes) or (int(pc.max(pieces["label"]).as_py()) + 1 if len(pieces) else 0) or None
    source = Source(path, fmt, split, kind, columns, pieces, classes, num_classes, captions)
    if require_captions and not captions:
        raise DataError(f"{path}: no caption column {columns.caption!r} (image-text stages need captions)")
    if source.num_rows == 0:
        raise DataError(f"{path}: the dataset is empty (split {split!r})")
    return source


def load_image(value: object, where: str) -> Image.Image:
    """Decode one image cell (``{"bytes", "path"}``, raw bytes or a path/URI) to RGB PIL.

    Raises :class:`DataError` with ``where`` (row and source) and the file when it is not an image.
    """
    path = None
    data = None
    if isinstance(value, dict):
        data, path = value.get("bytes"), value.get("path")
    elif isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
    elif isinstance(value, str):
        path = value
    else:
        raise DataError(f"{where}, column 'image': expected bytes or a path, got {type(value).__name__}")
    try:
        if data is None:
            if not path:
                raise DataError(f"{where}, column 'image': empty cell (no bytes, no path)")
            with fsspec.open(path, "rb") as f:
                data = f.read()
        img = Image.open(io.BytesIO(data))
        img.load()  # decode fully now: truncated files fail here, not later in a worker
        return img.convert("RGB")
    except DataError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        file = f" (file {path})" if path else ""
        # PIL names the in-memory buffer ("cannot identify image file <_io.BytesIO object at 0x..>").
        reason = "unknown or corrupt image format" if isinstance(e, UnidentifiedImageError) else str(e)
        raise DataError(f"{where}{file}, column 'image': not a readable image: {reason}") from e


def warn_skipped(skipped: list[str], total: int) -> None:
    """One warning for all skipped rows, with the first few reasons."""
    if skipped:
        head = "; ".join(skipped[:3])
        warnings.warn(f"skipped {len(skipped)} of {total} bad rows, e.g. {head}", stacklevel=2)

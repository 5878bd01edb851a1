"""Datasets from the user's formats, read with Hugging Face ``datasets``, in one normalized schema.

Every source becomes a ``datasets.Dataset`` with the columns
``index`` (int64, a stable sample id), ``image`` (``{"bytes", "path"}``, not decoded),
``label`` (int64, -1 when absent) and ``caption`` (string or None).
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import datasets
import fsspec
from PIL import Image, UnidentifiedImageError

from vitforge.data.builtin import BUILTINS

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
FORMATS = ("builtin", "imagefolder", "parquet", "arrow", "saved")


class DataError(ValueError):
    """Bad input data: the message names the file or row and the column."""


def detect_format(path: str) -> str:
    """Guess the source format from a path or URI (see ``FORMATS``)."""
    if path in BUILTINS:
        return "builtin"
    fs, root = fsspec.core.url_to_fs(path)
    if not fs.exists(root):
        raise DataError(f"data source {path!r} does not exist (built-ins: {', '.join(BUILTINS)})")
    if fs.isfile(root):
        if root.endswith(".parquet"):
            return "parquet"
        if root.endswith(".arrow"):
            return "arrow"
        raise DataError(f"cannot tell the format of file {path!r}: expected .parquet or .arrow")
    names = {Path(p).name for p in fs.ls(root, detail=False)}
    if "state.json" in names or "dataset_dict.json" in names:
        return "saved"
    if any(n.endswith(".parquet") for n in names):
        return "parquet"
    return "imagefolder"


def _builtin(name: str, split: str, **kwargs) -> datasets.Dataset:
    records = BUILTINS[name](**kwargs)[split]
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.Value("int64"), "caption": datasets.Value("string")}
    )
    return datasets.Dataset.from_dict(
        {k: [r[k] for r in records] for k in ("image", "label", "caption")}, features=features
    )


def _parquet_files(path: str, split: str) -> list[str]:
    fs, root = fsspec.core.url_to_fs(path)
    if fs.isfile(root):
        return [path]
    files = sorted(p for p in fs.ls(root, detail=False) if p.endswith(".parquet"))
    chosen = [p for p in files if Path(p).stem.startswith(split)] or files
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return [p if protocol == "file" else f"{protocol}://{p}" for p in chosen]


def _parquet_rows(uri: str) -> int:
    import pyarrow.parquet as pq

    with fsspec.open(uri, "rb") as f:
        return pq.ParquetFile(f).metadata.num_rows


def _imagefolder(path: str, split: str) -> datasets.Dataset:
    """Class sub-folders -> labels (sorted names); ``DIR/train`` and ``DIR/test`` are splits if present."""
    fs, root = fsspec.core.url_to_fs(path)
    if fs.isdir(f"{root}/{split}"):
        root = f"{root}/{split}"
    classes = sorted(Path(p).name for p in fs.ls(root, detail=False) if fs.isdir(p))
    paths, labels = [], []
    if classes:
        for label, cls in enumerate(classes):
            for p in sorted(fs.find(f"{root}/{cls}")):
                if Path(p).suffix.lower() in IMAGE_SUFFIXES:
                    paths.append(p)
                    labels.append(label)
    else:
        paths = [p for p in sorted(fs.find(root)) if Path(p).suffix.lower() in IMAGE_SUFFIXES]
        labels = [-1] * len(paths)
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    uris = [p if protocol == "file" else f"{protocol}://{p}" for p in paths]
    ds = datasets.Dataset.from_dict(
        {"image": [{"bytes": None, "path": u} for u in uris], "label": labels, "caption": [None] * len(uris)},
        features=datasets.Features(
            {
                "image": datasets.Image(decode=False),
                "label": datasets.Value("int64"),
                "caption": datasets.Value("string"),
            }
        ),
    )
    ds.info.description = f"classes: {classes}"
    return ds


def load_source(
    path: str,
    split: str = "train",
    format: str | None = None,
    image_column: str = "image",
    label_column: str | None = "label",
    caption_column: str | None = "caption",
    require_captions: bool = False,
    builtin_options: dict | None = None,
) -> datasets.Dataset:
    """Read a source into the normalized schema. ``format`` is detected when None.

    Columns are checked here, before any training starts: a missing image (or, with
    ``require_captions``, caption) column, a caption column that is not text and an empty
    dataset raise :class:`DataError` naming the column and what is there.
    """
    fmt = format or detect_format(path)
    if fmt not in FORMATS:
        raise DataError(f"data format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    if fmt == "builtin":
        if path not in BUILTINS:
            raise DataError(f"unknown built-in dataset {path!r}; allowed: {', '.join(BUILTINS)}")
        ds = _builtin(path, split, **(builtin_options or {}))
    elif fmt == "imagefolder":
        ds = _imagefolder(path, split)
    elif fmt == "parquet":
        files = _parquet_files(path, split)
        if sum(_parquet_rows(f) for f in files) == 0:  # datasets fails obscurely on empty files
            raise DataError(f"{path}: the dataset is empty (no rows in {', '.join(files)})")
        ds = datasets.Dataset.from_parquet(files)
    elif fmt == "arrow":
        ds = datasets.Dataset.from_file(path)
    else:
        loaded = datasets.load_from_disk(path)
        ds = loaded[split] if isinstance(loaded, datasets.DatasetDict) else loaded
    return normalize(ds, path, image_column, label_column, caption_column, require_captions)


def normalize(
    ds: datasets.Dataset,
    name: str,
    image_column: str = "image",
    label_column: str | None = "label",
    caption_column: str | None = "caption",
    require_captions: bool = False,
) -> datasets.Dataset:
    cols = set(ds.column_names)
    if image_column not in cols:
        raise DataError(f"{name}: no image column {image_column!r}; columns are {sorted(cols)}")
    if require_captions and (caption_column is None or caption_column not in cols):
        raise DataError(f"{name}: no caption column {caption_column!r}; columns are {sorted(cols)}")
    if len(ds) == 0:
        raise DataError(f"{name}: the dataset is empty")
    if caption_column in cols:
        feat = ds.features[caption_column]
        if not (isinstance(feat, datasets.Value) and feat.dtype in ("string", "large_string", "null")):
            raise DataError(f"{name}: caption column {caption_column!r} must hold strings, found {feat}")
    keep = {image_column: "image"}
    if label_column in cols:
        keep[label_column] = "label"
    if caption_column in cols:
        keep[caption_column] = "caption"
    ds = ds.select_columns(list(keep)).rename_columns({k: v for k, v in keep.items() if k != v})
    image_feat = ds.features["image"]
    if isinstance(image_feat, datasets.Image):
        ds = ds.cast_column("image", datasets.Image(decode=False))
    if "label" not in ds.column_names:
        ds = ds.add_column("label", [-1] * len(ds))
    if "caption" not in ds.column_names:
        ds = ds.add_column("caption", [None] * len(ds), feature=datasets.Value("string"))
    return ds.add_column("index", list(range(len(ds))))


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

"""A planned source, streamed: windows of rows in an order fixed by (seed, epoch), read and decoded
by Ray Data tasks on the cluster (training) or by the calling process (evaluation, statistics,
one-process runs) — the same rows in the same order with the same augmentations either way.

An epoch's order, as open_clip and webdataset shuffle shards: the pieces (files, row groups)
permuted by (seed, epoch), their rows cut into equal windows, and each window's rows permuted by
(seed, epoch, window) — a shuffle buffer of ``window_rows`` rows. Window ``w`` goes to rank
``w % world``, so every rank reads its own part and gets as many rows as every other.

Resuming mid-epoch is exact: a rank's stream is a pure function of (seed, epoch, rank), so the
rows before the resumed position are skipped without being read or decoded (none repeated, none
lost). With ``drop`` (training), an epoch uses ``K * (N // K)`` of the ``N`` rows (``K`` windows),
leaving out fewer than ``K`` rows, different ones each epoch.
"""

from __future__ import annotations

import math
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from vitforge.data.pipeline import BatchMaker
from vitforge.data.sources import CAPTION_SUFFIXES, IMAGE_SUFFIXES, Columns, Source, tar_samples, warn_skipped

WINDOW_ROWS = 2048
CHUNK_ROWS = 64  # rows decoded at a time inside a window: bounds a task's decoded memory


@dataclass(frozen=True)
class Reader:
    """What a task needs to read a window's rows: no piece table, no rows."""

    name: str
    kind: str
    columns: Columns

    @classmethod
    def of(cls, source: Source) -> Reader:
        return cls(source.name, source.kind, source.columns)


@dataclass(frozen=True)
class Window:
    """Rows ``[start, stop)`` of each listed piece, in this order; ``index`` seeds the shuffle of
    its rows, the first ``skip`` of which (after shuffling) are left out (a resumed epoch)."""

    index: int
    uri: list[str]
    part: list[int]
    start: list[int]
    stop: list[int]
    first_id: list[int]
    label: list[int]
    skip: int = 0
    caption: list[str | None] | None = None  # an image folder's captions (its metadata file)

    @property
    def rows(self) -> int:
        return sum(b - a for a, b in zip(self.start, self.stop, strict=True)) - self.skip


def window_layout(num_rows: int, world: int, window_rows: int, drop: bool) -> tuple[int, int]:
    """(windows, rows per window) of an epoch. ``drop``: a multiple of ``world`` windows of equal
    size, so every rank gets the same number of rows; else windows of ``window_rows`` (fewer when
    that leaves a rank none), the last short: every row once."""
    if drop:
        k = world * max(1, math.ceil(num_rows / (world * window_rows)))
        return k, num_rows // k
    size = max(1, min(window_rows, math.ceil(num_rows / world)))
    return max(1, math.ceil(num_rows / size)), size


def rank_rows(num_rows: int, world: int, window_rows: int = WINDOW_ROWS) -> int:
    """Rows one rank reads in a training epoch of a source of ``num_rows`` (every rank the same)."""
    k, b = window_layout(num_rows, world, window_rows, drop=True)
    return (k // world) * b


def epoch_windows(
    source: Source,
    seed: int,
    epoch: int,
    rank: int = 0,
    world: int = 1,
    window_rows: int = WINDOW_ROWS,
    shuffle: bool = True,
    drop: bool = True,
    start_row: int = 0,
    stop_row: int | None = None,
) -> list[Window]:
    """This rank's windows of an epoch that hold its rows ``[start_row, stop_row)`` (metadata only):
    a stage that ends mid-epoch reads no window it will not use."""
    rows = source.pieces["rows"].to_numpy()
    order = np.random.default_rng([seed, epoch]).permutation(len(rows)) if shuffle else np.arange(len(rows))
    n = int(rows.sum())
    k, size = window_layout(n, world, window_rows, drop)
    if size == 0:
        return []
    cum = np.concatenate([[0], np.cumsum(rows[order])])
    uri, part, first, label = (
        source.pieces[c].to_numpy(zero_copy_only=False) for c in ("uri", "part", "first_id", "label")
    )
    cap = source.pieces["caption"].to_numpy(zero_copy_only=False) if "caption" in source.pieces.column_names else None
    out = []
    skip_windows, skip_rows = divmod(start_row, size)
    last = k if stop_row is None else math.ceil(stop_row / size) * world
    for w in range(rank, min(k, last), world)[skip_windows:]:
        lo, hi = w * size, min((w + 1) * size, n)
        a, b = np.searchsorted(cum, lo, "right") - 1, np.searchsorted(cum, hi, "left")
        js = order[a:b]
        starts = np.maximum(lo - cum[a:b], 0)
        stops = np.minimum(hi - cum[a:b], rows[js])
        out.append(
            Window(
                w, uri[js].tolist(), part[js].tolist(), starts.tolist(), stops.tolist(), first[js].tolist(),
                label[js].tolist(), skip_rows if not out else 0, None if cap is None else cap[js].tolist(),
            )
        )  # fmt: skip
    return out


def read_rows(reader: Reader, window: Window) -> dict[str, list]:
    """The window's rows in piece order: ``id``, ``image`` (undecoded), ``label``, ``caption``."""
    out: dict[str, list] = {"id": [], "image": [], "label": [], "caption": []}
    opened: dict[str, object] = {}
    captions = window.caption or [None] * len(window.uri)
    for uri, part, a, b, first, label, caption in zip(
        window.uri, window.part, window.start, window.stop, window.first_id, window.label, captions, strict=True
    ):
        out["id"] += range(first + a, first + b)
        if reader.kind == "file":
            out["image"].append(uri)
            out["label"].append(label)
            out["caption"].append(caption)
            continue
        if reader.kind == "tar":
            _tar_rows(uri, a, b, out)
            continue
        table = _table(reader, uri, part, opened).slice(a, b - a)
        c = reader.columns
        out["image"] += table[c.image].to_pylist()
        out["label"] += table[c.label].to_pylist() if c.label in table.column_names else [-1] * (b - a)
        out["caption"] += table[c.caption].to_pylist() if c.caption in table.column_names else [None] * (b - a)
    for f in opened.values():  # Parquet files opened for this window (Arrow tables need no closing)
        if isinstance(f, pq.ParquetFile):
            f.close()
    out["label"] = [-1 if v is None else int(v) for v in out["label"]]
    return out


def _table(reader: Reader, uri: str, part: int, opened: dict) -> pa.Table:
    c = reader.columns
    if reader.kind == "arrow":
        if uri not in opened:
            with pa.memory_map(uri) as src:
                opened[uri] = pa.ipc.open_stream(src).read_all()
        table = opened[uri]
        return table.select([n for n in (c.image, c.label, c.caption) if n in table.column_names])
    if uri not in opened:
        opened[uri] = pq.ParquetFile(fsspec.open(uri, "rb").open())
    f = opened[uri]
    names = [n for n in (c.image, c.label, c.caption) if n in f.schema_arrow.names]
    return f.read_row_group(part, columns=names)


def _tar_rows(uri: str, a: int, b: int, out: dict[str, list]) -> None:
    """Samples ``[a, b)`` of a WebDataset shard: the image, ``.cls`` as label, ``.txt`` as caption."""
    with fsspec.open(uri, "rb") as f:
        samples = [(k, m) for k, m in tar_samples(f) if any(e in IMAGE_SUFFIXES for e in m)][a:b]
        f.seek(0)
        with tarfile.open(fileobj=f) as tar:
            for key, members in samples:
                img = next(m for e, m in members.items() if e in IMAGE_SUFFIXES)
                out["image"].append({"bytes": tar.extractfile(img).read(), "path": f"{uri}#{key}"})
                cls = members.get(".cls") or members.get(".label")
                out["label"].append(int(tar.extractfile(cls).read().decode().strip()) if cls else -1)
                cap = next((members[e] for e in CAPTION_SUFFIXES if e in members), None)
                out["caption"].append(tar.extractfile(cap).read().decode().strip() if cap else None)


def window_batches(
    reader: Reader, maker: BatchMaker, window: Window, seed: int, epoch: int, shuffle: bool = True
) -> Iterator[dict[str, np.ndarray]]:
    """A window's rows, shuffled by (seed, epoch, window), decoded and augmented ``CHUNK_ROWS`` at a
    time (a window's bytes in memory, never its decoded images)."""
    rows = read_rows(reader, window)
    n = len(rows["id"])
    perm = np.random.default_rng([seed, epoch, window.index]).permutation(n) if shuffle else np.arange(n)
    perm = perm[window.skip :]
    for s in range(0, len(perm), CHUNK_ROWS):
        idx = perm[s : s + CHUNK_ROWS]
        out = maker({k: [v[i] for i in idx] for k, v in rows.items()}, epoch)
        if len(out["index"]):
            yield out


def iter_batches(
    source: Source,
    maker: BatchMaker,
    batch_size: int,
    epoch: int = 0,
    shuffle: bool = True,
    drop_last: bool = False,
    rank: int = 0,
    world_size: int = 1,
    start_batch: int = 0,
    stop_batch: int | None = None,
    window_rows: int = WINDOW_ROWS,
    limit: int | None = None,
) -> Iterator[dict[str, torch.Tensor]]:
    """In this process: this rank's rows of the epoch as batches of tensors, batches
    ``[start_batch, stop_batch)``. ``drop_last`` is training's stream (the same one Ray Data tasks
    decode for ``rank_dataset``); without it every row once (evaluation). ``limit``: the first rows only."""
    windows = epoch_windows(
        source, maker.seed, epoch, rank, world_size, window_rows, shuffle, drop_last, start_batch * batch_size,
        None if stop_batch is None else stop_batch * batch_size,
    )  # fmt: skip
    reader, skipped_before, seen = Reader.of(source), len(maker.skipped), 0
    parts = (b for w in windows for b in window_batches(reader, maker, w, maker.seed, epoch, shuffle))
    for b, batch in enumerate(rebatch(parts, batch_size, drop_last), start_batch):
        if (limit is not None and seen >= limit) or (stop_batch is not None and b >= stop_batch):
            break
        seen += len(batch["index"])
        yield {k: torch.from_numpy(v) for k, v in batch.items()}
    warn_skipped(maker.skipped[skipped_before:], sum(w.rows for w in windows))


def rebatch(parts: Iterator[dict[str, np.ndarray]], size: int, drop_last: bool) -> Iterator[dict[str, np.ndarray]]:
    """Chunks of rows -> batches of exactly ``size`` (the last shorter unless ``drop_last``)."""
    buf: list[dict[str, np.ndarray]] = []
    held = 0
    for p in parts:
        buf.append(p)
        held += len(p["index"])
        while held >= size:
            cat = {k: np.concatenate([b[k] for b in buf]) for k in buf[0]}
            yield {k: v[:size] for k, v in cat.items()}
            rest = {k: v[size:] for k, v in cat.items()}
            held -= size
            buf = [rest] if held else []
    if buf and held and not drop_last:
        yield {k: np.concatenate([b[k] for b in buf]) for k in buf[0]}


class _WindowTask:
    """Ray Data's map stage: one window in (its description), its decoded chunks out."""

    def __init__(self, reader: Reader, maker: BatchMaker, seed: int, epoch: int) -> None:
        self.reader, self.maker, self.seed, self.epoch = reader, maker, seed, epoch

    def __call__(self, batch: dict) -> Iterator[dict[str, np.ndarray]]:
        fields = {k: (v[0].tolist() if hasattr(v[0], "tolist") else v[0]) for k, v in batch.items()}
        if not isinstance(fields.get("caption"), list):  # no captions: Arrow made the None column NaN
            fields["caption"] = None
        window = Window(**fields)
        before = len(self.maker.skipped)
        yield from window_batches(self.reader, self.maker, window, self.seed, self.epoch)
        warn_skipped(self.maker.skipped[before:], window.rows)


def rank_dataset(
    source: Source,
    maker: BatchMaker,
    epoch: int,
    rank: int,
    world_size: int,
    start_row: int = 0,
    stop_row: int | None = None,
    window_rows: int = WINDOW_ROWS,
    tasks: int = 2,
    num_cpus: float = 0.5,
    local: bool = True,
):
    """This rank's epoch as a Ray Dataset: one item per window (a few hundred bytes of file names
    and offsets), mapped by tasks that read, shuffle, decode and augment it (at most ``tasks`` at a
    time: the rank's read-ahead); streamed in order with Ray Data's backpressure. ``local``: the
    tasks prefer this rank's node (each node reads its part)."""
    import ray
    import ray.data

    windows = epoch_windows(source, maker.seed, epoch, rank, world_size, window_rows, True, True, start_row, stop_row)
    items = [{k: getattr(w, k) for k in Window.__dataclass_fields__} for w in windows]
    ds = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
    # Each node reads its ranks' windows where it can (Ray's node-id label), elsewhere when it cannot.
    here = {"ray.io/node-id": ray.get_runtime_context().get_node_id()} if local else None
    out = ds.map_batches(
        _WindowTask(Reader.of(source), maker, maker.seed, epoch), batch_size=1, batch_format="numpy",
        num_cpus=num_cpus, concurrency=tasks, label_selector=here,
        fallback_strategy=[{"label_selector": {}}] if local else None,
    )  # fmt: skip
    out.context.execution_options.preserve_order = True  # the epoch's order is the plan's, not the tasks' finish order
    out.context.enable_progress_bars = False  # one bar per epoch per rank floods the log; Train reports progress
    return out


def iter_rows(source: Source, window_rows: int = WINDOW_ROWS) -> Iterator[dict[str, list]]:
    """Every row in listing order, a window at a time, undecoded (captions, labels)."""
    reader = Reader.of(source)
    for w in epoch_windows(source, 0, 0, window_rows=window_rows, shuffle=False, drop=False):
        yield read_rows(reader, w)

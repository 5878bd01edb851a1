"""``vitforge data ...``: built-ins, a source's facts, and shards prepared for training."""

from __future__ import annotations

import functools

import fsspec
import typer

from vitforge.cli_util import fail

data_app = typer.Typer(no_args_is_help=True, help="Built-in datasets and data sources.")


@data_app.command("export")
def data_export(
    name: str = typer.Argument(..., help="Built-in dataset: digits, digits-cluttered or shapes."),
    out_dir: str = typer.Argument(..., help="Folder to write train.parquet and test.parquet into."),
    seed: int = typer.Option(0, help="Generation seed."),
) -> None:
    """Write a built-in dataset as Parquet, to use it like your own data.

    Example: vitforge data export shapes ./data/shapes
    """
    from vitforge.data import BUILTINS, export_builtin

    if name not in BUILTINS:
        raise fail(f"unknown built-in dataset {name!r}; allowed: {', '.join(BUILTINS)}")
    for path in export_builtin(name, out_dir, seed=seed):
        typer.echo(f"wrote {path}")


@data_app.command("info")
def data_info(
    source: str = typer.Argument(..., help="A built-in name, a folder, a .parquet/.arrow file or a URI."),
    split: str = typer.Option("train", help="Split to read."),
    image_column: str = typer.Option("image", help="Column holding the images."),
    caption_column: str = typer.Option("caption", help="Column holding the captions (optional)."),
    label_column: str = typer.Option("label", help="Column holding the class labels (optional)."),
) -> None:
    """Check a data source: format, rows, labels, captions and normalization statistics.

    Example: vitforge data info ./data/shapes --split test
    """
    from vitforge.data import Columns, DataError, channel_stats, detect_format, load_source

    try:
        fmt = detect_format(source)
        ds = load_source(source, split, fmt, Columns(image_column, label_column, caption_column))
        mean, std = channel_stats(ds, max_images=256)
    except DataError as e:
        raise fail(str(e)) from None
    labels = ds.num_classes or 0
    captions = "with captions" if ds.has_captions else "no captions"
    typer.echo(f"format {fmt}, split {split}: {len(ds)} rows in {len(ds.pieces)} pieces, {labels} labels, {captions}")
    typer.echo(f"mean {mean}  std {std}")


@data_app.command("prepare")
def data_prepare(
    source: str = typer.Argument(
        ..., help="A built-in name, an image folder, Parquet, Arrow, WebDataset tars or a URI."
    ),
    out_dir: str = typer.Argument(..., help="Folder (or URI) to write the shards into: <split>-00000.parquet, ..."),
    format: str = typer.Option("parquet", "--format", help="Shard format: parquet or webdataset (tar)."),
    shard_size: int = typer.Option(2000, min=1, help="Rows per shard."),
    max_side: int = typer.Option(None, min=8, help="Longest image side, larger ones shrunk (JPEG); none: keep sizes."),
    quality: int = typer.Option(95, min=1, max=100, help="JPEG quality of re-encoded images."),
    split: list[str] = typer.Option(None, help="Splits to write (repeatable); default: those the source has."),
    image_column: str = typer.Option("image", help="Column holding the images."),
    caption_column: str = typer.Option("caption", help="Column holding the captions (optional)."),
    label_column: str = typer.Option("label", help="Column holding the class labels (optional)."),
    address: str = typer.Option(None, help="Ray cluster to write the shards on (default: a new local Ray)."),
    local: bool = typer.Option(False, "--local", help="Write every shard in this process, without Ray."),
) -> None:
    """Rewrite a source as shards with images capped in size, so training reads and decodes less.

    Each shard is written by one Ray task (or here, with --local), to a temporary name and then
    renamed; shards that exist are kept (re-running finishes an interrupted run). Bad images are
    skipped, each named, and listed in OUT/<split>.json with the counts.

    Example: vitforge data prepare ./imagenet/train ./imagenet-shards --max-side 320 --shard-size 5000
    """
    from rich.progress import Progress

    from vitforge.data import Columns, DataError, load_source
    from vitforge.data.prepare import SHARD_FORMATS, Reader, shard_plan, splits_of, write_manifest, write_shard

    if format not in SHARD_FORMATS:
        raise fail(f"--format must be one of {', '.join(SHARD_FORMATS)}; got {format!r}")
    try:
        sources = [
            load_source(source, s, None, Columns(image_column, label_column, caption_column))
            for s in (split or splits_of(source))
        ]
    except DataError as e:
        raise fail(str(e)) from None
    fs, root = fsspec.core.url_to_fs(out_dir)
    fs.makedirs(root, exist_ok=True)
    remote = None
    if not local:
        import ray

        from vitforge.train.run import ensure_ray

        ensure_ray(address)
        remote = ray.remote(num_cpus=1)(write_shard)
    options = {"format": format, "shard_size": shard_size, "max_side": max_side, "quality": quality}
    with Progress() as bar:
        for src in sources:
            planned = shard_plan(src, out_dir, shard_size, format)
            todo = [(w, p) for w, p in planned if not fs.exists(p)]
            task = bar.add_task(f"{src.split}: {len(src)} rows", total=len(todo))
            args = [(Reader.of(src), w, p, format, max_side, quality) for w, p in todo]
            results = _run(remote, args, functools.partial(bar.advance, task))
            if results:
                write_manifest(out_dir, src, [p for _, p in planned], results, options)
            skipped = [s for r in results for s in r.skipped]
            for s in skipped[:20]:
                bar.console.print(f"skipped {s}")
            more = f" (all {len(skipped)} in {out_dir}/{src.split}.json)" if len(skipped) > 20 else ""
            kib_in, kib_out = (sum(getattr(r, k) for r in results) / 1024 for k in ("bytes_in", "bytes_out"))
            bar.console.print(
                f"{src.split}: {sum(r.rows for r in results)} rows in {len(results)} new shards,"
                f" {len(skipped)} bad images skipped{more}; images {kib_in:.0f} KiB -> {kib_out:.0f} KiB"
            )


def _run(remote, args: list[tuple], advance) -> list:
    """``write_shard`` on every argument tuple: here (``remote`` None) or as Ray tasks, at most twice
    the cluster's CPUs in flight; results in order."""
    if remote is None:
        from vitforge.data.prepare import write_shard

        return [(write_shard(*a), advance())[0] for a in args]
    import ray

    cap = max(2, int(ray.cluster_resources().get("CPU", 1)) * 2)
    refs, results, pending = [], {}, {}
    for i, a in enumerate(args):
        ref = remote.remote(*a)
        pending[ref] = i
        refs.append(ref)
        while len(pending) >= cap or (i == len(args) - 1 and pending):
            done, _ = ray.wait(list(pending), num_returns=1)
            results[pending.pop(done[0])] = ray.get(done[0])
            advance()
    return [results[i] for i in range(len(args))]

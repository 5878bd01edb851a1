"""The ``vitforge`` command. The only module that parses command-line arguments."""

from __future__ import annotations

import time

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True)


@app.callback()
def _root() -> None:
    """Pretrain (MAE-CT, CLOOB), tune, evaluate and serve ViT encoders on Ray."""


data_app = typer.Typer(no_args_is_help=True, help="Built-in datasets and data sources.")
app.add_typer(data_app, name="data")


def fail(message: str, code: int = 2) -> typer.Exit:
    """A user error: one red line on stderr, no traceback, exit code 2."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


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
    image_column: str = typer.Option("image"),
    caption_column: str = typer.Option("caption"),
    label_column: str = typer.Option("label"),
) -> None:
    """Check a data source: format, rows, labels, captions and normalization statistics.

    Example: vitforge data info ./data/shapes --split test
    """
    from vitforge.data import DataError, channel_stats, detect_format, load_source

    try:
        fmt = detect_format(source)
        ds = load_source(source, split, fmt, image_column, label_column, caption_column)
        mean, std = channel_stats(ds, max_images=256)
    except DataError as e:
        raise fail(str(e)) from None
    labels = sorted(set(ds["label"]) - {-1})
    captions = sum(c is not None for c in ds["caption"])
    typer.echo(f"format {fmt}, split {split}: {len(ds)} rows, {len(labels)} labels, {captions} captions")
    typer.echo(f"mean {mean}  std {std}")


@app.command()
def quickstart(steps: int = typer.Option(60, help="MAE steps on the digits demo.")) -> None:
    """Demo of the models: a tiny MAE learns to reconstruct scikit-learn's real digits.

    Example: vitforge quickstart --steps 60
    """
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    import vitforge.models as m
    from vitforge.methods import mae_param_groups
    from vitforge.methods.mae import mae_loss

    torch.manual_seed(0)
    digits = torch.tensor(load_digits().images, dtype=torch.float32)[:, None] / 16.0  # (1797, 1, 8, 8)
    imgs = F.interpolate(digits, size=16, mode="bilinear", align_corners=False).repeat(1, 3, 1, 1)
    mae = m.mae_for(m.vit_test_patch4(img_size=16), "test")
    opt = torch.optim.AdamW(mae_param_groups(mae, fast_lr=1e-3, slow_lr=1e-3))
    typer.echo(f"tiny MAE: {m.count_params(mae):,} parameters, {len(imgs)} real 8x8 digits resized to 16x16")
    start = time.perf_counter()
    for step in range(steps):
        batch = imgs[torch.randint(len(imgs), (64,))]
        pred, mask = mae(batch)
        loss = mae_loss(batch, pred, mask, patch_size=4)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 10 == 0 or step == steps - 1:
            typer.echo(f"step {step:4d}  mae_loss {loss.item():.4f}")
    typer.echo(f"done in {time.perf_counter() - start:.1f}s")


def main() -> None:
    app()


if __name__ == "__main__":
    main()

"""``vitforge serve ...``: endpoints, galleries and queries."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import typer

from vitforge.cli_util import fail

serve_app = typer.Typer(no_args_is_help=True, help="Serve encoders over HTTP and query them.")


@serve_app.command("up")
def serve_up(
    models: list[str] = typer.Argument(..., help="NAME=MODEL_REF pairs: an export folder or models:/NAME/VERSION."),
    port: int = typer.Option(8000, help="HTTP port on 127.0.0.1 (use `serve run serve/*.yaml` for clusters)."),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (0.0.0.0: every interface)."),
    gallery: str = typer.Option(None, help="Gallery (.safetensors) for /v1/search, served by the first model."),
    max_batch_size: int = typer.Option(32, help="Most images a replica embeds in one batched forward pass."),
    address: str = typer.Option(None, help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)."),
    request_timeout: float = typer.Option(
        60.0, help="Seconds a request may take end to end before the proxy answers 408 (Ray Serve's request_timeout_s)."
    ),
    api_key_file: Path = typer.Option(
        None,
        help="File holding the API key clients must send (default: VITFORGE_API_KEY, else no key).",
        exists=True,
        dir_okay=False,
        readable=True,
    ),
) -> None:
    """Serve exported encoders on a local (or given) Ray cluster until interrupted (Ctrl-C or SIGTERM).

    Example: vitforge serve up encoder=./runs/tiny-mae-ct/exports/2-contrastive_tuning
    """

    from ray import serve

    from vitforge.serving.app import build_app

    specs = []
    for i, item in enumerate(models):
        if "=" not in item:
            raise fail(f"model {item!r} must look like NAME=MODEL_REF")
        name, ref = item.split("=", 1)
        specs.append({"name": name, "model_ref": ref, "max_batch_size": max_batch_size,
                      "gallery": gallery if i == 0 else None})  # fmt: skip
    from vitforge.train.run import ensure_ray  # heavy (torch, Ray): only when a command runs

    key = api_key_file.read_text().strip() if api_key_file else os.environ.get("VITFORGE_API_KEY")
    if api_key_file and not key:
        raise fail(f"{api_key_file} is empty: put the API key in it")
    ensure_ray(address)
    serve.start(http_options={"host": host, "port": port, "request_timeout_s": request_timeout})
    app = build_app({"models": specs, "gateway_env": {"VITFORGE_API_KEY": key} if key else {}})
    serve.run(app, name="vitforge", route_prefix="/", blocking=False)
    auth = "; clients send x-api-key" if key else ""
    names = ", ".join(m["name"] for m in specs)
    typer.echo(f"serving {names} at http://{host}:{port}  (docs: /docs{auth}; Ctrl-C stops)")

    def stop(signum, frame) -> None:  # SIGTERM (docker stop, kill): the same clean stop as Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        typer.echo("stopping Serve")
        serve.shutdown()


@serve_app.command("gallery")
def serve_gallery(
    export_dir: str = typer.Argument(..., help="Export folder of the model whose space the gallery is in."),
    source: str = typer.Argument(..., help="Dataset: a built-in name, a folder, .parquet or a URI."),
    out: str = typer.Argument(..., help="Output path (writes OUT.safetensors and OUT.json)."),
    split: str = typer.Option("train", help="Split to embed."),
) -> None:
    """Embed a dataset into a search gallery for /v1/search.

    Example: vitforge serve gallery ./runs/tiny-cloob/exports/0-cloob shapes ./gallery/shapes
    """
    from vitforge.data import DataError
    from vitforge.serving.gallery import build_gallery

    try:
        path = build_gallery(export_dir, source, split, out)
    except (DataError, FileNotFoundError) as e:
        raise fail(str(e)) from None
    typer.echo(f"wrote {path}")


@serve_app.command("embed")
def serve_embed(
    folder: str = typer.Argument(..., help="Folder of images (searched recursively)."),
    url: str = typer.Option("http://127.0.0.1:8000", help="Endpoint base URL."),
    out: str = typer.Option("embeddings.npz", help="Output .npz with 'paths' and 'embeddings'."),
    model: str = typer.Option(None, help="Served model name (default model when omitted)."),
    batch_size: int = typer.Option(32, help="Images sent per request."),
    api_key: str = typer.Option(None, envvar="VITFORGE_API_KEY", help="API key (or VITFORGE_API_KEY)."),
) -> None:
    """Embed a folder of images against a running endpoint.

    Example: vitforge serve embed ./photos --url http://127.0.0.1:8000 --out photos.npz
    """
    from rich.progress import Progress

    from vitforge.serving.client import Client, ClientError, embed_folder

    try:
        with Client(url, api_key) as client, Progress() as bar:
            task = bar.add_task("embedding", total=None)
            paths, emb, skipped = embed_folder(
                client, folder, batch_size, model, lambda d, t: bar.update(task, completed=d, total=t)
            )
    except (ClientError, FileNotFoundError) as e:
        raise fail(str(e)) from None
    except Exception as e:  # connection errors: say where
        raise fail(f"cannot reach {url}: {e}") from None
    for path, reason in skipped:
        typer.secho(f"skipped {path}: {reason}", fg=typer.colors.YELLOW, err=True)
    if not paths:
        raise fail(f"no image under {folder} could be embedded ({len(skipped)} refused)")
    np.savez(out, paths=np.array(paths), embeddings=emb)
    typer.echo(f"wrote {out}: {emb.shape[0]} embeddings of {emb.shape[1]} dims ({len(skipped)} files skipped)")

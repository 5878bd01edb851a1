"""Helpers shared by the command modules: user errors, spec loading, Ray start-up."""

from __future__ import annotations

import typer


def fail(message: str, code: int = 2) -> typer.Exit:
    """A user error: one red line on stderr, no traceback, exit code 2."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def spec_or_exit(path: str | None, overrides: list[str] | None):
    from vitforge.config import SpecError, load_spec

    try:
        return load_spec(path, overrides)
    except SpecError as e:
        raise fail(str(e)) from None


def init_ray(address: str | None) -> None:
    """Connect to ``address`` / ``RAY_ADDRESS`` if given, else start a local Ray (see local_ray)."""
    import os

    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address)
    else:
        from vitforge.train.run import local_ray

        local_ray()

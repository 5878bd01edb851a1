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

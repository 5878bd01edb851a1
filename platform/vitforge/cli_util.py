"""Helpers shared by the command modules: user errors, spec loading, the one-line error report."""

from __future__ import annotations

import re
import sys
import tempfile
import traceback
from pathlib import Path

import typer

# "SomeError: message" lines inside a wrapped error's text (Ray puts the worker's traceback there).
_ERROR_LINE = re.compile(r"^(?:[\w.]+\.)?(\w*(?:Error|Exception|Loss)): (.+)$", re.M)
LAST_ERROR_LOG = Path(tempfile.gettempdir()) / "vitforge-last-error.log"


# The one --set of every command that takes a job spec (train, tune, submit, config validate): typer
# only reads an OptionInfo, so one object serves them all with the same name and help.
SET_OPTION = typer.Option(
    None, "--set", help="Override a field (repeatable): --set stages.0.epochs=2 --set deepspeed.zero_stage=3"
)


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


def one_line(exc: BaseException) -> str:
    """The message a user needs: the innermost error of the chain, or the last ``XError: ...``
    line in a wrapped one (a Ray Train failure carries the worker's traceback as text)."""
    chain = [exc]
    while (nxt := chain[-1].__cause__ or chain[-1].__context__) is not None and nxt not in chain:
        chain.append(nxt)
    for e in chain:
        found = _ERROR_LINE.findall(str(e))
        if found:
            return f"{found[-1][0]}: {found[-1][1].strip()}"
    inner = chain[-1]
    return f"{type(inner).__name__}: {inner}" if str(inner) else type(inner).__name__


def run_cli(app: typer.Typer) -> None:
    """Run the app; an unexpected error prints one line and where its traceback went (exit 1).
    ``--debug`` anywhere on the command line shows the traceback instead."""
    debug = "--debug" in sys.argv
    if debug:
        sys.argv.remove("--debug")
    try:
        app(standalone_mode=True)
    except Exception as e:
        if debug:
            raise
        LAST_ERROR_LOG.write_text("".join(traceback.format_exception(e)))
        typer.secho(f"error: {one_line(e)}", fg=typer.colors.RED, err=True)
        typer.echo(f"(traceback in {LAST_ERROR_LOG}; run with --debug to show it)", err=True)
        sys.exit(1)

"""Every argument and option of every command says what it is in --help, and --set is one option."""

import typer.main

from vitforge.cli import app


def commands(cmd, path: str = "vitforge"):
    """The command and, for a group, every subcommand below it, with its command line.
    (Typer 0.29 carries its own click: a group is told by its ``commands``, not by its class.)"""
    yield path, cmd
    if hasattr(cmd, "commands"):
        for name, sub in cmd.commands.items():
            yield from commands(sub, f"{path} {name}")


def test_every_parameter_has_help() -> None:
    missing = [
        f"{path}: {p.opts[0] if p.opts else p.name}"
        for path, cmd in commands(typer.main.get_command(app))
        for p in cmd.params
        if not (p.help or "").strip() and not {"--help", "-h"} & set(p.opts)
    ]
    assert not missing, "parameters without help:\n" + "\n".join(missing)


def test_set_is_one_repeatable_option_everywhere() -> None:
    found = {
        path: p.help for path, cmd in commands(typer.main.get_command(app)) for p in cmd.params if "--set" in p.opts
    }
    assert {"vitforge train", "vitforge tune", "vitforge submit", "vitforge config validate"} <= found.keys()
    assert len(set(found.values())) == 1 and "repeatable" in next(iter(found.values())), found


def test_eval_model_help_names_both_registry_forms() -> None:
    cmd = typer.main.get_command(app).commands["eval"]
    model = next(p for p in cmd.params if p.name == "model_ref")
    assert "models:/NAME/VERSION" in model.help and "models:/NAME@alias" in model.help

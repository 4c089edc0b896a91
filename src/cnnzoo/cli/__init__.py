"""The `cnnzoo` command: thin Typer wrappers over the Python API.

Each command module (imported at the end of this file) registers its commands on `app`;
errors a user can cause (`UserError`) end as one sentence on stderr and exit code 2, never
a traceback.
"""

from __future__ import annotations

import functools
import sys

import typer
from rich.console import Console

from cnnzoo import backends
from cnnzoo.errors import UserError

app = typer.Typer(
    help="The classic deep-CNN case studies in Keras 3: build, inspect, train, compare.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err_console = Console(stderr=True, highlight=False)


def user_errors_exit_2(command):
    """Wrap a command so a `UserError` prints one sentence and exits with code 2."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except UserError as error:
            err_console.print(f"[bold red]error:[/] {error}", soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


def add_commands(typer_app: typer.Typer, *commands) -> None:
    """Register plain functions as commands (name from the function, '_' -> '-')."""
    for command in commands:
        name = command.__name__.strip("_").replace("_", "-")
        typer_app.command(name)(user_errors_exit_2(command))


@app.callback()
def _options(
    backend_name: str = typer.Option(
        None, "--backend", help="Keras backend: jax, torch or tensorflow (default: auto).",
        metavar="NAME",
    ),
) -> None:
    if backend_name:
        user_errors_exit_2(backends.select)(backend_name)


# The command modules, each adding its commands with `register(app)`.
from cnnzoo.cli import cost, data, explain, models, serve, study, train, weights  # noqa: E402

for _module in (cost, data, models, train, explain, serve, study, weights):
    _module.register(app)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)

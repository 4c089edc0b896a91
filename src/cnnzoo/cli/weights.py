"""`cnnzoo weights list | convert`: published checkpoints (keras.applications, torchvision, timm)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from cnnzoo.cli import add_commands
from cnnzoo.cli.args import parse_shape

console = Console()


def list_(source: str = typer.Option(None, "--source", help="Only keras, torchvision or timm.")) -> None:
    """The supported (source, architecture) pairs: input convention, parameters, published file."""
    from cnnzoo.errors import UserError
    from cnnzoo.models.weights.pairs import COLUMNS, SOURCES, table_rows

    if source is not None and source not in SOURCES:
        raise UserError(f"Unknown weights source {source!r}: choose one of {', '.join(SOURCES)}.")
    table = Table(title="published weights cnnzoo converts (each proven equal to the peer network)")
    for column in COLUMNS:
        table.add_column(column, justify="right" if column.startswith("parameters") else "left")
    for row in table_rows(source):
        table.add_row(*row)
    console.print(table)


def convert(
    file: Path = typer.Argument(..., help="A published checkpoint: .h5 (keras), .pth (torchvision, timm), .safetensors (timm)."),
    arch: str = typer.Option(..., "--arch", help="The zoo network it is for (see `cnnzoo weights list`)."),
    source: str = typer.Option(None, "--source", help="keras, torchvision or timm (default: from the file)."),
    output: Path = typer.Option(..., "-o", "--output", help="The .keras model to write."),
    top: bool = typer.Option(None, "--top/--no-top", help="Keep the classifier (default: when the file has one)."),
    input_shape: str = typer.Option(None, "--input-shape", help="e.g. 224,224,3 (default: the network's)."),
) -> None:
    """Convert a published checkpoint into a standalone .keras model (uint8 pixels in)."""
    from cnnzoo.models.weights import convert_file, input_convention

    model = convert_file(file, arch, output, source=source, include_top=top, input_shape=parse_shape(input_shape))
    convention = input_convention(model)
    console.print(f"wrote {output}: {arch}, {model.count_params():,} parameters, uint8 input "
                  f"{'x'.join(map(str, model.inputs[0].shape[1:]))}, preprocessing inside ({convention.mode}), "
                  f"output {'x'.join(map(str, model.outputs[0].shape[1:]))}", highlight=False)


def register(app: typer.Typer) -> None:
    weights_app = typer.Typer(
        help="Published weights: list the supported checkpoints, convert one into a .keras model.",
        no_args_is_help=True,
    )
    add_commands(weights_app, list_, convert)
    app.add_typer(weights_app, name="weights")

"""`cnnzoo models | summary | plot | info`: look at the networks and the machine."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from cnnzoo.cli import add_commands
from cnnzoo.cli.args import parse_shape

console = Console()

INPUT_SHAPE = typer.Option(None, "--input-shape", help="e.g. 64,64,3 (default: the model's).")
CLASSES = typer.Option(None, "--classes", help="Number of classes (default: the model's).")


def _build(name: str, input_shape: str | None, classes: int | None):
    from cnnzoo.models import get_model

    kwargs = {}
    if input_shape is not None:
        kwargs["input_shape"] = parse_shape(input_shape)
    if classes is not None:
        kwargs["classes"] = classes
    return get_model(name, **kwargs)


def models(pattern: str = typer.Argument("*", help="Shell-style filter, e.g. 'resnet*'.")) -> None:
    """Table of the registered models with their parameter counts at the default input."""
    from cnnzoo.analysis.cost import total_macs
    from cnnzoo.models import list_models, model_info

    table = Table(title="cnnzoo models")
    numeric = ("classes", "parameters", "GMACs")
    for column in ("name", "input", "classes", "parameters", "GMACs", "year", "description"):
        table.add_column(column, justify="right" if column in numeric else "left")
    for name in list_models(pattern):
        info = model_info(name)
        model = info.build()
        table.add_row(
            name, "x".join(map(str, info.input_shape)), str(info.classes),
            f"{model.count_params():,}", f"{total_macs(model) / 1e9:.3f}", str(info.year),
            info.description,
        )
    console.print(table)


def summary(
    model: str = typer.Argument(..., help="Registered model name (see `cnnzoo models`)."),
    input_shape: str = INPUT_SHAPE,
    classes: int = CLASSES,
) -> None:
    """Print the Keras summary: every layer's name, output shape and parameters."""
    if not sys.stdout.isatty():
        os.environ.setdefault("COLUMNS", "120")  # keras sizes the table to the terminal
    _build(model, input_shape, classes).summary()


def plot(
    model: str = typer.Argument(..., help="Registered model name (see `cnnzoo models`)."),
    output: Path = typer.Option(..., "-o", "--output", help="Picture to write: .png, .svg or .pdf."),
    input_shape: str = INPUT_SHAPE,
    classes: int = CLASSES,
    dpi: int = typer.Option(96, help="Resolution of a .png."),
) -> None:
    """Draw the model's graph with Keras plot_model (needs Graphviz's `dot`)."""
    from cnnzoo.analysis.report import plot_graph

    plot_graph(_build(model, input_shape, classes), output, dpi=dpi)
    console.print(f"wrote {output}")


def info() -> None:
    """Backend, versions, devices and where data is read from and cached."""
    from cnnzoo import _io, backends

    choice = backends.current()
    import keras

    console.print(f"backend       {choice.backend} ({choice.reason})")
    for package, version in backends.versions().items():
        console.print(f"{package:<13} {version}")
    console.print(f"devices       {', '.join(backends.devices())}")
    console.print(f"image format  {keras.config.image_data_format()}")
    mirror = _io.data_mirror()
    console.print(f"data mirror   {mirror or 'not set (CNNZOO_DATA_MIRROR)'}")
    console.print(f"cache         {_io.home()} (CNNZOO_HOME)")


def register(app: typer.Typer) -> None:
    add_commands(app, models, summary, plot, info)

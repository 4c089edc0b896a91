"""`cnnzoo cost`: parameters and multiply-accumulates of a model, layer by layer."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from cnnzoo.cli import add_commands
from cnnzoo.cli.models import CLASSES, INPUT_SHAPE, _build
from cnnzoo.errors import UserError

console = Console()
EXAMPLES = ("bottleneck",)


def _scaled(macs: int) -> str:
    return f"{macs / 1e9:.2f} GMACs" if macs >= 1e8 else f"{macs / 1e6:.2f} MMACs"


def _table(title: str, rows) -> Table:
    table = Table(title=title, show_footer=True)
    total_params, total_macs = sum(r.params for r in rows), sum(r.macs for r in rows)
    for column, footer in (("layer", "total"), ("type", ""), ("output shape", ""),
                           ("parameters", f"{total_params:,}"), ("MACs", f"{total_macs:,}")):
        table.add_column(column, footer=footer,
                         justify="right" if column in ("parameters", "MACs") else "left")
    for row in rows:
        several = any(isinstance(d, tuple) for d in row.output_shape)
        shape = str(row.output_shape) if several else "x".join(map(str, row.output_shape))
        table.add_row(row.name, row.type, shape, f"{row.params:,}", f"{row.macs:,}")
    return table


def cost(
    model: str = typer.Argument(None, help="Registered model name (see `cnnzoo models`)."),
    input_shape: str = INPUT_SHAPE,
    classes: int = CLASSES,
    example: str = typer.Option(
        None, "--example", help="A worked example instead of a model: 'bottleneck' (the "
        "lecture's 1x1 convolution on 28x28x192).",
    ),
    layers: bool = typer.Option(True, "--layers/--totals", help="Show every layer, or totals only."),
) -> None:
    """Parameters and multiply-accumulates (MACs) per layer, for one image; see docs/MODELS.md."""
    from cnnzoo.analysis.cost import bottleneck_example, layer_costs

    if example is not None:
        if example not in EXAMPLES:
            raise UserError(f"Unknown example {example!r}: choose one of {', '.join(EXAMPLES)}.")
        if model is not None:
            raise UserError("Give either a model or --example, not both.")
        totals = {}
        for title, built in bottleneck_example().items():
            rows = layer_costs(built)
            totals[title] = sum(r.macs for r in rows)
            if layers:
                console.print(_table(f"{title} on 28x28x192", rows))
        (direct, direct_macs), (squeezed, squeezed_macs) = totals.items()
        console.print(f"{direct}: {direct_macs:,} MACs; {squeezed}: {squeezed_macs:,} MACs "
                      f"({squeezed_macs / direct_macs:.1%} of the direct conv).")
        return
    if model is None:
        raise UserError("Name a model (see `cnnzoo models`) or pass --example bottleneck.")
    built = _build(model, input_shape, classes)
    rows = layer_costs(built)
    shape = "x".join(str(d) for d in built.inputs[0].shape[1:])
    if layers:
        console.print(_table(f"{model} at {shape}", rows))
    macs = sum(r.macs for r in rows)
    console.print(f"{model}: {built.count_params():,} parameters, {macs:,} multiply-accumulates "
                  f"({_scaled(macs)}) per {shape} image.")


def register(app: typer.Typer) -> None:
    add_commands(app, cost)

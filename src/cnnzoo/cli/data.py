"""`cnnzoo data list | info | show`: the datasets, their splits and a look at samples."""

from __future__ import annotations

import functools
import inspect
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from cnnzoo.cli import add_commands
from cnnzoo.cli.args import MAX_MEGAPIXELS_HELP, megapixels
from cnnzoo.datasets.images import MAX_PIXELS
from cnnzoo.errors import UserError

console = Console()

DATASET = typer.Argument(
    ..., help="Registered name (see `cnnzoo data list`), folder:PATH or h5:TRAIN.h5[,TEST.h5].",
    metavar="NAME",
)
# The options of `load` that `info` and `show` share: (type, typer option).
LOAD_OPTIONS = {
    "image_size": (int, typer.Option(None, "--image-size", help="Side of the square images (default: the dataset's).")),
    "channels": (int, typer.Option(None, "--channels", help="1 (grayscale) or 3 (RGB) (default: the dataset's).")),
    "resize": (str, typer.Option(None, "--resize", help="resize (stretch) or pad (centre on black); default: the dataset's (mnist pads).")),
    "validation": (float, typer.Option(0.0, "--validation", help="Fraction of the training part held out for validation.")),
    "skip_bad": (bool, typer.Option(False, "--skip-bad", help="Skip unreadable images (and count them) instead of failing.")),
    "seed": (int, typer.Option(0, "--seed", help="Salt of the split hash: another seed, another (stable) split.")),
    "max_megapixels": (float, typer.Option(MAX_PIXELS / 1e6, "--max-megapixels", help=MAX_MEGAPIXELS_HELP)),
}


def with_load_options(command):
    """Give `command` the options of LOAD_OPTIONS and call it with `load_data`, which loads the
    dataset with them once the command has checked its own options, and with those of the
    options it names itself (`seed` for `show`)."""
    signature = inspect.signature(command)
    own = [p for p in signature.parameters.values() if p.name != "load_data" and p.name not in LOAD_OPTIONS]
    wanted = [name for name in signature.parameters if name in LOAD_OPTIONS]
    added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind)
             for name, (kind, option) in LOAD_OPTIONS.items()]

    @functools.wraps(command)
    def wrapper(name, **options):
        from cnnzoo.datasets import load

        loading = {key: options.pop(key) for key in LOAD_OPTIONS}
        max_pixels = megapixels(loading.pop("max_megapixels"))

        def load_data():
            return load(name, **loading, max_pixels=max_pixels)

        return command(name, load_data=load_data, **options, **{key: loading[key] for key in wanted})

    wrapper.__signature__ = signature.replace(parameters=[*own, *added])
    return wrapper


def list_() -> None:
    """Table of the registered datasets: classes, image size, images found, licence, source."""
    from cnnzoo.datasets import dataset_info, list_datasets
    from cnnzoo.datasets.fetch import count_local

    table = Table(title="cnnzoo datasets")
    for column in ("name", "classes", "image size", "count", "licence", "source"):
        table.add_column(column, justify="right" if column in ("classes", "count") else "left",
                         overflow="fold")
    for name in list_datasets():
        spec = dataset_info(name)
        count, where = count_local(spec)
        table.add_row(
            name, str(spec.num_classes), "x".join(map(str, spec.image_shape)),
            f"{count:,}" if count is not None else "not fetched", spec.licence,
            f"{spec.url}" + (f"\n({where})" if where else ""),
        )
    console.print(table)
    console.print("Also: folder:PATH (one sub-folder per class) and h5:TRAIN.h5[,TEST.h5] (the course's files).")


@with_load_options
def info(name: str = DATASET, *, load_data=None) -> None:
    """Images per class in each split, the image shape, where it came from and is cached."""
    ds = load_data()
    counts = ds.counts()
    console.print(f"{ds.name}: {ds.num_classes} classes, images {'x'.join(map(str, ds.image_shape))} uint8",
                  soft_wrap=True)
    table = Table()
    table.add_column("class")
    for split in counts:
        table.add_column(split, justify="right")
    table.add_column("total", justify="right")
    for k, class_name in enumerate(ds.class_names):
        row = [counts[s][k] for s in counts]
        label = class_name if class_name == str(k) else f"{k}: {class_name}"
        table.add_row(label, *(f"{n:,}" for n in row), f"{sum(row):,}")
    totals = [sum(counts[s]) for s in counts]
    table.add_row("all", *(f"{n:,}" for n in totals), f"{sum(totals):,}", style="bold")
    console.print(table)
    console.print(f"source   {ds.source}", soft_wrap=True)
    console.print(f"cache    {ds.cache_path}", soft_wrap=True)
    if ds.skipped:
        console.print(f"skipped  {len(ds.skipped)} unreadable file(s), e.g. {ds.skipped[0]}")


@with_load_options
def show(
    name: str = DATASET,
    output: Path = typer.Option(..., "-o", "--output", help="Picture to write: .png, .jpg, .svg or .pdf."),
    split: str = typer.Option("train", "--split", help="train, test or val."),
    per_class: int = typer.Option(8, "--per-class", help="Images in each class's row."),
    *,
    load_data=None,
    seed: int = 0,
) -> None:
    """Draw a labelled grid of samples, one row per class."""
    from cnnzoo.analysis.report import picture_path
    from cnnzoo.datasets.show import FORMATS, sample_grid

    if per_class < 1:
        raise UserError(f"--per-class must be at least 1. Received: --per-class {per_class}")
    picture_path(output, FORMATS)  # before the images load
    sample_grid(load_data(), output, split=split, per_class=per_class, seed=seed)
    console.print(f"wrote {output}")


def register(app: typer.Typer) -> None:
    data_app = typer.Typer(
        help="Datasets: list them, count their splits, look at samples.", no_args_is_help=True
    )
    add_commands(data_app, list_, info, show)
    app.add_typer(data_app, name="data")

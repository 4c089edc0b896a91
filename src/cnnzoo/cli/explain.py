"""`cnnzoo explain | features | filters`: what a trained network looks at."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from cnnzoo.cli import add_commands
from cnnzoo.cli.args import parse_shape

console = Console(highlight=False)

MODEL_FILE = typer.Argument(..., help="A run folder or a .keras/.h5 model file.")
ARCH = typer.Option(None, help="Architecture of a weights-only file.")
INPUT_SHAPE = typer.Option(None, "--input-shape", help="Input of a weights-only file.")
UNSAFE = typer.Option(False, "--unsafe", help="Allow model files that can run code (Lambda layers).")


def explain(
    model_file: Path = MODEL_FILE,
    images: list[Path] = typer.Argument(..., help="Image files or folders of them."),
    out: Path = typer.Option(..., "-o", "--out", help="A .png for one image; else a folder (one picture "
                                                       "per image and contact-sheet.png)."),
    class_name: str = typer.Option(None, "--class", help="Class to explain (default: each image's predicted one)."),
    method: str = typer.Option("gradcam", help="gradcam or saliency."),
    layer: str = typer.Option(None, help="Grad-CAM's feature map (default: the last one before the head)."),
    arch: str = ARCH, input_shape: str = INPUT_SHAPE, unsafe: bool = UNSAFE,
) -> None:
    """The image with a heat map of what decided the class, and the class's probability."""
    from cnnzoo.inference.explain_files import explain_files

    result = explain_files(model_file, images, out, class_name=class_name, method=method, layer=layer,
                           arch=arch, unsafe=unsafe, input_shape=parse_shape(input_shape))
    for item in result["items"]:
        where = f" at {item['layer']}" if item["layer"] else ""
        predicted = "" if item["predicted"] == item["class"] else \
            f"; predicted {item['predicted']} (p = {item['predicted_probability']:.4f})"
        console.print(f"{item['file']}: {item['method']} of {item['class']} (p = {item['probability']:.4f}"
                      f"{predicted}){where} -> {item['out']}", soft_wrap=True)
    if result["sheet"]:
        console.print(f"contact sheet -> {result['sheet']}", soft_wrap=True)


def features(
    model_file: Path = MODEL_FILE,
    image: Path = typer.Argument(..., help="One image file."),
    out: Path = typer.Option(..., "-o", "--out", help="The picture (.png, .svg or .pdf)."),
    channels: int = typer.Option(8, help="Channels shown per layer (the first ones)."),
    arch: str = ARCH, input_shape: str = INPUT_SHAPE, unsafe: bool = UNSAFE,
) -> None:
    """The image's activations at each stage of the network (the first channels of each)."""
    from cnnzoo.inference.explain_files import feature_grid

    result = feature_grid(model_file, image, out, channels=channels, arch=arch, unsafe=unsafe,
                          input_shape=parse_shape(input_shape))
    shapes = ", ".join(f"{name} {'x'.join(map(str, shape))}" for name, shape in result["layers"].items())
    console.print(f"{shapes} -> {result['out']}", soft_wrap=True)


def filters(
    model_file: Path = MODEL_FILE,
    out: Path = typer.Option(..., "-o", "--out", help="The picture (.png, .svg or .pdf)."),
    arch: str = ARCH, input_shape: str = INPUT_SHAPE, unsafe: bool = UNSAFE,
) -> None:
    """The first convolution's kernels as colour tiles (AlexNet's Figure 3)."""
    from cnnzoo.inference.explain_files import filter_tiles

    result = filter_tiles(model_file, out, arch=arch, unsafe=unsafe, input_shape=parse_shape(input_shape))
    console.print(f"{result['layer']}: {'x'.join(map(str, result['shape']))} -> {result['out']}", soft_wrap=True)


def register(app: typer.Typer) -> None:
    add_commands(app, explain, features, filters)

"""`cnnzoo train | evaluate | predict`: the course's workflow on real data."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from cnnzoo.cli import add_commands
from cnnzoo.cli.args import parse_shape

console = Console()


def train(
    model: str = typer.Argument(..., help="Registered model name (see `cnnzoo models`)."),
    dataset: str = typer.Option(..., "--dataset", "-d", help="signs, smiles, mnist, folder:PATH, h5:TRAIN.h5[,TEST.h5]."),
    epochs: int = typer.Option(None, help="Default: the model's recipe."),
    batch_size: int = typer.Option(None, "--batch-size", help="Default: the model's recipe."),
    lr: float = typer.Option(None, help="Peak learning rate (Adam, cosine decay)."),
    warmup: float = typer.Option(None, help="Epochs of linear learning-rate warm-up (default: the model's recipe)."),
    augment: str = typer.Option(None, help="Comma-separated: mirror, shift, crop, resized-crop, color, pca, rotate, or none (default: the dataset's, see docs/AUGMENT.md)."),
    weight_decay: float = typer.Option(None, "--weight-decay", help="Decoupled (AdamW-style) weight decay (default: the recipe's)."),
    bn_momentum: float = typer.Option(None, "--bn-momentum", help="BatchNormalization momentum (default: the recipe's; Keras' own is 0.99)."),
    zero_init_residual: bool = typer.Option(None, "--zero-init-residual/--no-zero-init-residual", help="ResNets: start every residual branch at zero, so each block begins as its shortcut (default: the recipe's, on for resnet152)."),
    seed: int = typer.Option(0, help="Seed for weights, shuffling and augmentation."),
    seeds: int = typer.Option(1, help="Train N independent models, seeds SEED..SEED+N-1 (an ensemble's members)."),
    validation: float = typer.Option(0.1, help="Share of training images used to pick the best epoch."),
    image_size: int = typer.Option(None, "--image-size", help="Side of the square input in pixels (default: the model's input)."),
    init: str = typer.Option(None, help="Start from a run folder, .keras model or Keras .h5 weights (layers matched by name and shape)."),
    freeze: bool = typer.Option(False, "--freeze", help="Keep the layers copied from --init fixed: train only the new ones (the head)."),
    train_fraction: float = typer.Option(1.0, "--train-fraction", help="Train on this share of each class's training images (0-1]."),
    precision: str = typer.Option("auto", help="fp32, bf16 or fp16 (auto: bf16 on GPU, fp32 on CPU)."),
    schedule: str = typer.Option("cosine", help="Learning rate: cosine (decay to 0) or constant."),
    out: Path = typer.Option(None, help="Run folder (default runs/MODEL-DATASET-sSEED)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last finished epoch."),
    devices: str = typer.Option("1", help="'all' or N: data-parallel over N devices (JAX backend); the batch size is global."),
    stream: bool = typer.Option(False, "--stream", help="folder:PATH only: decode the images per batch in background threads instead of decoding and caching them all first."),
    coordinator: str = typer.Option(None, help="Multi-host: address:port of process 0 (else KERAS_DISTRIBUTION_JOB_ADDRESSES)."),
    num_processes: int = typer.Option(None, help="Multi-host: number of processes (else KERAS_DISTRIBUTION_NUM_PROCESSES)."),
    process_id: int = typer.Option(None, help="Multi-host: this process's id, 0 = coordinator (else KERAS_DISTRIBUTION_PROCESS_ID)."),
) -> None:
    """Train MODEL on DATASET, keep the best epoch, evaluate it on the test split."""
    from cnnzoo import distribute
    from cnnzoo.errors import UserError
    from cnnzoo.train import TrainConfig, train as run_training

    if distribute.multi_host_requested(coordinator, num_processes, process_id):
        distribute.initialize_hosts(coordinator, num_processes, process_id)

    if seeds < 1:
        raise UserError(f"--seeds must be at least 1, not {seeds}.")
    folders = []
    for member in range(seed, seed + seeds):
        folder = out if seeds == 1 or out is None else Path(f"{out}-s{member}")
        config = TrainConfig(model, dataset, epochs=epochs, batch_size=batch_size, lr=lr, warmup=warmup,
                             augment=augment, weight_decay=weight_decay, bn_momentum=bn_momentum,
                             zero_init_residual=zero_init_residual, seed=member, validation=validation,
                             image_size=image_size, init=init, freeze=freeze, train_fraction=train_fraction,
                             precision=precision, schedule=schedule, devices=devices, stream=stream,
                             out=str(folder) if folder else None)
        try:
            metrics = run_training(config, resume=resume)
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/]: finished epochs are saved; continue with --resume.")
            raise typer.Exit(130) from None
        _print_metrics(metrics["test"], f"test ({metrics['test']['images']} images)")
        console.print(f"run folder: {metrics['run']}")
        folders.append(metrics["run"])
    if seeds > 1:
        console.print(f"ensemble of the {seeds}: cnnzoo evaluate --ensemble {' '.join(folders)}")


def evaluate(
    model_files: list[Path] = typer.Argument(..., help="A .keras/.h5 file or a run folder; several with --ensemble."),
    dataset: str = typer.Option(None, "--dataset", "-d", help="Default: the run's own dataset."),
    split: str = typer.Option("test", help="test, val or train."),
    tta: str = typer.Option("none", help="Test-time augmentation: none, flip (2 views) or 10crop (corners, centre, mirrors)."),
    ensemble: bool = typer.Option(False, "--ensemble", help="Average the probabilities of all the models given."),
    out: Path = typer.Option(None, help="Write metrics.json and confusion.png into this folder."),
    confusion: Path = typer.Option(None, help="Write the confusion matrix picture here."),
    mistakes: Path = typer.Option(None, help="Write a picture of the 32 most confidently misclassified images here."),
    arch: str = typer.Option(None, help="Architecture of a weights-only file."),
    unsafe: bool = typer.Option(False, "--unsafe", help="Allow model files that can run code (Lambda layers)."),
) -> None:
    """Loss, accuracy, per-class table and confusion matrix of a trained model or an ensemble."""
    from cnnzoo.errors import UserError
    from cnnzoo.predict import evaluate_models

    if len(model_files) > 1 and not ensemble:
        raise UserError(f"{len(model_files)} models given: add --ensemble to average their probabilities.")
    result = evaluate_models(model_files, dataset=dataset, split=split, tta=tta, out=out, confusion=confusion,
                             mistakes=mistakes, arch=arch, unsafe=unsafe)
    members = f", ensemble of {len(model_files)}" if len(model_files) > 1 else ""
    views = f", tta {tta}" if tta != "none" else ""
    _print_metrics(result, f"{split} ({result['images']} images{members}{views})")


def predict(
    model_file: Path = typer.Argument(..., help="A .keras/.h5 file or a run folder."),
    images: list[Path] = typer.Argument(..., help="Image files (any size; resized like training)."),
    arch: str = typer.Option(None, help="Architecture of a weights-only file."),
    input_shape: str = typer.Option(None, "--input-shape", help="Input of a weights-only file."),
    unsafe: bool = typer.Option(False, "--unsafe", help="Allow model files that can run code (Lambda layers)."),
) -> None:
    """Predicted class and probability vector [p(0) ... p(K-1)] for each image."""
    from cnnzoo.predict import format_prediction, predict_files

    for prediction in predict_files(model_file, images, arch=arch, unsafe=unsafe,
                                    input_shape=parse_shape(input_shape)):
        console.print(format_prediction(prediction), highlight=False)


def _print_metrics(result: dict, title: str) -> None:
    console.print(f"{title}: loss {result['loss']:.4f}, accuracy {result['accuracy']:.2%}")
    table = Table("class", "precision", "recall", "support")
    for row in result["per_class"]:
        table.add_row(row["class"], f"{row['precision']:.3f}", f"{row['recall']:.3f}", str(row["support"]))
    console.print(table)


def register(app: typer.Typer) -> None:
    add_commands(app, train, evaluate, predict)

"""`cnnzoo train | evaluate | predict`: the course's workflow on real data."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from cnnzoo.cli import add_commands
from cnnzoo.cli.args import MAX_MEGAPIXELS_HELP, megapixels, parse_shape
from cnnzoo.datasets.images import MAX_PIXELS

console = Console()


def _settings() -> list[inspect.Parameter]:
    """The options of `cnnzoo train`, one per TrainConfig field: its flags, help and default."""
    from cnnzoo.training.config import TrainConfig

    types = typing.get_type_hints(TrainConfig)
    parameters = []
    for setting in dataclasses.fields(TrainConfig):
        kind = next((t for t in typing.get_args(types[setting.name]) if t is not type(None)), types[setting.name])
        if setting.name == "out":
            kind = Path
        if setting.name == "model":
            default = typer.Argument(..., help=setting.metadata["help"], metavar="MODEL")
        else:
            flags = setting.metadata["flags"] or ("--" + setting.name.replace("_", "-"),)
            default = setting.default if setting.default is not dataclasses.MISSING else ...
            default = typer.Option(default, *flags, help=setting.metadata["help"])
        parameters.append(inspect.Parameter(setting.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                            annotation=kind))
    return parameters


# Options of the command itself, not of a run.
RUN_OPTIONS = [
    inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=kind)
    for name, kind, default in (
        ("seeds", int, typer.Option(1, help="Train N independent models, seeds SEED..SEED+N-1 (an ensemble's members).")),
        ("resume", bool, typer.Option(False, "--resume", help="Continue the run in --out from its last finished epoch.")),
        ("coordinator", str, typer.Option(None, help="Multi-host: address:port of process 0 (else KERAS_DISTRIBUTION_JOB_ADDRESSES).")),
        ("num_processes", int, typer.Option(None, help="Multi-host: number of processes (else KERAS_DISTRIBUTION_NUM_PROCESSES).")),
        ("process_id", int, typer.Option(None, help="Multi-host: this process's id, 0 = coordinator (else KERAS_DISTRIBUTION_PROCESS_ID).")),
    )
]


def train(**options) -> None:
    """Train MODEL on DATASET, keep the best epoch, evaluate it on the test split."""
    from cnnzoo.backends import distribute
    from cnnzoo.errors import UserError
    from cnnzoo.training.config import TrainConfig
    from cnnzoo.training.fit import train as run_training

    seeds, resume, out = options.pop("seeds"), options.pop("resume"), options.pop("out")
    hosts = [options.pop(name) for name in ("coordinator", "num_processes", "process_id")]
    TrainConfig(**options).check()  # every number in range before anything starts
    if seeds < 1:
        raise UserError(f"--seeds must be at least 1, not {seeds}.")
    if distribute.multi_host_requested(*hosts):
        index, count = distribute.job_position(*hosts[1:])  # checked before a child process starts
        distribute.require_jax("Multi-host training")
        if not distribute.supervised():
            raise typer.Exit(distribute.supervise(index, count, out))
        distribute.die_with_supervisor()
        distribute.initialize_hosts(*hosts)
    folders = []
    for member in range(options["seed"], options["seed"] + seeds):
        folder = out if seeds == 1 or out is None else Path(f"{out}-s{member}")
        config = TrainConfig(**{**options, "seed": member, "out": str(folder) if folder else None})
        try:
            metrics = run_training(config, resume=resume)
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/]: finished epochs are saved; continue with --resume.")
            raise typer.Exit(130) from None
        except Exception as error:
            if lost := distribute.peer_lost(error):
                distribute.abandon(distribute.lost_sentence(*distribute.process(), lost, config.out))
            raise
        if metrics["test"] is None:  # a process other than 0 of a multi-process job
            console.print(f"process {metrics['process']} of {metrics['processes']}: trained; process 0 writes "
                          f"{metrics['run']}")
            continue
        _print_metrics(metrics["test"], f"test ({metrics['test']['images']} images)")
        console.print(f"run folder: {metrics['run']}")
        folders.append(metrics["run"])
    if seeds > 1:
        console.print(f"ensemble of the {seeds}: cnnzoo evaluate --ensemble {' '.join(folders)}")


train.__signature__ = inspect.Signature([*_settings(), *RUN_OPTIONS])


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
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip unreadable images (counted and named in --out's metrics.json) instead of failing."),
    max_megapixels: float = typer.Option(MAX_PIXELS / 1e6, "--max-megapixels", help=MAX_MEGAPIXELS_HELP),
    robustness: bool = typer.Option(False, "--robustness", help="Also score the images under the robustness suite's shifts (rotation, scale, light, blur, JPEG, noise, background...)."),
) -> None:
    """Loss, accuracy, per-class table, calibration and confusion matrix of a trained model or an ensemble."""
    from cnnzoo.errors import UserError
    from cnnzoo.inference.evaluate import evaluate_models

    if len(model_files) > 1 and not ensemble:
        raise UserError(f"{len(model_files)} models given: add --ensemble to average their probabilities.")
    result = evaluate_models(model_files, dataset=dataset, split=split, tta=tta, out=out, confusion=confusion,
                             mistakes=mistakes, arch=arch, unsafe=unsafe, skip_bad=skip_bad,
                             max_pixels=megapixels(max_megapixels), robustness=robustness)
    members = f", ensemble of {len(model_files)}" if len(model_files) > 1 else ""
    views = f", tta {tta}" if tta != "none" else ""
    _print_metrics(result, f"{split} ({result['images']} images{members}{views})")
    if robustness:
        _print_robustness(result["robustness"])


def predict(
    model_file: Path = typer.Argument(..., help="A .keras/.h5 file or a run folder."),
    images: list[Path] = typer.Argument(..., help="Image files (any size; resized like training)."),
    arch: str = typer.Option(None, help="Architecture of a weights-only file."),
    input_shape: str = typer.Option(None, "--input-shape", help="Input of a weights-only file."),
    unsafe: bool = typer.Option(False, "--unsafe", help="Allow model files that can run code (Lambda layers)."),
    max_megapixels: float = typer.Option(MAX_PIXELS / 1e6, "--max-megapixels", help=MAX_MEGAPIXELS_HELP),
    faces: str = typer.Option("auto", "--faces", help="Find the faces and judge each (a door's decision over them): "
                              "auto (when the model was trained on face crops), on or off."),
) -> None:
    """Predicted class and probability vector [p(0) ... p(K-1)] for each image (each face, with --faces)."""
    from cnnzoo.inference.faces import mode_arg
    from cnnzoo.inference.predict import format_prediction, predict_files

    for prediction in predict_files(model_file, images, arch=arch, unsafe=unsafe, input_shape=parse_shape(input_shape),
                                    max_pixels=megapixels(max_megapixels), faces=mode_arg(faces)):
        console.print(format_prediction(prediction), highlight=False, soft_wrap=True)


def _print_robustness(scores: dict) -> None:
    table = Table("shift", "severity 1", "severity 2", "severity 3", "mean", title="robustness suite")
    for name, by in scores["shifts"].items():
        cells = [f"{by[str(s)]:.1%}" if str(s) in by else "" for s in (1, 2, 3)]
        table.add_row(name, *cells, f"{sum(by.values()) / len(by):.1%}")
    console.print(table)
    console.print(f"robustness mean {scores['mean']:.1%} (clean {scores['clean']:.1%}); calibration error on the "
                  f"shifted images {scores['ece']:.1%}")


def _print_metrics(result: dict, title: str) -> None:
    ece = f", calibration error {result['ece']:.1%}" if "ece" in result else ""
    console.print(f"{title}: loss {result['loss']:.4f}, accuracy {result['accuracy']:.2%}{ece}")
    table = Table("class", "precision", "recall", "support")
    for row in result["per_class"]:
        table.add_row(row["class"], f"{row['precision']:.3f}", f"{row['recall']:.3f}", str(row["support"]))
    console.print(table)


def register(app: typer.Typer) -> None:
    add_commands(app, train, evaluate, predict)

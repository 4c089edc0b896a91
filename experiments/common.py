"""Shared by the experiment scripts: machine description and RESULTS.md sections."""

from __future__ import annotations

import datetime
import os
import platform
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "RESULTS.md"


def machine() -> str:
    import keras

    from cnnzoo import backends

    cpu = platform.processor() or platform.machine()
    try:
        model = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
        cpu = model
    except (OSError, StopIteration):
        pass
    versions = ", ".join(f"{k} {v}" for k, v in backends.versions().items())
    return (f"{cpu}, {os.cpu_count()} cores; {', '.join(backends.devices())}; "
            f"backend {keras.backend.backend()} ({versions}); {datetime.date.today().isoformat()}")


def write_section(name: str, markdown: str, path: Path = RESULTS) -> None:
    """Replace (or append) the section between this experiment's markers in `path`."""
    from cnnzoo import _io

    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{markdown.strip()}\n{end}"
    text = path.read_text() if path.exists() else "# Results\n\nMeasured by the scripts in experiments/; each section says how to regenerate it.\n"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    _io.write_text(path, text)


# Batch size where a dataset's size needs another than the network's recipe: LeNet-5 takes about
# a minute an epoch over MNIST's 54,000 training images at its 32; 128 keeps a run within 10 minutes.
BATCH_SIZE = {"mnist": 128}


# TrainConfig and Recipe fields added after runs were hashed, with their defaults.
LATER_FIELDS = {"image_size": None, "init": None, "freeze": False, "train_fraction": 1.0, "stream": False,
                "aux_logits": False, "skip_bad": False, "max_megapixels": 40.0,
                "split_by": "file", "optimizer": "adam"}
LATER_RECIPE_FIELDS = {"zero_init_residual": False, "optimizer": "adam"}


# The datasets' default augmentations that the committed records were trained with, before the
# robustness study (experiments/robustness.py) chose new defaults on 2026-12-01: a study that
# leaves augment to the dataset keeps measuring (and finding the records of) what it measured.
RECORDED_AUGMENT = {"signs": "shift", "sign-digits": "shift", "sign-digits-6-9": "shift", "smiles": "mirror,shift",
                    "mnist": "shift"}


# The recipes' fields that changed after records were made with them, and their values then:
# ResNet-50 starts its residual branches at zero since 2026-12-07 (docs/RESULTS.md, robustness). A
# study that leaves such a field to the recipe keeps training (and finding) what it recorded.
RECORDED_RECIPE = {"resnet50": {"zero_init_residual": False}}


def as_recorded(config):
    """`config` with the augmentation its dataset had, and the recipe fields its model had, when the
    records were made, unless it names its own; and float32 on a CPU. Every CPU record is float32:
    `auto` picks bf16 on a CPU with bfloat16 arithmetic since 2026-12-07, and a study compares
    networks and recipes, not machines (docs/PERFORMANCE.md measures bf16)."""
    import dataclasses

    from cnnzoo.backends import has_accelerator

    if config.augment is None and config.dataset in RECORDED_AUGMENT:
        config = dataclasses.replace(config, augment=RECORDED_AUGMENT[config.dataset])
    if config.precision == "auto" and not has_accelerator():
        config = dataclasses.replace(config, precision="fp32")
    unnamed = {name: value for name, value in RECORDED_RECIPE.get(config.model, {}).items()
               if getattr(config, name) is None}
    return dataclasses.replace(config, **unnamed) if unnamed else config


def recorded_recipe(model: str):
    """The model's recipe as the records hash it: today's, with RECORDED_RECIPE's values."""
    import dataclasses

    from cnnzoo.models import model_info

    return dataclasses.replace(model_info(model).recipe, **RECORDED_RECIPE.get(model, {}))


def run_folder(config, folder: str, runs: Path = ROOT / "runs") -> Path:
    """runs/FOLDER/MODEL-DATASET-HASH-sSEED: the hash is of the resolved config and recipe, so
    any change of settings makes a new run."""
    import dataclasses
    import hashlib
    import json

    from cnnzoo.models import augment

    config = as_recorded(config).resolved()
    settings = {**dataclasses.asdict(config), "out": None, "recipe": dataclasses.asdict(recorded_recipe(config.model))}
    del settings["robustness_images"]  # what is scored at the end, not what is trained
    # A setting left at the recipe's adds nothing to the hash: the recipe is in it.
    if settings["zero_init_residual"] == settings["recipe"]["zero_init_residual"]:
        del settings["zero_init_residual"]
    # Keep the hashes of runs made before those fields existed.
    for fields, values in ((LATER_FIELDS, settings), (LATER_RECIPE_FIELDS, settings["recipe"])):
        for field, default in fields.items():
            if values[field] == default:
                del values[field]
    # A changed augmentation layer makes a new run (records made before the change keep their hashes).
    revised = {name: augment.REVISED[name] for name in augment.parse(config.augment) if name in augment.REVISED}
    if revised:
        settings["augment_revised"] = revised
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    return Path(runs) / folder / f"{config.model}-{config.dataset}-{digest}-s{config.seed}"


def record_path(config, folder: str, record: Path) -> Path:
    """Where train_or_reuse records the metrics of `config`'s run: RECORD/FOLDER/RUN.json."""
    return Path(record) / folder / f"{run_folder(config, folder).name}.json"


def train_or_reuse(config, folder: str, runs: Path = ROOT / "runs", *, reuse_only: bool = False,
                   record: Path | None = None, robustness: bool = False) -> dict | None:
    """metrics.json of `config` trained in its run_folder, reusing (or resuming) a run with
    exactly these settings. `reuse_only`: None instead of training when no finished run exists.

    `record`: a committed folder of finished runs' metrics (RECORD/FOLDER/RUN.json). A run
    recorded there counts as finished even when its folder is gone, so a table that needs only
    metrics keeps the runs of earlier sessions and other machines (a lent GPU); every finished
    run is recorded. `robustness`: score the test images under the robustness suite's shifts at
    the end of a run it trains (the studies that do not report it skip its cost)."""
    import dataclasses
    import json

    from cnnzoo import _io
    from cnnzoo.training.fit import train

    config = as_recorded(config).resolved()
    if not robustness:
        config = dataclasses.replace(config, robustness_images=0)
    out = run_folder(config, folder, runs)
    recorded = record_path(config, folder, record) if record else None
    if recorded and recorded.exists():  # first: a study may have noted more there (concurrent_runs)
        return json.loads(recorded.read_text())
    if (out / "metrics.json").exists():
        metrics = json.loads((out / "metrics.json").read_text())
    elif reuse_only:
        return None
    else:
        metrics = train(dataclasses.replace(config, out=str(out)), resume=(out / "config.json").exists(), verbose=2)
    if recorded and not recorded.exists():
        recorded.parent.mkdir(parents=True, exist_ok=True)
        _io.write_json(recorded, metrics)
    return metrics


def study_parser(doc: str, seeds: int = 1):
    """The options every study script takes: budget overrides for smoke runs, output folders."""
    import argparse

    parser = argparse.ArgumentParser(description=doc.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=doc)
    parser.add_argument("--seeds", type=int, default=seeds, help=f"independent runs per row (default {seeds})")
    parser.add_argument("--epochs", type=int, help="override every run's epochs (smoke runs)")
    parser.add_argument("--train-fraction", type=float, default=1.0,
                        help="train on this share of each dataset (smoke runs; 1 = all)")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs",
                        help="folder of STUDIES.md and figures/ (default: the repository's docs/)")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs", help="folder the runs are kept in")
    return parser


def command_line(script: str, args, defaults: dict) -> str:
    """The command that regenerates a table: the script plus the options that differ from
    their defaults (output folders left out)."""
    parts = [f"python experiments/{script}"]
    for key, value in vars(args).items():
        if key in ("docs", "runs") or value == defaults.get(key):
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:  # a switch
            parts.append(flag)
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        parts.append(" ".join([flag, *map(str, values)]))
    return " ".join(parts)


def mean_sd(values) -> str:
    """'98.8% ± 0.4%' (or one value alone) for accuracies in [0, 1]."""
    import statistics

    values = list(values)
    if len(values) == 1:
        return f"{values[0]:.1%}"
    return f"{statistics.mean(values):.1%} ± {statistics.pstdev(values):.1%}"


def total_training(runs) -> str:
    """'N runs, X min of training' over metrics.json dicts."""
    runs = list(runs)
    return f"{len(runs)} runs, {sum(m['wall_time_s'] for m in runs) / 60:.0f} min of training, each run on the machine that ran it"


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display on CI or here)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure, path: Path) -> None:
    import matplotlib.pyplot as plt

    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)

"""TrainConfig: every setting of a training run, its default, its range and its help text.

The CLI's `cnnzoo train` options are made from these fields (cnnzoo.cli.train), so each
setting is described once, here. None means "the model's recipe" (or, for `augment`, the
dataset's default); `resolved()` checks every value and fills the Nones.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field

from cnnzoo.datasets.images import MAX_PIXELS
from cnnzoo.errors import UserError

SCHEDULES = ("cosine", "constant")
OPTIMIZERS = ("adam", "sgd")
PRECISIONS = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}
# Fields that say how to run, not what is trained: --resume may be given other values for them.
HOW_TO_RUN = ("model", "dataset", "out", "devices", "robustness_images")


@dataclass(frozen=True)
class Range:
    """The values a numeric setting takes: [low, high], either end open or unbounded."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False
    means: str | None = None  # how to say the range in a message, when the bounds alone do not

    def check(self, name: str, value) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{name} must be a number. Received: {name}={value!r}")
        if self.integer and value != int(value):
            raise UserError(f"{name} must be a whole number. Received: {name}={value!r}")
        below = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        above = self.high is not None and (value >= self.high if self.high_open else value > self.high)
        if not math.isfinite(value) or below or above:
            raise UserError(f"{name} must be {self.describe()}. Received: {name}={value!r}")

    def describe(self) -> str:
        if self.means:
            return self.means
        if self.integer and self.high is None and self.low is not None:
            return f"a whole number of at least {int(self.low) + self.low_open}"
        low = "" if self.low is None else f"{'above' if self.low_open else 'at least'} {self.low:g}"
        high = "" if self.high is None else f"{'below' if self.high_open else 'at most'} {self.high:g}"
        return " and ".join(p for p in (low, high) if p) or "a finite number"


def setting(default=dataclasses.MISSING, *, help: str, flags=(), check: Range | None = None):  # noqa: A002
    """A TrainConfig field with its CLI help, CLI spelling (default --field-name) and range."""
    return field(default=default, metadata={"help": help, "flags": tuple(flags), "check": check})


POSITIVE_INT = Range(1, integer=True)
FRACTION = Range(0, 1, high_open=True)


@dataclass(frozen=True)
class TrainConfig:
    model: str = setting(help="Registered model name (see `cnnzoo models`).")
    dataset: str = setting(help="signs, smiles, mnist, folder:PATH, h5:TRAIN.h5[,TEST.h5].", flags=("--dataset", "-d"))
    epochs: int | None = setting(None, help="Epochs to train (default: the model's recipe, longer where the "
                                          "dataset's default augmentation needs it: docs/AUGMENT.md).",
                                 check=POSITIVE_INT)
    batch_size: int | None = setting(None, help="Images per step (default: the model's recipe); global over --devices.",
                                     check=POSITIVE_INT)
    optimizer: str | None = setting(None, help="adam, or sgd with Nesterov momentum 0.9 (default: the model's "
                                               "recipe).")
    lr: float | None = setting(None, help="Peak learning rate (cosine decay; default: the model's recipe, "
                                          "scaled as --epochs says).",
                               check=Range(0, low_open=True))
    warmup: float | None = setting(None, help="Epochs of linear learning-rate warm-up (default: the model's recipe).",
                                   check=Range(0))
    augment: str | None = setting(None, help="Comma-separated: mirror, shift, crop, resized-crop, color, pca, rotate, "
                                             "or none (default: the dataset's, see docs/AUGMENT.md).")
    weight_decay: float | None = setting(None, help="Decoupled (AdamW-style) weight decay (default: the recipe's).",
                                         check=Range(0))
    bn_momentum: float | None = setting(None, help="BatchNormalization momentum (default: the recipe's; Keras' own "
                                                   "is 0.99).", check=FRACTION)
    zero_init_residual: bool | None = setting(
        None, help="ResNets: start every residual branch at zero, so each block begins as its shortcut (default: "
                   "the recipe's, on for resnet50 and resnet152).", flags=("--zero-init-residual/--no-zero-init-residual",))
    aux_logits: bool = setting(False, help="GoogLeNet: train with the paper's two auxiliary classifiers (their "
                                           "losses weighted 0.3); predictions come from the main head.",
                               flags=("--aux-logits",))
    seed: int = setting(0, help="Seed for weights, shuffling and augmentation; the data splits never change.",
                        check=Range(0, integer=True))
    validation: float = setting(0.1, help="Share of training images held out to pick the best epoch.", check=FRACTION)
    image_size: int | None = setting(None, help="Side of the square input in pixels (default: the model's input).",
                                     check=Range(1, 4096, integer=True))
    init: str | None = setting(None, help="Start from a run folder, a .keras model, or published weights: Keras "
                                          ".h5, torchvision .pth, timm .safetensors/.pth (`cnnzoo weights list`).")
    freeze: bool = setting(False, help="Keep the layers copied from --init fixed: train only the new ones (the head).",
                           flags=("--freeze",))
    train_fraction: float = setting(1.0, help="Train on this share of each class's training images (0-1].",
                                    check=Range(0, 1, low_open=True, means="in (0, 1]: the share of training "
                                                                           "images to use"))
    precision: str = setting("auto", help="fp32, bf16 or fp16 (auto: bf16 on a GPU and, on PyTorch, on a CPU with "
                                         "bfloat16 arithmetic; fp32 elsewhere).")
    schedule: str = setting("cosine", help="Learning rate: cosine (decay to 0) or constant.")
    devices: str = setting("1", help="'all' or N: data-parallel over N devices (JAX backend); the batch size is global.")
    stream: bool = setting(False, help="folder:PATH only: decode the images per batch in background threads instead "
                                       "of decoding and caching them all first.", flags=("--stream",))
    skip_bad: bool = setting(False, help="Skip unreadable images (counted and named in metrics.json) instead of "
                                         "failing.", flags=("--skip-bad",))
    max_megapixels: float = setting(MAX_PIXELS / 1e6, help="Largest image decoded, in millions of pixels (width x "
                                                           "height, read from its header first).",
                                    check=Range(0, low_open=True))
    robustness_images: int = setting(300, help="Test images the robustness suite scores at the end of the run, under "
                                                 "every shift (0: none).", check=Range(0, integer=True))
    split_by: str = setting("file", help="file: each image to a split by a hash of its path; subject: every subject "
                                         "(person) on one side, a test on other people (sign-digits, signs).")
    out: str | None = setting(None, help="Run folder (default runs/MODEL-DATASET-sSEED).")

    def check(self) -> None:
        """Refuse any setting out of its range (None always means the default)."""
        for f in dataclasses.fields(self):
            value, rule = getattr(self, f.name), f.metadata["check"]
            if rule is not None and value is not None:
                rule.check(f.name, value)

    def resolved(self) -> "TrainConfig":
        """Check every setting, then fill every None/auto from the model's recipe and the device."""
        from cnnzoo.datasets import default_augment_schedule, default_augmentations
        from cnnzoo.models import augment, model_info

        self.check()
        info = model_info(self.model)
        recipe = info.recipe
        precision = self.precision
        if precision == "auto":
            precision = auto_precision()
        if precision not in PRECISIONS:
            raise UserError(f"Unknown precision {precision!r}: use one of {', '.join(PRECISIONS)} or auto.")
        if self.split_by not in ("file", "subject"):
            raise UserError(f"Unknown split_by {self.split_by!r}: use file or subject.")
        optimizer = recipe.optimizer if self.optimizer is None else self.optimizer
        if optimizer not in OPTIMIZERS:
            raise UserError(f"Unknown optimizer {optimizer!r}: use one of {', '.join(OPTIMIZERS)}.")
        if self.schedule not in SCHEDULES:
            raise UserError(f"Unknown schedule {self.schedule!r}: use one of {', '.join(SCHEDULES)}.")
        if self.freeze and not self.init:
            raise UserError("freeze keeps the layers copied from init fixed: give init (a run folder, "
                            ".keras or .h5 file) too.")
        augmentations = augment.parse(default_augmentations(self.dataset) if self.augment is None else self.augment)
        if self.stream:
            _check_stream(self.dataset, augmentations)
        zero_init_residual = recipe.zero_init_residual if self.zero_init_residual is None else self.zero_init_residual
        if zero_init_residual and not info.residual:
            raise UserError(f"zero_init_residual starts every residual branch at zero, and {self.model} has no "
                            "residual branches: use it with a ResNet, or leave it off.")
        if self.aux_logits and not info.aux_heads:
            raise UserError(f"aux_logits trains a network's auxiliary classifiers, and {self.model} has none: "
                            "use it with googlenet, or leave it off.")
        # The dataset's default augmentation may need a longer, gentler schedule than the recipe's.
        epoch_scale, lr_scale = default_augment_schedule(self.dataset) if self.augment is None else (1.0, 1.0)
        epochs = round(recipe.epochs * epoch_scale) if self.epochs is None else self.epochs
        # The recipe's warm-up fits the recipe's run; a shorter run (--epochs) warms up for all of it at most.
        warmup = min(recipe.warmup, epochs) if self.warmup is None else self.warmup
        if warmup > epochs:
            raise UserError(f"warmup ({warmup:g} epochs) is longer than the run ({epochs} epochs): give fewer "
                            "warm-up epochs or more epochs.")
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.dataset).strip("_") + ("-subject" if self.split_by == "subject" else "")
        return dataclasses.replace(
            self,
            epochs=epochs,
            batch_size=recipe.batch_size if self.batch_size is None else self.batch_size,
            optimizer=optimizer,
            lr=recipe.lr * lr_scale if self.lr is None else self.lr,
            warmup=warmup,
            bn_momentum=recipe.bn_momentum if self.bn_momentum is None else self.bn_momentum,
            zero_init_residual=zero_init_residual,
            weight_decay=recipe.weight_decay if self.weight_decay is None else self.weight_decay,
            augment=",".join(augmentations),
            precision=precision,
            out=self.out or f"runs/{self.model}-{slug}-s{self.seed}",
        )

    def explicit(self) -> dict:
        """The settings given other values than the defaults (what a caller asked for)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.default is dataclasses.MISSING or getattr(self, f.name) != f.default}


def auto_precision() -> str:
    """bf16 where it trains faster than float32 to the same accuracy, else fp32: on a GPU, and
    on the PyTorch backend on a CPU with bfloat16 arithmetic, read at run time (ResNet-50 1.2-1.3x
    at batch 32 and 1.9-2.0x at 256, the main job 99.07% on signs' test split on 3 seeds, as float32:
    docs/PERFORMANCE.md). JAX on a CPU keeps float32: not measured. CNNZOO_CPU_BF16=0 keeps
    float32 on any CPU (the test suite sets it, so that its tolerances hold on every machine)."""
    import os

    import keras

    from cnnzoo.backends import cpu_bf16, has_accelerator

    if has_accelerator():
        return "bf16"
    wanted = os.environ.get("CNNZOO_CPU_BF16", "1") != "0"
    return "bf16" if wanted and keras.backend.backend() == "torch" and cpu_bf16() else "fp32"


def _check_stream(dataset: str, augmentations) -> None:
    if not dataset.startswith("folder:"):
        raise UserError(f"Only image folders can be streamed, and {dataset} is not one: give "
                        "folder:PATH, or train without stream (--stream).")
    if "pca" in augmentations:
        raise UserError("PCA colour augmentation needs every training image in memory for its colour "
                        "basis: train without stream (--stream), or choose other augmentations.")

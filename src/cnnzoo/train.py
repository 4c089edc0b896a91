"""The fit recipe: from a model name and a dataset name to a complete run folder.

Images stay uint8 in memory; the model itself scales them (a Rescaling layer in front of
the architecture), so scaling and casting run inside the training step on the device and
the saved model carries its own preprocessing: predict feeds it plain pixels.
"""

from __future__ import annotations

import dataclasses
import datetime
import inspect
import re
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from cnnzoo import atomic, augment, backend, distribute, runs, streaming, torch_speed, transfer
from cnnzoo.errors import UserError
from cnnzoo.evaluate import classification_metrics, predict_proba
from cnnzoo.models import model_info
from cnnzoo.pipeline import ArrayBatches
from cnnzoo.report import plot_confusion, plot_curves


@dataclass(frozen=True)
class Recipe:
    """Per-model training defaults, chosen on the validation split (never the test split)."""

    epochs: int = 20
    batch_size: int = 32
    lr: float = 1e-3  # Adam's peak learning rate, decayed to 0 on a cosine over the run
    warmup: float = 0.0  # epochs of linear learning-rate warm-up from 0 before the cosine
    weight_decay: float = 0.0  # decoupled (AdamW-style) decay per step, times the learning rate
    # BatchNormalization momentum while training. Keras' 0.99 averages over ~100 steps: on a
    # small dataset (~29 steps an epoch for signs) the moving statistics lag the weights, and
    # ResNet-50's validation accuracy stayed at 13-18% through 14 epochs while training
    # accuracy reached 86%; at 0.9 (PyTorch's default) it reached 88% in 6 epochs.
    bn_momentum: float = 0.9
    # ResNets only: start every residual branch at zero (its last BN scale), so that each block
    # begins as its shortcut and a very deep v1 network trains like a shallow one at first.
    zero_init_residual: bool = False


_BOTTLENECK_V1 = Recipe(epochs=30, batch_size=32, lr=5e-4, warmup=2)  # ResNet-50/101/152, see below
RECIPES = {
    # Chosen on smiles' validation split (with its default augmentation, mirror + shift):
    # mirroring alone overfits (24 epochs: train 95.7%, validation plateau 90.9%; weight
    # decay 0.1 did not change that: 91.1% at epoch 13); with shifts, validation reached
    # 91.4% (loss 0.220, the lowest) at epoch 14 of 16 while training accuracy (89.9%)
    # was still below it, so the run is longer.
    "happy": Recipe(epochs=24, batch_size=32, lr=1e-3),
    # Chosen on signs' validation split: at lr 1e-3 without warm-up, training accuracy fell
    # back to 48-54% twice in the first 12 epochs and the best validation loss was 0.072
    # (epoch 30); at 5e-4 with 2 warm-up epochs it was 0.037 by epoch 13.
    "resnet50": _BOTTLENECK_V1,
    # The deeper v1 ResNets fail the same way on signs. resnet101 at the default recipe (1e-3,
    # no warm-up, 20 epochs): training accuracy fell from 53% to 32% at epoch 6 (seed 1), and 2
    # of 3 seeds ended at 77% and 85% training accuracy, best validation accuracy 85% and 88%
    # (seed 0: 100%).
    "resnet101": _BOTTLENECK_V1,
    # resnet152 on signs with resnet50's recipe learned slowly (training accuracy 20% at epoch 3,
    # 81% at epoch 30, still climbing; test accuracy 81% and 90%). With every residual branch
    # zero-initialised it reached 78% at epoch 3 and 99% from epoch 18 (docs/RESULTS.md).
    "resnet152": dataclasses.replace(_BOTTLENECK_V1, zero_init_residual=True),
    # AlexNet has no batch normalisation: at Adam 1e-3 it never left chance on signs
    # (training and validation accuracy 15-18% for 20 epochs).
    "alexnet": Recipe(lr=1e-4),
    # VGG has none either. vgg16 on signs at Adam 1e-3 from He-normal kernels: the loss rose to
    # 13 in the first epoch and training accuracy stayed at 17% (every ReLU dead); at 1e-4 it
    # left chance at epoch 4. vgg19 at 1e-4 left it only at epoch 7-10 (3 seeds): 95.6% ± 3.1%.
    "vgg16": Recipe(lr=1e-4),
    "vgg19": Recipe(lr=1e-4),
}
DEFAULT_RECIPE = Recipe()


def recipe_for(model: str) -> Recipe:
    return RECIPES.get(model, DEFAULT_RECIPE)

SCHEDULES = ("cosine", "constant")
PRECISIONS = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}


@dataclass(frozen=True)
class TrainConfig:
    model: str  # registered model name (`cnnzoo models`)
    dataset: str  # registered dataset, folder:PATH or h5:TRAIN.h5[,TEST.h5]
    epochs: int | None = None  # None: the model's recipe
    batch_size: int | None = None  # None: the model's recipe
    lr: float | None = None  # None: the model's recipe
    warmup: float | None = None  # epochs of linear warm-up (cosine schedule); None: the recipe
    augment: str | None = None  # comma-separated cnnzoo.augment names; None: the dataset's default
    weight_decay: float | None = None  # decoupled weight decay; None: the recipe
    bn_momentum: float | None = None  # BatchNormalization momentum; None: the recipe (0.99 = Keras')
    zero_init_residual: bool | None = None  # ResNets: start every residual branch at zero; None: the recipe
    seed: int = 0  # weights, shuffling and augmentation; the data splits never change
    validation: float = 0.1  # share of the training images held out to pick the best epoch
    image_size: int | None = None  # side of the square input; None: the model's default input
    init: str | None = None  # run folder, .keras or Keras .h5 to start from (layers matched by name)
    freeze: bool = False  # keep the layers copied from `init` fixed: train only the new ones
    train_fraction: float = 1.0  # train on this share of the training images (per class, nested)
    precision: str = "auto"  # fp32 | bf16 | fp16; auto = bf16 on a GPU, fp32 on a CPU
    schedule: str = "cosine"  # cosine decay to 0 over the run, or "constant" (the course's Adam)
    devices: str = "1"  # "all" or N: data-parallel over N devices (JAX); batch_size is global
    # folder:PATH only: decode the images per batch in background threads (cnnzoo.streaming)
    # instead of decoding and caching them all first; the test split is decoded at the end.
    stream: bool = False
    out: str | None = None  # run folder; None: runs/{model}-{dataset}-s{seed}

    def resolved(self) -> "TrainConfig":
        """Fill every None/auto from the model's recipe and the device."""
        recipe = recipe_for(self.model)
        precision = self.precision
        if precision == "auto":
            precision = "bf16" if backend.has_accelerator() else "fp32"
        if precision not in PRECISIONS:
            raise UserError(f"Unknown precision {precision!r}: use one of {', '.join(PRECISIONS)} or auto.")
        if self.schedule not in SCHEDULES:
            raise UserError(f"Unknown schedule {self.schedule!r}: use one of {', '.join(SCHEDULES)}.")
        if not 0 < self.train_fraction <= 1:
            raise UserError(f"train_fraction must be in (0, 1]: the share of training images to use. "
                            f"Received: {self.train_fraction!r}")
        if self.freeze and not self.init:
            raise UserError("freeze keeps the layers copied from init fixed: give init (a run folder, "
                            ".keras or .h5 file) too.")
        if self.image_size is not None and self.image_size < 1:
            raise UserError(f"image_size must be a positive number of pixels. Received: {self.image_size!r}")
        if self.stream:
            _check_stream(self)
        zero_init_residual = recipe.zero_init_residual if self.zero_init_residual is None else self.zero_init_residual
        if zero_init_residual:
            _check_residual(self.model)
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.dataset).strip("_")
        return dataclasses.replace(
            self,
            epochs=self.epochs or recipe.epochs,
            batch_size=self.batch_size or recipe.batch_size,
            lr=self.lr or recipe.lr,
            warmup=recipe.warmup if self.warmup is None else self.warmup,
            bn_momentum=self.bn_momentum or recipe.bn_momentum,
            zero_init_residual=zero_init_residual,
            weight_decay=recipe.weight_decay if self.weight_decay is None else self.weight_decay,
            augment=",".join(augment.parse(augment.default_for(self.dataset) if self.augment is None else self.augment)),
            precision=precision,
            out=self.out or f"runs/{self.model}-{slug}-s{self.seed}",
        )


def _check_stream(config: TrainConfig) -> None:
    if not config.dataset.startswith("folder:"):
        raise UserError(f"Only image folders can be streamed, and {config.dataset} is not one: give "
                        "folder:PATH, or train without stream (--stream).")
    if config.augment and "pca" in augment.parse(config.augment):
        raise UserError("PCA colour augmentation needs every training image in memory for its colour "
                        "basis: train without stream (--stream), or choose other augmentations.")


def _check_residual(model: str) -> None:
    """Refuse zero_init_residual before any data loads for a network without residual
    branches: the builders of the ResNets take it, and their plain twins have no shortcut."""
    parameters = inspect.signature(model_info(model).builder).parameters
    shortcut = parameters.get("shortcut")
    if "zero_init_residual" not in parameters or (shortcut is not None and shortcut.default is None):
        raise UserError(f"zero_init_residual starts every residual branch at zero, and {model} has no "
                        "residual branches: use it with a ResNet, or leave it off.")


def output_units(model_classes: int, dataset_classes: int) -> int:
    """A one-unit (sigmoid) model keeps one unit on two-class data; otherwise one per class."""
    return 1 if model_classes == 1 and dataset_classes == 2 else dataset_classes


def _batch_norms(model: keras.Model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _batch_norms(layer)
        elif isinstance(layer, keras.layers.BatchNormalization):
            yield layer


def build_training_model(name: str, image_shape, classes: int, recipe: Recipe = DEFAULT_RECIPE, *,
                         augmentations=(), train_images=None) -> keras.Model:
    """uint8 pixels -> Rescaling(1/255) -> [augmentation] -> the registered architecture.

    Augmentation layers (cnnzoo.augment names) are active only in training; at inference they
    pass images through. `train_images` give PCA colour augmentation its basis. The recipe's
    BN momentum is set on the architecture's layers (and saved with them); its
    `zero_init_residual` goes to the builder (ResNets), only when set.
    """
    options = {"zero_init_residual": True} if recipe.zero_init_residual else {}
    arch = model_info(name).build(input_shape=tuple(image_shape), classes=classes, **options)
    for layer in _batch_norms(arch):
        layer.momentum = recipe.bn_momentum
    pixels = keras.Input(tuple(image_shape), dtype="uint8", name="pixels")
    x = keras.layers.Rescaling(1 / 255, name="scale")(pixels)
    for layer in augment.layers_for(augmentations, train_images):
        x = layer(x)
    return keras.Model(pixels, arch(x), name=f"cnnzoo_{name}")


def compile_for(model: keras.Model, config: TrainConfig, steps: int) -> None:
    units = model.outputs[0].shape[-1]
    loss = "binary_crossentropy" if units == 1 else "sparse_categorical_crossentropy"
    heads = len(model.outputs)
    lr = config.lr
    if config.schedule == "cosine":
        warmup_steps = round(steps * (config.warmup or 0))
        lr = keras.optimizers.schedules.CosineDecay(
            0.0 if warmup_steps else config.lr, decay_steps=max(1, steps * config.epochs - warmup_steps),
            warmup_target=config.lr if warmup_steps else None, warmup_steps=warmup_steps,
        )
    model.compile(
        optimizer=keras.optimizers.Adam(lr, weight_decay=config.weight_decay or None),
        loss=[loss] * heads if heads > 1 else loss,
        # Auxiliary classifiers (GoogLeNet) count 0.3 each, as in the paper.
        loss_weights=[1.0] + [0.3] * (heads - 1) if heads > 1 else None,
        metrics=[["accuracy"]] + [[] for _ in range(heads - 1)] if heads > 1 else ["accuracy"],
    )


def _targets(y: np.ndarray, model: keras.Model):
    y = y.astype("float32").reshape(-1, 1) if model.outputs[0].shape[-1] == 1 else y
    return tuple([y] * len(model.outputs)) if len(model.outputs) > 1 else y


def _prepare_folder(config: TrainConfig, resume: bool) -> tuple[TrainConfig, Path]:
    run = Path(config.out)
    if resume:
        stored = runs.read_config(run)
        return TrainConfig(**stored["train"]), run
    if (run / runs.CONFIG).exists():
        raise UserError(
            f"The run folder {run} already holds a run: continue it with --resume, or choose "
            "another folder with --out."
        )
    run.mkdir(parents=True, exist_ok=True)
    return config, run


def train(config: TrainConfig, *, resume: bool = False, verbose="auto", callbacks=()) -> dict:
    """Train, keep the best epoch, evaluate it on the test split; return metrics.json's dict.

    `callbacks` (Keras callbacks) run in `fit` after cnnzoo's own, which records the run;
    one that sets `model.stop_training` ends it early, still evaluated and written."""
    from cnnzoo.datasets import load

    config, run = _prepare_folder(config.resolved(), resume)
    # Checked before the data loads, from the stored config when resuming.
    scope, device_count = distribute.data_parallel(config.devices, config.batch_size)
    info = model_info(config.model)
    height, width, channels = info.input_shape
    if config.image_size:
        height = width = config.image_size
    if config.stream:
        data = streaming.folder_files(config.dataset, image_size=(height, width), channels=channels,
                                      validation=config.validation)
    else:
        data = load(config.dataset, image_size=(height, width), channels=channels, validation=config.validation)
    if config.train_fraction < 1:
        data = training_subset(data, config.train_fraction)
    classes = output_units(info.classes, len(data.class_names))
    keras.utils.set_random_seed(config.seed)
    torch_speed.apply()
    keras.mixed_precision.set_global_policy(PRECISIONS[config.precision])
    started = time.perf_counter()
    with scope:
        _fit(run, config, data, classes, resume, verbose, device_count, callbacks)
    if config.stream:
        data = dataclasses.replace(data, test=data.decode(data.test))  # evaluated as arrays
    # Evaluation runs on one device, outside the distribution: the test set's last batch
    # need not split evenly.
    return finish_run(run, config, data, time.perf_counter() - started, device_count)


def training_subset(data, fraction: float):
    """`data` with `fraction` of each class's training images, picked by a hash of their
    file keys: the 10% subset is inside the 30% one, whatever the seed (the validation and
    test splits are unchanged)."""
    from cnnzoo.datasets.splits import held_out

    keep = held_out(data.train.keys, data.train.labels, fraction, "cnnzoo-subset")
    # Every field of the split (pixels or file paths, labels, keys) is one entry per image.
    subset = dataclasses.replace(data.train, **{f.name: getattr(data.train, f.name)[keep]
                                                for f in dataclasses.fields(data.train)})
    return dataclasses.replace(data, train=subset)


def _fit(run: Path, config: TrainConfig, data, classes: int, resume: bool, verbose, device_count: int,
         callbacks=()) -> None:
    # A run stored before zero_init_residual existed (None) was built without it.
    recipe = dataclasses.replace(recipe_for(config.model), bn_momentum=config.bn_momentum,
                                 zero_init_residual=bool(config.zero_init_residual))

    if resume and (run / runs.LAST).exists():
        model = keras.saving.load_model(run / runs.LAST)  # weights and optimizer state
    else:
        model = build_training_model(config.model, data.image_shape, classes, recipe, augmentations=config.augment,
                                     train_images=None if config.stream else data.train.x)
        if config.init:
            transfer.initialise(model, config.init, freeze=config.freeze)
        compile_for(model, config, steps=int(np.ceil(len(data.train) / config.batch_size)))
    if not resume:
        atomic.write_json(run / runs.CONFIG, {
            "train": dataclasses.asdict(config), "recipe": dataclasses.asdict(recipe),
            "class_names": list(data.class_names), "preprocessing": data.preprocessing,
            "output_units": classes,
        })

    history = runs.read_history(run)
    done = len(history.get("epoch", []))
    if done >= config.epochs:
        return

    def batches_of(split, **options):
        """Batches of one split: from its arrays, or decoded from its files (stream)."""
        if config.stream:
            return data.batches(split, config.batch_size, y=_targets(split.y, model), **options)
        return ArrayBatches(split.x, _targets(split.y, model), config.batch_size, **options)

    batches = batches_of(data.train, shuffle=True, seed=config.seed, epoch=done, full_batches=device_count > 1)
    validation = None
    if data.val is not None:
        validation = batches_of(data.val, shuffle=False, pad_to=device_count)
    if config.stream:  # so that fit's first epoch holds no batch decoded for another epoch's order
        streaming.build_before_fit(model, batches)
    model.fit(
        batches, epochs=config.epochs, initial_epoch=done, validation_data=validation,
        callbacks=[runs.RunRecorder(run, history, "val_accuracy" if validation else "accuracy"), *callbacks],
        verbose=verbose,
        # The batches already come in the order of (seed, epoch); Keras' own shuffle of the
        # batch order draws from Python's `random`, which a resumed session reseeds.
        shuffle=False,
    )


def finish_run(run: Path, config: TrainConfig, data, wall: float, device_count: int = 1) -> dict:
    """Evaluate the best model on the test split and write metrics.json and the pictures."""
    history = runs.read_history(run)
    best = keras.saving.load_model(run / runs.BEST)
    test = classification_metrics(data.test.y, predict_proba(best, data.test.x), data.class_names)
    epoch_times = history.get("epoch_time", [])
    metrics = {
        "run": str(run),
        "model": config.model,
        "dataset": config.dataset,
        "test": test,
        "best_epoch": runs.best_epoch(history),
        "epochs": len(epoch_times),
        "train_images": len(data.train),
        "wall_time_s": round(sum(epoch_times), 2),
        "session_time_s": round(wall, 2),
        "images_per_s": round(len(data.train) / float(np.median(epoch_times)), 1) if epoch_times else None,
        "backend": keras.backend.backend(),
        "devices": backend.devices(),
        "data_parallel_devices": device_count,
        "precision": config.precision,
        "versions": backend.versions(),
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    atomic.write_json(run / runs.METRICS, metrics)
    title = f"{config.model} on {config.dataset}"
    plot_curves(history, run / runs.CURVES, title)
    plot_confusion(test["confusion_matrix"], data.class_names, run / runs.CONFUSION,
                   f"{title}: test accuracy {test['accuracy']:.1%}")
    return metrics

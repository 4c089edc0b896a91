"""The fit recipe: from a TrainConfig to a complete run folder.

Images stay uint8 in memory; the model itself scales them (a Rescaling layer in front of
the architecture), so scaling and casting run inside the training step on the device and
the saved model carries its own preprocessing: predict feeds it plain pixels.
"""

from __future__ import annotations

import dataclasses
import datetime
import time
from pathlib import Path

import keras
import numpy as np

from cnnzoo import _io
from cnnzoo.analysis import robustness
from cnnzoo.analysis.metrics import calibration, classification_metrics, predict_proba
from cnnzoo.analysis.report import plot_confusion, plot_curves, plot_reliability
from cnnzoo.backends import devices, distribute, torch_speed, versions
from cnnzoo.datasets.batches import build_before_fit
from cnnzoo.errors import UserError
from cnnzoo.models import Recipe, augment, model_info
from cnnzoo.models.saving import load_model
from cnnzoo.models.weights.preprocessing import ImagePreprocessing
from cnnzoo.training import runs, transfer
from cnnzoo.training.config import HOW_TO_RUN, PRECISIONS, TrainConfig


def output_units(model_classes: int, dataset_classes: int) -> int:
    """A one-unit (sigmoid) model keeps one unit on two-class data; otherwise one per class."""
    return 1 if model_classes == 1 and dataset_classes == 2 else dataset_classes


def _batch_norms(model: keras.Model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _batch_norms(layer)
        elif isinstance(layer, keras.layers.BatchNormalization):
            yield layer


def build_training_model(name: str, image_shape, classes: int, recipe: Recipe = Recipe(), *,
                         augmentations=(), train_images=None, aux_logits: bool = False,
                         preprocessing: str | None = None) -> keras.Model:
    """uint8 pixels -> Rescaling(1/255) -> [augmentation] -> [preprocessing] -> the registered architecture.

    Augmentation layers (cnnzoo.models.augment names) are active only in training; at
    inference they pass images through. `train_images` give PCA colour augmentation its basis.
    The recipe's BN momentum is set on the architecture's layers (and saved with them); its
    `zero_init_residual` goes to the builder (ResNets), only when set, as does `aux_logits`
    (the auxiliary classifiers of a network that has them: extra outputs after the main one).
    `preprocessing` (an ImagePreprocessing mode) is the input convention of published weights
    the model starts from: after the augmentation, which works on [0, 1] images.
    """
    options = {"zero_init_residual": True} if recipe.zero_init_residual else {}
    if aux_logits:
        options["aux_logits"] = True
    arch = model_info(name).build(input_shape=tuple(image_shape), classes=classes, **options)
    for layer in _batch_norms(arch):
        layer.momentum = recipe.bn_momentum
    pixels = keras.Input(tuple(image_shape), dtype="uint8", name="pixels")
    x = keras.layers.Rescaling(1 / 255, name="scale")(pixels)
    for layer in augment.layers_for(augmentations, train_images):
        x = layer(x)
    if preprocessing:
        x = ImagePreprocessing(preprocessing, name="preprocess")(x)
    outputs = arch(x)
    if len(arch.outputs) > 1:  # keep the heads' names (predictions, aux1, ...) for the losses and metrics
        outputs = [keras.layers.Identity(name=head)(out) for head, out in zip(arch.output_names, outputs)]
    return keras.Model(pixels, outputs, name=f"cnnzoo_{name}")


def compile_for(model: keras.Model, config: TrainConfig, steps: int) -> None:
    """The config's optimizer on its schedule; the loss of each output, auxiliary heads weighted
    as their network's registry entry says (GoogLeNet: 0.3 each, as in the paper)."""
    units = model.outputs[0].shape[-1]
    loss = "binary_crossentropy" if units == 1 else "sparse_categorical_crossentropy"
    aux_weights = list(model_info(config.model).aux_loss_weights) if len(model.outputs) > 1 else []
    lr = config.lr
    if config.schedule == "cosine":
        warmup_steps = round(steps * (config.warmup or 0))
        lr = keras.optimizers.schedules.CosineDecay(
            0.0 if warmup_steps else config.lr, decay_steps=max(1, steps * config.epochs - warmup_steps),
            warmup_target=config.lr if warmup_steps else None, warmup_steps=warmup_steps,
        )
    model.compile(
        optimizer=_optimizer(config.optimizer, lr, config.weight_decay or None),
        loss=[loss] * (1 + len(aux_weights)) if aux_weights else loss,
        loss_weights=[1.0, *aux_weights] if aux_weights else None,
        # Weighted: the zero-weight copies that pad a multi-device evaluation batch must not count.
        weighted_metrics=[["accuracy"]] + [[] for _ in aux_weights] if aux_weights else ["accuracy"],
    )


def _optimizer(name: str | None, lr, weight_decay: float | None) -> keras.optimizers.Optimizer:
    """Adam, or SGD with Nesterov momentum 0.9 (the momentum of torchvision's and timm's SGD
    recipes). A run stored before the setting existed (None) trained with Adam."""
    if name == "sgd":
        return keras.optimizers.SGD(lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    return keras.optimizers.Adam(lr, weight_decay=weight_decay)


def _targets(y: np.ndarray, model: keras.Model):
    y = y.astype("float32").reshape(-1, 1) if model.outputs[0].shape[-1] == 1 else y
    return tuple([y] * len(model.outputs)) if len(model.outputs) > 1 else y


def _prepare_folder(requested: TrainConfig, resume: bool) -> tuple[TrainConfig, Path]:
    """The run's config and folder: a new run's (the folder is made once data and model are
    ready), or, with resume, the stored run's own config, which the request may not change."""
    requested.check()
    run = Path(requested.out or requested.resolved().out)
    if resume:
        stored = TrainConfig(**runs.read_config(run)["train"])
        for name, value in requested.explicit().items():
            if name not in HOW_TO_RUN and getattr(stored, name) != value:
                raise UserError(
                    f"--resume continues {run} with the settings it was started with ({name}="
                    f"{getattr(stored, name)!r}), and cannot change {name} to {value!r}: resume without it, or "
                    f"start a new run with --out (--init {run} starts it from this run's weights)."
                )
        return stored, run
    if run.exists() and not run.is_dir():
        raise UserError(f"The run folder {run} is a file: choose a folder with --out.")
    if (run / runs.CONFIG).exists():
        raise UserError(
            f"The run folder {run} already holds a run: continue it with --resume, or choose "
            "another folder with --out."
        )
    return requested.resolved(), run


def _make_folder(run: Path) -> list[Path]:
    """Create the run folder (and its missing parents); return the folders created."""
    missing = [folder for folder in (run, *run.parents) if not folder.exists()][::-1]
    try:
        run.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"Cannot create the run folder {run} ({error.strerror or error}): choose a writable "
                        "place with --out.") from None
    return missing


def train(config: TrainConfig, *, resume: bool = False, verbose="auto", callbacks=()) -> dict:
    """Train, keep the best epoch, evaluate it on the test split; return metrics.json's dict.

    `callbacks` (Keras callbacks) run in `fit` after cnnzoo's own, which records the run;
    one that sets `model.stop_training` ends it early, still evaluated and written. A run that
    fails before its first file is written leaves no folder behind."""
    if distribute.process()[0] != 0:  # in a multi-process job only process 0 writes the run folder
        return _train_quietly(config, resume, verbose, callbacks)
    config, run = _prepare_folder(config, resume)
    created = [] if resume else _make_folder(run)
    try:
        return _train(config, run, resume, verbose, callbacks)
    except BaseException:
        if not (run / runs.CONFIG).exists():
            for folder in reversed(created):  # only the empty ones this call made
                try:
                    folder.rmdir()
                except OSError:
                    break
        raise


def _train_quietly(config: TrainConfig, resume: bool, verbose, callbacks) -> dict:
    """A process other than 0 of a job: the same steps, no files (process 0 checks the folder and
    writes it; resuming reads the run folder, which must then be shared)."""
    config.check()
    run = Path(config.out or config.resolved().out)
    config = TrainConfig(**runs.read_config(run)["train"]) if resume else config.resolved()
    _train(config, run, resume, verbose, callbacks, write=False)
    index, count = distribute.process()
    return {"run": str(run), "test": None, "process": index, "processes": count}


def _train(config: TrainConfig, run: Path, resume: bool, verbose, callbacks, write: bool = True) -> dict:
    from cnnzoo.datasets import load

    # Checked before the data loads, from the stored config when resuming.
    scope, device_count = distribute.data_parallel(config.devices, config.batch_size)
    info = model_info(config.model)
    height, width, channels = info.input_shape
    if config.image_size:
        height = width = config.image_size
    data = load(config.dataset, image_size=(height, width), channels=channels, validation=config.validation,
                skip_bad=config.skip_bad, stream=config.stream, max_pixels=round(config.max_megapixels * 1e6),
                split_by=config.split_by)
    if config.train_fraction < 1:
        data = training_subset(data, config.train_fraction)
    classes = output_units(info.classes, len(data.class_names))
    keras.utils.set_random_seed(config.seed)
    torch_speed.apply()
    keras.mixed_precision.set_global_policy(PRECISIONS[config.precision])
    started = time.perf_counter()
    with scope:
        _fit(run, config, data, classes, resume, verbose, device_count, callbacks, write)
    if not write:
        return {}
    # Evaluation runs on one device, outside the distribution: the test set's last batch
    # need not split evenly.
    return finish_run(run, config, data, time.perf_counter() - started, device_count)


def training_subset(data, fraction: float):
    """`data` with `fraction` of each class's training images, picked by a hash of their
    file keys: the 10% subset is inside the 30% one, whatever the seed (the validation and
    test splits are unchanged)."""
    from cnnzoo.datasets.splits import held_out

    keep = held_out(data.train.keys, data.train.labels, fraction, "cnnzoo-subset")
    return dataclasses.replace(data, train=data.train.take(keep))


def _fit(run: Path, config: TrainConfig, data, classes: int, resume: bool, verbose, device_count: int,
         callbacks=(), write: bool = True) -> None:
    # A run stored before zero_init_residual existed (None) was built without it.
    recipe = dataclasses.replace(model_info(config.model).recipe, bn_momentum=config.bn_momentum,
                                 zero_init_residual=bool(config.zero_init_residual))

    if resume and (run / runs.LAST).exists():
        model = load_model(run / runs.LAST)  # weights and optimizer state
        augment.allow_jit(model)
    else:
        in_memory = isinstance(data.train.x, np.ndarray)  # a streamed folder is decoded per batch
        start = transfer.read_start(config.init, arch=config.model) if config.init else None
        model = build_training_model(config.model, data.image_shape, classes, recipe, augmentations=config.augment,
                                     train_images=data.train.x if in_memory else None,
                                     aux_logits=config.aux_logits,
                                     preprocessing=start.preprocessing if start else None)
        if start:
            transfer.initialise(model, start, freeze=config.freeze)
        augment.allow_jit(model)
        compile_for(model, config, steps=int(np.ceil(len(data.train) / config.batch_size)))
    if write and not resume:
        _io.write_json(run / runs.CONFIG, {
            "train": dataclasses.asdict(config), "recipe": dataclasses.asdict(recipe),
            "class_names": list(data.class_names), "preprocessing": data.preprocessing,
            "output_units": classes,
        })

    history = runs.resumable_history(run)
    done = len(history.get("epoch", []))
    if done >= config.epochs:
        return
    batches = data.train.batches(config.batch_size, y=_targets(data.train.y, model), shuffle=True, seed=config.seed,
                                 epoch=done, full_batches=device_count > 1, part=distribute.process())
    validation = None
    if data.val is not None:
        validation = data.val.batches(config.batch_size, y=_targets(data.val.y, model), shuffle=False,
                                      pad_to=device_count, part=distribute.process())
    build_before_fit(model, batches)
    model.fit(
        batches, epochs=config.epochs, initial_epoch=done, validation_data=validation,
        callbacks=[*distribute.step_callbacks(device_count),
                   runs.RunRecorder(run, history, "val_accuracy" if validation else "accuracy", write=write),
                   *callbacks],
        verbose=verbose,
        # The batches already come in the order of (seed, epoch); Keras' own shuffle of the
        # batch order draws from Python's `random`, which a resumed session reseeds.
        shuffle=False,
    )


def finish_run(run: Path, config: TrainConfig, data, wall: float, device_count: int = 1) -> dict:
    """Evaluate the best model on the test split and write metrics.json and the pictures."""
    history = runs.read_history(run)
    best = load_model(run / runs.BEST)
    test_split = data.test.in_memory()  # a streamed folder's test images are decoded now
    proba = predict_proba(best, test_split.x)
    test = classification_metrics(test_split.y, proba, data.class_names)
    curves = {"clean": calibration(test_split.y, proba)}
    test["ece"] = curves["clean"]["ece"]
    shifted = None
    if config.robustness_images:  # how it does on images unlike its training source
        shifted, curves["shifted"] = robustness.report(
            lambda images: predict_proba(best, images), test_split.x, test_split.labels, keys=test_split.keys,
            limit=config.robustness_images, plain_background=robustness.plain_background(config.dataset))
    epoch_times = history.get("epoch_time", [])
    metrics = {
        "run": str(run),
        "model": config.model,
        "dataset": config.dataset,
        "test": test,
        "robustness": shifted,
        "best_epoch": runs.best_epoch(history),
        "epochs": len(epoch_times),
        "train_images": len(data.train),
        "wall_time_s": round(sum(epoch_times), 2),
        "session_time_s": round(wall, 2),
        "images_per_s": round(len(data.train) / float(np.median(epoch_times)), 1) if epoch_times else None,
        "backend": keras.backend.backend(),
        "devices": devices(),
        "data_parallel_devices": device_count,
        "precision": config.precision,
        "versions": versions(),
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if data.skipped:
        metrics["skipped"] = {"count": len(data.skipped), "files": list(data.skipped)}
    _io.write_json(run / runs.METRICS, metrics)
    title = f"{config.model} on {config.dataset}"
    plot_curves(history, run / runs.CURVES, title)
    plot_confusion(test["confusion_matrix"], data.class_names, run / runs.CONFUSION,
                   f"{title}: test accuracy {test['accuracy']:.1%}")
    plot_reliability(curves, run / runs.RELIABILITY, f"{title}: reliability on the test split, clean and shifted")
    return metrics

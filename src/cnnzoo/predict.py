"""Use a trained model: predict image files, evaluate on a dataset split.

A run folder (or a model file inside one) brings its class names and preprocessing from
config.json; a bare file falls back to class indices. cnnzoo's own models scale pixels
themselves; any other model (e.g. the course's ResNet50.h5) gets pixels / 255, the
course's convention.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnzoo import runs
from cnnzoo.errors import UserError
from cnnzoo.evaluate import check_classes, classification_metrics, predict_proba
from cnnzoo.modelio import load_model, takes_raw_pixels


def run_config(model_file) -> dict:
    """config.json of the run a model file belongs to, or {} for a bare file."""
    folder = Path(model_file) if Path(model_file).is_dir() else Path(model_file).parent
    return runs.read_config(folder) if (folder / runs.CONFIG).exists() else {}


def input_geometry(model, default=(64, 64, 3)) -> tuple[int, int, int]:
    """(height, width, channels) the model takes; unknown dimensions fall back to `default`."""
    from cnnzoo.models.common import spatial_dims
    import keras

    shape = tuple(model.inputs[0].shape[1:])
    channels = shape[-1] if keras.config.image_data_format() == "channels_last" else shape[0]
    height, width = spatial_dims(shape)
    return height or default[0], width or default[1], channels or default[2]


def _load(model_file, arch, unsafe, input_shape=None):
    kwargs = {"input_shape": input_shape} if input_shape else {}
    return load_model(model_file, unsafe=unsafe, arch=arch, **kwargs)


def predict_files(model_file, images, *, arch=None, unsafe=False, input_shape=None) -> list[dict]:
    """For each image: predicted class, its index and the probability vector."""
    from cnnzoo.datasets import read_image

    model = _load(model_file, arch, unsafe, input_shape)
    config = run_config(model_file)
    height, width, channels = input_geometry(model)
    resize = config.get("preprocessing", {}).get("resize", "resize")  # as in training
    batch = np.stack([read_image(path, (height, width), channels, resize=resize) for path in images])
    sigmoid = model.outputs[0].shape[-1] == 1
    proba = predict_proba(model, batch, scale_pixels=not takes_raw_pixels(model))
    names = config.get("class_names") or [str(k) for k in range(proba.shape[1])]
    check_classes(proba.shape[1], names, str(model_file))
    return [
        {"file": str(path), "class": names[int(p.argmax())], "index": int(p.argmax()),
         "probabilities": [float(v) for v in p], "class_names": names, "sigmoid": sigmoid}
        for path, p in zip(images, proba)
    ]


def format_prediction(prediction: dict) -> str:
    """One line, as the course prints it: the class and [p(0) ... p(K-1)]."""
    p = prediction["probabilities"]
    if prediction["sigmoid"]:
        positive = prediction["class_names"][1]
        return f"{prediction['file']}: p({positive}) = {p[1]:.4f} -> {prediction['class']}"
    vector = " ".join(f"{v:.4f}" for v in p)
    return f"{prediction['file']}: {prediction['class']} (p = {max(p):.4f})  [{vector}]"


def evaluate_models(model_files, *, dataset=None, split="test", tta="none", out=None, confusion=None,
                    mistakes=None, arch=None, unsafe=False) -> dict:
    """Metrics of one model, or of the ensemble of several (their probabilities averaged),
    on a dataset split (default: the first run's dataset), optionally averaged over test-time
    views (cnnzoo.tta). With `out`, writes out/metrics.json and out/confusion.png; `mistakes`,
    a picture of the most confidently wrong images."""
    from cnnzoo import atomic, tta as test_time
    from cnnzoo.datasets import load
    from cnnzoo.report import picture_path, plot_confusion, plot_mistakes

    if split not in ("test", "val", "train"):
        raise UserError(f"Unknown split {split!r}: use test, val or train.")
    test_time.check_mode(tta)  # before any model or data is loaded
    if mistakes:
        picture_path(mistakes)
    models = [_load(path, arch, unsafe) for path in model_files]
    config = run_config(model_files[0])
    dataset = dataset or config.get("train", {}).get("dataset")
    if dataset is None:
        raise UserError(f"{model_files[0]} is not inside a run folder: name the dataset with --dataset.")
    geometry = input_geometry(models[0])
    for path, model in zip(model_files[1:], models[1:]):
        if input_geometry(model) != geometry:
            raise UserError(f"{path} takes {input_geometry(model)} images but {model_files[0]} takes {geometry}: "
                            "an ensemble needs models of one input size.")
    validation = config.get("train", {}).get("validation", 0.1 if split == "val" else 0.0)
    data = load(dataset, image_size=geometry[:2], channels=geometry[2], validation=validation)
    part = getattr(data, split)
    members = []
    for path, model in zip(model_files, models):
        scale = not takes_raw_pixels(model)
        proba = test_time.average_probabilities(lambda view: predict_proba(model, view, scale_pixels=scale),
                                                part.x, tta)
        check_classes(proba.shape[1], data.class_names, str(path))
        members.append(proba)
    proba = np.mean(members, axis=0)
    result = classification_metrics(part.y, proba, data.class_names)
    title = f"{Path(model_files[0]).name}{f' +{len(models) - 1}' if len(models) > 1 else ''} on {dataset} ({split})"
    if out:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        atomic.write_json(out / runs.METRICS, {
            "members": [str(p) for p in model_files], "dataset": dataset, "split": split, "tta": tta,
            split: result,
        })
        confusion = confusion or out / runs.CONFUSION
    if confusion:
        plot_confusion(result["confusion_matrix"], data.class_names, confusion, f"{title}: accuracy {result['accuracy']:.1%}")
    if mistakes:
        plot_mistakes(part.x, part.y, proba, data.class_names, mistakes, f"{title}: the most confident mistakes")
    return result

"""Use a trained model on image files: the predicted class and the probabilities.

A run folder (or a model file inside one) brings its class names and preprocessing from
config.json; a bare file falls back to class indices. cnnzoo's own models scale pixels
themselves; any other model (e.g. the course's ResNet50.h5) gets pixels / 255, the
course's convention.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnzoo.analysis.metrics import check_classes, predict_proba
from cnnzoo.datasets.images import MAX_PIXELS, read_image
from cnnzoo.models.saving import load_model, takes_raw_pixels
from cnnzoo.training import runs


def run_config(model_file) -> dict:
    """config.json of the run a model file belongs to, or {} for a bare file."""
    folder = Path(model_file) if Path(model_file).is_dir() else Path(model_file).parent
    return runs.read_config(folder) if (folder / runs.CONFIG).exists() else {}


def input_geometry(model, default=(64, 64, 3)) -> tuple[int, int, int]:
    """(height, width, channels) the model takes; unknown dimensions fall back to `default`."""
    from cnnzoo.models.layers import image_dims

    height, width, channels = image_dims(model.inputs[0].shape[1:])
    return height or default[0], width or default[1], channels or default[2]


def load_for_prediction(model_file, arch=None, unsafe=False, input_shape=None):
    """`load_model` with an optional input shape for a weights-only file."""
    kwargs = {"input_shape": input_shape} if input_shape else {}
    return load_model(model_file, unsafe=unsafe, arch=arch, **kwargs)


def predict_files(model_file, images, *, arch=None, unsafe=False, input_shape=None, max_pixels=MAX_PIXELS) -> list[dict]:
    """For each image: predicted class, its index and the probability vector; an image over
    `max_pixels` (width x height) is refused before it is decoded."""

    model = load_for_prediction(model_file, arch, unsafe, input_shape)
    config = run_config(model_file)
    height, width, channels = input_geometry(model)
    resize = config.get("preprocessing", {}).get("resize", "resize")  # as in training
    batch = np.stack([read_image(path, (height, width), channels, resize=resize, max_pixels=max_pixels)
                      for path in images])
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

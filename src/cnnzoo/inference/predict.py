"""Use a trained model on image files: the predicted class and the probabilities.

A run folder (or a model file inside one) brings its class names and preprocessing from
config.json; a model converted from published ImageNet weights (`cnnzoo weights convert`)
names its classes from the installed torchvision's ImageNet metadata; any other bare file
falls back to class indices. cnnzoo's own models scale pixels themselves; any other model
(e.g. the course's ResNet50.h5) gets pixels / 255, the course's convention. With more than
ten classes, the top five are printed instead of the whole vector.

The model may be a Keras file or an exported `.onnx` file (`OnnxModel`, on onnxruntime): the
helpers here (`load_for_prediction`, `model_config`, `input_geometry`, `takes_raw_pixels`)
are the one place that tells them apart, so evaluate and serve use either the same way. An
`.onnx` file is read without importing Keras.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnzoo.analysis.metrics import check_classes, predict_proba
from cnnzoo.datasets.images import MAX_PIXELS, read_image
from cnnzoo.inference.onnx_model import OnnxModel, is_onnx

TOP_K = 5  # classes printed for a model with more than MAX_VECTOR classes
MAX_VECTOR = 10


def run_config(model_file) -> dict:
    """config.json of the run a model file belongs to, or {} for a bare file."""
    from cnnzoo.training import runs

    folder = Path(model_file) if Path(model_file).is_dir() else Path(model_file).parent
    return runs.read_config(folder) if (folder / runs.CONFIG).exists() else {}


def model_config(model_file, model) -> dict:
    """What predict needs to know beyond the model: an exported file carries it in its
    metadata, a Keras file in its run's config.json."""
    return model.config if isinstance(model, OnnxModel) else run_config(model_file)


def input_geometry(model, default=(64, 64, 3)) -> tuple[int, int, int]:
    """(height, width, channels) the model takes; unknown dimensions fall back to `default`."""
    if isinstance(model, OnnxModel):
        return model.image_shape  # NHWC, whatever Keras' image format
    from cnnzoo.models.layers import image_dims

    height, width, channels = image_dims(model.inputs[0].shape[1:])
    return height or default[0], width or default[1], channels or default[2]


def takes_raw_pixels(model) -> bool:
    """True when the model takes uint8 pixels and scales them itself (cnnzoo runs, exported
    files), False for a model that takes [0, 1] inputs."""
    if str(model.inputs[0].dtype) == "uint8":
        return True
    from cnnzoo.models.saving import takes_raw_pixels as starts_with_rescaling

    return starts_with_rescaling(model)


def class_names(model, config: dict, width: int) -> list[str]:
    """The run's class names; ImageNet's for a model converted from ImageNet weights (read
    from torchvision's metadata when it is installed; never downloaded); else the indices."""
    if config.get("class_names"):
        return [str(c) for c in config["class_names"]]
    if not isinstance(model, OnnxModel):
        from cnnzoo.models.weights.preprocessing import input_convention

        convention = input_convention(model)
        if convention is not None and convention.labels == "imagenet" and width == 1000:
            from cnnzoo.backends.peers import imagenet_categories

            names = imagenet_categories()
            if names is not None:
                return names
    return [str(k) for k in range(width)]


def load_for_prediction(model_file, arch=None, unsafe=False, input_shape=None, threads=None):
    """`load_model` (with an optional input shape for a weights-only file), or an
    `OnnxModel` for a `.onnx` file (on `threads` onnxruntime threads; default: its own)."""
    if is_onnx(model_file):
        return OnnxModel(model_file, threads=threads)
    from cnnzoo.models.saving import load_model

    kwargs = {"input_shape": input_shape} if input_shape else {}
    return load_model(model_file, unsafe=unsafe, arch=arch, **kwargs)


def predict_files(model_file, images, *, arch=None, unsafe=False, input_shape=None, max_pixels=MAX_PIXELS,
                  faces: str = "auto", threshold: float = 0.5) -> list[dict]:
    """For each image: predicted class, its index and the probability vector; an image over
    `max_pixels` (width x height) is refused before it is decoded.

    With the face step (`faces`: auto follows the run's preprocessing, or on, off), each image's
    answer is its faces instead (box, probabilities, too small to judge) and, for a sigmoid model,
    the door's decision over them at `threshold` (cnnzoo.inference.faces)."""
    from cnnzoo.inference import faces as face_step

    model = load_for_prediction(model_file, arch, unsafe, input_shape)
    config = model_config(model_file, model)
    height, width, channels = input_geometry(model)
    preprocessing = config.get("preprocessing", {})
    resize = preprocessing.get("resize", "resize")  # as in training
    crop = face_step.face_crop(faces, preprocessing)
    sigmoid = model.outputs[0].shape[-1] == 1
    if crop is None:
        found = [[read_image(path, (height, width), channels, resize=resize, max_pixels=max_pixels)] for path in images]
    else:
        found = [face_step.read_faces(path, crop, (height, width), channels, resize, max_pixels) for path in images]
    arrays = [a for per_image in found for a in (per_image if crop is None else face_step.inputs(per_image))]
    proba = predict_proba(model, np.stack(arrays), scale_pixels=not takes_raw_pixels(model)) if arrays else None
    width_out = int(model.outputs[0].shape[-1])
    names = class_names(model, config, 2 if sigmoid else width_out)
    check_classes(2 if sigmoid else width_out, names, str(model_file))
    results, row = [], 0
    for path, per_image in zip(images, found):
        judged = len(per_image) if crop is None else len(face_step.inputs(per_image))
        rows, row = proba[row:row + judged] if judged else [], row + judged
        if crop is None:
            p = rows[0]
            results.append({"file": str(path), "class": names[int(p.argmax())], "index": int(p.argmax()),
                            "probabilities": [float(v) for v in p], "class_names": names, "sigmoid": sigmoid})
            continue
        rows = face_step.pooled(rows, per_image)
        listed = [{"box": list(face.box), "class": names[int(p.argmax())], "index": int(p.argmax()),
                   "probabilities": [float(v) for v in p], "too_small": face.too_small,
                   "whole_frame": face.whole_frame} for face, p in zip(per_image, rows)]
        result = {"file": str(path), "faces": listed, "class_names": names, "sigmoid": sigmoid}
        if sigmoid:
            result["door"], result["reason"] = face_step.door([f["probabilities"][1] for f in listed],
                                                              [f["too_small"] for f in listed], threshold)
        results.append(result)
    return results


def format_prediction(prediction: dict) -> str:
    """One line, as the course prints it: the class and [p(0) ... p(K-1)]; with the face step,
    a line per face and the door's decision."""
    if "faces" in prediction:
        return _format_faces(prediction)
    p = prediction["probabilities"]
    if prediction["sigmoid"]:
        positive = prediction["class_names"][1]
        return f"{prediction['file']}: p({positive}) = {p[1]:.4f} -> {prediction['class']}"
    if len(p) > MAX_VECTOR:
        best = np.argsort(p)[::-1][:TOP_K]
        ranked = ", ".join(f"{prediction['class_names'][k]} {p[k]:.4f}" for k in best)
        return f"{prediction['file']}: {prediction['class']} (p = {max(p):.4f}); top {TOP_K}: {ranked}"
    vector = " ".join(f"{v:.4f}" for v in p)
    return f"{prediction['file']}: {prediction['class']} (p = {max(p):.4f})  [{vector}]"


def _format_faces(prediction: dict) -> str:
    lines = []
    for k, face in enumerate(prediction["faces"], 1):
        x, y, w, h = face["box"]
        where = "the whole image (a face crop)" if face["whole_frame"] else f"at x={x} y={y}, {w}x{h}"
        p = face["probabilities"]
        if prediction["sigmoid"]:
            answer = f"p({prediction['class_names'][1]}) = {p[1]:.4f} -> {face['class']}"
        else:
            answer = f"{face['class']} (p = {max(p):.4f})"
        lines.append(f"{prediction['file']}: face {k} {where}: {answer}"
                     + (" (too small to judge)" if face["too_small"] else ""))
    if "door" in prediction:
        lines.append(f"{prediction['file']}: door {prediction['door']} ({prediction['reason']})")
    elif not prediction["faces"]:
        lines.append(f"{prediction['file']}: no face found")
    return "\n".join(lines)

"""Score trained models on a dataset split: one model or an ensemble, with or without
test-time views, with the confusion matrix and the most confident mistakes as pictures."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnzoo import _io
from cnnzoo.analysis import robustness as shift_suite
from cnnzoo.analysis.metrics import calibration, check_classes, classification_metrics, predict_proba
from cnnzoo.datasets.images import MAX_PIXELS
from cnnzoo.errors import UserError
from cnnzoo.inference import tta as test_time
from cnnzoo.inference.predict import (
    input_geometry,
    load_for_prediction,
    model_config,
    takes_raw_pixels,
)
from cnnzoo.training import runs


def evaluate_models(model_files, *, dataset=None, split="test", tta="none", out=None, confusion=None,
                    mistakes=None, arch=None, unsafe=False, skip_bad=False, max_pixels=MAX_PIXELS,
                    robustness: bool = False) -> dict:
    """Metrics of one model, or of the ensemble of several (their probabilities averaged),
    on a dataset split (default: the first run's dataset, split as the run was), optionally
    averaged over test-time views (cnnzoo.inference.tta), with the calibration error (ECE).
    `robustness` adds the robustness suite (cnnzoo.analysis.robustness): accuracy and ECE
    under every shift. With `out`, writes out/metrics.json, out/confusion.png and
    out/reliability.png; `mistakes`, a picture of the most confidently wrong images."""
    from cnnzoo.analysis.report import picture_path, plot_confusion, plot_mistakes, plot_reliability
    from cnnzoo.datasets import load

    if split not in ("test", "val", "train"):
        raise UserError(f"Unknown split {split!r}: use test, val or train.")
    test_time.check_mode(tta)  # before any model or data is loaded
    if mistakes:
        picture_path(mistakes)
    models = [load_for_prediction(path, arch, unsafe) for path in model_files]
    config = model_config(model_files[0], models[0])
    dataset = dataset or config.get("train", {}).get("dataset")
    if dataset is None:
        raise UserError(f"{model_files[0]} is not inside a run folder: name the dataset with --dataset.")
    geometry = input_geometry(models[0])
    for path, model in zip(model_files[1:], models[1:]):
        if input_geometry(model) != geometry:
            raise UserError(f"{path} takes {input_geometry(model)} images but {model_files[0]} takes {geometry}: "
                            "an ensemble needs models of one input size.")
    trained = config.get("train", {})
    validation = trained.get("validation", 0.1 if split == "val" else 0.0)
    data = load(dataset, image_size=geometry[:2], channels=geometry[2], validation=validation, skip_bad=skip_bad,
                max_pixels=max_pixels, split_by=trained.get("split_by", "file"))
    part = getattr(data, split)

    def predict(images: np.ndarray) -> np.ndarray:
        members = []
        for path, model in zip(model_files, models):
            scale = not takes_raw_pixels(model)
            proba = test_time.average_probabilities(lambda view: predict_proba(model, view, scale_pixels=scale),
                                                    images, tta)
            check_classes(proba.shape[1], data.class_names, str(path))
            members.append(proba)
        return np.mean(members, axis=0)

    proba = predict(part.x)
    result = classification_metrics(part.y, proba, data.class_names)
    curves = {"clean": calibration(part.y, proba)}
    result["ece"] = curves["clean"]["ece"]
    if robustness:
        result["robustness"], curves["shifted"] = shift_suite.report(
            predict, part.x, part.labels, plain_background=shift_suite.plain_background(dataset))
    title = f"{Path(model_files[0]).name}{f' +{len(models) - 1}' if len(models) > 1 else ''} on {dataset} ({split})"
    if out:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        record = {"members": [str(p) for p in model_files], "dataset": dataset, "split": split, "tta": tta,
                  split: result}
        if data.skipped:
            record["skipped"] = {"count": len(data.skipped), "files": list(data.skipped)}
        _io.write_json(out / runs.METRICS, record)
        confusion = confusion or out / runs.CONFUSION
    if out:
        plot_reliability(curves, out / runs.RELIABILITY, f"{title}: reliability")
    if confusion:
        plot_confusion(result["confusion_matrix"], data.class_names, confusion, f"{title}: accuracy {result['accuracy']:.1%}")
    if mistakes:
        plot_mistakes(part.x, part.y, proba, data.class_names, mistakes, f"{title}: the most confident mistakes")
    return result


"""Metrics from predicted probabilities: loss, accuracy, per-class table, confusion matrix.

Computed from probabilities in NumPy rather than `model.evaluate`, so a model loaded
without its compile state (a legacy .h5, an ensemble, a multi-crop average) is scored the
same way as a freshly trained one.
"""

from __future__ import annotations

import numpy as np

from cnnzoo.errors import UserError

EPS = 1e-7


def predict_proba(model, x: np.ndarray, *, batch_size: int = 64, scale_pixels: bool = False) -> np.ndarray:
    """(N, K) class probabilities; a single sigmoid unit becomes [p(0), p(1)]."""
    if scale_pixels:
        x = x.astype("float32") / 255.0
    return class_probabilities(model.predict(x, batch_size=batch_size, verbose=0), len(x))


def class_probabilities(outputs, count: int) -> np.ndarray:
    """A model's raw outputs as (count, K) probabilities: the main output of a model with
    auxiliary heads, and [p(0), p(1)] for a single sigmoid unit."""
    if isinstance(outputs, (list, tuple, dict)):
        outputs = list(outputs.values())[0] if isinstance(outputs, dict) else outputs[0]
    p = np.asarray(outputs, dtype="float64").reshape(count, -1)
    if p.shape[1] == 1:
        p = np.concatenate([1.0 - p, p], axis=1)
    return p


def check_classes(proba_width: int, class_names, model_name: str) -> None:
    """Refuse a model whose outputs do not match the dataset's classes."""
    if proba_width != len(class_names):
        raise UserError(
            f"The model {model_name} predicts {proba_width} classes but the dataset has "
            f"{len(class_names)} ({', '.join(map(str, class_names))}): evaluate it on the dataset "
            "it was trained on, or retrain it with `cnnzoo train`."
        )


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix


def confident_mistakes(y_true, proba: np.ndarray, count: int) -> np.ndarray:
    """Indices of up to `count` misclassified images, the most confidently wrong first (the
    highest probability given to the wrong class): where mislabelled or ambiguous images show."""
    y_true = np.asarray(y_true).astype(np.int64).ravel()
    predicted = proba.argmax(axis=1)
    wrong = np.flatnonzero(predicted != y_true)
    return wrong[np.argsort(-proba[wrong, predicted[wrong]], kind="stable")][:count]


def classification_metrics(y_true, proba: np.ndarray, class_names) -> dict:
    """Loss (cross-entropy), accuracy, per-class precision/recall/support, confusion matrix."""
    y_true = np.asarray(y_true)
    if y_true.ndim == 2:  # one-hot
        y_true = y_true.argmax(axis=1)
    y_true = y_true.astype(np.int64).ravel()
    y_pred = proba.argmax(axis=1)
    matrix = confusion_matrix(y_true, y_pred, len(class_names))
    predicted, support = matrix.sum(axis=0), matrix.sum(axis=1)
    hits = np.diag(matrix)
    per_class = [
        {
            "class": str(name),
            "precision": float(hits[k] / predicted[k]) if predicted[k] else 0.0,
            "recall": float(hits[k] / support[k]) if support[k] else 0.0,
            "support": int(support[k]),
        }
        for k, name in enumerate(class_names)
    ]
    loss = -np.mean(np.log(np.clip(proba[np.arange(len(y_true)), y_true], EPS, 1.0)))
    return {
        "loss": float(loss),
        "accuracy": float(np.mean(y_pred == y_true)),
        "images": int(len(y_true)),
        "per_class": per_class,
        "confusion_matrix": matrix.tolist(),
        "class_names": [str(c) for c in class_names],
    }


def calibration(y_true, proba: np.ndarray, bins: int = 15) -> dict:
    """Expected calibration error (Guo et al. 2017): the gap between confidence (the top
    probability) and accuracy, averaged over `bins` equal-width confidence bins weighted by
    their images; with each bin's confidence, accuracy and count for a reliability diagram."""
    y_true = np.asarray(y_true)
    if y_true.ndim == 2:
        y_true = y_true.argmax(axis=1)
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y_true.astype(np.int64).ravel()
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        inside = which == b
        count = int(inside.sum())
        if count:
            gap = abs(float(confidence[inside].mean()) - float(correct[inside].mean()))
            ece += gap * count / len(confidence)
        rows.append({"low": float(edges[b]), "high": float(edges[b + 1]), "count": count,
                     "confidence": float(confidence[inside].mean()) if count else None,
                     "accuracy": float(correct[inside].mean()) if count else None})
    return {"ece": float(ece), "bins": rows}

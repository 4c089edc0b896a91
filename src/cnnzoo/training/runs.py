"""The run folder: what a training run leaves behind, written so that a kill loses nothing.

    model.keras    best epoch by validation accuracy (or the last, without validation)
    last.keras     the last finished epoch, with optimizer state: what --resume restarts from
    history.csv    one row per finished epoch (metrics, epoch time)
    config.json    everything needed to rerun; metrics.json  test results and provenance
    curves.png, confusion.png

Every file is replaced atomically, and history.csv is written after last.keras, so the
number of history rows is always the number of epochs last.keras holds.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from pathlib import Path

import keras

from cnnzoo import _io
from cnnzoo.errors import UserError
from cnnzoo.models.saving import RUN_MODEL

BEST = RUN_MODEL
LAST, HISTORY, CONFIG, METRICS = "last.keras", "history.csv", "config.json", "metrics.json"
CURVES, CONFUSION = "curves.png", "confusion.png"


def read_config(run: Path) -> dict:
    path = Path(run) / CONFIG
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{run} is not a cnnzoo run folder: it has no {CONFIG}.") from None
    except json.JSONDecodeError as error:
        raise UserError(f"{path} is damaged ({error}): delete the run folder and train again.") from None


def read_history(run: Path) -> dict[str, list[float]]:
    """Columns of history.csv as lists (empty when no epoch has finished)."""
    path = Path(run) / HISTORY
    if not path.exists():
        return {}
    rows = list(csv.DictReader(path.read_text().splitlines()))
    return {key: [float(row[key]) for row in rows] for key in (rows[0] if rows else {})}


def finished_epochs(run: Path) -> int:
    return len(read_history(run).get("epoch", []))


def best_epoch(history: dict[str, list[float]]) -> int:
    """The epoch model.keras holds: the last of the best by validation (else training) accuracy."""
    scores = history.get("val_accuracy") or history.get("accuracy") or [0.0]
    return len(scores) - scores[::-1].index(max(scores))


class RunRecorder(keras.callbacks.Callback):
    """Saves last.keras, the best model.keras and history.csv at the end of every epoch."""

    def __init__(self, run: Path, history: dict[str, list[float]], monitor: str = "val_accuracy"):
        super().__init__()
        self.run = Path(run)
        self.history = {k: list(v) for k, v in history.items()}
        self.monitor = monitor
        best = self.history.get(monitor) or []
        self.best = max(best) if best else -math.inf
        self._started = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        if len(self.model.outputs) > 1:  # auxiliary heads: the main head's accuracy is the run's
            main = self.model.output_names[0]
            for prefix in ("", "val_"):
                if f"{prefix}{main}_accuracy" in logs:
                    logs[f"{prefix}accuracy"] = logs.pop(f"{prefix}{main}_accuracy")
        row = {"epoch": epoch + 1, **{k: float(v) for k, v in logs.items()},
               "epoch_time": time.perf_counter() - self._started}
        for key, value in row.items():
            self.history.setdefault(key, []).append(value)
        self._save(self.run / LAST)
        score = row.get(self.monitor, row.get("accuracy", -math.inf))
        if score >= self.best or not (self.run / BEST).exists():  # ties: the later epoch (best_epoch)
            self.best = score
            self._save(self.run / BEST)
        self._write_history()

    def _save(self, path: Path) -> None:
        with _io.atomic_path(path) as tmp:
            self.model.save(tmp)

    def _write_history(self) -> None:
        keys = list(self.history)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(keys)
        writer.writerows(zip(*(self.history[k] for k in keys)))
        _io.write_text(self.run / HISTORY, out.getvalue())

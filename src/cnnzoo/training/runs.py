"""The run folder: what a training run leaves behind, written so that a kill loses nothing.

    model.keras    best epoch by validation accuracy (or the last, without validation): the
                   file of that epoch's last.keras, kept under this name (a hard link)
    last.keras     the last finished epoch, with optimizer state: what --resume restarts from
    history.csv    one row per finished epoch (metrics, epoch time)
    config.json    everything needed to rerun; metrics.json  test results and provenance
    curves.png, confusion.png

Every file is replaced atomically. last.keras carries its own copy of the history (up to
the epoch whose weights and optimizer state it holds), so a resumed run counts its finished
epochs from what it restarts from, even after a kill between last.keras and history.csv.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import time
import zipfile
from pathlib import Path

import keras

from cnnzoo import _io
from cnnzoo.errors import UserError
from cnnzoo.models.saving import RUN_MODEL

BEST = RUN_MODEL
LAST, HISTORY, CONFIG, METRICS = "last.keras", "history.csv", "config.json", "metrics.json"
CURVES, CONFUSION, RELIABILITY = "curves.png", "confusion.png", "reliability.png"
EMBEDDED_HISTORY = "cnnzoo/history.csv"  # inside last.keras: the epochs its weights have trained
RESUME_HINT = "the run's finished epochs are intact: make room, then continue it with --resume"


def read_config(run: Path) -> dict:
    path = Path(run) / CONFIG
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{run} is not a cnnzoo run folder: it has no {CONFIG}.") from None
    except json.JSONDecodeError as error:
        raise UserError(f"{path} is damaged ({error}): delete the run folder and train again.") from None


def _parse_history(text: str, where: str) -> dict[str, list[float]]:
    """history.csv's columns as lists; a file that is not one row per epoch 1..N is refused."""
    try:
        rows = list(csv.DictReader(text.splitlines()))
        history = {key: [float(row[key]) for row in rows] for key in (rows[0] if rows else {})}
    except (TypeError, ValueError, csv.Error):
        history, why = None, "(it does not parse as one row of numbers per epoch)"
    else:
        why = "(its epochs are not 1, 2, 3, ...)"
        if history.get("epoch", []) != [float(e) for e in range(1, len(rows) + 1)]:
            history = None
    if history is None:
        raise UserError(f"The training history {where} is damaged {why}: delete the run folder and train again, "
                        "or restore the file.")
    return history


def read_history(run: Path) -> dict[str, list[float]]:
    """Columns of history.csv as lists (empty when no epoch has finished)."""
    path = Path(run) / HISTORY
    if not path.exists():
        return {}
    return _parse_history(path.read_text(), str(path))


def history_in(model_file: Path) -> str | None:
    """The history.csv saved inside a last.keras (up to the epoch whose weights it holds), or
    None for a file written before cnnzoo kept it there."""
    try:
        with zipfile.ZipFile(model_file) as archive:
            return archive.read(EMBEDDED_HISTORY).decode("utf-8")
    except KeyError:
        return None
    except (OSError, zipfile.BadZipFile) as error:
        raise UserError(f"{model_file} cannot be read ({error}): delete the run folder and train again.") from None


def resumable_history(run: Path) -> dict[str, list[float]]:
    """The finished epochs a resumed run starts from: those last.keras holds. history.csv is
    written after last.keras, so a kill between the two leaves it an epoch short; it is then
    rewritten from the copy inside last.keras, and the count never disagrees with the weights."""
    run = Path(run)
    embedded = history_in(run / LAST) if (run / LAST).exists() else None
    if embedded is None:  # no last.keras yet, or one from before the history was kept inside it
        return read_history(run)
    history = _parse_history(embedded, f"inside {run / LAST}")
    if not (run / HISTORY).exists() or (run / HISTORY).read_text() != embedded:
        _io.write_text(run / HISTORY, embedded)
    return history


def finished_epochs(run: Path) -> int:
    """Epochs whose every file is written: history.csv is the last of them (a resumed run
    counts from last.keras instead, see resumable_history)."""
    return len(read_history(run).get("epoch", []))


def _history_csv(history: dict[str, list[float]]) -> str:
    keys = list(history)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(keys)
    writer.writerows(zip(*(history[k] for k in keys)))
    return out.getvalue()


def best_epoch(history: dict[str, list[float]]) -> int:
    """The epoch model.keras holds: the last of the best by validation (else training) accuracy."""
    scores = history.get("val_accuracy") or history.get("accuracy") or [0.0]
    return len(scores) - scores[::-1].index(max(scores))


class RunRecorder(keras.callbacks.Callback):
    """Saves last.keras, the best model.keras and history.csv at the end of every epoch."""

    def __init__(self, run: Path, history: dict[str, list[float]], monitor: str = "val_accuracy", *,
                 write: bool = True):
        super().__init__()
        self.write = write  # False: a process other than 0 of a job, which writes nothing
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
            self._keep_as_best()
        self._write_history()

    def _keep_as_best(self) -> None:
        """model.keras becomes a second name (a hard link) for the last.keras just written, not a
        second serialisation of the model: ResNet-50's file with Adam's state is 280 MB, about a
        tenth of an epoch on signs to write. The next last.keras replaces its name with a new file,
        so the link keeps this epoch's. Where the folder's file system has no hard links, it is a copy.
        Nothing is serialised, so the other processes of a job (which join every save's collective)
        have nothing to do here."""
        if not self.write:
            return
        with _io.atomic_path(self.run / BEST, then=RESUME_HINT) as tmp:
            tmp.unlink()
            try:
                os.link(self.run / LAST, tmp)
            except OSError:
                shutil.copyfile(self.run / LAST, tmp)

    def _save(self, path: Path) -> None:
        """Write `path` atomically; last.keras carries the history up to this epoch inside it."""
        if not self.write:
            # Saving reads the job's replicated weights with a collective (a device_put that
            # compares them across processes): every process must save when process 0 does.
            from keras.src.saving import saving_lib

            saving_lib.save_model(self.model, io.BytesIO())
            return
        with _io.atomic_path(path, then=RESUME_HINT) as tmp:
            self.model.save(tmp)
            if path.name == LAST:
                with zipfile.ZipFile(tmp, "a") as archive:
                    archive.writestr(EMBEDDED_HISTORY, _history_csv(self.history))

    def _write_history(self) -> None:
        if not self.write:
            return
        _io.write_text(self.run / HISTORY, _history_csv(self.history), then=RESUME_HINT)

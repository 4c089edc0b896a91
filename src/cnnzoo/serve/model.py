"""The served model: loaded once, images decoded as training decodes them, and one thread
that owns the model and answers requests in micro-batches.

Why one inference thread: Keras models on the torch backend make no promise that
concurrent `predict` calls are safe (layers keep per-call state, torch's thread pool is
process-wide), and the JAX backend recompiles for every new batch shape. So no request
thread ever touches the model. Requests put their decoded image on a queue; the worker
takes everything waiting (up to `max_batch`), runs one forward pass and hands each request
its own row. An idle server adds no delay (the worker never waits to fill a batch), and a
busy one gets the throughput of batched inference (a batch of 16 costs ~5x one image, not
16x, for HappyModel on a CPU).
"""

from __future__ import annotations

import base64
import concurrent.futures
import io
import json
import os
import queue
import threading
import time
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from cnnzoo._io import resolve_model_path, sha256
from cnnzoo.analysis.metrics import check_classes, class_probabilities
from cnnzoo.datasets.images import MAX_PIXELS, try_decode
from cnnzoo.errors import UserError
from cnnzoo.inference import faces as face_step
from cnnzoo.inference.onnx_model import OnnxModel, is_onnx
from cnnzoo.inference.predict import (
    class_names,
    input_geometry,
    load_for_prediction,
    model_config,
    takes_raw_pixels,
)

MAX_BYTES = 10 * 1024 * 1024  # request body limit: a phone photo is 2-8 MB
TOP = 5  # classes listed for a softmax model
FORMATS = ("JPEG", "PNG")  # what the door takes (docs/SERVE.md): a camera's, a browser's, a screenshot's


class RequestError(Exception):
    """A problem with one request: HTTP status and one sentence for the client."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _undecodable(why: str) -> RequestError:
    if why.startswith("is corrupt or truncated"):
        return RequestError(422, f"The image {why}: send a complete JPEG or PNG image.")
    return RequestError(422, f"The upload {why}: send a JPEG or PNG image.")


class MicroBatcher:
    """One worker thread runs `forward` on whatever requests are waiting, up to `max_batch`.

    Requests submitted with `explain=True` go, in the same micro-batch, to `explain`
    instead (the heat maps need the model too, so they run on the same thread), with the class
    each is to explain (`explain_class`, None: the one its own answer reports).
    """

    def __init__(self, forward, max_batch: int = 32, pad_batches: bool = False, explain=None):
        self._forward = forward
        self._explain = explain
        self._max_batch = max_batch
        self._pad = pad_batches  # round batch sizes up to powers of two (few shapes for JAX)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.batches = 0
        self.largest_batch = 0

    def submit(self, x: np.ndarray, *, explain: bool = False, explain_class: int | None = None
               ) -> concurrent.futures.Future:
        if explain and self._explain is None:
            raise RequestError(400, "This server does not explain its answers.")
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            if self._closed:
                raise RequestError(503, "The server is shutting down: try again in a moment.")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="cnnzoo-inference", daemon=True)
                self._thread.start()
            self._queue.put((x, future, explain, explain_class))
        return future

    def pending(self) -> int:
        return self._queue.qsize()

    def close(self, timeout: float = 10.0) -> None:
        with self._lock:
            self._closed = True
            thread = self._thread
            self._queue.put(None)
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        stop = False
        while not stop:
            item = self._queue.get()
            if item is None:
                break
            items = [item]
            while len(items) < self._max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                items.append(nxt)
            live = [item for item in items if item[1].set_running_or_notify_cancel()]
            answered = [(x, f) for x, f, explain, _ in live if not explain]
            explained = [item for item in live if item[2]]
            if answered:
                self._answer(answered, self._forward)
            if explained:
                classes = [c for *_, c in explained]
                # Padded rows repeat the last class, as _answer repeats the last image.
                self._answer([(x, f) for x, f, _, _ in explained],
                             lambda batch: self._explain(batch, classes + classes[-1:] * (len(batch) - len(classes))))
        while True:  # anything that arrived with or after the stop signal
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not None and item[1].set_running_or_notify_cancel():
                item[1].set_exception(RequestError(503, "The server is shutting down: try again in a moment."))

    def _answer(self, live, forward) -> None:
        batch = np.stack([x for x, _ in live])
        if self._pad:
            size = 1 << (len(batch) - 1).bit_length()
            if size > len(batch):
                batch = np.concatenate([batch, np.repeat(batch[-1:], size - len(batch), axis=0)])
        try:
            rows = forward(batch)
        except BaseException as error:  # noqa: BLE001 - every waiting request must hear of it
            for _, future in live:
                future.set_exception(error)
            return
        self.batches += 1
        self.largest_batch = max(self.largest_batch, len(live))
        for (_, future), row in zip(live, rows):
            future.set_result(row)


def default_threads() -> int:
    """Half the cores run the forward pass (at least one); the others decode images and run
    the event loop. On a busy 2-core machine PyTorch's two threads made HappyModel's batch-1
    pass 4.6x slower than one thread (83 vs 18 ms), onnxruntime's 1.3x (docs/SERVE.md)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // 2)


def check_threshold(threshold: float) -> None:
    if not 0.0 < threshold < 1.0:
        raise UserError(f"The threshold must be between 0 and 1. Received: threshold={threshold!r}")


def _file_version(path: Path) -> str:
    return sha256(path)[:12]


def _read_metrics(folder: Path) -> dict | None:
    from cnnzoo.training import runs

    try:
        metrics = json.loads((folder / runs.METRICS).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    keep = ("dataset", "test", "best_epoch", "epochs", "train_images", "backend", "precision", "finished")
    test = metrics.get("test") or {}
    summary = {k: metrics[k] for k in keep if k in metrics}
    summary["test"] = {k: test[k] for k in ("accuracy", "loss", "images", "per_class") if k in test}
    return summary


def _explanation_method(model) -> tuple[str, str | None]:
    """Grad-CAM at the family's layer, or saliency for a network without a spatial feature map."""
    from cnnzoo.inference.explain import default_layer

    try:
        return "gradcam", default_layer(model)
    except UserError:
        return "saliency", None


class ServedModel:
    """A model file or run folder, loaded once (safe mode), with its run's facts. An exported
    `.onnx` file runs on onnxruntime, and then nothing imports Keras."""

    def __init__(self, model_path, *, unsafe: bool = False, threshold: float = 0.5,
                 max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS, max_batch: int = 32,
                 threads: int | None = None, faces: str = "auto"):
        check_threshold(threshold)
        self.threads = threads or default_threads()
        if max_bytes < 1 or max_pixels < 1:
            raise UserError(f"The size limits must be positive. Received: max_bytes={max_bytes!r}, "
                            f"max_pixels={max_pixels!r}")
        path = resolve_model_path(model_path)
        self.path = path
        # Safe mode unless unsafe=True; an .onnx file on `threads` onnxruntime threads. A Keras
        # model's explained photo costs two passes (the answer, then its heat map); cnnzoo's torch
        # fixes, installed before loading, make each about 2x faster (docs/benchmarks-explain.md).
        if not is_onnx(path):
            from cnnzoo.backends import torch_speed

            torch_speed.apply()
        self.model = load_for_prediction(path, unsafe=unsafe, threads=self.threads)
        onnx = isinstance(self.model, OnnxModel)
        self.config = model_config(path, self.model)
        self.metrics = self.config.get("metrics") if onnx else _read_metrics(path.parent) if self.config else None
        self.height, self.width, self.channels = input_geometry(self.model)
        if self.channels not in (1, 3):
            raise UserError(f"{path} takes {self.channels}-channel images: cnnzoo serve needs 1 (grey) or 3 (RGB).")
        self.resize = self.config.get("preprocessing", {}).get("resize", "resize")  # as in training
        # The face step (auto: when the run was trained on face crops): find faces, judge each.
        self.face_crop = face_step.face_crop(faces, self.config.get("preprocessing", {}))
        self.scale_pixels = not takes_raw_pixels(self.model)
        # An .onnx file takes NHWC; a Keras model the Keras image format, and on JAX each new
        # batch shape compiles (so batches are padded to powers of two).
        self.channels_first = pad_batches = False
        if not onnx:
            import keras

            from cnnzoo.backends import inference_threads

            inference_threads(self.threads)
            self.channels_first = keras.config.image_data_format() == "channels_first"
            pad_batches = keras.backend.backend() == "jax"
        units = int(self.model.outputs[0].shape[-1])
        self.sigmoid = units == 1
        width = 2 if self.sigmoid else units
        self.class_names = class_names(self.model, self.config, width)  # ImageNet's for converted weights
        check_classes(width, self.class_names, str(path))
        self.threshold = threshold
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels
        self.version = _file_version(path)
        if onnx:  # the run it was exported from, else the file's name
            self.name = self.model.source.get("run") or path.stem
        else:
            self.name = path.parent.name if self.config else path.stem
        self.architecture = self.config.get("train", {}).get("model") or self.model.name
        self.dataset = self.config.get("train", {}).get("dataset")
        self.started = time.time()
        # An exported file has no gradients to explain with: its door answers without heat maps.
        self.explain_method, self.explain_layer = (None, None) if onnx else _explanation_method(self.model)
        self.batcher = MicroBatcher(self.forward, max_batch=max_batch,
                                    pad_batches=pad_batches, explain=None if onnx else self.forward_explained)
        # Warm up now, so the first visitor does not wait for lazy initialisation.
        blank = np.zeros((self.height, self.width, self.channels), np.uint8)
        self.batcher.submit(blank).result()
        self.explains = not onnx
        try:
            if self.explains:
                self.batcher.submit(blank, explain=True).result()
        except Exception as error:  # noqa: BLE001 - answers without maps beat no door at all
            self.explains = False
            warnings.warn(f"{path} is served without heat maps: explaining its answers failed ({error}).",
                          stacklevel=2)

    # -- inference (only ever called on the batcher's thread) -------------------------------
    def forward(self, batch: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, C) -> (N, K) class probabilities, as `cnnzoo predict` computes them."""
        return class_probabilities(self.model.predict_on_batch(self._inputs(batch)), len(batch))

    def forward_explained(self, batch: np.ndarray, classes: list[int | None] | None = None
                          ) -> list[tuple[np.ndarray, np.ndarray, int]]:
        """(probabilities, heat map, class explained) per image: the probabilities exactly as
        `forward` gives them, the map for `classes` (None: the decision the answer reports)."""
        from cnnzoo.inference.explain import explain

        proba = self.forward(batch)
        classes = [None] * len(batch) if classes is None else classes
        decided = [self.decision(p) if c is None else int(c) for p, c in zip(proba, classes)]
        maps = explain(self.model, self._inputs(batch), decided, method=self.explain_method,
                       layer=self.explain_layer).maps
        return list(zip(proba, maps, decided))

    def _inputs(self, batch: np.ndarray) -> np.ndarray:
        x = batch.astype("float32") / 255.0 if self.scale_pixels else batch
        return np.transpose(x, (0, 3, 1, 2)) if self.channels_first else x

    # -- per request (on request threads) ---------------------------------------------------
    def decode(self, data: bytes) -> tuple[np.ndarray, dict]:
        """Check the image's header against the limits, then decode it as training does."""
        image = self.inspect(data)
        return self.pixels(data), image

    def inspect(self, data: bytes) -> dict:
        """The image's format and size from its header (cheap), checked against the limits."""
        if not data:
            raise RequestError(400, "The request has no image: the body (or the uploaded file) is empty.")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with Image.open(io.BytesIO(data)) as img:
                    width, height, fmt = img.width, img.height, img.format
        except UnidentifiedImageError:
            raise RequestError(422, "The upload is not an image that can be read: send a JPEG or PNG "
                                    "image.") from None
        except Exception as error:  # noqa: BLE001 - Pillow raises many kinds for broken headers
            raise RequestError(422, f"The image is corrupt or truncated ({error}): send a complete "
                                    "JPEG or PNG image.") from None
        if fmt not in FORMATS:
            raise RequestError(415, f"The upload is a {fmt} image, and the door takes {' or '.join(FORMATS)} images: "
                                    "send a JPEG or PNG image.")
        if width * height > self.max_pixels:
            raise RequestError(413, f"The image is {width}x{height} = {width * height:,} pixels, more than "
                                    f"the limit of {self.max_pixels:,}: send a smaller image.")
        return {"format": fmt, "width": width, "height": height, "bytes": len(data)}

    def pixels(self, data: bytes) -> np.ndarray:
        """The image decoded as training decoded it: uint8 (H, W, C) at the model's input size."""
        array, why = try_decode(data, (self.height, self.width), self.channels, self.resize, self.max_pixels)
        if array is None:
            raise _undecodable(why)
        return array

    def find_faces(self, data: bytes) -> tuple[list[face_step.Face], int, float]:
        """The face step on an upload: its faces cut out as the training crops were, how many the
        detector found, and its time in ms (on a worker thread: a cascade per thread)."""
        img, factor, why = face_step.open_frame(data, self.channels, self.max_pixels)
        if img is None:
            raise _undecodable(why)
        started = time.perf_counter()
        faces, found = face_step.find_faces(img, self.face_crop, (self.height, self.width), self.channels,
                                            self.resize, factor)
        return faces, found, (time.perf_counter() - started) * 1000

    def face_answer(self, faces: list[face_step.Face], rows: list[np.ndarray], found: int) -> tuple[dict, int | None]:
        """The JSON fields of the face step's answer, and the face the decision rests on (for a
        sigmoid model the least smiling one: the door opens only if it smiles; else the most
        confident), None when no face was found. The top-level `probabilities`, `prediction` and
        `p_happy` are that face's."""
        listed = []
        for face, proba in zip(faces, rows):
            entry = {"box": list(face.box), "too_small": face.too_small, "whole_frame": face.whole_frame,
                     **{k: v for k, v in self.answer(proba).items() if k in ("probabilities", "prediction")}}
            if self.sigmoid:
                entry.update(p_happy=round(float(proba[1]), 6), happy=bool(proba[1] >= self.threshold))
            listed.append(entry)
        result = {"classes": self.class_names, "faces": listed, "faces_found": found}
        if not faces:
            deciding = None
        elif self.sigmoid:
            deciding = int(np.argmin([proba[1] for proba in rows]))
        else:
            deciding = int(np.argmax([proba.max() for proba in rows]))
        if deciding is not None:
            result.update(self.answer(rows[deciding]), decided_by=deciding)
        if self.sigmoid:
            door, reason = face_step.door([float(p[1]) for p in rows], [f.too_small for f in faces], self.threshold)
            result.update(door=door, reason=reason, happy=door == "open", threshold=self.threshold,
                          positive_class=self.class_names[1])
        return result, deciding

    def decision(self, proba: np.ndarray) -> int:
        """The class the answer reports: the door's (p_happy against the threshold) or the top one."""
        return int(proba[1] >= self.threshold) if self.sigmoid else int(np.argmax(proba))

    def explanation(self, array: np.ndarray, proba: np.ndarray, heat: np.ndarray, index: int) -> dict:
        """The JSON of one heat map: the model's input with the map over it, and the map alone
        (8-bit grey, 255 = the strongest), both PNG data URLs at the model's input size."""
        from cnnzoo.analysis.report import overlay

        grey = np.round(np.clip(heat, 0.0, 1.0) * 255).astype(np.uint8)[:, :, None]
        return {"method": self.explain_method, "layer": self.explain_layer, "class": self.class_names[index],
                "index": index, "probability": round(float(proba[index]), 6),
                "image": self.preview(overlay(array, heat)), "heatmap": self.preview(grey)}

    def answer(self, proba: np.ndarray) -> dict:
        """The JSON fields of one prediction (probabilities -> decision)."""
        order = np.argsort(-proba, kind="stable")
        best = int(order[0])
        result = {
            "classes": self.class_names,
            "probabilities": [round(float(v), 6) for v in proba],
            "prediction": {"class": self.class_names[best], "index": best,
                           "probability": round(float(proba[best]), 6)},
            "top": [{"class": self.class_names[k], "index": int(k), "probability": round(float(proba[k]), 6)}
                    for k in order[:TOP]],
        }
        if self.sigmoid:
            p_happy = float(proba[1])
            happy = p_happy >= self.threshold
            result.update(happy=happy, p_happy=round(p_happy, 6), door="open" if happy else "closed",
                          threshold=self.threshold, positive_class=self.class_names[1])
        return result

    @staticmethod
    def preview(array: np.ndarray) -> str:
        """The model's input image as a PNG data URL (what the page shows as 'the model sees')."""
        img = Image.fromarray(array[:, :, 0] if array.shape[-1] == 1 else array)
        out = io.BytesIO()
        img.save(out, format="PNG")
        return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode("ascii")

    def info(self) -> dict:
        return {
            "name": self.name,
            "version": self.version,
            "architecture": self.architecture,
            "keras_name": self.model.name,
            "dataset": self.dataset,
            "input_shape": [self.height, self.width, self.channels],
            "input_dtype": "uint8",
            "output": "sigmoid" if self.sigmoid else "softmax",
            "classes": self.class_names,
            "threshold": self.threshold if self.sigmoid else None,
            "parameters": int(self.model.count_params()),
            "preprocessing": {"resize": self.resize, "resample": "bilinear",
                              "scale": "in the model" if not self.scale_pixels else "1/255"},
            "metrics": self.metrics,
            "limits": {"max_bytes": self.max_bytes, "max_pixels": self.max_pixels},
            "runtime": "onnxruntime" if isinstance(self.model, OnnxModel) else "keras",
            "threads": self.threads,
            "explanation": {"method": self.explain_method, "layer": self.explain_layer} if self.explains else None,
            "faces": None if self.face_crop is None else {
                **self.face_crop.record(), "detect_side": face_step.DETECT_SIDE, "min_face": face_step.MIN_FACE,
                "max_faces": face_step.MAX_FACES, "too_small": face_step.TOO_SMALL,
                "rule": "open when at least one face is found, none is too small to judge and every face is smiling"},
        }

    def close(self) -> None:
        self.batcher.close()

"""An exported `.onnx` file as a model that predict, evaluate and serve can use, on
onnxruntime alone: no Keras and no deep-learning framework is imported.

`OnnxModel` offers the part of the `keras.Model` interface those use (`inputs` and
`outputs` with their shapes, `name`, `count_params`, `predict`, `predict_on_batch`) plus
what a run folder's config.json would say (`config`: class names, resize mode, architecture,
dataset), read from the file's metadata (`cnnzoo.inference.export` writes it). Its input is
always uint8 NHWC pixels: a cnnzoo file scales them itself, and another NHWC model with a
float input gets pixels / 255, the convention cnnzoo uses for any bare model file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np

from cnnzoo.errors import UserError

SUFFIX = ".onnx"
# Metadata keys of an exported file (onnx `metadata_props`); JSON values except the version.
VERSION, CLASS_NAMES, INPUT, OUTPUT, SOURCE = "cnnzoo_version", "class_names", "input", "output", "source"
_DTYPES = {"tensor(uint8)": "uint8", "tensor(float)": "float32"}


class TensorInfo(NamedTuple):
    """What a KerasTensor tells about a model's input or output: its shape and dtype."""

    name: str
    shape: tuple
    dtype: str


def is_onnx(path) -> bool:
    return str(path).lower().endswith(SUFFIX)


def _dims(shape) -> tuple:
    return tuple(d if isinstance(d, int) else None for d in shape)


def _session(path: Path, threads: int | None):
    try:
        import onnxruntime
    except ImportError:
        raise UserError(f"Running {path} needs onnxruntime: install it with pip install 'cnnzoo[export]'.") from None
    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3  # errors only: a one-sentence UserError says what went wrong
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # noqa: BLE001 - onnxruntime's own error classes (InvalidProtobuf, Fail, ...)
        why = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserError(f"{path} is not a readable ONNX model ({why[:200]}): export it again with "
                        "`cnnzoo export`.") from None


class OnnxModel:
    """A `.onnx` image classifier on onnxruntime, used like a loaded Keras model."""

    def __init__(self, path, *, threads: int | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"Model file {self.path} does not exist: pass a .onnx file written by `cnnzoo export`.")
        self.session = _session(self.path, threads)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        image = inputs[0] if len(inputs) == 1 else None
        shape = _dims(image.shape) if image is not None else ()
        if image is None or len(shape) != 4 or None in shape[1:] or shape[3] not in (1, 3) \
                or image.type not in _DTYPES:
            got = ", ".join(f"{i.name} {i.type} {list(i.shape)}" for i in inputs) or "no input"
            raise UserError(f"{self.path} is not an image classifier cnnzoo can run: it takes {got}, not one "
                            "batch of images (uint8 or float, shape [batch, height, width, 1 or 3]).")
        units = _dims(outputs[0].shape)[-1] if outputs and len(outputs[0].shape) == 2 else None
        if not isinstance(units, int):
            raise UserError(f"{self.path} is not an image classifier cnnzoo can run: its first output is "
                            f"{list(outputs[0].shape) if outputs else 'missing'}, not [batch, classes].")
        self._input_name, self._output_name = image.name, outputs[0].name
        self._input_dtype = _DTYPES[image.type]
        self.inputs = [TensorInfo(image.name, shape, "uint8")]  # what `predict` takes: pixels
        self.outputs = [TensorInfo(outputs[0].name, (None, units), "float32")]
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self.source = self._meta(SOURCE, {})  # what it was exported from (cnnzoo.inference.export)
        self.config = self._config()
        self.name = self.config["train"].get("model") or self.path.stem

    def _meta(self, key: str, default):
        try:
            return json.loads(self.metadata[key]) if key in self.metadata else default
        except json.JSONDecodeError:
            return default

    def _config(self) -> dict:
        """The file's metadata in the shape of a run's config.json (what predict and serve read)."""
        source, image = self.source, self._meta(INPUT, {})
        config = {"train": {k: source[k] for k in ("model", "dataset") if source.get(k)},
                  "preprocessing": {"resize": image.get("resize", "resize"),
                                    **({"faces": image["faces"]} if image.get("faces") else {})}}
        if self._meta(CLASS_NAMES, None):
            config["class_names"] = [str(c) for c in self._meta(CLASS_NAMES, [])]
        if source.get("metrics"):
            config["metrics"] = source["metrics"]
        return config

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.inputs[0].shape[1:]

    def count_params(self) -> int:
        """The exported model's parameter count (from the metadata; else the file's weights)."""
        counted = self.source.get("parameters")
        if counted is None:
            import onnx

            model = onnx.load(str(self.path), load_external_data=False)
            counted = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
        return int(counted)

    def predict_on_batch(self, x: np.ndarray) -> np.ndarray:
        """uint8 pixels (N, H, W, C) -> the first output, (N, classes)."""
        x = np.asarray(x)
        if self._input_dtype == "uint8":
            feed = x.astype(np.uint8, copy=False)
        else:
            feed = x.astype(np.float32) / np.float32(255.0)
        return self.session.run([self._output_name], {self._input_name: feed})[0]

    def predict(self, x: np.ndarray, batch_size: int = 64, verbose=0) -> np.ndarray:
        """`predict_on_batch` over batches of `batch_size`."""
        parts = [self.predict_on_batch(x[k:k + batch_size]) for k in range(0, len(x), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, self.outputs[0].shape[1]), np.float32)

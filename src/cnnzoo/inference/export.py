"""ONNX export: a cnnzoo run, a model file or a registered network as one `.onnx` file that
onnxruntime runs with nothing else installed (`cnnzoo.inference.onnx_model` reads it back).

The file keeps cnnzoo's contract: uint8 NHWC pixels in (input `pixels`; the scaling is
inside), the class probabilities out (output `probabilities`), a dynamic batch dimension
(`batch`), and metadata with the class names, the input convention, the source (run,
architecture, dataset, test metrics) and cnnzoo's version. A model with auxiliary heads
(GoogLeNet trained with --aux-logits) exports its main head only; a mixed-precision model
exports in float32. Every export is checked: onnxruntime must give Keras' output on a random
uint8 batch of 1 and of 3 images to within 1e-4.

Keras' own exporter (`model.export(format="onnx")`) does the work. Where it falls short:
- it calls the model without `training`, and Keras' random augmentation layers default to
  training=True and pass it on (batch norms then use batch statistics): the exported graph
  calls the model with training=False (tests/test_export.py shows stock Keras failing);
- it refuses a Functional model that has not been called yet ("The model provided has never
  called"), although a Functional model knows its input signature: one forward pass first;
- on the PyTorch backend, "same" max-pooling with a symmetric padding cannot be traced with a
  dynamic batch, nor can adaptive average pooling (torchvision's AlexNet):
  `cnnzoo.backends.onnx_export.exporting` (keras-team/keras#22102's class of bug;
  tests/test_export.py shows stock Keras failing at both);
- it exports the dtype policy the model has (it documents float32 only): mixed-precision
  layers are rebuilt as float32 with the same weights;
- it names the output after a graph node ("137") with a batch dimension of its own
  ("Softmax137_dim_0"), and writes no metadata: both are set on the ONNX file afterwards;
- on the JAX backend it needs jax2onnx (and Flax, Orbax...): cnnzoo exports on PyTorch only.
"""

from __future__ import annotations

import datetime
import json
import os
import time
import warnings
from pathlib import Path

import keras
import numpy as np

from cnnzoo import _io
from cnnzoo.errors import UserError
from cnnzoo.inference import onnx_model
from cnnzoo.inference.onnx_model import OnnxModel, is_onnx
from cnnzoo.inference.predict import input_geometry, run_config, takes_raw_pixels

TOLERANCE = 1e-4  # largest |onnxruntime - Keras| an export may show on its check batch
INPUT_NAME, OUTPUT_NAME, BATCH = "pixels", "probabilities", "batch"
_MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")


def export(source, output, *, unsafe: bool = False, arch: str | None = None, input_shape=None,
           classes: int | None = None, check: bool = True) -> dict:
    """Export `source` to the ONNX file `output`, written atomically; return what was written.

    `source` is a run folder, a `.keras`/`.h5` file (loaded safely unless `unsafe=True`; a
    weights-only file needs `arch`), the name of a registered network (built with
    `input_shape` and `classes`, untrained) or a `keras.Model`. Raises UserError for what
    a user can get wrong (a missing source, a Lambda layer, an unwritable target).
    """
    output = Path(output)
    if not is_onnx(output):
        raise UserError(f"The export target {output} must end in .onnx: e.g. -o model.onnx.")
    if not output.parent.is_dir():
        raise UserError(f"Cannot write {output}: the folder {output.parent} does not exist.")
    if not os.access(output.parent, os.W_OK):
        raise UserError(f"Cannot write {output}: the folder {output.parent} is not writable.")
    if keras.backend.backend() != "torch":
        raise UserError(f"cnnzoo exports to ONNX on the PyTorch backend (Keras' {keras.backend.backend()} exporter "
                        "needs packages cnnzoo does not install): run it with `cnnzoo --backend torch export ...`.")
    started = time.perf_counter()
    model, facts = _load_source(source, unsafe=unsafe, arch=arch, input_shape=input_shape, classes=classes)
    graph = inference_model(model)
    with _io.atomic_path(output) as tmp:
        _trace(graph, tmp)
        _finish(tmp, graph, facts)
        difference = check_export(graph, tmp) if check else None
    return {"path": str(output), "source": facts["source"], "input": [None, *input_geometry(graph)],
            "class_names": facts["class_names"], "max_difference": difference,
            "seconds": round(time.perf_counter() - started, 2)}


# -- what is exported ----------------------------------------------------------------------
def _load_source(source, *, unsafe, arch, input_shape, classes) -> tuple[keras.Model, dict]:
    """The Keras model to export and the facts the ONNX file's metadata records about it."""
    if isinstance(source, keras.Model):
        return source, _facts(source, {"kind": "keras.Model", "name": source.name})
    text = str(source)
    if is_onnx(text):
        raise UserError(f"{source} is already an ONNX file: export a run folder, a .keras/.h5 file or a model name.")
    if Path(text).exists() or text.lower().endswith(_MODEL_SUFFIXES) or os.sep in text:
        return _load_file(Path(text), unsafe=unsafe, arch=arch, input_shape=input_shape)
    from cnnzoo.models import get_model, model_info

    info = model_info(text)  # an unknown name is a UserError listing the known ones
    kwargs = {k: v for k, v in (("input_shape", tuple(input_shape) if input_shape else None),
                                ("classes", classes)) if v is not None}
    model = get_model(text, **kwargs)
    return model, _facts(model, {"kind": "registered network (untrained)", "model": info.name})


def _load_file(path: Path, *, unsafe, arch, input_shape) -> tuple[keras.Model, dict]:
    from cnnzoo.models.saving import load_model, resolve_model_path

    path = resolve_model_path(path)
    model = load_model(path, unsafe=unsafe, arch=arch, **({"input_shape": tuple(input_shape)} if input_shape else {}))
    config = run_config(path)
    train = config.get("train", {})
    source = {"kind": "run" if config else "model file", "path": str(path), "sha256": _io.sha256(path)}
    if config:
        source.update(run=path.parent.name, model=train.get("model"), dataset=train.get("dataset"),
                      validation=train.get("validation"), precision=train.get("precision"),
                      metrics=_test_metrics(path.parent))
    return model, _facts(model, {k: v for k, v in source.items() if v is not None}, config)


def _facts(model: keras.Model, source: dict, config: dict | None = None) -> dict:
    config = config or {}
    units = int(model.outputs[0].shape[-1])
    names = [str(c) for c in config.get("class_names") or range(2 if units == 1 else units)]
    source = {**source, "parameters": int(model.count_params())}
    return {"source": source, "class_names": names, "units": units,
            "resize": config.get("preprocessing", {}).get("resize", "resize"),
            "faces": config.get("preprocessing", {}).get("faces")}


def _test_metrics(run: Path) -> dict | None:
    from cnnzoo.training import runs

    try:
        metrics = json.loads((run / runs.METRICS).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    test = metrics.get("test") or {}
    summary = {k: metrics[k] for k in ("dataset", "epochs", "best_epoch", "finished") if k in metrics}
    summary["test"] = {k: test[k] for k in ("accuracy", "loss", "images") if k in test}
    return summary


def inference_model(model: keras.Model) -> keras.Model:
    """`model` as it is exported: float32, its main head only, and uint8 NHWC pixels in with
    the scaling inside (a model that takes [0, 1] inputs gets a Rescaling(1/255) in front),
    called with training=False."""
    model = float32_model(model)
    pixels = keras.Input(input_geometry(model), dtype="uint8", name=INPUT_NAME)
    x = pixels
    if str(model.inputs[0].dtype) != "uint8":  # a model that scales pixels itself still takes floats
        x = keras.layers.Rescaling(1.0 if takes_raw_pixels(model) else 1 / 255, name="scale")(pixels)
    # Keras' exporter calls the model without `training`, and Keras' random augmentation layers
    # (a run's RandomFlip, RandomTranslation) default to training=True and hand it on to the
    # layers after them: the trace held the augmentation and batch norms on batch statistics.
    outputs = model(x, training=False)
    main = outputs[0] if isinstance(outputs, (list, tuple)) else outputs  # the main head
    return keras.Model(pixels, main, name=model.name)


def float32_model(model: keras.Model) -> keras.Model:
    """`model` itself if every layer computes in float32, else a float32 copy with its weights
    (mixed-precision layers keep float32 weights, so nothing is rounded)."""
    serialized = keras.saving.serialize_keras_object(model)
    if not _policies_to_float32(serialized):
        return model
    # The model is already loaded (a Lambda in it was allowed then): rebuilding it runs no new code.
    copy = keras.saving.deserialize_keras_object(serialized, safe_mode=False)
    copy.set_weights(model.get_weights())
    return copy


def _policies_to_float32(config) -> bool:
    """Set every non-float32 dtype policy in a serialized model to float32; True if any was."""
    changed = False
    if isinstance(config, dict):
        if config.get("class_name") in ("DTypePolicy", "FloatDTypePolicy"):
            inner = config.get("config") or {}
            if inner.get("name") not in (None, "float32"):
                inner["name"] = "float32"
                return True
        for value in config.values():
            changed |= _policies_to_float32(value)
    elif isinstance(config, list):
        for value in config:
            changed |= _policies_to_float32(value)
    return changed


# -- the ONNX file ---------------------------------------------------------------------------
def _trace(graph: keras.Model, path: Path) -> None:
    from cnnzoo.backends.onnx_export import exporting

    graph(np.zeros((1, *input_geometry(graph)), np.uint8))  # Keras exports only a model that has been called
    with warnings.catch_warnings(), exporting():
        warnings.simplefilter("ignore")  # the tracer's warnings; the export is checked numerically instead
        graph.export(str(path), format="onnx", verbose=False)


def _finish(path: Path, graph: keras.Model, facts: dict) -> None:
    """Name the input, output and batch dimension; write the metadata."""
    import onnx

    from cnnzoo import __version__

    proto = onnx.load(str(path))
    inputs = [v for v in proto.graph.input if v.name not in {t.name for t in proto.graph.initializer}]
    renames = {inputs[0].name: INPUT_NAME, proto.graph.output[0].name: OUTPUT_NAME}
    for node in proto.graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
    for value in (*proto.graph.input, *proto.graph.output, *proto.graph.value_info):
        value.name = renames.get(value.name, value.name)
    for value in (inputs[0], proto.graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_param = BATCH
    height, width, channels = input_geometry(graph)
    units = facts["units"]
    metadata = {
        onnx_model.VERSION: __version__,
        onnx_model.CLASS_NAMES: facts["class_names"],
        onnx_model.INPUT: {"name": INPUT_NAME, "dtype": "uint8", "layout": "NHWC", "shape": [BATCH, height, width, channels],
                           "scaling": "inside the model: send pixels 0-255", "resize": facts["resize"],
                           **({"faces": facts["faces"]} if facts["faces"] else {}),
                           "resample": "bilinear"},
        onnx_model.OUTPUT: {"name": OUTPUT_NAME, "shape": [BATCH, units],
                            "activation": "sigmoid: p(class 1)" if units == 1 else "softmax"},
        onnx_model.SOURCE: {**facts["source"], "exported": datetime.datetime.now(datetime.timezone.utc)
                            .isoformat(timespec="seconds"), "keras": keras.__version__},
    }
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()})
    proto.doc_string = (f"cnnzoo {__version__}: {graph.name}, uint8 NHWC pixels [batch, {height}, {width}, "
                        f"{channels}] in, class probabilities out; see the metadata.")
    onnx.save(proto, str(path))


def check_export(graph: keras.Model, path: Path, sizes=(1, 3), seed: int = 0) -> float:
    """Largest |onnxruntime - Keras| on random uint8 batches of `sizes` images; more than
    TOLERANCE is a bug in the export, not a user's mistake."""
    exported = OnnxModel(path)
    rng = np.random.default_rng(seed)
    worst = 0.0
    for size in sizes:
        x = rng.integers(0, 256, (size, *input_geometry(graph)), dtype=np.uint8)
        expected = keras.ops.convert_to_numpy(graph(x, training=False))
        worst = max(worst, float(np.max(np.abs(exported.predict_on_batch(x) - expected))))
    if not worst <= TOLERANCE:
        raise RuntimeError(f"The exported {path} disagrees with Keras by {worst:.3g} (more than {TOLERANCE}).")
    return worst

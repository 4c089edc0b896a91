"""Loading model files safely: `.keras`, legacy Keras 2 `.h5`, and weights-only files.

`.keras` files are loaded with Keras' `safe_mode`. Keras' legacy `.h5` loader ignores
`safe_mode` (tf-keras PR #910), so a legacy file's model config is inspected here first and
Lambda or unknown custom layers are refused unless the caller passes `unsafe=True`.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import keras

from cnnzoo import models  # noqa: F401  (registers the layer classes of every family, for loading)
from cnnzoo._io import RUN_MODEL, resolve_model_path  # noqa: F401  (importers find them here too)
from cnnzoo.errors import UserError
from cnnzoo.models import augment  # noqa: F401  (registers the augmentation layers, for loading)
from cnnzoo.models.weights import preprocessing  # noqa: F401  (registers ImagePreprocessing, for loading)


def _cache_attribute_skipsets() -> None:
    """Keras 3.15 finds the attributes a save skips (`get_attr_skipset`) by building a reference
    object (a Layer, an Optimizer, a Metric) and listing it, and means to keep each list in its
    global state; but it stores them as "saving_attr_skipset_*" and looks them up as
    "saving_attr_skiplist_*", so every layer saved builds a Layer again. Looking them up where
    Keras stores them saves ResNet-50 with Adam's state in 2.2 s instead of 3.1 s (medians of 4
    interleaved saves, this 2-core machine): every checkpoint of every epoch. The lists are the
    same; `keras.utils.clear_session` still clears them."""
    from keras.src.backend.common import global_state
    from keras.src.saving import saving_lib

    stock = getattr(saving_lib.get_attr_skipset, "__wrapped__", saving_lib.get_attr_skipset)

    def get_attr_skipset(obj_type):
        cached = global_state.get_global_attribute(f"saving_attr_skipset_{obj_type}")
        return cached if cached is not None else stock(obj_type)

    get_attr_skipset.__wrapped__ = stock
    saving_lib.get_attr_skipset = get_attr_skipset


_cache_attribute_skipsets()


# What a damaged or foreign model file makes Keras raise (zip, HDF5 and config errors).
UNREADABLE = (TypeError, KeyError, OSError, EOFError, zipfile.BadZipFile)


# Keras' containers, and the markers its configs use for values that are not objects.
CONTAINERS = {"Functional", "Sequential", "Model"}
VALUE_MARKERS = {"__keras_tensor__", "__tuple__", "__numpy__", "__tensor__", "__bytes__", "__slice__"}
CODE_RUNNING = {"Lambda", "TFOpLambda", "SlicingOpLambda", "__lambda__"}  # they carry Python code
SAFE_MODULES = ("layers", "initializers", "regularizers", "constraints", "dtype_policies")


def _unsafe_objects(node):
    """Yield the class name of every object config (a dict with a class_name) nested anywhere
    in `node` that is not safe to deserialise: a Functional's layers, a wrapper's `layer`
    (TimeDistributed, Bidirectional), an initializer, a node's arguments... wherever Keras
    would deserialise one. Inside an unsafe object nothing more is reported."""
    if isinstance(node, dict):
        if "class_name" in node and not _is_safe_object(node):
            yield str(node.get("class_name"))
            return
        for value in node.values():
            yield from _unsafe_objects(value)
    elif isinstance(node, list):
        for value in node:
            yield from _unsafe_objects(value)


def _is_cnnzoo_class(registered_name: str, class_name: str | None = None) -> bool:
    """True when `registered_name` is really registered by cnnzoo, for a cnnzoo class (named
    `class_name`, when that is given)."""
    obj = keras.saving.get_registered_object(registered_name)
    return (registered_name.startswith("cnnzoo>") and isinstance(obj, type) and obj.__module__.startswith("cnnzoo.")
            and keras.saving.get_registered_name(obj) == registered_name
            and (class_name is None or obj.__name__ == class_name))


def _is_safe_object(config: dict) -> bool:
    """Whether deserialising `config` can only build Keras' own objects or cnnzoo's layers.

    Legacy .h5 configs name a custom class by its registered name in `class_name`
    ("cnnzoo>ZeroPadShortcut"); Keras 3 configs put it in `registered_name`. A name that
    claims to be cnnzoo's must be registered by cnnzoo for that very class."""
    class_name, registered_name = config.get("class_name"), config.get("registered_name")
    if not isinstance(class_name, str) or class_name in CODE_RUNNING:
        return False
    if ">" in class_name:
        return _is_cnnzoo_class(class_name) and registered_name in (None, class_name)
    if class_name == "function":  # a built-in activation given by name
        return isinstance(config.get("config"), str) and registered_name in (None, "function") and hasattr(
            keras.activations, config["config"])
    if registered_name not in (None, class_name):
        return ">" in registered_name and _is_cnnzoo_class(registered_name, class_name)
    if class_name in CONTAINERS or class_name in VALUE_MARKERS:
        return True
    return any(isinstance(getattr(getattr(keras, module), class_name, None), type) for module in SAFE_MODULES)


def read_legacy_config(path: Path) -> dict | None:
    """The model config stored in a legacy .h5 file, or None for a weights-only file."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
    except OSError as error:
        raise UserError(f"{path} is not a readable HDF5 file ({error}).") from None
    if raw is None:
        return None
    return json.loads(raw.decode() if isinstance(raw, bytes) else raw)


def refuse_unsafe_layers(path: Path, config: dict) -> None:
    unsafe = sorted(set(_unsafe_objects(config)))
    if unsafe:
        raise UserError(
            f"{path} contains layers that can run arbitrary code ({', '.join(unsafe)}): "
            "load it only if you trust its source, with --unsafe (unsafe=True)."
        )


def load_model(path, *, unsafe: bool = False, arch: str | None = None, **arch_kwargs) -> keras.Model:
    """Load a `.keras` / legacy `.h5` model, or weights into the registered model `arch`."""
    path = resolve_model_path(path)
    name = path.name.lower()
    if name.endswith(".keras"):
        if not zipfile.is_zipfile(path):  # Keras would say "File not found" of a file it found
            raise UserError(f"{path} is not a Keras model file: a .keras file is a zip archive, and this one is "
                            "damaged, truncated or something else; use the run's other model file or train again.")
        try:
            return keras.saving.load_model(path, safe_mode=not unsafe)
        except ValueError as error:
            if "safe_mode" not in str(error):
                raise _unreadable(path, error) from None
            raise UserError(
                f"{path} contains a layer that can run arbitrary code (a Lambda): load it "
                "only if you trust its source, with --unsafe (unsafe=True)."
            ) from None
        except UNREADABLE as error:
            raise _unreadable(path, error) from None
    if not name.endswith((".h5", ".hdf5")):
        raise UserError(f"Cannot load {path}: expected a .keras, .h5 or .weights.h5 file (or, to predict, "
                        "evaluate or serve, a .onnx file written by `cnnzoo export`).")
    config = None if name.endswith(".weights.h5") else read_legacy_config(path)
    if config is None:
        return _load_weights_only(path, arch, arch_kwargs)
    if not unsafe:
        refuse_unsafe_layers(path, config)
    # compile=False: a Keras 2 file's optimizer config need not load in Keras 3, and
    # cnnzoo computes evaluation losses itself.
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=not unsafe)
    except (ValueError, *UNREADABLE) as error:
        raise _unreadable(path, error) from None


def _unreadable(path: Path, error: Exception) -> UserError:
    why = " ".join(str(error).split())[:300]
    return UserError(f"{path} cannot be loaded as a Keras model ({type(error).__name__}: {why}): it is damaged or "
                     "was written for other layers; use another model file or train again.")


def _load_weights_only(path: Path, arch: str | None, arch_kwargs: dict) -> keras.Model:
    from cnnzoo.models import get_model

    if arch is None:
        raise UserError(
            f"{path} holds weights only: name the architecture they belong to with --arch "
            "(e.g. --arch resnet50), plus --input-shape/--classes if they differ from its defaults."
        )
    model = get_model(arch, **arch_kwargs)
    try:
        model.load_weights(path)
    except (ValueError, KeyError) as error:
        raise UserError(f"The weights in {path} do not fit the {arch} model: {error}") from None
    return model


def takes_raw_pixels(model: keras.Model) -> bool:
    """True when the model scales uint8 pixels itself (cnnzoo runs), False for [0, 1] inputs."""
    return any(isinstance(layer, keras.layers.Rescaling) for layer in model.layers[:3])

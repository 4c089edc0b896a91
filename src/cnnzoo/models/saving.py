"""Loading model files safely: `.keras`, legacy Keras 2 `.h5`, and weights-only files.

`.keras` files are loaded with Keras' `safe_mode`. Keras' legacy `.h5` loader ignores
`safe_mode` (tf-keras PR #910), so a legacy file's model config is inspected here first and
Lambda or unknown custom layers are refused unless the caller passes `unsafe=True`.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras

from cnnzoo import models  # noqa: F401  (registers the layer classes of every family, for loading)
from cnnzoo._io import RUN_MODEL, resolve_model_path  # noqa: F401  (importers find them here too)
from cnnzoo.errors import UserError
from cnnzoo.models import augment  # noqa: F401  (registers the augmentation layers, for loading)


def _legacy_layer_classes(config: dict):
    """Yield (class_name, registered_name) of every layer in a legacy model config."""
    yield config.get("class_name"), config.get("registered_name")
    inner = config.get("config", {})
    for layer in inner.get("layers", []) if isinstance(inner, dict) else []:
        yield from _legacy_layer_classes(layer)


def _is_safe_class(class_name: str | None, registered_name: str | None) -> bool:
    if class_name in ("Functional", "Sequential", "Model", "InputLayer"):
        return True
    if registered_name and registered_name.startswith("cnnzoo>"):
        return keras.saving.get_registered_object(registered_name) is not None
    return class_name != "Lambda" and hasattr(keras.layers, class_name or "")


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
    unsafe = sorted({c for c, r in _legacy_layer_classes(config) if not _is_safe_class(c, r)})
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
        try:
            return keras.saving.load_model(path, safe_mode=not unsafe)
        except ValueError as error:
            if "safe_mode" not in str(error):
                raise
            raise UserError(
                f"{path} contains a layer that can run arbitrary code (a Lambda): load it "
                "only if you trust its source, with --unsafe (unsafe=True)."
            ) from None
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
    return keras.saving.load_model(path, compile=False, safe_mode=not unsafe)


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

"""Start a model from another one's weights: cnnzoo's own runs, or published Keras .h5 files.

Weights move layer by layer, matched by name and shape, so a network pretrained with
another number of classes (or at another input size: kernels do not depend on it) gives
everything but its classifier, and a new head starts fresh. Sources:

- a run folder or a `.keras` model (cnnzoo's own pretraining): the architecture inside a
  cnnzoo training model is used, its rescaling and augmentation layers are not weights;
- a Keras `.h5` file, full model or weights only, such as the keras.applications ImageNet
  files (`vgg16_weights_tf_dim_ordering_tf_kernels.h5`): read with h5py, so nothing in it
  runs. Our VGG16/VGG19 use Keras' layer names; the course's ResNet-50 uses the Keras 2.1
  names (`res2a_branch2a`, `bn_conv1`, ...).

`freeze=True` keeps the copied layers fixed (BatchNormalization then runs on its moving
statistics, as Keras does for frozen layers): "frozen base + new head".
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from cnnzoo.errors import UserError


def architecture(model: keras.Model) -> keras.Model:
    """The network inside a cnnzoo training model (pixels -> scale -> [augment] -> net)."""
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    return nested[0] if len(nested) == 1 else model


def _read_h5(path: Path) -> dict[str, list[np.ndarray]]:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            group = f["model_weights"] if "layer_names" not in f.attrs and "model_weights" in f else f
            if "layer_names" not in group.attrs:
                raise UserError(
                    f"{path} is not a Keras .h5 weights file (no layer_names): use a run folder, a "
                    ".keras model, or a Keras 2 style .h5 file such as keras.applications' weights."
                )
            weights = {}
            for name in group.attrs["layer_names"]:
                name = name.decode() if isinstance(name, bytes) else name
                layer = group[name]
                names = [n.decode() if isinstance(n, bytes) else n for n in layer.attrs["weight_names"]]
                weights[name] = [np.asarray(layer[n]) for n in names]
            return weights
    except OSError as error:
        raise UserError(f"{path} is not a readable HDF5 file ({error}).") from None


def source_weights(source, *, unsafe: bool = False) -> dict[str, list[np.ndarray]]:
    """layer name -> its weight arrays, from a run folder, a .keras model or a Keras .h5 file."""
    from cnnzoo.models.saving import load_model, resolve_model_path

    path = resolve_model_path(source)
    name = path.name.lower()
    if name.endswith(".keras"):
        model = architecture(load_model(path, unsafe=unsafe))
        return {layer.name: layer.get_weights() for layer in model.layers if layer.weights}
    if name.endswith((".h5", ".hdf5")) and not name.endswith(".weights.h5"):
        return _read_h5(path)
    raise UserError(
        f"Cannot start from {path}: give a run folder, a .keras model, or a Keras .h5 weights "
        "file (a Keras 3 .weights.h5 file has no layer names to match; load it with --arch instead)."
    )


def initialise(model: keras.Model, source, *, freeze: bool = False, unsafe: bool = False) -> list[str]:
    """Copy every layer of `source` whose name and weight shapes match one in `model`'s
    network; return the copied layers' names (frozen if `freeze`)."""
    stored = source_weights(source, unsafe=unsafe)
    net = architecture(model)
    copied = []
    for layer in net.layers:
        arrays = stored.get(layer.name)
        if not layer.weights or arrays is None:
            continue
        if [tuple(w.shape) for w in layer.weights] != [a.shape for a in arrays]:
            continue  # e.g. the classifier, for another number of classes
        layer.set_weights(arrays)
        if freeze:
            layer.trainable = False
        copied.append(layer.name)
    if not copied:
        raise UserError(
            f"No layer of {net.name} matches a layer of {source} by name and weight shapes: "
            "start from a model of the same architecture."
        )
    return copied

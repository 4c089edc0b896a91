"""Start a model from another one's weights: cnnzoo's own runs, or published checkpoints.

Weights move layer by layer, matched by name and shape, so a network pretrained with
another number of classes (or at another input size: kernels do not depend on it) gives
everything but its classifier, and a new head starts fresh. Sources:

- a run folder or a `.keras` model (cnnzoo's own pretraining, or a checkpoint converted by
  `cnnzoo weights convert`): the architecture inside a cnnzoo model is used; its rescaling
  and augmentation layers are not weights;
- a published checkpoint for an architecture with a supported pair (`cnnzoo weights list`):
  keras.applications `.h5`, torchvision `.pth`, timm `.safetensors`/`.pth`, converted by
  cnnzoo.models.weights (every tensor checked) into that architecture first; or one named
  `torchvision:resnet50` / `timm:resnet50.a1_in1k`, fetched once into $CNNZOO_HOME/weights
  by the source library's own download API (cnnzoo.models.weights.fetch);
- any other Keras `.h5` file, full model or weights only: read with h5py, so nothing in it
  runs, and matched by layer name (the course's ResNet-50 uses the Keras 2.1 names,
  `res2a_branch2a`, `bn_conv1`, ...).

Published weights bring their input convention (Caffe's BGR mean, [-1, 1], torchvision's
mean and std): `read_start` says which, and the training model puts that preprocessing
after its augmentation, so fine-tuning sees the inputs the weights were trained on.

`freeze=True` keeps the copied layers fixed (BatchNormalization then runs on its moving
statistics, as Keras does for frozen layers): "frozen base + new head".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from cnnzoo.errors import UserError
from cnnzoo.models.weights import pairs, preprocessing, readers


@dataclass
class Start:
    """Weights to start from: arrays per layer name, batch-norm epsilons, input convention."""

    source: str
    layers: dict[str, list[np.ndarray]]
    epsilons: dict[str, float] = field(default_factory=dict)
    preprocessing: str | None = None  # an ImagePreprocessing mode, None: cnnzoo's own [0, 1]


def architecture(model: keras.Model) -> keras.Model:
    """The network inside a cnnzoo training model (pixels -> scale -> [augment] -> net)."""
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    return nested[0] if len(nested) == 1 else model


def _from_model(model: keras.Model, source: str) -> Start:
    convention = preprocessing.input_convention(model)
    net = architecture(model)
    return Start(
        source,
        {layer.name: layer.get_weights() for layer in net.layers if layer.weights},
        {layer.name: layer.epsilon for layer in net.layers if isinstance(layer, keras.layers.BatchNormalization)},
        convention.mode if convention else None,
    )


def _published(path: Path, arch: str | None) -> bool:
    """True when `path` should go through the converter: a PyTorch/safetensors file, or a
    Keras .h5 file for an architecture that keras.applications publishes weights for."""
    name = path.name.lower()
    if name.endswith(readers.TORCH_SUFFIXES + readers.SAFETENSORS_SUFFIXES):
        return True
    return arch is not None and name.endswith(readers.KERAS_SUFFIXES) and bool(pairs.list_pairs("keras", arch))


def read_start(source, *, arch: str | None = None, unsafe: bool = False) -> Start:
    """The weights of a run folder, a .keras model, a published checkpoint (converted into the
    registered architecture `arch`) or a Keras .h5 file."""
    from cnnzoo.models.saving import load_model, resolve_model_path
    from cnnzoo.models.weights import convert, fetch

    if fetch.is_named(source):  # torchvision:resnet50, timm:resnet50.a1_in1k: into the cache once
        path, named = fetch.fetch(source)
        return _from_model(convert(path, arch or named), str(source))
    path = Path(source)
    if not path.is_dir() and _published(path, arch):
        if arch is None:
            raise UserError(f"Starting from {path.name} needs the architecture it is for (--arch).")
        if not path.is_file():
            raise UserError(f"Weights file {path} does not exist.")
        return _from_model(convert(path, arch), str(source))
    path = resolve_model_path(source)
    name = path.name.lower()
    if name.endswith(".keras"):
        return _from_model(load_model(path, unsafe=unsafe), str(source))
    if name.endswith((".h5", ".hdf5")) and not name.endswith(".weights.h5"):
        return Start(str(source), {layer: [array for _, array in weights]
                                   for layer, weights in readers.read_keras_h5(path).items()})
    raise UserError(
        f"Cannot start from {path}: give a run folder, a .keras model, a Keras .h5 weights file, or a published "
        "PyTorch/safetensors checkpoint (a Keras 3 .weights.h5 file has no layer names to match; load it with "
        "--arch instead)."
    )


def source_weights(source, *, unsafe: bool = False, arch: str | None = None) -> dict[str, list[np.ndarray]]:
    """layer name -> its weight arrays, from anything `read_start` reads."""
    return read_start(source, arch=arch, unsafe=unsafe).layers


def initialise(model: keras.Model, source, *, freeze: bool = False, unsafe: bool = False,
               arch: str | None = None) -> list[str]:
    """Copy every layer of `source` (a path, or a `Start`) whose name and weight shapes match
    one in `model`'s network, batch-norm epsilon included; return the copied layers' names
    (frozen if `freeze`). `arch` names the registered architecture a published checkpoint is
    converted into first."""
    start = source if isinstance(source, Start) else read_start(source, arch=arch, unsafe=unsafe)
    net = architecture(model)
    copied = []
    for layer in net.layers:
        arrays = start.layers.get(layer.name)
        if not layer.weights or arrays is None:
            continue
        if [tuple(w.shape) for w in layer.weights] != [a.shape for a in arrays]:
            continue  # e.g. the classifier, for another number of classes
        layer.set_weights(arrays)
        if layer.name in start.epsilons:
            layer.epsilon = start.epsilons[layer.name]
        if freeze:
            layer.trainable = False
        copied.append(layer.name)
    if not copied:
        raise UserError(
            f"No layer of {net.name} matches a layer of {start.source} by name and weight shapes: "
            "start from a model of the same architecture."
        )
    return copied

"""Published checkpoints into zoo networks: every tensor checked, then assigned.

`plan` pairs each weight of the zoo network with its tensor in the checkpoint (through the
pair's naming scheme) and checks, before anything is assigned, that every tensor is there
with the shape the network needs and that the checkpoint holds nothing else. The first
problem found ends it in one sentence naming the tensor, its shape and the expected one:
a file for another architecture, a truncated state dict, a renamed or extra key.

Layouts: PyTorch kernels are (out, in, h, w) and Keras' (h, w, in, out); a PyTorch dense
layer is (out, in); where PyTorch flattened a (channels, height, width) map into a dense
layer (VGG's fc1, AlexNet's fc6), Keras' Flatten gives (height, width, channels), so the
dense kernel's rows are permuted to match.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import keras
import numpy as np

from cnnzoo.errors import UserError
from cnnzoo.models.weights import readers
from cnnzoo.models.weights.pairs import Pair, candidates
from cnnzoo.models.weights.schemes import SCHEMES, Scheme

IMAGENET_CLASSES = 1000
_FC = re.compile(r"^fc\d+$")  # the ResNets' classifier is fc{classes}


@dataclass
class Assignment:
    variable: object  # a keras.Variable
    key: str  # the checkpoint's name for it
    expected: tuple[int, ...]  # its shape in the checkpoint's layout
    to_zoo: Callable[[np.ndarray], np.ndarray]


def _same(array):
    return array


def _torch_conv(array):
    return np.transpose(array, (2, 3, 1, 0))


def _torch_dense(array):
    return np.transpose(array)


def _flattened_dense(channels: int, height: int, width: int):
    def to_zoo(array):  # (out, C*H*W) -> (H*W*C, out)
        out = array.shape[0]
        return array.reshape(out, channels, height, width).transpose(2, 3, 1, 0).reshape(-1, out)

    return to_zoo


def _layer_tensors(layer, where: str, scheme: Scheme) -> list[tuple]:
    """(variable, checkpoint key, shape in the checkpoint, transform) for one zoo layer."""
    torch = scheme.layout == "torch"
    key = (lambda name: f"{where}.{name}") if torch else (lambda name: f"{where}/{name}")
    if isinstance(layer, keras.layers.Conv2D):
        kh, kw, cin, cout = layer.kernel.shape
        found = [(layer.kernel, key("weight" if torch else "kernel"),
                  (cout, cin, kh, kw) if torch else (kh, kw, cin, cout), _torch_conv if torch else _same)]
        if layer.use_bias:
            found.append((layer.bias, key("bias"), (cout,), _same))
        return found
    if isinstance(layer, keras.layers.Dense):
        cin, cout = layer.kernel.shape
        transform = _same
        if torch:
            flattened = scheme.flattened.get(layer.name)
            transform = _flattened_dense(*flattened) if flattened else _torch_dense
        found = [(layer.kernel, key("weight" if torch else "kernel"), (cout, cin) if torch else (cin, cout), transform)]
        if layer.use_bias:
            found.append((layer.bias, key("bias"), (cout,), _same))
        return found
    if isinstance(layer, keras.layers.BatchNormalization):
        names = (("weight", "bias", "running_mean", "running_var") if torch
                 else ("gamma", "beta", "moving_mean", "moving_variance"))
        variables = (layer.gamma if layer.scale else None, layer.beta if layer.center else None,
                     layer.moving_mean, layer.moving_variance)
        return [(v, key(n), tuple(v.shape), _same) for v, n in zip(variables, names) if v is not None]
    raise TypeError(f"No conversion for the weights of {type(layer).__name__} layer {layer.name}.")


def _shape(shape) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"


def plan(model: keras.Model, tensors: dict, pair: Pair, *, include_top: bool, file_name: str) -> list[Assignment]:
    """Every weight of `model` with its checkpoint tensor; a UserError at the first that is
    missing or misfits, or at the first checkpoint tensor that nothing in `model` reads."""
    scheme = SCHEMES[pair.scheme]
    names = scheme.layers(pair.arch)
    assignments, used = [], set()
    for layer in model.layers:
        if not layer.weights:
            continue
        where = names.get(_scheme_name(layer.name, scheme))
        if where is None:
            raise RuntimeError(f"Scheme {scheme.name} has no place for layer {layer.name} of {model.name}.")
        head = _scheme_name(layer.name, scheme) in scheme.head
        for variable, key, expected, to_zoo in _layer_tensors(layer, where, scheme):
            if key not in tensors:
                hint = ("it may be a \"notop\" file, for a model built with include_top=False." if head else
                        "is the file a checkpoint of another architecture, or truncated?")
                raise UserError(f"{file_name} has no tensor {key} (expected shape {_shape(expected)}), which "
                                f"{pair.arch} needs: {hint}")
            shape = tuple(tensors[key].shape)
            if shape != expected:
                hint = ("the classifier is for another number of classes: build the model with the file's, or with "
                        "include_top=False for a new head" if head else
                        "the file is a checkpoint of another architecture (or another input size)")
                raise UserError(f"{key} in {file_name} has shape {_shape(shape)}, but {pair.arch} expects "
                                f"{_shape(expected)}: {hint}.")
            assignments.append(Assignment(variable, key, expected, to_zoo))
            used.add(key)
    skipped = _head_keys(names, scheme) if not include_top else set()
    for key, array in tensors.items():
        if key in used or key in skipped or _ignored(key, scheme):
            continue
        raise UserError(
            f"{file_name} holds {key} with shape {_shape(array.shape)}, which {pair.arch} has no place for: "
            "is the file a checkpoint of another architecture?"
        )
    return assignments


def _scheme_name(layer_name: str, scheme: Scheme) -> str:
    """A zoo layer's name as the schemes write it: a ResNet's classifier fc{classes} is fc1000."""
    return "fc1000" if "fc1000" in scheme.head and _FC.match(layer_name) else layer_name


def _ignored(key: str, scheme: Scheme) -> bool:
    if scheme.layout == "torch" and key.endswith(".num_batches_tracked"):
        return True  # a training counter of PyTorch's batch norm
    return any(re.search(pattern, key) for pattern in scheme.ignored)


def _head_keys(names: dict, scheme: Scheme) -> set:
    separator = "." if scheme.layout == "torch" else "/"
    heads = {names[layer] for layer in scheme.head if layer in names}
    return {f"{head}{separator}{suffix}" for head in heads for suffix in ("weight", "bias", "kernel")}


def _head_classes(tensors: dict, pair: Pair) -> int | None:
    """The number of classes of the checkpoint's classifier, or None for a "notop" file."""
    scheme = SCHEMES[pair.scheme]
    last = scheme.layers(pair.arch)[scheme.head[-1]]
    bias = tensors.get(f"{last}.bias" if scheme.layout == "torch" else f"{last}/bias")
    return None if bias is None else int(bias.shape[0])


def choose_pair(arch: str, tensors: dict, kind: str, source: str | None) -> Pair:
    """The pair for a file: among those that read its kind, the one whose names it uses most
    (Keras' two generations of ResNet-50 names; torchvision and timm share theirs)."""
    found = candidates(arch, kind, source)

    def present(pair: Pair) -> int:
        scheme = SCHEMES[pair.scheme]
        separator = "." if scheme.layout == "torch" else "/"
        prefixes = {name + separator for name in scheme.layers(arch).values()}
        return sum(any(key.startswith(p) for p in prefixes) for key in list(tensors)[:50])

    return max(found, key=present)


def load_weights(model: keras.Model, path, *, arch: str, source: str | None = None,
                 tensors: dict | None = None) -> Pair:
    """Assign the published checkpoint at `path` to `model`, a zoo network built as `arch`
    (with the checkpoint's classes, or include_top=False); return the pair used. Nothing
    is assigned unless every tensor fits."""
    path = Path(path)
    tensors = readers.read_checkpoint(path) if tensors is None else tensors
    pair = choose_pair(arch, tensors, readers.kind_of(path), source)
    scheme = SCHEMES[pair.scheme]
    include_top = any(_scheme_name(layer.name, scheme) in scheme.head for layer in model.layers)
    for assignment in plan(model, tensors, pair, include_top=include_top, file_name=path.name):
        assignment.variable.assign(assignment.to_zoo(tensors[assignment.key]))
    if pair.bn_epsilon is not None:
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.epsilon = pair.bn_epsilon
    return pair


def convert(path, arch: str, *, source: str | None = None, include_top: bool | None = None,
            input_shape=None, pooling=None, classifier_activation="softmax") -> keras.Model:
    """A standalone cnnzoo model from a published checkpoint: uint8 pixels -> scale ->
    the weights' own preprocessing -> the zoo network `arch` with the checkpoint's weights.

    `include_top=None` keeps the classifier when the file has one; `input_shape` defaults to
    the network's (224x224x3); the classes are the checkpoint's."""
    from cnnzoo.models import get_model, model_info
    from cnnzoo.models.weights.preprocessing import ImagePreprocessing

    path = Path(path)
    tensors = readers.read_checkpoint(path)
    pair = choose_pair(arch, tensors, readers.kind_of(path), source)
    classes = _head_classes(tensors, pair)
    if include_top is None:
        include_top = classes is not None
    if include_top and classes is None:
        raise UserError(f"{path.name} has no classifier (it is a \"notop\" file): convert it without the top "
                        "(--no-top, include_top=False).")
    shape = tuple(input_shape or model_info(arch).input_shape)
    kwargs = dict(input_shape=shape, include_top=include_top, pooling=pooling)
    if include_top:
        kwargs.update(classes=classes, classifier_activation=classifier_activation)
    network = get_model(arch, **kwargs)
    load_weights(network, path, arch=arch, source=pair.source, tensors=tensors)
    del tensors
    labels = "imagenet" if include_top and classes == IMAGENET_CLASSES else None
    pixels = keras.Input(shape, dtype="uint8", name="pixels")
    x = keras.layers.Rescaling(1 / 255, name="scale")(pixels)
    x = ImagePreprocessing(pair.preprocessing, labels=labels, name="preprocess")(x)
    return keras.Model(pixels, network(x), name=f"cnnzoo_{arch}")


def convert_file(path, arch: str, out, **kwargs) -> keras.Model:
    """`convert`, then save the model to `out` (.keras) atomically: a failure leaves no file."""
    from cnnzoo import _io

    out = Path(out)
    if not out.name.endswith(".keras"):
        raise UserError(f"Write the converted model to a .keras file, not {out.name}.")
    model = convert(path, arch, **kwargs)
    with _io.atomic_path(out) as tmp:
        model.save(tmp)
    return model

"""What a network looks at: Grad-CAM, saliency maps, feature maps and first-layer filters.

Grad-CAM (Selvaraju et al. 2017): the class score's gradient with respect to a late
feature map A, averaged over its height and width, weighs A's channels, and
ReLU(sum_k alpha_k A_k), upsampled to the image, is the map. Saliency (Simonyan et al.
2014): the largest |d score / d pixel| over the colour channels. The score is the class's
logit, before the softmax (a single sigmoid unit's logit, negated for class 0), as in both
papers: a probability near 1 has almost no gradient left.

How it is computed, the same way on every backend: the model is cloned once, sharing its
layers and weights, with a tap after each layer of interest and the classifier's
softmax/sigmoid left out. A tap records its layer's output and adds `delta` to it (zeros),
so d score / d delta is d score / d activation, a gradient JAX can take (it has none with
respect to an intermediate value) and PyTorch gets by back-propagating only that far.
`cnnzoo.backends.gradients.grad` is the one per-backend call.

The layer Grad-CAM uses by default is the last feature map with spatial extent on the way
to the main output, before global pooling or flatten (`res5c_relu` in ResNet-50, the last
Inception module's concatenation in GoogLeNet, `max_pool` in HappyModel); auxiliary heads
are never on that way. Images are what the model takes (uint8 pixels for a cnnzoo run's
model, which scales them itself). An `Explainer` is not thread-safe: the door runs it on
its one inference thread.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from cnnzoo.backends import torch_speed
from cnnzoo.backends.gradients import grad
from cnnzoo.errors import UserError
from cnnzoo.models.layers import image_dims

METHODS = ("gradcam", "saliency")
_NOT_FEATURES = (keras.layers.InputLayer, keras.layers.ZeroPadding2D, keras.layers.Dropout)


# -- which layers -----------------------------------------------------------------------------
def architecture(model: keras.Model) -> keras.Model:
    """The network inside a cnnzoo run's model (pixels -> Rescaling -> [augmentation] ->
    network), or the model itself when nothing is nested in it."""
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    return nested[0] if len(nested) == 1 else model


def main_path(model: keras.Model) -> keras.Model:
    """The network from its input to its main output only (auxiliary heads left out)."""
    arch = architecture(model)
    return arch if len(arch.outputs) == 1 else keras.Model(arch.inputs, arch.outputs[0], name=arch.name)


def spatial_size(layer) -> tuple[int, int] | None:
    """(height, width) of a layer's output when it is an image-like feature map, else None."""
    shape = tuple(layer.output.shape)
    if len(shape) != 4:
        return None
    height, width, _ = image_dims(shape[1:])
    return (height, width) if height and width else None


def _has_extent(layer) -> bool:
    size = spatial_size(layer)
    return bool(size) and size[0] * size[1] > 1


def default_layer(model: keras.Model) -> str:
    """The Grad-CAM layer: the last feature map with spatial extent before the head."""
    for layer in reversed(main_path(model).layers):
        if _has_extent(layer) and not isinstance(layer, _NOT_FEATURES):
            return layer.name
    raise UserError(
        f"The model {model.name} has no feature map with height and width above 1x1 before its "
        "classifier, so Grad-CAM has nothing to point at: use --method saliency."
    )


def stage_layers(model: keras.Model) -> list[str]:
    """The last layer at each spatial size on the way to the main output: the network's
    stages (ResNet-50: conv1_relu, res2c_relu, ..., res5c_relu), in order."""
    last: dict[tuple[int, int], str] = {}
    seen_conv = False
    for layer in main_path(model).layers:
        seen_conv = seen_conv or isinstance(layer, keras.layers.Conv2D)
        if seen_conv and _has_extent(layer) and not isinstance(layer, _NOT_FEATURES):
            last[spatial_size(layer)] = layer.name  # the last layer at that size wins
    order = [layer.name for layer in main_path(model).layers]
    return sorted(last.values(), key=order.index)


def find_layer(model: keras.Model, name: str):
    """The layer called `name` on the way to the main output, as a feature map Grad-CAM can use."""
    main = main_path(model)
    matches = [layer for layer in main.layers if layer.name == name]
    if not matches:
        elsewhere = any(layer.name == name for layer in _all_layers(model))
        stages = ", ".join(stage_layers(model)[-4:]) or "none"
        if elsewhere:
            raise UserError(f"The layer {name!r} of {model.name} does not lead to its main output (it is part "
                            f"of an auxiliary head or of the preprocessing): choose one such as {stages}.")
        raise UserError(f"The model {model.name} has no layer named {name!r}: choose one of its feature "
                        f"maps, such as {stages} (`cnnzoo summary` lists them all).")
    layer = matches[0]
    if not _has_extent(layer):
        raise UserError(f"The layer {name!r} of {model.name} has no spatial extent (its output is "
                        f"{tuple(layer.output.shape)[1:]}): Grad-CAM needs a feature map with height and "
                        f"width, such as {default_layer(model)}.")
    return layer


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def first_conv(model: keras.Model):
    """The first 2-D convolution of the network (its filters look at pixels)."""
    for layer in main_path(model).layers:
        if isinstance(layer, keras.layers.Conv2D):
            return layer
    raise UserError(f"The model {model.name} has no 2-D convolution whose filters could be drawn.")


# -- the probed clone -------------------------------------------------------------------------
class _Tap(keras.layers.Layer):
    """Passes a layer's output on unchanged (plus `delta`, when set) and keeps it in `seen`."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.delta = None
        self.seen = None

    def call(self, x):
        self.seen = x
        return x if self.delta is None else x + self.delta

    def compute_output_shape(self, input_shape):
        return input_shape


class _Logits(keras.layers.Layer):
    """A Dense classifier's output before its softmax/sigmoid, with the Dense's own weights."""

    def __init__(self, dense, **kwargs):
        super().__init__(**kwargs)
        self.dense = dense

    def call(self, x):
        z = ops.matmul(x, self.dense.kernel)
        return z + self.dense.bias if self.dense.use_bias else z

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.dense.units)


def _activation_name(layer) -> str | None:
    return getattr(getattr(layer, "activation", None), "__name__", None)


class Explainer:
    """A model cloned once with taps after `layers` (names) and its head's activation removed.

    `run(images)` gives the logits and the tapped activations; `gradients(images, classes)`
    the class scores' gradients with respect to the tapped activations and the images.
    On PyTorch it installs cnnzoo's fixes to Keras' torch backend, as training does
    (`cnnzoo.backends.torch_speed`, the same results to float32 rounding); most of their gain
    (2x for a ResNet-50 Grad-CAM on a CPU, docs/benchmarks-explain.md) is in models built or
    loaded after `torch_speed.apply()`, which `cnnzoo explain` and `cnnzoo serve` call first.
    """

    def __init__(self, model: keras.Model, layers=()):
        torch_speed.apply()
        main = main_path(model)
        self.layers = [find_layer(model, name) for name in layers]
        self.taps = [_Tap(name=f"cnnzoo_tap_{layer.name}") for layer in self.layers]
        head = main.layers[-1]
        self.activation = _activation_name(head) if _activation_name(head) in ("softmax", "sigmoid") else None
        self.units = int(main.outputs[0].shape[-1])
        by_layer = {id(layer): tap for layer, tap in zip(self.layers, self.taps)}

        def call(layer, *args, **kwargs):
            if layer is head and self.activation:
                if isinstance(layer, keras.layers.Dense):
                    return _Logits(layer, name="cnnzoo_logits")(*args)
                return args[0]  # an Activation layer: its input is the logits
            out = layer(*args, **kwargs)
            tap = by_layer.get(id(layer))
            return tap(out) if tap is not None else out

        pixels = keras.Input(tuple(model.inputs[0].shape[1:]), dtype="float32", name="pixels")
        self.clone = keras.models.clone_model(model, input_tensors=pixels, clone_function=lambda layer: layer,
                                              call_function=call, recursive=True)

    def _logits(self, x):
        out = self.clone(x, training=False)
        out = out[0] if isinstance(out, (list, tuple)) else out
        if self.activation == "sigmoid" and self.units == 1:
            out = ops.concatenate([-out, out], axis=-1)  # class 0's score is -z
        return out

    def probabilities(self, logits) -> np.ndarray:
        """(N, K) class probabilities from `_logits`' scores, as `predict` reports them."""
        logits = np.asarray(logits, dtype="float64")
        if self.activation == "softmax":
            e = np.exp(logits - logits.max(axis=1, keepdims=True))
            return e / e.sum(axis=1, keepdims=True)
        if self.activation == "sigmoid":  # a single unit's scores are [-z, z]: [1 - p, p]
            return 1.0 / (1.0 + np.exp(-logits))
        return logits

    def run(self, images) -> tuple[np.ndarray, list[np.ndarray]]:
        """(probabilities, [activation of each tapped layer]) without gradients."""
        for tap in self.taps:
            tap.delta = None
        logits = ops.convert_to_numpy(self._logits(_as_float(images)))
        seen = [ops.convert_to_numpy(tap.seen) for tap in self.taps]
        self._forget()
        return self.probabilities(logits), seen

    def gradients(self, images, class_index=None, *, wrt_images: bool = False):
        """Forward and backward once for a batch. Returns (probabilities, explained class per
        image, [activations], [d score / d activation], d score / d images or None).

        `class_index`: None (each image's predicted class), an int, or one per image.
        """
        x = _as_float(images)
        count = len(x)
        requested = _class_indices(class_index, count, self.classes)
        deltas = [np.zeros((count, *tuple(layer.output.shape)[1:]), "float32") for layer in self.layers]

        def score(x, *deltas):
            for tap, delta in zip(self.taps, deltas):
                tap.delta = delta
            logits = self._logits(x)
            chosen = ops.where(requested >= 0, requested, ops.argmax(logits, axis=-1))
            picked = ops.sum(logits * ops.stop_gradient(ops.one_hot(chosen, self.classes)))
            return picked, (logits, chosen, [tap.seen for tap in self.taps])

        wanted = ([0] if wrt_images else []) + list(range(1, 1 + len(deltas)))
        try:
            (logits, chosen, seen), grads = grad(score, [x, *deltas], wanted)
        finally:
            self._forget()
        numpy = [ops.convert_to_numpy(g) for g in grads]
        image_grads = numpy.pop(0) if wrt_images else None
        return (self.probabilities(ops.convert_to_numpy(logits)), ops.convert_to_numpy(chosen).astype(int),
                [ops.convert_to_numpy(a) for a in seen], numpy, image_grads)

    @property
    def classes(self) -> int:
        return 2 if self.activation == "sigmoid" and self.units == 1 else self.units

    def _forget(self) -> None:
        for tap in self.taps:  # no tensors (or JAX tracers) kept between calls
            tap.delta = tap.seen = None


def _as_float(images) -> np.ndarray:
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[None]
    return x.astype("float32")


def _class_indices(class_index, count: int, classes: int) -> np.ndarray:
    """-1 (the predicted class) or the requested class, per image, checked against `classes`."""
    if class_index is None:
        return np.full(count, -1, dtype="int32")
    indices = np.broadcast_to(np.asarray(class_index, dtype="int64"), (count,)).astype("int32")
    bad = [int(k) for k in indices if not 0 <= k < classes]
    if bad:
        raise UserError(f"Class index {bad[0]} is out of range: the model has {classes} classes (0-{classes - 1}).")
    return indices


_CACHE: weakref.WeakKeyDictionary[keras.Model, dict] = weakref.WeakKeyDictionary()


def explainer(model: keras.Model, layers=()) -> Explainer:
    """The `Explainer` of `model` with taps on `layers`, built once and kept with the model."""
    per_model = _CACHE.setdefault(model, {})
    key = tuple(layers)
    if key not in per_model:
        per_model[key] = Explainer(model, key)
    return per_model[key]


# -- the maps ---------------------------------------------------------------------------------
@dataclass
class Explanation:
    method: str  # gradcam | saliency
    layer: str | None  # Grad-CAM's layer
    maps: np.ndarray  # (N, H, W) in [0, 1], at the image's size
    probabilities: np.ndarray  # (N, K)
    class_index: np.ndarray  # (N,) the class each map explains


def explain(model, images, class_index=None, *, method: str = "gradcam", layer: str | None = None) -> Explanation:
    """Grad-CAM or saliency maps of `images` for `class_index` (None: each predicted class)."""
    if method not in METHODS:
        raise UserError(f"Unknown method {method!r}: choose one of {', '.join(METHODS)}.")
    x = _as_float(images)
    size = image_dims(x.shape[1:])[:2]
    if method == "saliency":
        probe = explainer(model)
        proba, chosen, _, _, image_grads = probe.gradients(x, class_index, wrt_images=True)
        return Explanation(method, None, saliency_from_gradients(image_grads), proba, chosen)
    layer = layer or default_layer(model)
    probe = explainer(model, [layer])
    proba, chosen, (activation,), (gradient,), _ = probe.gradients(x, class_index)
    maps = _unit_max(upsample(gradcam_from(activation, gradient), size))  # the peak stays 1 after resizing
    return Explanation(method, layer, maps, proba, chosen)


def gradcam(model, images, class_index=None, *, layer: str | None = None) -> np.ndarray:
    """(N, H, W) Grad-CAM maps in [0, 1] at the images' size; `layer` defaults per family."""
    return explain(model, images, class_index, method="gradcam", layer=layer).maps


def saliency(model, images, class_index=None) -> np.ndarray:
    """(N, H, W) saliency maps in [0, 1]: max over channels of |d score / d pixel|."""
    return explain(model, images, class_index, method="saliency").maps


def activations_and_gradients(model, images, class_index=None, *, layer: str | None = None):
    """(activations, d score / d activations, probabilities) at `layer`, channels last: what
    Grad-CAM is computed from."""
    probe = explainer(model, [layer or default_layer(model)])
    proba, _, (activation,), (gradient,), _ = probe.gradients(_as_float(images), class_index)
    return _channels_last(activation), _channels_last(gradient), proba


def gradcam_from(activation: np.ndarray, gradient: np.ndarray) -> np.ndarray:
    """ReLU(sum_k alpha_k A_k), alpha_k = mean of dY/dA_k over height and width; each map
    scaled to a maximum of 1 (all zeros when nothing speaks for the class)."""
    activation, gradient = _channels_last(activation), _channels_last(gradient)
    alpha = gradient.mean(axis=(1, 2), keepdims=True)
    return _unit_max(np.maximum((alpha * activation).sum(axis=-1), 0.0))


def saliency_from_gradients(image_grads: np.ndarray) -> np.ndarray:
    return _unit_max(np.abs(_channels_last(image_grads)).max(axis=-1))


def _channels_last(x: np.ndarray) -> np.ndarray:
    return x if keras.config.image_data_format() == "channels_last" else np.moveaxis(x, 1, -1)


def _unit_max(maps: np.ndarray) -> np.ndarray:
    top = maps.reshape(len(maps), -1).max(axis=1).reshape(-1, 1, 1)
    return np.where(top > 0, maps / np.where(top > 0, top, 1.0), 0.0).astype("float32")


def upsample(maps: np.ndarray, size) -> np.ndarray:
    """(N, h, w) maps resized to (N, *size), bilinear (as cv2/PIL resize the Grad-CAM map)."""
    from PIL import Image

    height, width = size
    if maps.shape[1:] == (height, width):
        return maps
    return np.stack([np.asarray(Image.fromarray(m.astype("float32")).resize((width, height), Image.BILINEAR))
                     for m in maps]).astype("float32")


def feature_maps(model, image, layers=None) -> dict[str, np.ndarray]:
    """Activations of one image at each stage (`stage_layers`), name -> (H, W, C)."""
    layers = list(layers or stage_layers(model))
    _, seen = explainer(model, layers).run(_as_float(image)[:1])
    return {name: _channels_last(a)[0] for name, a in zip(layers, seen)}


def first_filters(model) -> tuple[str, np.ndarray]:
    """(layer name, kernels as (filters, height, width, input channels)) of the first conv."""
    layer = first_conv(model)
    kernel = ops.convert_to_numpy(layer.kernel)  # (kh, kw, in, out) on every backend
    return layer.name, np.transpose(kernel, (3, 0, 1, 2))

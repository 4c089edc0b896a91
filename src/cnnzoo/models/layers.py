"""What every family shares, and only that: image axes, argument checks, the classifier's
backbone pooling, He-normal, conv-BN-ReLU and AlexNet's LRN (timm keeps the same in its
`layers/`). A family's own blocks live in the family's file."""

from __future__ import annotations

import keras
from keras import layers

from cnnzoo.errors import UserError

POOLINGS = (None, "avg", "max")

# He et al. 2015 ("Delving deep into rectifiers") initialisation as torchvision applies it:
# normal, variance 2/fan_out. Untruncated: Keras' truncated normal is ~10x slower to draw on
# the torch backend, which made building ResNet-152 take 15 s. A config, so every layer
# gets its own initializer.
HE_NORMAL = {"class_name": "VarianceScaling",
             "config": {"scale": 2.0, "mode": "fan_out", "distribution": "untruncated_normal"}}


def image_dims(shape, data_format: str | None = None) -> tuple:
    """(height, width, channels) of an image shape without its batch axis, under
    `data_format` (default: Keras' `image_data_format`). The one place that knows the order:
    `image_dims((1, 2, 3))` gives the batch axes of height, width and channels."""
    shape = tuple(shape)
    if (data_format or keras.config.image_data_format()) == "channels_last":
        return shape[0], shape[1], shape[2]
    return shape[1], shape[2], shape[0]


def image_shape(height: int, width: int, channels: int, data_format: str | None = None) -> tuple[int, int, int]:
    """The shape of an image (no batch axis) in `data_format`: the inverse of `image_dims`."""
    if (data_format or keras.config.image_data_format()) == "channels_last":
        return height, width, channels
    return channels, height, width


def channel_axis(data_format: str | None = None) -> int:
    """The channel axis of image tensors: -1 for channels_last, 1 for channels_first."""
    return -1 if (data_format or keras.config.image_data_format()) == "channels_last" else 1


def check_arguments(
    model: str,
    input_shape,
    classes: int,
    *,
    min_size: int,
    pooling=None,
    include_top: bool = True,
) -> tuple[int, int, int]:
    """Validate a builder's common arguments; return input_shape as a tuple of ints.

    Builders call it before building, so a bad argument is one sentence in Keras' style
    ("... Received: input_shape=...") instead of a shape error deep inside a layer.
    """
    try:
        shape = tuple(int(d) for d in input_shape)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise UserError(
            f"{model}: input_shape must be three positive integers (height, width, channels"
            f" for channels_last). Received: input_shape={input_shape!r}"
        )
    height, width, _ = image_dims(shape)
    if min(height, width) < min_size:
        raise UserError(
            f"{model}: the input is too small for its strides and pooling; the smallest that "
            f"works is {min_size}x{min_size}. Received: input_shape={input_shape!r}"
        )
    if include_top and (not isinstance(classes, int) or classes < 1):
        raise UserError(f"{model}: classes must be a positive integer. Received: classes={classes!r}")
    if pooling not in POOLINGS:
        raise UserError(
            f"{model}: pooling must be None, 'avg' or 'max'. Received: pooling={pooling!r}"
        )
    return shape


def default_activation(classes: int, classifier_activation):
    """Sigmoid for a single output unit, softmax otherwise, unless the caller chose."""
    if classifier_activation != "auto":
        return classifier_activation
    return "sigmoid" if classes == 1 else "softmax"


def backbone_pooling(x, pooling):
    """The `pooling` option of include_top=False models (keras.applications semantics)."""
    if pooling == "avg":
        return layers.GlobalAveragePooling2D(name="global_avg_pool")(x)
    if pooling == "max":
        return layers.GlobalMaxPooling2D(name="global_max_pool")(x)
    return x


def conv_bn_relu(X, filters: int, kernel: int, name: str, *, strides: int = 1,
                 padding: str = "same", batch_norm: bool = True, kernel_initializer=HE_NORMAL):
    """Conv -> (BN) -> ReLU, named `name`, `name_bn`, `name_relu`; no conv bias under BN."""
    X = layers.Conv2D(filters, kernel, strides=strides, padding=padding, use_bias=not batch_norm,
                      kernel_initializer=kernel_initializer, name=name)(X)
    if batch_norm:
        # eps 1e-3 as torchvision's GoogLeNet (BasicConv2d) and Keras' Inception v3.
        X = layers.BatchNormalization(axis=channel_axis(), epsilon=1e-3, name=name + "_bn")(X)
    return layers.Activation("relu", name=name + "_relu")(X)


@keras.saving.register_keras_serializable(package="cnnzoo")
class LocalResponseNormalization(layers.Layer):
    """AlexNet's local response normalisation across channels (Krizhevsky et al. 2012, 3.3).

    b[c] = a[c] / (k + alpha * sum(a[j]^2 for j within size//2 channels of c)) ** beta,
    with the paper's constants k=2, size=5, alpha=1e-4, beta=0.75 as defaults. `alpha`
    multiplies the plain sum, as in the paper and `tf.nn.local_response_normalization`;
    PyTorch's `LocalResponseNorm` divides it by `size` first.
    """

    def __init__(self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0,
                 data_format=None, **kwargs):
        super().__init__(**kwargs)
        if size < 1:
            raise ValueError(f"size must be a positive integer. Received: size={size!r}")
        self.size, self.alpha, self.beta, self.k = int(size), float(alpha), float(beta), float(k)
        self.data_format = data_format or keras.config.image_data_format()

    def call(self, x):
        axis = channel_axis(self.data_format) % x.ndim
        channels = x.shape[axis]
        pad = [[0, 0]] * x.ndim
        pad[axis] = [self.size // 2, (self.size - 1) // 2]
        squares = keras.ops.pad(keras.ops.square(x), pad)
        index = [slice(None)] * x.ndim
        total = None
        for offset in range(self.size):  # the window sum as `size` shifted slices
            index[axis] = slice(offset, offset + channels)
            part = squares[tuple(index)]
            total = part if total is None else total + part
        return x / keras.ops.power(self.k + self.alpha * total, self.beta)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "size": self.size, "alpha": self.alpha,
                "beta": self.beta, "k": self.k, "data_format": self.data_format}

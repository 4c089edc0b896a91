"""Building blocks shared by the model families, named like the papers' own layers."""

from __future__ import annotations

import keras
from keras import layers


def channel_axis() -> int:
    """The channel axis of image tensors under the current `image_data_format`."""
    return -1 if keras.config.image_data_format() == "channels_last" else 1


# He et al. 2015 ("Delving deep into rectifiers") initialisation as torchvision applies it:
# normal, variance 2/fan_out. Untruncated: Keras' truncated normal is ~10x slower to draw on
# the torch backend, which made building ResNet-152 take 15 s. A config, so every layer
# gets its own initializer.
HE_NORMAL = {"class_name": "VarianceScaling",
             "config": {"scale": 2.0, "mode": "fan_out", "distribution": "untruncated_normal"}}


def seeded_glorot() -> keras.initializers.Initializer:
    # The course initialises every ResNet kernel with glorot_uniform(seed=0).
    return keras.initializers.GlorotUniform(seed=0)


def _conv_bn(
    X, filters: int, kernel: int, name: str, bn_name: str, *, strides=1, padding="valid",
    kernel_initializer=None, use_bias: bool = True,
):
    X = layers.Conv2D(
        filters, kernel, strides=strides, padding=padding, name=name, use_bias=use_bias,
        kernel_initializer=kernel_initializer or seeded_glorot(),
    )(X)
    return layers.BatchNormalization(axis=channel_axis(), name=bn_name)(X)


def _bottleneck_branch(X, f: int, filters, stage: int, block: str, stride: int, init=None):
    """The 1x1 -> fxf -> 1x1 main path; ends on BN, before the shortcut is added."""
    F1, F2, F3 = filters
    conv, bn = f"res{stage}{block}_branch", f"bn{stage}{block}_branch"
    X = _conv_bn(X, F1, 1, conv + "2a", bn + "2a", strides=stride, kernel_initializer=init)
    X = layers.Activation("relu", name=conv + "2a_relu")(X)
    X = _conv_bn(X, F2, f, conv + "2b", bn + "2b", padding="same", kernel_initializer=init)
    X = layers.Activation("relu", name=conv + "2b_relu")(X)
    return _conv_bn(X, F3, 1, conv + "2c", bn + "2c", kernel_initializer=init)


def _merge(X, shortcut, stage: int, block: str):
    X = layers.Add(name=f"res{stage}{block}_add")([X, shortcut])
    return layers.Activation("relu", name=f"res{stage}{block}_relu")(X)


def identity_block(X, f: int, filters, stage: int, block: str, *, kernel_initializer=None):
    """ResNet v1 bottleneck block whose input and output shapes match (He et al. 2015).

    1x1 (F1) -> fxf same (F2) -> 1x1 (F3), each followed by BN, ReLU after the first two;
    the block's input is added to the last BN output before the final ReLU. Layers are
    named `res{stage}{block}_branch2a` ... as in the paper's Caffe model. Kernels start
    glorot-uniform(seed 0) as in the course unless `kernel_initializer` is given.
    """
    main = _bottleneck_branch(X, f, filters, stage, block, 1, kernel_initializer)
    return _merge(main, X, stage, block)


def convolutional_block(
    X, f: int, filters, stage: int, block: str, s: int = 2, *, kernel_initializer=None
):
    """ResNet v1 bottleneck block that changes shape: stride `s` and a projection shortcut.

    As `identity_block`, but the first 1x1 conv has stride s, and the shortcut is a learned
    1x1 conv (F3, stride s, `res{stage}{block}_branch1`) + BN — the paper's projection W_s.
    """
    shortcut = _conv_bn(
        X, filters[2], 1, f"res{stage}{block}_branch1", f"bn{stage}{block}_branch1", strides=s,
        kernel_initializer=kernel_initializer,
    )
    X = _bottleneck_branch(X, f, filters, stage, block, s, kernel_initializer)
    return _merge(X, shortcut, stage, block)


# --- Shortcuts, for the residual and "plain" networks -------------------------------------

SHORTCUTS = ("projection", "padding", None)


def _changes_shape(X, channels: int, stride: int) -> bool:
    return stride != 1 or X.shape[channel_axis()] != channels


@keras.saving.register_keras_serializable(package="cnnzoo")
class ZeroPadShortcut(layers.Layer):
    """The parameter-free shortcut of He et al. 2015 ("option A"), for when shapes differ.

    Subsamples the input spatially by `strides` (keeps every s-th row and column, the
    positions a stride-s 1x1 convolution would read) and appends zero channels up to
    `filters`, so it can be added to a block's output without any learned weights.
    """

    def __init__(self, filters: int, strides: int = 1, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.strides = int(strides)
        self.data_format = data_format or keras.config.image_data_format()

    def _axes(self):
        return (3, 1, 2) if self.data_format == "channels_last" else (1, 2, 3)

    def call(self, x):
        channel, *spatial = self._axes()
        if self.strides > 1:
            index = [slice(None)] * 4
            for axis in spatial:
                index[axis] = slice(None, None, self.strides)
            x = x[tuple(index)]
        extra = self.filters - x.shape[channel]
        if extra > 0:
            pad = [[0, 0]] * 4
            pad[channel] = [0, extra]
            x = keras.ops.pad(x, pad)
        return x

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        channel, *spatial = self._axes()
        for axis in spatial:
            if shape[axis] is not None:
                shape[axis] = -(-shape[axis] // self.strides)  # ceil, like "same" stride s
        shape[channel] = max(self.filters, shape[channel])
        return tuple(shape)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "strides": self.strides,
                "data_format": self.data_format}


def _shortcut(X, channels: int, stride: int, stage: int, block: str, shortcut, init, *,
              use_bias: bool = False, batch_norm: bool = True):
    """The block's input as the main path will see it: identity, projection or padding."""
    if not _changes_shape(X, channels, stride):
        return X
    name = f"res{stage}{block}_branch1"
    if shortcut == "padding":
        return ZeroPadShortcut(channels, stride, name=name + "_pad")(X)
    if not batch_norm:  # pre-activation: the projection reads the already normalised input
        return layers.Conv2D(channels, 1, strides=stride, use_bias=use_bias, name=name,
                             kernel_initializer=init)(X)
    return _conv_bn(X, channels, 1, name, f"bn{stage}{block}_branch1", strides=stride,
                    kernel_initializer=init, use_bias=use_bias)


def _check_shortcut(shortcut):
    if shortcut not in SHORTCUTS:
        raise ValueError(
            "shortcut must be 'projection', 'padding' or None (a plain network). "
            f"Received: shortcut={shortcut!r}"
        )


def _finish(X, shortcut_tensor, stage: int, block: str):
    """Add the shortcut (unless the network is plain) and apply the block's last ReLU."""
    if shortcut_tensor is None:
        return layers.Activation("relu", name=f"res{stage}{block}_relu")(X)
    return _merge(X, shortcut_tensor, stage, block)


# --- ResNet blocks beyond the seed's -------------------------------------------------------


def basic_block(X, filters: int, stage: int, block: str, *, stride: int = 1,
                shortcut="projection", kernel_initializer=HE_NORMAL):
    """ResNet-18/34 block (He et al. 2015, Fig. 2 left): 3x3 -> 3x3, each followed by BN.

    The first 3x3 conv has stride `stride`. When the shape changes the shortcut is a
    projection (1x1 conv + BN, `res{stage}{block}_branch1`) or the parameter-free
    `ZeroPadShortcut` (`shortcut='padding'`); `shortcut=None` drops it, giving the paper's
    "plain" counterpart with exactly the same main-path layers. Convolutions have no bias
    (BN follows each), as in torchvision, so ResNet-18 matches its 11,689,512 weights.
    """
    _check_shortcut(shortcut)
    conv, bn = f"res{stage}{block}_branch", f"bn{stage}{block}_branch"
    x = _conv_bn(X, filters, 3, conv + "2a", bn + "2a", strides=stride, padding="same",
                 kernel_initializer=kernel_initializer, use_bias=False)
    x = layers.Activation("relu", name=conv + "2a_relu")(x)
    x = _conv_bn(x, filters, 3, conv + "2b", bn + "2b", padding="same",
                 kernel_initializer=kernel_initializer, use_bias=False)
    skip = None
    if shortcut is not None:
        skip = _shortcut(X, filters, stride, stage, block, shortcut, kernel_initializer)
    return _finish(x, skip, stage, block)


def bottleneck_block(X, filters, stage: int, block: str, *, stride: int = 1,
                     shortcut="projection", kernel_initializer=None):
    """ResNet-50/101/152 v1 block with a choice of shortcut (see `basic_block`).

    With the default projection shortcut this is exactly the seed's `identity_block` (shape
    kept) or `convolutional_block` (shape changed; stride on the first 1x1 as in the
    paper's Caffe model), so the layer names and counts equal Keras' ResNet50/101/152.
    """
    _check_shortcut(shortcut)
    changes = _changes_shape(X, filters[2], stride)
    init = kernel_initializer
    if shortcut == "projection" and changes:
        return convolutional_block(X, 3, filters, stage, block, s=stride, kernel_initializer=init)
    if shortcut is not None and not changes:
        return identity_block(X, 3, filters, stage, block, kernel_initializer=init)
    x = _bottleneck_branch(X, 3, filters, stage, block, stride, init)
    skip = None if shortcut is None else _shortcut(X, filters[2], stride, stage, block, shortcut, init)
    return _finish(x, skip, stage, block)


def preact_bottleneck_block(X, filters, stage: int, block: str, *, stride: int = 1,
                            shortcut="projection", kernel_initializer=HE_NORMAL):
    """ResNet v2 bottleneck (He et al. 2016, "Identity Mappings"): BN and ReLU before each conv.

    BN -> ReLU -> 1x1 (F1) -> BN -> ReLU -> 3x3 (F2, stride) -> BN -> ReLU -> 1x1 (F3), added
    to the shortcut with no activation after the sum, so the identity path stays clean.
    A projection shortcut reads the pre-activated input, and biases sit where Keras'
    ResNet50V2 has them (the last 1x1 and the projection), so the counts are equal.
    """
    _check_shortcut(shortcut)
    F1, F2, F3 = filters
    conv, bn = f"res{stage}{block}_branch", f"bn{stage}{block}_branch"
    init = kernel_initializer
    pre = layers.BatchNormalization(axis=channel_axis(), name=f"bn{stage}{block}_preact")(X)
    pre = layers.Activation("relu", name=f"res{stage}{block}_preact_relu")(pre)
    x = _conv_bn(pre, F1, 1, conv + "2a", bn + "2a", kernel_initializer=init, use_bias=False)
    x = layers.Activation("relu", name=conv + "2a_relu")(x)
    x = _conv_bn(x, F2, 3, conv + "2b", bn + "2b", strides=stride, padding="same",
                 kernel_initializer=init, use_bias=False)
    x = layers.Activation("relu", name=conv + "2b_relu")(x)
    x = layers.Conv2D(F3, 1, name=conv + "2c", kernel_initializer=init)(x)
    if shortcut is None:
        return x
    if shortcut == "projection" and _changes_shape(X, F3, stride):
        skip = _shortcut(pre, F3, stride, stage, block, shortcut, init, use_bias=True,
                         batch_norm=False)
    else:
        skip = _shortcut(X, F3, stride, stage, block, shortcut, init)
    return layers.Add(name=f"res{stage}{block}_add")([x, skip])


# --- AlexNet and GoogLeNet -----------------------------------------------------------------


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
        axis = x.ndim - 1 if self.data_format == "channels_last" else 1
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


def conv_bn_relu(X, filters: int, kernel: int, name: str, *, strides: int = 1,
                 padding: str = "same", batch_norm: bool = True, kernel_initializer=HE_NORMAL):
    """Conv -> (BN) -> ReLU, named `name`, `name_bn`, `name_relu`; no conv bias under BN."""
    X = layers.Conv2D(filters, kernel, strides=strides, padding=padding, use_bias=not batch_norm,
                      kernel_initializer=kernel_initializer, name=name)(X)
    if batch_norm:
        # eps 1e-3 as torchvision's GoogLeNet (BasicConv2d) and Keras' Inception v3.
        X = layers.BatchNormalization(axis=channel_axis(), epsilon=1e-3, name=name + "_bn")(X)
    return layers.Activation("relu", name=name + "_relu")(X)


def inception_module(X, widths, name: str, *, wide_kernel: int = 5, batch_norm: bool = True,
                     kernel_initializer=HE_NORMAL, reductions: bool = True):
    """GoogLeNet's Inception module (Szegedy et al. 2014, Fig. 2b).

    `widths` = (1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj) as in the paper's
    Table 1. Four branches run side by side and are concatenated on the channel axis:
    1x1; 1x1 -> 3x3; 1x1 -> 5x5 (`wide_kernel`, which torchvision sets to 3); and
    3x3 max pool (stride 1) -> 1x1. Every conv is followed by (BN and) ReLU. The output
    has 1x1 + 3x3 + 5x5 + pool-proj channels and the input's height and width.
    `reductions=False` is the naive module of Fig. 2a, the lecture's costly one: no 1x1
    before the 3x3 and 5x5 convs and none after the pool (the reduce and proj widths are
    ignored; the pool branch passes all input channels through).
    """
    try:
        n1, r3, n3, r5, n5, proj = (int(w) for w in widths)
    except (TypeError, ValueError):
        raise ValueError(
            "widths must be six integers (1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj). "
            f"Received: widths={widths!r}"
        ) from None
    unit = dict(batch_norm=batch_norm, kernel_initializer=kernel_initializer)
    b1 = conv_bn_relu(X, n1, 1, f"{name}_1x1", **unit)
    b2 = conv_bn_relu(X, r3, 1, f"{name}_3x3_reduce", **unit) if reductions else X
    b2 = conv_bn_relu(b2, n3, 3, f"{name}_3x3", **unit)
    b3 = conv_bn_relu(X, r5, 1, f"{name}_5x5_reduce", **unit) if reductions else X
    b3 = conv_bn_relu(b3, n5, wide_kernel, f"{name}_5x5", **unit)
    b4 = layers.MaxPooling2D(3, strides=1, padding="same", name=f"{name}_pool")(X)
    if reductions:
        b4 = conv_bn_relu(b4, proj, 1, f"{name}_pool_proj", **unit)
    return layers.Concatenate(axis=channel_axis(), name=f"{name}_output")([b1, b2, b3, b4])

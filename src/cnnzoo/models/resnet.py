"""Residual networks (He et al. 2015, 2016) and their "plain" twins, from one builder.

`_resnet` builds every variant from data: a block kind and the number of blocks per
stage. The variants only choose the data, like torchvision's `_resnet` and timm's
`model_args`:

- v1 (`resnet18` ... `resnet152`): post-activation blocks, basic (3x3-3x3) for 18/34 and
  bottleneck (1x1-3x3-1x1) for 50/101/152, stride on the first conv of a stage's first block.
- v2 (`resnet50v2` ...): pre-activation bottlenecks (BN-ReLU-conv) and a final BN-ReLU.
- plain (`plain18`, `plain34`): the v1 layers with the shortcuts removed, for the paper's
  degradation study (deeper plain nets train worse; residual ones do not).
- CIFAR layout (`resnet20` ... `resnet110`, `plain20` ... `plain56`): Section 4.2's 6n+2
  networks at 32x32, with option-A (zero-padding) shortcuts as in the paper, so that each
  plain net has exactly its residual twin's parameters (Figure 6's pairs).
- `ResNet50`, the course's model (registered as `resnet50`), is the v1 bottleneck network
  with the course's stem: no padding before the first max pool (64x64 gives 15x15 after
  it) and kernels initialised glorot-uniform(seed 0). Its layer names and counts are the
  seed's; at 224x224x3 / 1000 classes it has Keras' 25,636,712 parameters.

Conv biases follow the implementation whose parameter count each model reproduces:
Caffe/Keras for the bottleneck models (a bias on every v1 conv; Keras' placement for v2),
torchvision for ResNet-18/34 (no bias before BN).

The published implementations differ from these in details that change what the network
computes, so their weights get variants of their own, built by the same `_resnet` from a
`Convention` (docs/MODELS.md, "Variants for published weights"):

- torchvision (`resnet18_tv` ... `resnet152_tv`, also timm's `resnet*`): the bottleneck's
  stride on its 3x3 conv ("v1.5"), no conv biases, a strided 3x3 padded one pixel on every
  side (Keras' "same" pads only after), batch-norm epsilon 1e-5.
- keras.applications (`resnet50_keras`, the standard stem; `resnet50v2_keras` ...): epsilon
  1.001e-5, and in ResNetV2 the stride in each stage's *last* block, whose shortcut is a 1x1
  subsampling instead of the paper's projection in the first block.
"""

from __future__ import annotations

import dataclasses
import string

import keras
from keras import layers

from cnnzoo.errors import UserError
from cnnzoo.models.layers import HE_NORMAL, backbone_pooling, channel_axis, check_arguments, image_dims
from cnnzoo.models.registry import Recipe, register_model


@dataclasses.dataclass(frozen=True)
class Convention:
    """How one implementation's ResNet differs from cnnzoo's paper layout (the defaults)."""

    stride_on_3x3: bool = False  # bottleneck: the 3x3 conv strides, not the first 1x1 (torchvision "v1.5")
    symmetric_padding: bool = False  # a strided 3x3 pads 1 on every side (PyTorch, Caffe), not "same"'s 0/1
    conv_bias: bool = True  # biases on the bottleneck convs and the stem (Caffe, Keras); torchvision: none
    bn_epsilon: float = 1e-3  # Keras' default
    stride_last: bool = False  # v2: a stage's last block strides, its shortcut a 1x1 subsampling (Keras)

    @property
    def seed_layout(self) -> bool:
        """True where the blocks are the seed's (the course's and Keras' v1 layers)."""
        return not (self.stride_on_3x3 or self.symmetric_padding or not self.conv_bias or self.stride_last)


CNNZOO = Convention()
TORCHVISION = Convention(stride_on_3x3=True, symmetric_padding=True, conv_bias=False, bn_epsilon=1e-5)
KERAS = Convention(bn_epsilon=1.001e-5)
KERAS_V2 = Convention(symmetric_padding=True, bn_epsilon=1.001e-5, stride_last=True)

# --- The seed's blocks (the course's identity and convolutional blocks) ----------------------


def seeded_glorot() -> keras.initializers.Initializer:
    # The course initialises every ResNet kernel with glorot_uniform(seed=0).
    return keras.initializers.GlorotUniform(seed=0)


def _conv_bn(
    X, filters: int, kernel: int, name: str, bn_name: str, *, strides=1, padding="valid",
    kernel_initializer=None, use_bias: bool = True,
):
    if padding == "symmetric":  # kernel // 2 on every side, as PyTorch's padding=1 for a 3x3
        X = layers.ZeroPadding2D(kernel // 2, name=name + "_pad")(X)
        padding = "valid"
    X = layers.Conv2D(
        filters, kernel, strides=strides, padding=padding, name=name, use_bias=use_bias,
        kernel_initializer=kernel_initializer or seeded_glorot(),
    )(X)
    return layers.BatchNormalization(axis=channel_axis(), name=bn_name)(X)


def _padding(stride: int, convention: Convention) -> str:
    """A 3x3 conv's padding: "same" unless it strides under a symmetric-padding convention."""
    return "symmetric" if stride > 1 and convention.symmetric_padding else "same"


def _bottleneck_branch(X, f: int, filters, stage: int, block: str, stride: int, init=None,
                       convention: Convention = CNNZOO):
    """The 1x1 -> fxf -> 1x1 main path; ends on BN, before the shortcut is added."""
    F1, F2, F3 = filters
    conv, bn = f"res{stage}{block}_branch", f"bn{stage}{block}_branch"
    first, middle = (1, stride) if convention.stride_on_3x3 else (stride, 1)
    bias = convention.conv_bias
    X = _conv_bn(X, F1, 1, conv + "2a", bn + "2a", strides=first, kernel_initializer=init, use_bias=bias)
    X = layers.Activation("relu", name=conv + "2a_relu")(X)
    X = _conv_bn(X, F2, f, conv + "2b", bn + "2b", strides=middle, padding=_padding(middle, convention),
                 kernel_initializer=init, use_bias=bias)
    X = layers.Activation("relu", name=conv + "2b_relu")(X)
    return _conv_bn(X, F3, 1, conv + "2c", bn + "2c", kernel_initializer=init, use_bias=bias)


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
        """(channel axis, height axis, width axis) of a batch."""
        height, width, channel = image_dims((1, 2, 3), self.data_format)
        return channel, height, width

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


# --- ResNet-18/34, v2 and plain blocks -----------------------------------------------------


def basic_block(X, filters: int, stage: int, block: str, *, stride: int = 1,
                shortcut="projection", kernel_initializer=HE_NORMAL, convention: Convention = CNNZOO):
    """ResNet-18/34 block (He et al. 2015, Fig. 2 left): 3x3 -> 3x3, each followed by BN.

    The first 3x3 conv has stride `stride`. When the shape changes the shortcut is a
    projection (1x1 conv + BN, `res{stage}{block}_branch1`) or the parameter-free
    `ZeroPadShortcut` (`shortcut='padding'`); `shortcut=None` drops it, giving the paper's
    "plain" counterpart with exactly the same main-path layers. Convolutions have no bias
    (BN follows each), as in torchvision, so ResNet-18 matches its 11,689,512 weights.
    """
    _check_shortcut(shortcut)
    conv, bn = f"res{stage}{block}_branch", f"bn{stage}{block}_branch"
    x = _conv_bn(X, filters, 3, conv + "2a", bn + "2a", strides=stride, padding=_padding(stride, convention),
                 kernel_initializer=kernel_initializer, use_bias=False)
    x = layers.Activation("relu", name=conv + "2a_relu")(x)
    x = _conv_bn(x, filters, 3, conv + "2b", bn + "2b", padding="same",
                 kernel_initializer=kernel_initializer, use_bias=False)
    skip = None
    if shortcut is not None:
        skip = _shortcut(X, filters, stride, stage, block, shortcut, kernel_initializer)
    return _finish(x, skip, stage, block)


def bottleneck_block(X, filters, stage: int, block: str, *, stride: int = 1,
                     shortcut="projection", kernel_initializer=None, convention: Convention = CNNZOO):
    """ResNet-50/101/152 v1 block with a choice of shortcut (see `basic_block`).

    With the default projection shortcut this is exactly the seed's `identity_block` (shape
    kept) or `convolutional_block` (shape changed; stride on the first 1x1 as in the
    paper's Caffe model), so the layer names and counts equal Keras' ResNet50/101/152.
    Another `convention` (torchvision's) moves the stride, the padding and the biases.
    """
    _check_shortcut(shortcut)
    changes = _changes_shape(X, filters[2], stride)
    init = kernel_initializer
    if convention.seed_layout and shortcut == "projection" and changes:
        return convolutional_block(X, 3, filters, stage, block, s=stride, kernel_initializer=init)
    if convention.seed_layout and shortcut is not None and not changes:
        return identity_block(X, 3, filters, stage, block, kernel_initializer=init)
    x = _bottleneck_branch(X, 3, filters, stage, block, stride, init, convention)
    skip = None if shortcut is None else _shortcut(X, filters[2], stride, stage, block, shortcut, init,
                                                   use_bias=convention.conv_bias and shortcut == "projection")
    return _finish(x, skip, stage, block)


def preact_bottleneck_block(X, filters, stage: int, block: str, *, stride: int = 1,
                            shortcut="projection", kernel_initializer=HE_NORMAL,
                            convention: Convention = CNNZOO):
    """ResNet v2 bottleneck (He et al. 2016, "Identity Mappings"): BN and ReLU before each conv.

    BN -> ReLU -> 1x1 (F1) -> BN -> ReLU -> 3x3 (F2, stride) -> BN -> ReLU -> 1x1 (F3), added
    to the shortcut with no activation after the sum, so the identity path stays clean.
    A projection shortcut reads the pre-activated input, and biases sit where Keras'
    ResNet50V2 has them (the last 1x1 and the projection), so the counts are equal.
    Keras' own layout (`convention=KERAS_V2`) strides in a stage's last block instead, where
    only the resolution changes: its shortcut then subsamples the input (a 1x1 max pool with
    stride 2 in Keras; `ZeroPadShortcut` adds no channels here, so it is the same thing).
    """
    _check_shortcut(shortcut)
    F1, F2, F3 = filters
    conv, bn = f"res{stage}{block}_branch", f"bn{stage}{block}_branch"
    init = kernel_initializer
    pre = layers.BatchNormalization(axis=channel_axis(), name=f"bn{stage}{block}_preact")(X)
    pre = layers.Activation("relu", name=f"res{stage}{block}_preact_relu")(pre)
    x = _conv_bn(pre, F1, 1, conv + "2a", bn + "2a", kernel_initializer=init, use_bias=False)
    x = layers.Activation("relu", name=conv + "2a_relu")(x)
    x = _conv_bn(x, F2, 3, conv + "2b", bn + "2b", strides=stride, padding=_padding(stride, convention),
                 kernel_initializer=init, use_bias=False)
    x = layers.Activation("relu", name=conv + "2b_relu")(x)
    x = layers.Conv2D(F3, 1, name=conv + "2c", kernel_initializer=init)(x)
    if shortcut is None:
        return x
    if convention.stride_last and X.shape[channel_axis()] == F3:
        skip = _shortcut(X, F3, stride, stage, block, "padding", init)  # subsampling only
    elif shortcut == "projection" and _changes_shape(X, F3, stride):
        skip = _shortcut(pre, F3, stride, stage, block, shortcut, init, use_bias=True,
                         batch_norm=False)
    else:
        skip = _shortcut(X, F3, stride, stage, block, shortcut, init)
    return layers.Add(name=f"res{stage}{block}_add")([x, skip])


# --- Networks ------------------------------------------------------------------------------

# depth -> (block kind, blocks per stage): Table 1 of He et al. 2015.
IMAGENET_DEPTHS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
IMAGENET_WIDTHS = (64, 128, 256, 512)  # 3x3 width per stage; bottlenecks output 4x this
CIFAR_WIDTHS = (16, 32, 64)  # Section 4.2: 6n+2 layers, three stages of n basic blocks
BLOCKS = {"basic": basic_block, "bottleneck": bottleneck_block, "preact": preact_bottleneck_block}
# The last layer of each block's residual branch, before the sum: a BN on v1, a 1x1 conv on v2.
BRANCH_END = {"basic": "bn{stage}{block}_branch2b", "bottleneck": "bn{stage}{block}_branch2c",
              "preact": "res{stage}{block}_branch2c"}
PAPER_V1 = "He, Zhang, Ren, Sun: Deep Residual Learning for Image Recognition (CVPR 2016)"
PAPER_V2 = "He, Zhang, Ren, Sun: Identity Mappings in Deep Residual Networks (ECCV 2016)"


def block_names(blocks: int) -> list[str]:
    """'a', 'b', 'c', ... and, once letters run out, Caffe's 'a', 'b1', 'b2', ... ('res4b22')."""
    if blocks <= len(string.ascii_lowercase):
        return list(string.ascii_lowercase[:blocks])
    return ["a"] + [f"b{i}" for i in range(1, blocks)]


def _stem(x, stem: str, version: int, init, bias: bool):
    bn_axis = channel_axis()
    if stem == "cifar":  # 3x3 conv, no pooling: small images keep their resolution
        x = layers.Conv2D(CIFAR_WIDTHS[0], 3, padding="same", use_bias=bias, name="conv1",
                          kernel_initializer=init)(x)
    else:
        x = layers.ZeroPadding2D(3, name="conv1_pad")(x)
        x = layers.Conv2D(64, 7, strides=2, use_bias=bias, name="conv1",
                          kernel_initializer=init)(x)  # 112x112x64 at 224
    if version == 1:  # v2 normalises inside the first block instead (pre-activation)
        x = layers.BatchNormalization(axis=bn_axis, name="bn_conv1")(x)
        x = layers.Activation("relu", name="conv1_relu")(x)
    if stem == "imagenet":
        x = layers.ZeroPadding2D(1, name="pool1_pad")(x)
    if stem != "cifar":
        x = layers.MaxPooling2D(3, strides=2, name="pool1")(x)  # 56x56x64 at 224
    return x


def _resnet(
    model_name: str,
    kind: str,
    blocks_per_stage,
    *,
    widths=IMAGENET_WIDTHS,
    stem: str = "imagenet",
    shortcut="projection",
    input_shape,
    classes: int,
    include_top: bool = True,
    pooling=None,
    classifier_activation="softmax",
    kernel_initializer=HE_NORMAL,
    min_size: int = 1,
    zero_init_residual: bool = False,
    convention: Convention = CNNZOO,
):
    """The one ResNet builder: `kind` in BLOCKS, `blocks_per_stage` a tuple, stem 'imagenet',
    'course' (no pad before pool1) or 'cifar' (3x3 conv, no pool); `convention` the
    implementation whose layout to follow (cnnzoo's, torchvision's, Keras')."""
    input_shape = check_arguments(
        model_name, input_shape, classes, min_size=min_size, pooling=pooling,
        include_top=include_top,
    )
    if shortcut not in SHORTCUTS:
        raise UserError(
            f"{model_name}: shortcut must be 'projection', 'padding' or None. "
            f"Received: shortcut={shortcut!r}"
        )
    if zero_init_residual and shortcut is None:
        raise UserError(
            f"{model_name}: zero_init_residual starts each block as its shortcut, and a plain "
            "network has none (its blocks would output zeros): leave it False."
        )
    version = 2 if kind == "preact" else 1
    init = seeded_glorot() if kernel_initializer == "course" else kernel_initializer
    block_init = None if kernel_initializer == "course" else kernel_initializer  # None: seeded
    inputs = keras.Input(input_shape, name="input")
    x = _stem(inputs, stem, version, init, bias=kind != "basic" and convention.conv_bias)
    branch_ends = []  # the last layer of each block's residual branch
    for index, (width, blocks) in enumerate(zip(widths, blocks_per_stage)):
        stage = index + 2
        filters = width if kind == "basic" else (width, width, 4 * width)
        for number, block in enumerate(block_names(blocks)):
            if convention.stride_last:  # Keras' ResNetV2: the last block of every stage but the last
                stride = 2 if number == blocks - 1 and index < len(blocks_per_stage) - 1 else 1
            else:
                stride = 2 if number == 0 and index > 0 else 1
            x = BLOCKS[kind](x, filters, stage, block, stride=stride, shortcut=shortcut,
                             kernel_initializer=block_init, convention=convention)
            branch_ends.append(BRANCH_END[kind].format(stage=stage, block=block))
    # 7x7 at 224 (v1/v2 ImageNet); 2x2 at the course's 64x64
    if version == 2:
        x = layers.BatchNormalization(axis=channel_axis(), name="post_bn")(x)
        x = layers.Activation("relu", name="post_relu")(x)
    if include_top:
        x = layers.GlobalAveragePooling2D(keepdims=True, name="avg_pool")(x)  # 1x1xC
        x = layers.Flatten(name="flatten")(x)
        x = layers.Dense(classes, activation=classifier_activation, name=f"fc{classes}",
                         kernel_initializer=init if kernel_initializer == "course" else "glorot_uniform")(x)
    else:
        x = backbone_pooling(x, pooling)
    model = keras.Model(inputs, x, name=model_name)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.epsilon = convention.bn_epsilon
    if zero_init_residual:
        _zero_branch_ends(model, branch_ends)
    return model


def _zero_branch_ends(model: keras.Model, names) -> None:
    """Zero the last scale of every residual branch, so that each block starts as its shortcut
    (Goyal et al. 2017, "Accurate, Large Minibatch SGD"; torchvision's `zero_init_residual`,
    timm's `zero_init_last`): a very deep v1 network then starts as a shallow one."""
    for name in names:
        layer = model.get_layer(name)
        weight = layer.gamma if isinstance(layer, layers.BatchNormalization) else layer.kernel
        weight.assign(keras.ops.zeros(weight.shape, weight.dtype))


def resnet(
    depth: int,
    *,
    version: int = 1,
    shortcut="projection",
    layout: str = "imagenet",
    input_shape=(224, 224, 3),
    classes: int = 1000,
    include_top: bool = True,
    pooling=None,
    classifier_activation="softmax",
    zero_init_residual: bool = False,
    convention: Convention = CNNZOO,
) -> keras.Model:
    """A residual network of the given depth; `shortcut=None` gives its plain twin.

    layout='imagenet': depth 18, 34 (basic blocks), 50, 101 or 152 (bottlenecks), as in
    Table 1 of He et al. 2015; version=2 gives the pre-activation form (50/101/152).
    layout='cifar': depth 6n+2 (20, 32, 44, 56, 110, ...), three stages of n basic blocks
    with 16/32/64 filters and a 3x3 stem (Section 4.2), the paper's degradation study size.
    `shortcut` chooses what the shortcut does where shapes change: 'projection' (1x1 conv,
    option B), 'padding' (zero channels, option A, no parameters) or None (no shortcuts).
    `zero_init_residual=True` zeroes the last BN scale (v2: the last conv) of every residual
    branch, as torchvision's option of that name, so each block starts as its shortcut.
    `convention` follows another implementation's layout: TORCHVISION, KERAS or KERAS_V2.
    """
    name = ("ResNet" if shortcut is not None else "Plain") + str(depth) + ("V2" if version == 2 else "")
    if version not in (1, 2):
        raise UserError(f"{name}: version must be 1 or 2. Received: version={version!r}")
    if layout == "cifar":
        if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
            raise UserError(
                f"{name}: a CIFAR-layout ResNet has 6n+2 layers (20, 32, 44, 56, 110, ...). "
                f"Received: depth={depth!r}"
            )
        if version != 1:
            raise UserError(f"{name}: the CIFAR layout is built from v1 basic blocks. Received: version=2")
        kind, blocks, widths, stem = "basic", ((depth - 2) // 6,) * 3, CIFAR_WIDTHS, "cifar"
    elif layout == "imagenet":
        if depth not in IMAGENET_DEPTHS:
            raise UserError(
                f"{name}: depth must be one of {', '.join(map(str, IMAGENET_DEPTHS))} for the "
                f"ImageNet layout (or use layout='cifar' for 6n+2). Received: depth={depth!r}"
            )
        kind, blocks = IMAGENET_DEPTHS[depth]
        if version == 2:
            if kind == "basic":
                raise UserError(f"{name}: version 2 is built for the bottleneck depths 50, 101 and 152.")
            kind = "preact"
        widths, stem = IMAGENET_WIDTHS, "imagenet"
    else:
        raise UserError(f"{name}: layout must be 'imagenet' or 'cifar'. Received: layout={layout!r}")
    return _resnet(
        name, kind, blocks, widths=widths, stem=stem, shortcut=shortcut, input_shape=input_shape,
        classes=classes, include_top=include_top, pooling=pooling,
        classifier_activation=classifier_activation, zero_init_residual=zero_init_residual,
        convention=convention,
    )


def plain(depth: int, **kwargs) -> keras.Model:
    """The "plain" network of `resnet(depth, ...)`: the same layers without any shortcut."""
    return resnet(depth, shortcut=None, **kwargs)


# Chosen on signs' validation split: at lr 1e-3 without warm-up, training accuracy fell back to
# 48-54% twice in the first 12 epochs and the best validation loss was 0.072 (epoch 30); at 5e-4
# with 2 warm-up epochs it was 0.037 by epoch 13. The deeper v1 ResNets fail the same way on
# signs: resnet101 at the default recipe (1e-3, no warm-up, 20 epochs) fell from 53% to 32%
# training accuracy at epoch 6 (seed 1), and 2 of 3 seeds ended at 77% and 85% training accuracy.
BOTTLENECK_V1_RECIPE = Recipe(epochs=30, batch_size=32, lr=5e-4, warmup=2)
# ResNet-50 on signs' default augmentation (60 epochs at 2.5e-4) ended at 91-93% training accuracy,
# and 93% clean test accuracy on 2 of 3 seeds; with every residual branch zero-initialised it fitted
# (96% at the end) and scored 99.1% clean and 91-93% on the robustness suite (85% before) on each
# seed it ran (docs/RESULTS.md, robustness).
RESNET50_RECIPE = dataclasses.replace(BOTTLENECK_V1_RECIPE, zero_init_residual=True)
COURSE_MIN_SIZE = 5  # the course's pool1 (3x3, no padding) needs conv1's output to be >= 3


@register_model(
    "resnet50",
    description="The course's ResNet-50 (64x64, 6 classes): v1 bottlenecks, named as in the paper.",
    paper=PAPER_V1,
    year=2015,
    reference_params=23_600_006,
    min_input_size=COURSE_MIN_SIZE,
    residual=True,
    recipe=RESNET50_RECIPE,
)
def ResNet50(
    input_shape=(64, 64, 3),
    classes: int = 6,
    *,
    include_top: bool = True,
    pooling=None,
    classifier_activation="softmax",
    zero_init_residual: bool = False,
) -> keras.Model:
    """Build the course's ResNet-50; 23,600,006 parameters at 64x64x3 with 6 classes.

    The top is a global average pool named `avg_pool` (1x1x2048, which equals the course's
    2x2 average pool at 64x64 and keeps any larger input working), Flatten and
    Dense(classes) named `fc{classes}`. `include_top=False` returns the stage-5 features,
    optionally pooled (`pooling='avg'|'max'`), for transfer learning. At 224x224x3 with
    1000 classes it has the 25,636,712 parameters of Keras' ResNet50; the standard stem
    (padding before pool1) is `resnet(50)`.
    """
    # 32x32x64 after conv1, 15x15x64 after pool1, then 15x15x256, 8x8x512, 4x4x1024, 2x2x2048
    _, blocks = IMAGENET_DEPTHS[50]
    return _resnet(
        "ResNet50", "bottleneck", blocks, stem="course", input_shape=input_shape, classes=classes,
        include_top=include_top, pooling=pooling, classifier_activation=classifier_activation,
        kernel_initializer="course", min_size=COURSE_MIN_SIZE, zero_init_residual=zero_init_residual,
    )


def _variant(name, depth, *, version=1, shortcut="projection", description, convention=CNNZOO, **facts):
    """Register `name` as resnet(depth, ...) at the paper's 224x224x3 / 1000 classes."""

    @register_model(
        name, description=description, paper=PAPER_V2 if version == 2 else PAPER_V1,
        year=2016 if version == 2 else 2015, residual=shortcut is not None, **facts,
    )
    def build(input_shape=(224, 224, 3), classes: int = 1000, *, shortcut=shortcut,
              include_top: bool = True, pooling=None, classifier_activation="softmax",
              zero_init_residual: bool = False):
        return resnet(depth, version=version, shortcut=shortcut, input_shape=input_shape,
                      classes=classes, include_top=include_top, pooling=pooling,
                      classifier_activation=classifier_activation, zero_init_residual=zero_init_residual,
                      convention=convention)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"`resnet({depth}, version={version}, shortcut={shortcut!r})` at 224x224x3, 1000 classes."
    if convention != CNNZOO:
        build.__doc__ += f" Layout: {convention}."
    return build


# Reference counts: torchvision's trainable weights for 18/34 (ours adds BN statistics),
# Keras applications' totals for the bottleneck models.
resnet18 = _variant("resnet18", 18, reference_params=11_689_512,
                    description="ResNet-18: 8 basic blocks (3x3-3x3), projection shortcuts.")
resnet34 = _variant("resnet34", 34, reference_params=21_797_672,
                    description="ResNet-34: 16 basic blocks, the paper's main plain-vs-residual pair.")
resnet101 = _variant("resnet101", 101, reference_params=44_707_176, recipe=BOTTLENECK_V1_RECIPE,
                     description="ResNet-101: 33 bottleneck blocks (1x1-3x3-1x1), v1.")
# resnet152 on signs with resnet50's recipe learned slowly (training accuracy 20% at epoch 3, 81% at
# epoch 30, still climbing; test accuracy 81% and 90%). With every residual branch zero-initialised
# it reached 78% at epoch 3 and 99% from epoch 18 (docs/RESULTS.md).
resnet152 = _variant("resnet152", 152, reference_params=60_419_944,
                     recipe=dataclasses.replace(BOTTLENECK_V1_RECIPE, zero_init_residual=True),
                     description="ResNet-152: 50 bottleneck blocks, v1.")
resnet50v2 = _variant("resnet50v2", 50, version=2, reference_params=25_613_800,
                      description="ResNet-50 v2: pre-activation bottlenecks (BN-ReLU-conv).")
resnet101v2 = _variant("resnet101v2", 101, version=2, reference_params=44_675_560,
                       description="ResNet-101 v2: pre-activation bottlenecks.")
resnet152v2 = _variant("resnet152v2", 152, version=2, reference_params=60_380_648,
                       description="ResNet-152 v2: pre-activation bottlenecks.")
plain18 = _variant("plain18", 18, shortcut=None,
                   description="Plain-18: ResNet-18's layers without shortcuts (degradation study).")
plain34 = _variant("plain34", 34, shortcut=None,
                   description="Plain-34: ResNet-34's layers without shortcuts (degradation study).")


def _cifar_variant(name, depth, *, shortcut="padding", reference_params=None):
    """Register `name` as resnet(depth, layout='cifar') at CIFAR's 32x32x3 / 10 classes."""
    family = "ResNet" if shortcut else "Plain"

    @register_model(
        name, description=f"{family}-{depth} (CIFAR layout, Section 4.2): {(depth - 2) // 2} 3x3 basic "
        f"layers in three stages of 16/32/64 filters" + (", zero-padding shortcuts." if shortcut else ", no shortcuts."),
        paper=PAPER_V1, year=2015, reference_params=reference_params, residual=shortcut is not None,
    )
    def build(input_shape=(32, 32, 3), classes: int = 10, *, shortcut=shortcut,
              include_top: bool = True, pooling=None, classifier_activation="softmax",
              zero_init_residual: bool = False):
        return resnet(depth, layout="cifar", shortcut=shortcut, input_shape=input_shape, classes=classes,
                      include_top=include_top, pooling=pooling, classifier_activation=classifier_activation,
                      zero_init_residual=zero_init_residual)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"`resnet({depth}, layout='cifar', shortcut={shortcut!r})` at 32x32x3, 10 classes."
    return build


# Trainable weights of the option-A CIFAR ResNets in akamaster/pytorch_resnet_cifar10, the
# usual re-implementation of Table 6 (0.27M, 0.46M, 0.66M, 0.85M, 1.7M in the paper).
CIFAR_REFERENCE_PARAMS = {20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018, 110: 1_727_962}
resnet20, resnet32, resnet44, resnet56, resnet110 = (
    _cifar_variant(f"resnet{depth}", depth, reference_params=count) for depth, count in CIFAR_REFERENCE_PARAMS.items()
)
plain20, plain32, plain44, plain56 = (_cifar_variant(f"plain{depth}", depth, shortcut=None) for depth in (20, 32, 44, 56))


# The published implementations' own layouts, for their weights (cnnzoo.models.weights).
# Reference counts: torchvision's trainable weights; Keras applications' totals.
TORCHVISION_PARAMS = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032, 101: 44_549_160, 152: 60_192_808}
resnet18_tv, resnet34_tv, resnet50_tv, resnet101_tv, resnet152_tv = (
    _variant(f"resnet{depth}_tv", depth, convention=TORCHVISION, reference_params=count,
             description=f"torchvision's ResNet-{depth}" + (" (v1.5: stride on the 3x3)" if depth >= 50 else "")
             + ": no conv biases, symmetric padding, BN eps 1e-5; also timm's resnet{depth}.")
    for depth, count in TORCHVISION_PARAMS.items()
)
resnet50_keras = _variant("resnet50_keras", 50, convention=KERAS, reference_params=25_636_712,
                          description="keras.applications' ResNet50: resnet(50), the standard stem, BN eps 1.001e-5.")
KERAS_V2_PARAMS = {50: 25_613_800, 101: 44_675_560, 152: 60_380_648}
resnet50v2_keras, resnet101v2_keras, resnet152v2_keras = (
    _variant(f"resnet{depth}v2_keras", depth, version=2, convention=KERAS_V2, reference_params=count,
             description=f"keras.applications' ResNet{depth}V2: stride in each stage's last block, BN eps 1.001e-5.")
    for depth, count in KERAS_V2_PARAMS.items()
)

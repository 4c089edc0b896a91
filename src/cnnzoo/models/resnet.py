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
"""

from __future__ import annotations

import string

import keras
from keras import layers

from cnnzoo.errors import UserError
from cnnzoo.layers import (
    HE_NORMAL, SHORTCUTS, basic_block, bottleneck_block, channel_axis, preact_bottleneck_block, seeded_glorot,
)
from cnnzoo.models.common import backbone_pooling, check_arguments
from cnnzoo.models.registry import register_model

# (stage, filters, number of blocks, stride of the first block): the course's ResNet-50.
RESNET50_STAGES = (
    (2, (64, 64, 256), 3, 1),
    (3, (128, 128, 512), 4, 2),
    (4, (256, 256, 1024), 6, 2),
    (5, (512, 512, 2048), 3, 2),
)

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
):
    """The one ResNet builder: `kind` in BLOCKS, `blocks_per_stage` a tuple, stem 'imagenet',
    'course' (no pad before pool1) or 'cifar' (3x3 conv, no pool)."""
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
    x = _stem(inputs, stem, version, init, bias=kind != "basic")
    branch_ends = []  # the last layer of each block's residual branch
    for index, (width, blocks) in enumerate(zip(widths, blocks_per_stage)):
        stage = index + 2
        filters = width if kind == "basic" else (width, width, 4 * width)
        for number, block in enumerate(block_names(blocks)):
            stride = 2 if number == 0 and index > 0 else 1
            x = BLOCKS[kind](x, filters, stage, block, stride=stride, shortcut=shortcut,
                             kernel_initializer=block_init)
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
    )


def plain(depth: int, **kwargs) -> keras.Model:
    """The "plain" network of `resnet(depth, ...)`: the same layers without any shortcut."""
    return resnet(depth, shortcut=None, **kwargs)


@register_model(
    "resnet50",
    description="The course's ResNet-50: bottleneck v1 blocks, named as in the paper, for SIGNS.",
    paper=PAPER_V1,
    year=2015,
    input_shape=(64, 64, 3),
    classes=6,
    reference_params=23_600_006,
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
    optionally pooled (`pooling='avg'|'max'`), for transfer learning.
    """
    # 32x32x64 after conv1, 15x15x64 after pool1, then 15x15x256, 8x8x512, 4x4x1024, 2x2x2048
    return _resnet(
        "ResNet50", "bottleneck", tuple(blocks for _, _, blocks, _ in RESNET50_STAGES),
        stem="course", input_shape=input_shape, classes=classes, include_top=include_top,
        pooling=pooling, classifier_activation=classifier_activation,
        kernel_initializer="course", min_size=5,  # pool1 (3x3, no padding) needs conv1 >= 3
        zero_init_residual=zero_init_residual,
    )


def _variant(name, depth, *, version=1, shortcut="projection", reference_params=None, description):
    """Register `name` as resnet(depth, ...) at the paper's 224x224x3 / 1000 classes."""

    @register_model(
        name, description=description, paper=PAPER_V2 if version == 2 else PAPER_V1,
        year=2016 if version == 2 else 2015, input_shape=(224, 224, 3), classes=1000,
        reference_params=reference_params,
    )
    def build(input_shape=(224, 224, 3), classes: int = 1000, *, shortcut=shortcut,
              include_top: bool = True, pooling=None, classifier_activation="softmax",
              zero_init_residual: bool = False):
        return resnet(depth, version=version, shortcut=shortcut, input_shape=input_shape,
                      classes=classes, include_top=include_top, pooling=pooling,
                      classifier_activation=classifier_activation, zero_init_residual=zero_init_residual)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"`resnet({depth}, version={version}, shortcut={shortcut!r})` at 224x224x3, 1000 classes."
    return build


# Reference counts: torchvision's trainable weights for 18/34 (ours adds BN statistics),
# Keras applications' totals for the bottleneck models.
resnet18 = _variant("resnet18", 18, reference_params=11_689_512,
                    description="ResNet-18: 8 basic blocks (3x3-3x3), projection shortcuts.")
resnet34 = _variant("resnet34", 34, reference_params=21_797_672,
                    description="ResNet-34: 16 basic blocks, the paper's main plain-vs-residual pair.")
resnet101 = _variant("resnet101", 101, reference_params=44_707_176,
                     description="ResNet-101: 33 bottleneck blocks (1x1-3x3-1x1), v1.")
resnet152 = _variant("resnet152", 152, reference_params=60_419_944,
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
        paper=PAPER_V1, year=2015, input_shape=(32, 32, 3), classes=10, reference_params=reference_params,
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

"""GoogLeNet, the Inception network (Szegedy et al. 2014), from `inception_module`s.

The layout is the paper's Table 1, kept as data (`STAGES`): a 7x7/2 conv, 3x3/2 max
pool, 1x1 and 3x3 convs, a pool, then Inception modules 3a-3b, 4a-4e and 5a-5b with 3x3/2
max pools between the groups, global average pooling, dropout 0.4 and the classifier.
Names follow the paper's Caffe model (`inception_4c_5x5_reduce`).

Two auxiliary classifiers sit on 4a and 4d (5x5/3 average pool, 1x1 conv 128, fc 1024,
dropout 0.7, fc classes). `aux_logits=True` returns a model with three outputs,
`[predictions, aux1, aux2]`, to compile with `**aux_compile_args(loss)` (the same loss on
each output, the auxiliary ones weighted 0.3 as in the paper) and fit on `(y, y, y)`;
`drop_aux_heads(model)` returns the one-output model for inference, sharing the trained
weights. The registered `googlenet` has no auxiliary
heads, so it trains with a plain `model.fit(x, y)`.

Choices that differ from the 2014 paper, as torchvision's `googlenet` also makes them:
every conv is followed by batch normalisation (which came a year later and makes the net
train from scratch without the auxiliary losses; `batch_norm=False` gives the paper's
conv+bias+ReLU with its two LRN layers), and the final pool is global, so any input
size works. The 5x5 branch really is 5x5 here; torchvision uses 3x3 there (a known
slip, pytorch/vision#906), which is why its count, 6,624,904, is 380,928 lower: with
`wide_kernel=3` ours has exactly its trainable weights.
"""

from __future__ import annotations

import keras
from keras import layers

from cnnzoo.errors import UserError
from cnnzoo.models.layers import (
    HE_NORMAL,
    LocalResponseNormalization,
    backbone_pooling,
    channel_axis,
    check_arguments,
    conv_bn_relu,
    image_dims,
)
from cnnzoo.models.registry import register_model

PAPER = "Szegedy et al.: Going Deeper with Convolutions (CVPR 2015; arXiv 2014)"
# Table 1: module name -> (1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj);
# "pool" is a 3x3 stride-2 max pool between groups.
STAGES = (
    ("3a", (64, 96, 128, 16, 32, 32)),  # 28x28x256 at 224
    ("3b", (128, 128, 192, 32, 96, 64)),  # 28x28x480
    "pool",
    ("4a", (192, 96, 208, 16, 48, 64)),  # 14x14x512 -> aux1
    ("4b", (160, 112, 224, 24, 64, 64)),
    ("4c", (128, 128, 256, 24, 64, 64)),
    ("4d", (112, 144, 288, 32, 64, 64)),  # 14x14x528 -> aux2
    ("4e", (256, 160, 320, 32, 128, 128)),  # 14x14x832
    "pool",
    ("5a", (256, 160, 320, 32, 128, 128)),
    ("5b", (384, 192, 384, 48, 128, 128)),  # 7x7x1024
)
AUX_AFTER = {"4a": "aux1", "4d": "aux2"}
AUX_LOSS_WEIGHTS = (1.0, 0.3, 0.3)  # predictions, aux1, aux2 (Section 5 of the paper)
MIN_SIZE_AUX = 65  # the auxiliary 5x5 average pool needs a 5x5 map at 4a (input / 16)


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


def _aux_head(x, classes: int, name: str, batch_norm: bool, activation):
    x = layers.AveragePooling2D(5, strides=3, name=f"{name}_pool")(x)  # 4x4 at 224
    x = conv_bn_relu(x, 128, 1, f"{name}_conv", batch_norm=batch_norm)
    x = layers.Flatten(name=f"{name}_flatten")(x)  # 2048 at 224
    x = layers.Dense(1024, activation="relu", name=f"{name}_fc")(x)
    x = layers.Dropout(0.7, name=f"{name}_dropout")(x)
    return layers.Dense(classes, activation=activation, name=name)(x)


@register_model(
    "googlenet",
    description="GoogLeNet (Inception v1): 9 Inception modules, BN, global pool; no aux heads.",
    paper=PAPER,
    year=2014,
    aux_loss_weights=AUX_LOSS_WEIGHTS[1:],
    reference_params=6_624_904,  # torchvision, which has 3x3 in the 5x5 branch (see above)
)
def GoogLeNet(
    input_shape=(224, 224, 3),
    classes: int = 1000,
    *,
    aux_logits: bool = False,
    batch_norm: bool = True,
    wide_kernel: int = 5,
    dropout: float = 0.4,
    include_top: bool = True,
    pooling=None,
    classifier_activation="softmax",
) -> keras.Model:
    """GoogLeNet; 7,020,392 parameters at 224x224x3 with 1000 classes (no auxiliary heads).

    `aux_logits=True` adds the two auxiliary classifiers as extra outputs
    (`[predictions, aux1, aux2]`; needs at least 65x65 input) — compile with
    `loss_weights=AUX_LOSS_WEIGHTS` and fit on `(y, y, y)`, then `drop_aux_heads`.
    `wide_kernel=3` gives torchvision's layout; `batch_norm=False` the paper's.
    """
    if wide_kernel not in (3, 5):
        raise UserError(f"GoogLeNet: wide_kernel must be 5 (the paper) or 3 (torchvision). "
                        f"Received: wide_kernel={wide_kernel!r}")
    input_shape = check_arguments(
        "GoogLeNet", input_shape, classes, min_size=MIN_SIZE_AUX if aux_logits and include_top else 1,
        pooling=pooling, include_top=include_top,
    )
    unit = dict(batch_norm=batch_norm)
    inputs = keras.Input(input_shape, name="input")
    x = conv_bn_relu(inputs, 64, 7, "conv1_7x7_s2", strides=2, **unit)  # 112x112x64
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool1_3x3_s2")(x)  # 56x56x64
    if not batch_norm:
        x = LocalResponseNormalization(name="pool1_norm1")(x)
    x = conv_bn_relu(x, 64, 1, "conv2_3x3_reduce", **unit)
    x = conv_bn_relu(x, 192, 3, "conv2_3x3", **unit)  # 56x56x192
    if not batch_norm:
        x = LocalResponseNormalization(name="conv2_norm2")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool2_3x3_s2")(x)  # 28x28x192
    activation = classifier_activation
    aux_outputs, pools = [], 2
    for stage in STAGES:
        if stage == "pool":
            pools += 1
            x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"pool{pools}_3x3_s2")(x)
            continue
        name, widths = stage
        x = inception_module(x, widths, f"inception_{name}", wide_kernel=wide_kernel, **unit)
        if aux_logits and include_top and name in AUX_AFTER:
            aux_outputs.append(_aux_head(x, classes, AUX_AFTER[name], batch_norm, activation))
    # 7x7x1024 at 224
    if not include_top:
        return keras.Model(inputs, backbone_pooling(x, pooling), name="GoogLeNet")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)  # 1024
    x = layers.Dropout(dropout, name="dropout")(x)
    x = layers.Dense(classes, activation=activation, name="predictions")(x)
    outputs = [x, *aux_outputs] if aux_outputs else x
    return keras.Model(inputs, outputs, name="GoogLeNet")


def drop_aux_heads(model: keras.Model) -> keras.Model:
    """The inference model of a GoogLeNet built with aux_logits=True: main output only.

    It shares the layers (and so the trained weights) of `model`; a model without
    auxiliary heads is returned unchanged.
    """
    if len(model.outputs) == 1:
        return model
    return keras.Model(model.inputs, model.get_layer("predictions").output, name=model.name)


def aux_compile_args(loss="sparse_categorical_crossentropy") -> dict:
    """`compile()` arguments for a GoogLeNet with auxiliary heads: `loss` on each of the
    three outputs, weighted 1, 0.3, 0.3; e.g. `model.compile("adam", **aux_compile_args())`."""
    return {"loss": [loss] * 3, "loss_weights": list(AUX_LOSS_WEIGHTS)}


# --- torchvision's GoogLeNet, for its weights ------------------------------------------------

TORCHVISION_MIN_SIZE = 15  # its four ceil-mode pools need an 8x8 map after conv1


def ceil_max_pool(x, size: int, stride: int, name: str):
    """PyTorch's `MaxPool2d(size, stride, ceil_mode=True)`: the last window may hang over the
    map's end. Keras has no ceil mode, so the map is padded at its end with zeros first; on
    GoogLeNet's maps (ReLU outputs, never negative) a zero never wins the max, so the result
    is PyTorch's. At even sizes this equals Keras' "same"; at odd ones it does not."""
    height, width, _ = image_dims(tuple(x.shape[1:]))
    pads = []
    for n in (height, width):
        out = -(-(n - size) // stride) + 1
        if (out - 1) * stride >= n:  # PyTorch: the last window must start inside the map
            out -= 1
        pads.append((0, max(0, (out - 1) * stride + size - n)))
    x = layers.ZeroPadding2D(tuple(pads), name=f"{name}_pad")(x)
    return layers.MaxPooling2D(size, strides=stride, name=name)(x)


@register_model(
    "googlenet_tv",
    description="torchvision's GoogLeNet: BN, 3x3 in the \"5x5\" branch, ceil-mode pools, 2x2 pool4.",
    paper=PAPER,
    year=2014,
    reference_params=6_624_904,
    min_input_size=TORCHVISION_MIN_SIZE,
)
def googlenet_tv(
    input_shape=(224, 224, 3),
    classes: int = 1000,
    *,
    dropout: float = 0.2,
    include_top: bool = True,
    pooling=None,
    classifier_activation="softmax",
) -> keras.Model:
    """torchvision's `googlenet` without its auxiliary heads; 6,624,904 trainable weights.

    As `GoogLeNet(wide_kernel=3)`, and where that differs from torchvision it follows
    torchvision: conv1 padded 3 on every side, the max pools in ceil mode, a 2x2 pool (not
    3x3) before 5a, dropout 0.2. torchvision's pretrained GoogLeNet re-normalises its input
    (`transform_input`), which together with its mean and std makes it read [-1, 1] images:
    its weights convert with that convention (cnnzoo.models.weights).
    """
    input_shape = check_arguments("googlenet_tv", input_shape, classes, min_size=TORCHVISION_MIN_SIZE,
                                  pooling=pooling, include_top=include_top)
    inputs = keras.Input(input_shape, name="input")
    x = layers.ZeroPadding2D(3, name="conv1_7x7_s2_pad")(inputs)
    x = conv_bn_relu(x, 64, 7, "conv1_7x7_s2", strides=2, padding="valid")  # 112x112x64
    x = ceil_max_pool(x, 3, 2, "pool1_3x3_s2")  # 56x56x64
    x = conv_bn_relu(x, 64, 1, "conv2_3x3_reduce")
    x = conv_bn_relu(x, 192, 3, "conv2_3x3")  # 56x56x192
    x = ceil_max_pool(x, 3, 2, "pool2_3x3_s2")  # 28x28x192
    pools = 2
    for stage in STAGES:
        if stage == "pool":
            pools += 1
            size = 3 if pools == 3 else 2  # torchvision's maxpool4 is 2x2
            x = ceil_max_pool(x, size, 2, f"pool{pools}_{size}x{size}_s2")
            continue
        name, widths = stage
        x = inception_module(x, widths, f"inception_{name}", wide_kernel=3)
    # 7x7x1024 at 224
    if not include_top:
        return keras.Model(inputs, backbone_pooling(x, pooling), name="googlenet_tv")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)  # 1024
    x = layers.Dropout(dropout, name="dropout")(x)
    x = layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    return keras.Model(inputs, x, name="googlenet_tv")

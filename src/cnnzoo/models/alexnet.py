"""AlexNet (Krizhevsky, Sutskever, Hinton 2012), in its single-tower form for 227x227x3.

conv1 96@11x11/4 -> LRN -> pool 3x3/2 -> conv2 256@5x5 -> LRN -> pool -> conv3 384@3x3 ->
conv4 384@3x3 -> conv5 256@3x3 -> pool -> fc6 4096 -> fc7 4096 -> fc8, ReLU throughout,
dropout 0.5 after fc6 and fc7, overlapping 3x3 stride-2 max pools. Names are those of
the paper's Caffe model. The paper split conv2, conv4 and conv5 over two GPUs ("towers");
`towers=2` reproduces that with grouped convolutions (60,965,224 parameters, the paper's
"60 million"); the default single tower has 62,378,344. torchvision's `alexnet`
(61,100,840) is a different variant, from "One weird trick" (Krizhevsky 2014):
64/192/384/256/256 filters, no LRN, and an adaptive 6x6 pool.
"""

from __future__ import annotations

import keras
from keras import layers

from cnnzoo.errors import UserError
from cnnzoo.models.layers import LocalResponseNormalization, backbone_pooling, check_arguments
from cnnzoo.models.registry import Recipe, register_model

PAPER = "Krizhevsky, Sutskever, Hinton: ImageNet Classification with Deep Convolutional Neural Networks (NIPS 2012)"
# (name, filters, kernel, stride, split over the towers, followed by LRN, followed by pool)
CONVS = (
    ("conv1", 96, 11, 4, False, True, True),  # 55x55x96 -> 27x27x96
    ("conv2", 256, 5, 1, True, True, True),  # 27x27x256 -> 13x13x256
    ("conv3", 384, 3, 1, False, False, False),  # 13x13x384 (reads both towers)
    ("conv4", 384, 3, 1, True, False, False),
    ("conv5", 256, 3, 1, True, False, True),  # 13x13x256 -> 6x6x256
)
MIN_SIZE = 67  # conv1 (11x11/4, no padding) and three 3x3/2 pools


@register_model(
    "alexnet",
    description="AlexNet, single tower: 5 convs (11x11/4 first), LRN, 3 dense layers, dropout.",
    paper=PAPER,
    year=2012,
    reference_params=62_378_344,
    min_input_size=MIN_SIZE,
    # No batch normalisation: at Adam 1e-3 it never left chance on signs (training and
    # validation accuracy 15-18% for 20 epochs).
    recipe=Recipe(lr=1e-4),
)
def AlexNet(
    input_shape=(227, 227, 3),
    classes: int = 1000,
    *,
    lrn: bool = True,
    towers: int = 1,
    dropout: float = 0.5,
    include_top: bool = True,
    pooling=None,
    classifier_activation="softmax",
) -> keras.Model:
    """AlexNet; 62,378,344 parameters at 227x227x3 with 1000 classes.

    `lrn=False` leaves out the local response normalisation (which later work found
    unnecessary); `towers=2` splits conv2/4/5 into two groups as on the paper's two GPUs.
    """
    if towers not in (1, 2):
        raise UserError(f"AlexNet: towers must be 1 or 2. Received: towers={towers!r}")
    input_shape = check_arguments(
        "AlexNet", input_shape, classes, min_size=MIN_SIZE, pooling=pooling, include_top=include_top
    )
    inputs = keras.Input(input_shape, name="input")
    x = inputs
    for name, filters, kernel, stride, split, normalise, pool in CONVS:
        x = layers.Conv2D(filters, kernel, strides=stride, padding="valid" if stride > 1 else "same",
                          groups=towers if split else 1, activation="relu", name=name)(x)
        if normalise and lrn:
            x = LocalResponseNormalization(name=f"norm{name[-1]}")(x)
        if pool:
            x = layers.MaxPooling2D(3, strides=2, name=f"pool{name[-1]}")(x)
    # 6x6x256 at 227
    if not include_top:
        return keras.Model(inputs, backbone_pooling(x, pooling), name="AlexNet")
    x = layers.Flatten(name="flatten")(x)  # 9216
    for fc in ("fc6", "fc7"):
        x = layers.Dense(4096, activation="relu", name=fc)(x)
        x = layers.Dropout(dropout, name=f"drop{fc[-1]}")(x)
    x = layers.Dense(classes, activation=classifier_activation, name="fc8")(x)
    return keras.Model(inputs, x, name="AlexNet")


# torchvision's AlexNet ("One weird trick", Krizhevsky 2014), for its weights:
# (name, filters, kernel, stride, padding, followed by a 3x3/2 max pool).
TORCHVISION_CONVS = (
    ("conv1", 64, 11, 4, 2, True),  # 55x55x64 -> 27x27x64 at 224
    ("conv2", 192, 5, 1, 2, True),  # 27x27x192 -> 13x13x192
    ("conv3", 384, 3, 1, 1, False),
    ("conv4", 256, 3, 1, 1, False),
    ("conv5", 256, 3, 1, 1, True),  # 13x13x256 -> 6x6x256
)
TORCHVISION_MIN_SIZE = 63  # conv1 (11x11/4, padded 2) must leave 15x15 for the three unpadded pools
PAPER_2014 = "Krizhevsky: One weird trick for parallelizing convolutional neural networks (arXiv 2014)"


@register_model(
    "alexnet_tv",
    description="torchvision's AlexNet: 64-192-384-256-256 filters, no LRN, adaptive 6x6 pool.",
    paper=PAPER_2014,
    year=2014,
    reference_params=61_100_840,
    min_input_size=TORCHVISION_MIN_SIZE,
    recipe=Recipe(lr=1e-4),  # like `alexnet`: no batch normalisation
)
def alexnet_tv(
    input_shape=(224, 224, 3),
    classes: int = 1000,
    *,
    dropout: float = 0.5,
    include_top: bool = True,
    pooling=None,
    classifier_activation="softmax",
) -> keras.Model:
    """torchvision's `alexnet`; 61,100,840 parameters at 224x224x3 with 1000 classes.

    Differences from the 2012 paper's network (`alexnet`): one tower of 64, 192, 384, 256 and
    256 filters, every conv padded as in PyTorch (2, 2, 1, 1, 1), no LRN, an adaptive 6x6
    average pool before fc6 (so fc6 keeps its 9,216 inputs at any input size), and dropout
    before fc6 and fc7 rather than after them.
    """
    input_shape = check_arguments("alexnet_tv", input_shape, classes, min_size=TORCHVISION_MIN_SIZE,
                                  pooling=pooling, include_top=include_top)
    inputs = keras.Input(input_shape, name="input")
    x = inputs
    for name, filters, kernel, stride, padding, pool in TORCHVISION_CONVS:
        x = layers.ZeroPadding2D(padding, name=f"{name}_pad")(x)
        x = layers.Conv2D(filters, kernel, strides=stride, activation="relu", name=name)(x)
        if pool:
            x = layers.MaxPooling2D(3, strides=2, name=f"pool{name[-1]}")(x)
    if not include_top:
        return keras.Model(inputs, backbone_pooling(x, pooling), name="alexnet_tv")
    x = layers.AdaptiveAveragePooling2D(6, name="avgpool")(x)  # 6x6x256 at any input
    x = layers.Flatten(name="flatten")(x)  # 9216
    for fc in ("fc6", "fc7"):
        x = layers.Dropout(dropout, name=f"drop{fc[-1]}")(x)
        x = layers.Dense(4096, activation="relu", name=fc)(x)
    x = layers.Dense(classes, activation=classifier_activation, name="fc8")(x)
    return keras.Model(inputs, x, name="alexnet_tv")

"""ResNet-50 exactly as the course builds it (He et al. 2015, "Deep Residual Learning").

Differences from keras.applications.ResNet50 that keep the course's figures: no padding
before the first max pool (so 64x64 gives 15x15 after it), kernels initialised
glorot-uniform(seed 0), and layer names from the paper's Caffe model (`res4b_branch2a`).
The parameter count equals Keras' at 224x224x3 / 1000 classes: 25,636,712.
"""

from __future__ import annotations

import keras
from keras import layers

from cnnzoo.layers import channel_axis, convolutional_block, identity_block, seeded_glorot
from cnnzoo.models.common import backbone_pooling, check_arguments
from cnnzoo.models.registry import register_model

# (stage, filters, number of blocks, stride of the first block): the architecture as data.
RESNET50_STAGES = (
    (2, (64, 64, 256), 3, 1),
    (3, (128, 128, 512), 4, 2),
    (4, (256, 256, 1024), 6, 2),
    (5, (512, 512, 2048), 3, 2),
)


@register_model(
    "resnet50",
    description="The course's ResNet-50: bottleneck v1 blocks, named as in the paper, for SIGNS.",
    paper="He, Zhang, Ren, Sun: Deep Residual Learning for Image Recognition (CVPR 2016)",
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
) -> keras.Model:
    """Build the course's ResNet-50; 23,600,006 parameters at 64x64x3 with 6 classes.

    The top is a global average pool named `avg_pool` (1x1x2048, which equals the course's
    2x2 average pool at 64x64 and keeps any larger input working), Flatten and
    Dense(classes) named `fc{classes}`. `include_top=False` returns the stage-5 features,
    optionally pooled (`pooling='avg'|'max'`), for transfer learning.
    """
    input_shape = check_arguments(
        "ResNet50", input_shape, classes, min_size=5, pooling=pooling, include_top=include_top
    )
    inputs = keras.Input(input_shape, name="input")
    x = layers.ZeroPadding2D(3, name="conv1_pad")(inputs)
    x = layers.Conv2D(64, 7, strides=2, name="conv1", kernel_initializer=seeded_glorot())(x)  # 32x32x64
    x = layers.BatchNormalization(axis=channel_axis(), name="bn_conv1")(x)
    x = layers.Activation("relu", name="conv1_relu")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1")(x)  # 15x15x64
    for stage, filters, blocks, stride in RESNET50_STAGES:  # 15x15x256, 8x8x512, 4x4x1024, 2x2x2048
        x = convolutional_block(x, 3, filters, stage, "a", s=stride)
        for block in "bcdefghijklmnopqrstuvwxyz"[: blocks - 1]:
            x = identity_block(x, 3, filters, stage, block)
    if not include_top:
        return keras.Model(inputs, backbone_pooling(x, pooling), name="ResNet50")
    x = layers.GlobalAveragePooling2D(keepdims=True, name="avg_pool")(x)  # 1x1x2048
    x = layers.Flatten(name="flatten")(x)  # 2048
    x = layers.Dense(
        classes, activation=classifier_activation, name=f"fc{classes}",
        kernel_initializer=seeded_glorot(),
    )(x)
    return keras.Model(inputs, x, name="ResNet50")

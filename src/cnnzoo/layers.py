"""Building blocks shared by the model families, named like the papers' own layers."""

from __future__ import annotations

import keras
from keras import layers


def channel_axis() -> int:
    """The channel axis of image tensors under the current `image_data_format`."""
    return -1 if keras.config.image_data_format() == "channels_last" else 1


def seeded_glorot() -> keras.initializers.Initializer:
    # The course initialises every ResNet kernel with glorot_uniform(seed=0).
    return keras.initializers.GlorotUniform(seed=0)


def _conv_bn(X, filters: int, kernel: int, name: str, bn_name: str, *, strides=1, padding="valid"):
    X = layers.Conv2D(
        filters, kernel, strides=strides, padding=padding, name=name,
        kernel_initializer=seeded_glorot(),
    )(X)
    return layers.BatchNormalization(axis=channel_axis(), name=bn_name)(X)


def _bottleneck_branch(X, f: int, filters, stage: int, block: str, stride: int):
    """The 1x1 -> fxf -> 1x1 main path; ends on BN, before the shortcut is added."""
    F1, F2, F3 = filters
    conv, bn = f"res{stage}{block}_branch", f"bn{stage}{block}_branch"
    X = _conv_bn(X, F1, 1, conv + "2a", bn + "2a", strides=stride)
    X = layers.Activation("relu", name=conv + "2a_relu")(X)
    X = _conv_bn(X, F2, f, conv + "2b", bn + "2b", padding="same")
    X = layers.Activation("relu", name=conv + "2b_relu")(X)
    return _conv_bn(X, F3, 1, conv + "2c", bn + "2c")


def _merge(X, shortcut, stage: int, block: str):
    X = layers.Add(name=f"res{stage}{block}_add")([X, shortcut])
    return layers.Activation("relu", name=f"res{stage}{block}_relu")(X)


def identity_block(X, f: int, filters, stage: int, block: str):
    """ResNet v1 bottleneck block whose input and output shapes match (He et al. 2015).

    1x1 (F1) -> fxf same (F2) -> 1x1 (F3), each followed by BN, ReLU after the first two;
    the block's input is added to the last BN output before the final ReLU. Layers are
    named `res{stage}{block}_branch2a` ... as in the paper's Caffe model.
    """
    return _merge(_bottleneck_branch(X, f, filters, stage, block, 1), X, stage, block)


def convolutional_block(X, f: int, filters, stage: int, block: str, s: int = 2):
    """ResNet v1 bottleneck block that changes shape: stride `s` and a projection shortcut.

    As `identity_block`, but the first 1x1 conv has stride s, and the shortcut is a learned
    1x1 conv (F3, stride s, `res{stage}{block}_branch1`) + BN — the paper's projection W_s.
    """
    shortcut = _conv_bn(
        X, filters[2], 1, f"res{stage}{block}_branch1", f"bn{stage}{block}_branch1", strides=s
    )
    X = _bottleneck_branch(X, f, filters, stage, block, s)
    return _merge(X, shortcut, stage, block)

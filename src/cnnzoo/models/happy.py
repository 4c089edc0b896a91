"""HappyModel: the Keras tutorial's smile detector for the "Happy House" door."""

from __future__ import annotations

import keras
from keras import layers

from cnnzoo.layers import channel_axis
from cnnzoo.models.common import backbone_pooling, check_arguments, default_activation
from cnnzoo.models.registry import register_model


@register_model(
    "happy",
    description="The Keras tutorial's smile detector: one 7x7 conv, BN, ReLU, max pool, sigmoid.",
    paper="deeplearning.ai CNN course, week 2: Keras tutorial - the Happy House (2017)",
    year=2017,
    input_shape=(64, 64, 3),
    classes=1,
    reference_params=37_633,
)
def HappyModel(
    input_shape=(64, 64, 3),
    classes: int = 1,
    *,
    include_top: bool = True,
    pooling=None,
    classifier_activation="auto",
) -> keras.Model:
    """Build HappyModel; with 64x64x3 input it has 37,633 parameters (64 non-trainable).

    `classes=1` gives the tutorial's single sigmoid unit (probability of "happy");
    more classes give a softmax layer of that size.
    """
    input_shape = check_arguments(
        "HappyModel", input_shape, classes, min_size=2, pooling=pooling, include_top=include_top
    )
    inputs = keras.Input(input_shape, name="input")
    x = layers.ZeroPadding2D(3, name="zero_pad")(inputs)  # 70x70x3
    x = layers.Conv2D(32, 7, strides=1, name="conv0")(x)  # 64x64x32
    x = layers.BatchNormalization(axis=channel_axis(), name="bn0")(x)
    x = layers.Activation("relu", name="relu0")(x)
    x = layers.MaxPooling2D(2, name="max_pool")(x)  # 32x32x32
    if include_top:
        x = layers.Flatten(name="flatten")(x)  # 32768
        x = layers.Dense(classes, activation=default_activation(classes, classifier_activation), name="fc")(x)
    else:
        x = backbone_pooling(x, pooling)
    return keras.Model(inputs, x, name="HappyModel")

"""HappyModel: the Keras tutorial's smile detector for the "Happy House" door."""

from __future__ import annotations

import keras
from keras import layers

from cnnzoo.models.layers import backbone_pooling, channel_axis, check_arguments, default_activation
from cnnzoo.models.registry import Recipe, register_model

MIN_SIZE = 2  # the 2x2 max pool


@register_model(
    "happy",
    description="The Keras tutorial's smile detector: one 7x7 conv, BN, ReLU, max pool, sigmoid.",
    paper="deeplearning.ai CNN course, week 2: Keras tutorial - the Happy House (2017)",
    year=2017,
    reference_params=37_633,
    min_input_size=MIN_SIZE,
    # Chosen on smiles' validation split (with its default augmentation, mirror + shift):
    # mirroring alone overfits (24 epochs: train 95.7%, validation plateau 90.9%; weight
    # decay 0.1 did not change that: 91.1% at epoch 13); with shifts, validation reached
    # 91.4% (loss 0.220, the lowest) at epoch 14 of 16 while training accuracy (89.9%)
    # was still below it, so the run is longer.
    recipe=Recipe(epochs=24, batch_size=32, lr=1e-3),
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
        "HappyModel", input_shape, classes, min_size=MIN_SIZE, pooling=pooling, include_top=include_top
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

"""VGG-16 and VGG-19 (Simonyan & Zisserman 2014): only 3x3 convs and 2x2 max pools.

The configurations are data, as in the paper's Table 1 (columns D and E): each stage is
a number of 3x3 stride-1 "same" convolutions followed by a 2x2 stride-2 max pool. Layer
names are Keras applications' (`block3_conv2`, `fc1`, `predictions`), so the counts can
be compared directly: 138,357,544 and 143,667,240 at 224x224x3 with 1000 classes.

torchvision's VGGs (`vgg11_tv` ... `vgg19_bn_tv`, for its weights) add columns A and B
(VGG-11, VGG-13), optional batch norm after every conv (`_bn`, which the paper predates),
and an adaptive 7x7 average pool before the classifier, so fc1 keeps its 25,088 inputs at
any input size (at 224x224 the pool changes nothing).
"""

from __future__ import annotations

import keras
from keras import layers

from cnnzoo.models.layers import HE_NORMAL, backbone_pooling, channel_axis, check_arguments
from cnnzoo.models.registry import Recipe, register_model

PAPER = "Simonyan, Zisserman: Very Deep Convolutional Networks for Large-Scale Image Recognition (ICLR 2015)"
# name -> ((filters, convs) per stage); every stage ends in a 2x2 max pool.
CONFIGS = {
    "VGG11": ((64, 1), (128, 1), (256, 2), (512, 2), (512, 2)),  # column A
    "VGG13": ((64, 2), (128, 2), (256, 2), (512, 2), (512, 2)),  # column B
    "VGG16": ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)),  # column D
    "VGG19": ((64, 2), (128, 2), (256, 4), (512, 4), (512, 4)),  # column E
}
MIN_SIZE = 32  # five 2x2 stride-2 pools


def vgg(
    config: str,
    input_shape=(224, 224, 3),
    classes: int = 1000,
    *,
    include_top: bool = True,
    pooling=None,
    classifier_activation="softmax",
    dropout: float = 0.5,
    kernel_initializer=HE_NORMAL,
    batch_norm: bool = False,
    adaptive_pool: int | None = None,
    name: str | None = None,
) -> keras.Model:
    """VGG network `config` ('VGG16' or 'VGG19'); the top is fc1 4096 -> fc2 4096 -> classes.

    Dropout (0.5 in the paper) follows fc1 and fc2. At 224x224 the last pool is 7x7x512;
    a smaller input (down to 32x32) gives a smaller map and so a smaller fc1.
    The convolutions start He-normal (fan-out), as torchvision's VGG: from Keras' glorot-uniform
    (`kernel_initializer="glorot_uniform"`), with no batch norm, 13 (or 16) ReLU convolutions
    shrink the signal, and vgg16 did not leave chance on signs (see docs/RESULTS.md).
    torchvision's layout: `batch_norm=True` (conv with bias -> BN, eps 1e-5 -> ReLU) and
    `adaptive_pool=7` (average-pool the last map to 7x7 before fc1, whatever the input).
    """
    name = name or config
    input_shape = check_arguments(
        name, input_shape, classes, min_size=MIN_SIZE, pooling=pooling, include_top=include_top
    )
    inputs = keras.Input(input_shape, name="input")
    x = inputs
    for stage, (filters, convs) in enumerate(CONFIGS[config], start=1):
        for conv in range(1, convs + 1):
            conv_name = f"block{stage}_conv{conv}"
            x = layers.Conv2D(filters, 3, padding="same", activation=None if batch_norm else "relu",
                              kernel_initializer=kernel_initializer, name=conv_name)(x)
            if batch_norm:
                x = layers.BatchNormalization(axis=channel_axis(), epsilon=1e-5, name=conv_name + "_bn")(x)
                x = layers.Activation("relu", name=conv_name + "_relu")(x)
        x = layers.MaxPooling2D(2, strides=2, name=f"block{stage}_pool")(x)
    # 7x7x512 at 224
    if not include_top:
        return keras.Model(inputs, backbone_pooling(x, pooling), name=name)
    if adaptive_pool:
        x = layers.AdaptiveAveragePooling2D(adaptive_pool, name="avgpool")(x)  # 7x7x512 at any input
    x = layers.Flatten(name="flatten")(x)  # 25088 at 224
    for fc in ("fc1", "fc2"):
        x = layers.Dense(4096, activation="relu", name=fc)(x)
        x = layers.Dropout(dropout, name=f"{fc}_dropout")(x)
    x = layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    return keras.Model(inputs, x, name=name)


# No batch normalisation either. vgg16 on signs at Adam 1e-3 from He-normal kernels: the loss
# rose to 13 in the first epoch and training accuracy stayed at 17% (every ReLU dead); at 1e-4
# it left chance at epoch 4. vgg19 at 1e-4 left it only at epoch 7-10 (3 seeds): 95.6% ± 3.1%.
_FACTS = dict(paper=PAPER, year=2014, min_input_size=MIN_SIZE, recipe=Recipe(lr=1e-4))


@register_model("vgg16", description="VGG-16: 13 3x3 convs in 5 stages, 3 dense layers.",
                reference_params=138_357_544, **_FACTS)
def VGG16(input_shape=(224, 224, 3), classes: int = 1000, **kwargs) -> keras.Model:
    """VGG-16 (configuration D); see `vgg`."""
    return vgg("VGG16", input_shape, classes, **kwargs)


@register_model("vgg19", description="VGG-19: 16 3x3 convs in 5 stages, 3 dense layers.",
                reference_params=143_667_240, **_FACTS)
def VGG19(input_shape=(224, 224, 3), classes: int = 1000, **kwargs) -> keras.Model:
    """VGG-19 (configuration E); see `vgg`."""
    return vgg("VGG19", input_shape, classes, **kwargs)


# torchvision's trainable weights (= Keras' count without BN, plus BN's statistics with it).
TORCHVISION_PARAMS = {
    ("VGG11", False): 132_863_336, ("VGG11", True): 132_868_840,
    ("VGG13", False): 133_047_848, ("VGG13", True): 133_053_736,
    ("VGG16", False): 138_357_544, ("VGG16", True): 138_365_992,
    ("VGG19", False): 143_667_240, ("VGG19", True): 143_678_248,
}


def _torchvision_variant(config: str, batch_norm: bool):
    """Register torchvision's `vgg11` ... `vgg19_bn` as `vgg11_tv` ... `vgg19_bn_tv`."""
    name = f"{config.lower()}{'_bn' if batch_norm else ''}_tv"
    column = {"VGG11": "A", "VGG13": "B", "VGG16": "D", "VGG19": "E"}[config]

    @register_model(name, description=f"torchvision's {config.lower()}{'_bn' if batch_norm else ''}: column "
                    f"{column}{', BN after every conv' if batch_norm else ''}, adaptive 7x7 pool before fc1.",
                    reference_params=TORCHVISION_PARAMS[config, batch_norm], **_FACTS)
    def build(input_shape=(224, 224, 3), classes: int = 1000, **kwargs) -> keras.Model:
        return vgg(config, input_shape, classes, batch_norm=batch_norm, adaptive_pool=7, name=name, **kwargs)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"torchvision's {name[:-3]}: `vgg({config!r}, batch_norm={batch_norm}, adaptive_pool=7)`."
    return build


for _config in ("VGG11", "VGG13", "VGG16", "VGG19"):
    for _bn in (False, True):
        globals()[f"{_config.lower()}{'_bn' if _bn else ''}_tv"] = _torchvision_variant(_config, _bn)

"""LeNet-5 (LeCun, Bottou, Bengio, Haffner 1998), classic and modern.

C1 6@5x5 -> S2 2x2 pool -> C3 16@5x5 -> S4 2x2 pool -> C5 120@5x5 -> F6 84 -> output.
Two simplifications, the usual ones, give the textbook 61,706 parameters at 32x32x1 with
10 classes: S2/S4 are plain average pools (the paper's have a trainable coefficient and
bias per map), C3 connects to all six S2 maps (the paper's Table I connects each to
three or four), and the output is a softmax layer rather than Euclidean RBF units.
"""

from __future__ import annotations

import keras
from keras import layers

from cnnzoo.errors import UserError
from cnnzoo.models.layers import backbone_pooling, check_arguments
from cnnzoo.models.registry import register_model

PAPER = "LeCun, Bottou, Bengio, Haffner: Gradient-Based Learning Applied to Document Recognition (Proc. IEEE 1998)"
# variant -> (pooling layer, activation): the paper's, and today's default choice.
VARIANTS = {"classic": (layers.AveragePooling2D, "tanh"), "modern": (layers.MaxPooling2D, "relu")}
MIN_SIZE = 32  # two 5x5 valid convs and two 2x2 pools must leave C5 a 5x5 input


def lenet5(
    input_shape=(32, 32, 1),
    classes: int = 10,
    *,
    variant: str = "classic",
    include_top: bool = True,
    pooling=None,
    classifier_activation="softmax",
) -> keras.Model:
    """LeNet-5 for 32x32 images (MNIST's 28x28 digits padded by 2, as in the paper).

    variant='classic': average pooling and tanh; 'modern': max pooling and ReLU. Both
    have 61,706 parameters at 32x32x1 with 10 classes. A larger input leaves C5 with a
    larger map, which is flattened before F6.
    """
    if variant not in VARIANTS:
        raise UserError(f"LeNet-5: variant must be 'classic' or 'modern'. Received: variant={variant!r}")
    input_shape = check_arguments(
        "LeNet-5", input_shape, classes, min_size=MIN_SIZE, pooling=pooling, include_top=include_top
    )
    pool, activation = VARIANTS[variant]
    inputs = keras.Input(input_shape, name="input")
    x = layers.Conv2D(6, 5, activation=activation, name="c1")(inputs)  # 28x28x6
    x = pool(2, name="s2")(x)  # 14x14x6
    x = layers.Conv2D(16, 5, activation=activation, name="c3")(x)  # 10x10x16
    x = pool(2, name="s4")(x)  # 5x5x16
    x = layers.Conv2D(120, 5, activation=activation, name="c5")(x)  # 1x1x120
    name = "LeNet5" if variant == "classic" else "LeNet5Modern"
    if not include_top:
        return keras.Model(inputs, backbone_pooling(x, pooling), name=name)
    x = layers.Flatten(name="flatten")(x)  # 120
    x = layers.Dense(84, activation=activation, name="f6")(x)
    x = layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    return keras.Model(inputs, x, name=name)


_FACTS = dict(paper=PAPER, year=1998, reference_params=61_706, min_input_size=MIN_SIZE)


@register_model("lenet5", description="LeNet-5 as in 1998: average pooling, tanh; ~60k parameters.", **_FACTS)
def LeNet5(input_shape=(32, 32, 1), classes: int = 10, **kwargs) -> keras.Model:
    """The classic LeNet-5 (`lenet5(variant='classic')`)."""
    return lenet5(input_shape, classes, variant="classic", **kwargs)


@register_model("lenet5_modern", description="LeNet-5 as built today: max pooling, ReLU.", **_FACTS)
def LeNet5Modern(input_shape=(32, 32, 1), classes: int = 10, **kwargs) -> keras.Model:
    """LeNet-5 with max pooling and ReLU (`lenet5(variant='modern')`)."""
    return lenet5(input_shape, classes, variant="modern", **kwargs)

"""LeNet-5 (LeCun, Bottou, Bengio, Haffner 1998): as the paper built it, classic and modern.

C1 6@5x5 -> S2 2x2 pool -> C3 16@5x5 -> S4 2x2 pool -> C5 120@5x5 -> F6 84 -> output.
The textbook network (`classic`, 61,706 parameters at 32x32x1 with 10 classes) makes the
usual three simplifications: S2/S4 are plain average pools, C3 connects to all six S2 maps,
and the output is a softmax layer. `paper` keeps what the paper has (its Section II.B and
Appendix A): S2/S4 with a trainable coefficient and bias per map, C3's connection table
(Table I), the scaled tanh 1.7159 tanh(2a/3), inputs scaled so the background is -0.1 and
the ink 1.175, weights uniform in +-2.4/fan-in, and Euclidean RBF output units: 60,000
trainable parameters, the paper's count. What it lacks is the paper's training (a stochastic
diagonal Levenberg-Marquardt step per weight): with SGD or Adam it stays below the textbook network
on MNIST (docs/MODELS.md).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from cnnzoo.errors import UserError
from cnnzoo.models.layers import backbone_pooling, channel_axis, check_arguments
from cnnzoo.models.registry import Recipe, register_model

PAPER = "LeCun, Bottou, Bengio, Haffner: Gradient-Based Learning Applied to Document Recognition (Proc. IEEE 1998)"
# variant -> (pooling layer, activation): the textbook's, and today's default choice.
VARIANTS = {"classic": (layers.AveragePooling2D, "tanh"), "modern": (layers.MaxPooling2D, "relu")}
MIN_SIZE = 32  # two 5x5 valid convs and two 2x2 pools must leave C5 a 5x5 input
# Table I: the S2 maps each C3 map reads. Six read three neighbours, six read four, three read
# four not all neighbours, the last reads all six: 60 connections, so that "different feature
# maps are forced to extract different (hopefully complementary) features".
C3_TABLE = ((0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (4, 5, 0), (5, 0, 1),
            (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (3, 4, 5, 0), (4, 5, 0, 1), (5, 0, 1, 2),
            (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5), (0, 1, 2, 3, 4, 5))
# Appendix A: the input's range. [0, 1] pixels (ink 1, as MNIST stores it) become a white
# background of -0.1 and black ink of 1.175, "which makes the mean input roughly 0, and the
# variance roughly 1".
PAPER_INPUT = {"scale": 1.275, "offset": -0.1}


@keras.saving.register_keras_serializable(package="cnnzoo")
class ScaledTanh(layers.Layer):
    """The paper's squashing function f(a) = 1.7159 tanh(2a/3) (Appendix A): f(1) = 1 and
    f(-1) = -1, where its second derivative is largest, so the targets sit in its steep part."""

    def call(self, x):
        return 1.7159 * ops.tanh(x * (2.0 / 3.0))

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="cnnzoo")
class ConnectionTableConv2D(layers.Layer):
    """A valid, stride-1 convolution whose output map j reads only the input maps `table[j]`
    (C3 with Table I). It holds one kernel per connection (C3: 60 of 5x5, 1,500 weights and 16
    biases, against 2,400 and 16 fully connected) and places them into the dense kernel on each
    call, so the missing connections have no weight to train."""

    def __init__(self, kernel_size: int, table, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.kernel_size = int(kernel_size)
        self.table = tuple(tuple(int(i) for i in maps) for maps in table)
        if not self.table or not all(self.table):
            raise ValueError(f"every output map must read at least one input map. Received: table={table!r}")
        self.filters = len(self.table)
        self.data_format = data_format or keras.config.image_data_format()

    @property
    def connections(self) -> list[tuple[int, int]]:
        """(input map, output map) of every connection, in the kernel's order."""
        return [(i, j) for j, maps in enumerate(self.table) for i in maps]

    def build(self, input_shape):
        channels = input_shape[channel_axis(self.data_format)]
        connections = self.connections
        if any(not 0 <= i < channels for i, _ in connections):
            raise ValueError(f"the table names input maps beyond the input's {channels}. Received: table={self.table!r}")
        # placement[c] is the one-hot position, in the dense (in, out) kernel, of connection c.
        self._placement = np.zeros((len(connections), channels * self.filters), "float32")
        for c, (i, j) in enumerate(connections):
            self._placement[c, i * self.filters + j] = 1.0
        self._dense_shape = (self.kernel_size, self.kernel_size, channels, self.filters)
        fan_in = self.kernel_size ** 2 * np.array([len(self.table[j]) for _, j in connections], "float32")
        limits = 2.4 / fan_in  # the paper's rule per output map (paper_init)

        def initializer(shape, dtype=None):
            return keras.random.uniform(shape, -1.0, 1.0, dtype=dtype) * ops.convert_to_tensor(limits, dtype)

        self.kernel = self.add_weight(shape=(self.kernel_size, self.kernel_size, len(connections)),
                                      initializer=initializer, name="kernel")
        self.bias = self.add_weight(shape=(self.filters,), initializer="zeros", name="bias")

    def call(self, x):
        taps = ops.reshape(self.kernel, (self.kernel_size ** 2, -1))
        dense = ops.reshape(ops.matmul(taps, ops.convert_to_tensor(self._placement, taps.dtype)), self._dense_shape)
        y = ops.conv(x, dense, padding="valid", data_format=self.data_format)
        return y + ops.reshape(self.bias, (1, -1, 1, 1) if self.data_format == "channels_first" else (-1,))

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        spatial = (2, 3) if self.data_format == "channels_first" else (1, 2)
        for axis in spatial:
            shape[axis] = None if shape[axis] is None else shape[axis] - self.kernel_size + 1
        shape[channel_axis(self.data_format)] = self.filters
        return tuple(shape)

    def get_config(self):
        return {**super().get_config(), "kernel_size": self.kernel_size, "table": [list(m) for m in self.table],
                "data_format": self.data_format}


@keras.saving.register_keras_serializable(package="cnnzoo")
class EuclideanRBF(layers.Layer):
    """The paper's output units: y_i = sum_j (x_j - w_ij)^2, the distance of F6's 84 outputs
    from a fixed code of +-1 per class. It returns D - y_i = 2 x.w_i - |x|^2 (D = |w_i|^2, the
    same for every code): the softmax of that is the softmax of -y, whose cross-entropy is the
    paper's MAP criterion (its eq. 9, without the rubbish class's constant), and leaving out D
    keeps float32's rounding of ~84 out of the answer. The paper drew its codes as 7x12 bitmaps
    of the characters, which it does not publish as data; here they are +-1 codes drawn once
    from `seed` (numpy's RandomState, whose stream never changes), so a saved model rebuilds
    them. Nothing here is trained: the codes are not weights."""

    def __init__(self, units: int, seed: int = 1998, **kwargs):
        super().__init__(**kwargs)
        self.units, self.seed = int(units), int(seed)

    def build(self, input_shape):
        self._codes = np.random.RandomState(self.seed).choice([-1.0, 1.0], (self.units, input_shape[-1])).astype("float32")

    def call(self, x):
        codes = ops.convert_to_tensor(self._codes, x.dtype)
        return 2.0 * ops.matmul(x, ops.transpose(codes)) - ops.sum(ops.square(x), axis=-1, keepdims=True)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "seed": self.seed}


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

    variant='classic': average pooling and tanh; 'modern': max pooling and ReLU; both have
    61,706 parameters at 32x32x1 with 10 classes. 'paper': the 1998 network (module
    docstring), 60,000 trainable parameters, its output the RBF units (EuclideanRBF) through
    `classifier_activation`. A larger input leaves C5 with a larger map, which is flattened
    before F6.
    """
    if variant not in (*VARIANTS, "paper"):
        raise UserError(f"LeNet-5: variant must be 'classic', 'modern' or 'paper'. Received: variant={variant!r}")
    input_shape = check_arguments(
        "LeNet-5", input_shape, classes, min_size=MIN_SIZE, pooling=pooling, include_top=include_top
    )
    inputs = keras.Input(input_shape, name="input")
    if variant == "paper":
        features = _paper_features(inputs)
    else:
        pool, activation = VARIANTS[variant]
        x = layers.Conv2D(6, 5, activation=activation, name="c1")(inputs)  # 28x28x6
        x = pool(2, name="s2")(x)  # 14x14x6
        x = layers.Conv2D(16, 5, activation=activation, name="c3")(x)  # 10x10x16
        x = pool(2, name="s4")(x)  # 5x5x16
        features = layers.Conv2D(120, 5, activation=activation, name="c5")(x)  # 1x1x120
    name = {"classic": "LeNet5", "modern": "LeNet5Modern", "paper": "LeNet5Paper"}[variant]
    if not include_top:
        return keras.Model(inputs, backbone_pooling(features, pooling), name=name)
    x = layers.Flatten(name="flatten")(features)  # 120
    if variant != "paper":
        x = layers.Dense(84, activation=activation, name="f6")(x)
        x = layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
        return keras.Model(inputs, x, name=name)
    x = ScaledTanh(name="f6_tanh")(layers.Dense(84, kernel_initializer=paper_init(120), name="f6")(x))
    x = EuclideanRBF(classes, name="rbf")(x)
    return keras.Model(inputs, layers.Activation(classifier_activation, name="predictions")(x), name=name)


def _paper_features(inputs):
    """C1 to C5 as the paper has them."""
    x = layers.Rescaling(**PAPER_INPUT, name="normalize")(inputs)
    x = ScaledTanh(name="c1_tanh")(layers.Conv2D(6, 5, kernel_initializer=paper_init(25), name="c1")(x))
    x = _subsampling(x, "s2")  # 14x14x6
    x = ScaledTanh(name="c3_tanh")(ConnectionTableConv2D(5, C3_TABLE, name="c3")(x))  # 10x10x16
    x = _subsampling(x, "s4")  # 5x5x16
    return ScaledTanh(name="c5_tanh")(layers.Conv2D(120, 5, kernel_initializer=paper_init(400), name="c5")(x))


def paper_init(fan_in: int) -> keras.initializers.Initializer:
    """Appendix A: weights uniform in +-2.4/fan-in. It keeps F6's outputs near 0 at the start,
    so all ten RBF outputs start near 84 and the softmax over them near uniform. At LeCun
    uniform's variance 1/fan-in they start tens apart: the first batch's loss was 10.7 instead
    of ln 10 = 2.3, and a wrongly sure answer gets no gradient through the cross-entropy's
    clipped log."""
    return keras.initializers.RandomUniform(-2.4 / fan_in, 2.4 / fan_in)


def _subsampling(x, name: str):
    """S2/S4: each 2x2 window's mean times a trainable coefficient per map, plus a bias per map,
    through the squashing function (the paper adds the four inputs: a mean is a quarter of
    that, so the coefficient, paper_init(4) on the sum, is 4x that on the mean)."""
    x = layers.AveragePooling2D(2, name=f"{name}_pool")(x)
    x = layers.DepthwiseConv2D(1, depthwise_initializer=keras.initializers.RandomUniform(-2.4, 2.4), name=f"{name}_scale")(x)
    return ScaledTanh(name=name)(x)


_FACTS = dict(paper=PAPER, year=1998, reference_params=61_706, min_input_size=MIN_SIZE)


@register_model("lenet5", description="LeNet-5 as textbooks draw it: average pooling, tanh, softmax; ~62k parameters.", **_FACTS)
def LeNet5(input_shape=(32, 32, 1), classes: int = 10, **kwargs) -> keras.Model:
    """The classic LeNet-5 (`lenet5(variant='classic')`)."""
    return lenet5(input_shape, classes, variant="classic", **kwargs)


@register_model("lenet5_modern", description="LeNet-5 as built today: max pooling, ReLU.", **_FACTS)
def LeNet5Modern(input_shape=(32, 32, 1), classes: int = 10, **kwargs) -> keras.Model:
    """LeNet-5 with max pooling and ReLU (`lenet5(variant='modern')`)."""
    return lenet5(input_shape, classes, variant="modern", **kwargs)


# Chosen on MNIST's validation split (seed 0, batch 128, 20 epochs, no augmentation): SGD at 5e-3
# reached 98.18%, Adam at the default 1e-3 97.45%; SGD at 2e-2 and 5e-2 (the textbook network's)
# collapsed to one class within the first epoch. The RBF outputs' gradients, 2(x - w) over 84
# values, are far larger than a softmax layer's (the paper's own global rates were 5e-4 to 1e-5).
PAPER_RECIPE = Recipe(batch_size=128, optimizer="sgd", lr=5e-3)


@register_model("lenet5_paper", description="LeNet-5 as the 1998 paper: C3's connection table, trainable "
                "subsampling, scaled tanh, RBF outputs; 60,000 parameters.",
                **{**_FACTS, "reference_params": 60_000, "recipe": PAPER_RECIPE})
def LeNet5Paper(input_shape=(32, 32, 1), classes: int = 10, **kwargs) -> keras.Model:
    """The 1998 paper's LeNet-5 (`lenet5(variant='paper')`)."""
    return lenet5(input_shape, classes, variant="paper", **kwargs)

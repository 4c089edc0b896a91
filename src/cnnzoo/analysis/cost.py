"""What a model costs: parameters and multiply-accumulates (MACs), layer by layer.

Counted from a built Keras model's layers and their input/output shapes, for one
image (batch size 1). A MAC is one multiplication added into a sum, so a layer's MACs
are the multiplications it needs; FLOPs are usually quoted as about 2x MACs.

Rules (`layer_macs`):
- Conv1D/2D/3D: output elements x kernel size x input channels / groups
  (out_h*out_w*out_c*k_h*k_w*in_c/groups for 2-D); biases are not counted.
- Conv transpose: input elements x kernel size x filters / groups.
- DepthwiseConv: output elements x kernel size. SeparableConv: its depthwise part plus
  a 1x1 conv from in_c*depth_multiplier to filters.
- Dense: input elements x units (in*out for a flat input).
- ConnectionTableConv2D (LeNet-5's C3): output positions x kernel size x connections.
- EuclideanRBF (LeNet-5's outputs): units x input features (one squared difference each).
- BatchNormalization: 1 per output element (at inference it is one scale and shift).
- Average pooling: pool size per output element; global average pooling: 1 per input
  element. Max pooling: 0 (comparisons, not multiplications).
- LocalResponseNormalization: `size` per element (the window's sum of squares).
- Multiply: 1 per output element per extra input.
- 0 for everything else: Add, Concatenate, activations, Dropout, Flatten, padding.
Nested models are expanded into their layers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras
from keras import layers

from cnnzoo.models.layers import LocalResponseNormalization, channel_axis, image_shape
from cnnzoo.models.lenet import ConnectionTableConv2D, EuclideanRBF

_CONV = (layers.Conv1D, layers.Conv2D, layers.Conv3D)
_TRANSPOSE = (layers.Conv1DTranspose, layers.Conv2DTranspose, layers.Conv3DTranspose)
_DEPTHWISE = (layers.DepthwiseConv1D, layers.DepthwiseConv2D)
_SEPARABLE = (layers.SeparableConv1D, layers.SeparableConv2D)
_AVG_POOL = (layers.AveragePooling1D, layers.AveragePooling2D, layers.AveragePooling3D)
_GLOBAL_AVG = (layers.GlobalAveragePooling1D, layers.GlobalAveragePooling2D,
               layers.GlobalAveragePooling3D)


@dataclass(frozen=True)
class LayerCost:
    name: str
    type: str
    output_shape: tuple  # without the batch axis; a tuple of shapes for several outputs
    params: int
    macs: int


def _elements(shape) -> int:
    return math.prod(int(d) for d in shape[1:])


def _channels(layer, shape) -> int:
    return int(shape[channel_axis(getattr(layer, "data_format", None))])


def layer_macs(layer, input_shapes, output_shapes) -> int:
    """MACs of one call of `layer` on one example, by the rules in this module's docstring."""
    x, y = input_shapes[0], output_shapes[0]
    if isinstance(layer, _CONV):
        kernel = math.prod(layer.kernel_size)
        return _elements(y) * kernel * _channels(layer, x) // layer.groups
    if isinstance(layer, _TRANSPOSE):
        groups = getattr(layer, "groups", 1) or 1
        return _elements(x) * math.prod(layer.kernel_size) * layer.filters // groups
    if isinstance(layer, _DEPTHWISE):
        return _elements(y) * math.prod(layer.kernel_size)
    if isinstance(layer, _SEPARABLE):
        in_c, mult = _channels(layer, x), layer.depth_multiplier
        positions = _elements(y) // layer.filters
        return positions * in_c * mult * (math.prod(layer.kernel_size) + layer.filters)
    if isinstance(layer, layers.Dense):
        return _elements(x) * layer.units
    if isinstance(layer, ConnectionTableConv2D):
        return _elements(y) // layer.filters * layer.kernel_size ** 2 * len(layer.connections)
    if isinstance(layer, EuclideanRBF):
        return _elements(x) * layer.units
    if isinstance(layer, layers.BatchNormalization):
        return _elements(y)
    if isinstance(layer, _AVG_POOL):
        return _elements(y) * math.prod(layer.pool_size)
    if isinstance(layer, _GLOBAL_AVG):
        return _elements(x)
    if isinstance(layer, LocalResponseNormalization):
        return _elements(y) * layer.size
    if isinstance(layer, layers.Multiply):
        return _elements(y) * (len(input_shapes) - 1)
    return 0


def _shapes(tensors) -> list[tuple]:
    return [tuple(t.shape) for t in keras.tree.flatten(tensors)]


def _graph_nodes(model) -> dict:
    """Each layer's calls inside this model's graph (not calls made for other models)."""
    graph = getattr(model, "_functional", None) or model  # a built Sequential wraps a Functional
    calls: dict[int, list] = {}
    for nodes in getattr(graph, "_nodes_by_depth", {}).values():
        for node in nodes:
            calls.setdefault(id(node.operation), []).append(node)
    return calls


def _calls(layer, graph_nodes):
    """(input shapes, output shapes) of each call of `layer` in its model's graph."""
    nodes = graph_nodes.get(id(layer)) or layer._inbound_nodes
    return [(_shapes(n.input_tensors), _shapes(n.output_tensors)) for n in nodes]


def layer_costs(model: keras.Model, prefix: str = "") -> list[LayerCost]:
    """One row per layer of a built model: name, type, output shape, parameters, MACs."""
    rows, graph_nodes = [], _graph_nodes(model)
    for layer in model.layers:
        if isinstance(layer, layers.InputLayer):
            continue
        if isinstance(layer, keras.Model):
            rows.extend(layer_costs(layer, prefix=f"{prefix}{layer.name}/"))
            continue
        calls = _calls(layer, graph_nodes)
        macs = sum(layer_macs(layer, x, y) for x, y in calls)
        outputs = [s[1:] for s in calls[0][1]]
        rows.append(LayerCost(
            f"{prefix}{layer.name}", type(layer).__name__,
            outputs[0] if len(outputs) == 1 else tuple(outputs), layer.count_params(), macs,
        ))
    return rows


def total_macs(model: keras.Model) -> int:
    """All multiply-accumulates of one forward pass of one example."""
    return sum(row.macs for row in layer_costs(model))


def bottleneck_example() -> dict[str, keras.Model]:
    """The lecture's 1x1-convolution example on a 28x28x192 volume, as two tiny models.

    '5x5 conv': a 5x5 "same" conv with 32 filters, 28*28*32*5*5*192 = 120,422,400 MACs;
    '1x1 then 5x5': a 1x1 conv to 16 channels first, 28*28*16*192 + 28*28*32*5*5*16 =
    12,443,648 MACs, about a tenth. `{k: total_macs(m) for k, m in
    bottleneck_example().items()}` gives both figures.
    """
    inputs = keras.Input(image_shape(28, 28, 192), name="volume")
    direct = layers.Conv2D(32, 5, padding="same", name="conv_5x5")(inputs)
    squeezed = layers.Conv2D(16, 1, name="bottleneck_1x1")(inputs)
    after = layers.Conv2D(32, 5, padding="same", name="conv_5x5")(squeezed)
    return {
        "5x5 conv": keras.Model(inputs, direct, name="direct"),
        "1x1 then 5x5": keras.Model(inputs, after, name="bottleneck"),
    }

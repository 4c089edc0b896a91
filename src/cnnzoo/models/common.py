"""What every builder shares: argument validation and the classifier head.

Builders validate before building, so a bad argument is one sentence in Keras' style
("... Received: input_shape=...") instead of a shape error deep inside a layer.
"""

from __future__ import annotations

import keras
from keras import layers

from cnnzoo.errors import UserError

POOLINGS = (None, "avg", "max")


def spatial_dims(input_shape) -> tuple[int, int]:
    """(height, width) of an image shape in the current `image_data_format`."""
    if keras.config.image_data_format() == "channels_last":
        return tuple(input_shape[:2])
    return tuple(input_shape[1:])


def check_arguments(
    model: str,
    input_shape,
    classes: int,
    *,
    min_size: int,
    pooling=None,
    include_top: bool = True,
) -> tuple[int, int, int]:
    """Validate a builder's common arguments; return input_shape as a tuple of ints."""
    try:
        shape = tuple(int(d) for d in input_shape)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise UserError(
            f"{model}: input_shape must be three positive integers (height, width, channels"
            f" for channels_last). Received: input_shape={input_shape!r}"
        )
    height, width = spatial_dims(shape)
    if min(height, width) < min_size:
        raise UserError(
            f"{model}: the input is too small for its strides and pooling; the smallest that "
            f"works is {min_size}x{min_size}. Received: input_shape={input_shape!r}"
        )
    if include_top and (not isinstance(classes, int) or classes < 1):
        raise UserError(f"{model}: classes must be a positive integer. Received: classes={classes!r}")
    if pooling not in POOLINGS:
        raise UserError(
            f"{model}: pooling must be None, 'avg' or 'max'. Received: pooling={pooling!r}"
        )
    return shape


def default_activation(classes: int, classifier_activation):
    """Sigmoid for a single output unit, softmax otherwise, unless the caller chose."""
    if classifier_activation != "auto":
        return classifier_activation
    return "sigmoid" if classes == 1 else "softmax"


def backbone_pooling(x, pooling):
    """The `pooling` option of include_top=False models (keras.applications semantics)."""
    if pooling == "avg":
        return layers.GlobalAveragePooling2D(name="global_avg_pool")(x)
    if pooling == "max":
        return layers.GlobalMaxPooling2D(name="global_max_pool")(x)
    return x

"""The one fix cnnzoo needs to Keras' ONNX exporter on the PyTorch backend, active only
while a model is exported.

Keras 3.15 exports a model with a dynamic batch dimension through torch.onnx's TorchScript
tracer (`dynamic_axes`; the batch used to be fixed at 1, keras-team/keras#22076, fixed by
#22086). Under that tracer every size Keras reads from a tensor is itself traced, and its
"same" pooling computes the padding in Python from the input's spatial size
(`keras.src.backend.torch.nn._compute_padding_length`). Where the padding comes out
symmetric (a stride-2 max-pool on an odd size: GoogLeNet's `pool1_3x3_s2` at 65x65), it is
passed to `max_pool2d` as a traced value, which the ONNX symbolic refuses ("... because it is
not constant"; the same class of bug as keras-team/keras#22102, shape arithmetic in Keras'
torch backend meeting the tracer). Only the batch dimension of a cnnzoo model is dynamic, so
the spatial size is a constant of the export: reading it as a Python int records it as one.
"""

from __future__ import annotations

import contextlib


@contextlib.contextmanager
def static_same_padding():
    """While exporting: Keras' torch "same" padding from the spatial size as a constant."""
    from keras.src.backend.torch import nn as torch_nn

    stock = torch_nn._compute_padding_length

    def compute_padding_length(input_length, kernel_length, stride, dilation_rate=1):
        return stock(int(input_length), kernel_length, stride, dilation_rate)

    torch_nn._compute_padding_length = compute_padding_length
    try:
        yield
    finally:
        torch_nn._compute_padding_length = stock

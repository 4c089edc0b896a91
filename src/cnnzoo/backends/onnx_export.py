"""The fixes cnnzoo needs to Keras' ONNX exporter on the PyTorch backend, active only while a
model is exported (`exporting()`).

Keras 3.15 exports a model with a dynamic batch dimension through torch.onnx's TorchScript
tracer (`dynamic_axes`; the batch used to be fixed at 1, keras-team/keras#22076, fixed by
#22086). Under that tracer every size Keras reads from a tensor is itself traced, which two
of its ops cannot survive (the class of bug of keras-team/keras#22102, shape arithmetic in
Keras' torch backend meeting the tracer):

- "same" pooling computes the padding in Python from the input's spatial size
  (`keras.src.backend.torch.nn._compute_padding_length`). Where the padding comes out
  symmetric (a stride-2 max-pool on an odd size: GoogLeNet's `pool1_3x3_s2` at 65x65), it is
  passed to `max_pool2d` as a traced value, which the ONNX symbolic refuses ("... because it
  is not constant");
- adaptive average pooling (torchvision's AlexNet, `AdaptiveAveragePooling2D(6)`) reaches
  `adaptive_avg_pool2d` after a transpose whose spatial sizes the tracer has lost, and its
  ONNX symbolic refuses it ("input size not accessible").

Only the batch dimension of a cnnzoo model is dynamic, so the spatial size is a constant of
the export: the padding is computed from it as a Python int, and adaptive average pooling
becomes two constant averaging matrices (exactly torch's bins: rows floor(i*H/h) to
ceil((i+1)*H/h), likewise columns), which trace as plain MatMuls.
"""

from __future__ import annotations

import contextlib
import math


def pooling_matrix(size: int, bins: int):
    """(bins, size) matrix whose row i averages torch's adaptive bin i of a length-`size` axis."""
    import torch

    matrix = torch.zeros(bins, size)
    for i in range(bins):
        start, end = (i * size) // bins, math.ceil((i + 1) * size / bins)
        matrix[i, start:end] = 1.0 / (end - start)
    return matrix


@contextlib.contextmanager
def exporting():
    """While exporting: Keras' torch "same" padding and 2D adaptive average pooling computed
    from the spatial size as a constant."""
    from keras.src.backend.torch import nn as torch_nn

    stock_padding, stock_adaptive = torch_nn._compute_padding_length, torch_nn.adaptive_average_pool

    def compute_padding_length(input_length, kernel_length, stride, dilation_rate=1):
        return stock_padding(int(input_length), kernel_length, stride, dilation_rate)

    def adaptive_average_pool(inputs, output_size, data_format=None):
        from keras.src import backend

        inputs = torch_nn.convert_to_tensor(inputs)
        if inputs.ndim != 4:
            return stock_adaptive(inputs, output_size, data_format)
        out_h, out_w = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
        last = backend.standardize_data_format(data_format) == "channels_last"
        x = inputs.permute(0, 3, 1, 2) if last else inputs  # (N, C, H, W)
        rows = pooling_matrix(int(x.shape[2]), out_h).to(x.dtype)
        cols = pooling_matrix(int(x.shape[3]), out_w).to(x.dtype)
        y = rows @ x @ cols.T  # (N, C, out_h, out_w)
        return y.permute(0, 2, 3, 1) if last else y

    torch_nn._compute_padding_length = compute_padding_length
    torch_nn.adaptive_average_pool = adaptive_average_pool
    try:
        yield
    finally:
        torch_nn._compute_padding_length = stock_padding
        torch_nn.adaptive_average_pool = stock_adaptive

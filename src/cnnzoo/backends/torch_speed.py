"""Eight fixes to Keras 3's PyTorch backend that make CNN training 1.3-2.6x faster on a CPU
and its peak memory lower.

Profiling ResNet-50 and HappyModel training (docs/PERFORMANCE.md) showed Keras 3.15
spending its extra time, against a plain PyTorch loop, in these places:

1. Layout copies. Conv and pooling permute NHWC inputs to NCHW and then call a plain
   `.contiguous()`, a full strided copy of every activation, which conv then copies back
   to channels_last memory (keras-team/keras#23279, fixed for conv by #23199 after 3.15;
   pooling: #23649, open). The permuted view already has channels_last strides: asking for
   that memory format copies nothing, and PyTorch's kernels keep it through the network.
2. BatchNormalization written as ~10 elementwise ops (moments, then normalise), each a
   pass over the activation in forward and backward. PyTorch's fused batch-norm kernel
   does it in one pass each way and returns the batch statistics the moving averages need.
3. Kernel transposes. Keras keeps a conv kernel as (H, W, in, out); PyTorch convolves with
   (out, in, H, W) in channels_last memory, i.e. laid out as (out, H, W, in). Every step
   copied every kernel into that layout, got its gradient back strided, and ran the
   optimizer's elementwise updates on mismatched layouts. Storing each conv kernel (and the
   optimizer's slots for it) in PyTorch's layout, behind the same (H, W, in, out) shape,
   removes all three.
4. Adam written as ten separate list operations, five of them allocating a new copy of
   every weight (100 MB each for ResNet-50) per step: 110-160 ms a step on one core where
   PyTorch's fused Adam kernel, one pass, takes 15-30 ms. Keras' Adam is PyTorch's with
   epsilon divided by sqrt(1 - beta_2^t), so the fused kernel computes the same update.
5. Conv bias added after the convolution, as a separate pass over every output (and a
   reduction in backward); PyTorch's convolution adds it inside the kernel. The course's
   ResNet-50 has a bias on all 53 convolutions.

6. Every intermediate output kept to the end of the forward pass. A Functional model runs
   its graph with a dict of all the tensors computed so far and frees none before it
   returns, so a batch norm's output (which no backward needs) lives as long as the
   activations autograd saves: ResNet-50 at batch 256 peaked at 1.6x plain PyTorch's
   memory. Each tensor is now let go after its last consumer has run.
7. Affine image transforms (RandomTranslation, RandomRotation, RandomZoom, the random
   resized crop) sample every image with a Python loop over `map_coordinates`, about 40 ms
   an image at 64x64: augmentation cost more than the network's training step. PyTorch's
   `grid_sample` does the whole batch in one call, with the same sampling (bilinear or
   nearest, constant-zero or edge-repeating fill); other fill modes keep Keras' own code.
8. Keras' bookkeeping around every layer call, 60-200 us each on a CPU (signature binding,
   input-spec checks, name scopes, the mask and training-argument plumbing, traceback
   filtering): 20-30 ms of each ResNet-50 step's 177 layer calls, where PyTorch's
   `nn.Module.__call__` costs a few microseconds. Inside a Functional model's eager forward
   pass each node's layer was built and checked on symbolic inputs of the same shapes, so
   for a built layer with no mask, hook, activity regularizer, distribution, remat or
   quantization, outside tracing and compilation, the bookkeeping only casts the inputs,
   resolves `training` and sets the autocast scope. The node's call now does just that;
   anything else takes Keras' own path.

Fixes 3-5 together took a ResNet-50 training step (64x64, batch 32, 2 cores) from 712 to
535 ms, against plain PyTorch's 499 (docs/PERFORMANCE.md).

`apply()` installs them when the backend is PyTorch; the results agree with stock Keras to
float32 rounding (tests/test_torch_speed.py). Saved models are unaffected: only the
computation and the memory layout change, never a layer class or a weight's shape or
value. `CNNZOO_TORCH_SPEED=0` turns it off.
"""

from __future__ import annotations

import functools
import os
import threading

import keras

_originals: list[tuple[object, str, object]] = []  # (owner, attribute, stock value)
_graph_node = threading.local()  # .layer: the layer a Functional graph run is calling (fix 8)


def enabled() -> bool:
    return os.environ.get("CNNZOO_TORCH_SPEED", "1") != "0"


def active() -> bool:
    return bool(_originals)


def apply() -> bool:
    """Install the fixes once, on the PyTorch backend; return whether they are active."""
    if _originals:
        return True
    if keras.backend.backend() != "torch" or not enabled():
        return False
    for fix in FIXES:
        for owner, name, value in fix():
            _originals.append((owner, name, getattr(owner, name)))
            setattr(owner, name, value)
    return True


def _memory_formats() -> dict:
    import torch

    return {4: torch.channels_last, 5: torch.channels_last_3d}


def _layout_copies():
    """Fix 1: NHWC -> NCHW as a channels_last view, no copy for a contiguous input."""
    from keras.src.backend.torch import nn as torch_nn

    stock, memory_formats = torch_nn._transpose_spatial_inputs, _memory_formats()

    def transpose_spatial_inputs(inputs):
        if inputs.ndim not in memory_formats:
            return stock(inputs)
        order = (0, inputs.ndim - 1, *range(1, inputs.ndim - 1))
        return inputs.permute(order).contiguous(memory_format=memory_formats[inputs.ndim])

    return [(torch_nn, "_transpose_spatial_inputs", transpose_spatial_inputs)]


def _fused_batch_norms():
    """Fix 2: training-mode BatchNormalization in PyTorch's fused kernel (float32)."""
    import torch
    from keras.src.layers.normalization.batch_normalization import BatchNormalization

    stock, memory_formats = BatchNormalization.call, _memory_formats()

    def call(self, inputs, training=None, mask=None):
        # bfloat16 inputs with float32 statistics (`mixed_bfloat16`): PyTorch's kernel normalises
        # them in one pass, where Keras casts them to float32 and runs its ten ops. Unfused,
        # that made bf16 training slower than float32 on a CPU (docs/benchmarks-bf16.md).
        if not (training and self.trainable and mask is None and not self.renorm
                and inputs.ndim in memory_formats and self.moving_mean.dtype == "float32"
                and inputs.dtype in (torch.float32, torch.bfloat16)):
            return stock(self, inputs, training=training, mask=mask)
        return _fused_batch_norm(self, inputs, memory_formats[inputs.ndim])

    return [(BatchNormalization, "call", call)]


def _kernels_in_torch_layout():
    """Fix 3: conv kernels, and the optimizer's slots for them, stored in PyTorch's layout."""
    import torch
    from keras.src.layers.convolutional.base_conv import BaseConv
    from keras.src.optimizers.base_optimizer import BaseOptimizer

    stock_build, stock_slot, memory_formats = BaseConv.build, BaseOptimizer.add_variable_from_reference, _memory_formats()

    def build(self, input_shape):
        stock_build(self, input_shape)
        if self._kernel.ndim in memory_formats:
            _store_as_torch_kernel(self._kernel.value)

    def add_variable_from_reference(self, reference_variable, *args, **kwargs):
        """An optimizer slot (momentum, velocity) in the same memory layout as its weight."""
        slot = stock_slot(self, reference_variable, *args, **kwargs)
        reference = reference_variable.value
        if not reference.is_contiguous() and slot.value.shape == reference.shape:
            slot.value.data = torch.empty_like(reference).copy_(slot.value.data)
        return slot

    return [(BaseConv, "build", build), (BaseOptimizer, "add_variable_from_reference", add_variable_from_reference)]


def _fused_adam_updates():
    """Fix 4: Keras' Adam update in PyTorch's fused kernel."""
    import torch
    from keras.src.backend.torch.optimizers import torch_adam

    stock = torch_adam.Adam._parallel_update_step
    fused_dtypes = {torch.float32, torch.float16, torch.bfloat16}  # what PyTorch's fused Adam takes

    def adam_update_step(self, grads, variables, learning_rate):
        if self.amsgrad or any(g.dtype != v.value.dtype or g.dtype not in fused_dtypes for g, v in zip(grads, variables)):
            return stock(self, grads, variables, learning_rate)
        _fused_adam(self, grads, variables, learning_rate)

    return [(torch_adam.Adam, "_parallel_update_step", adam_update_step)]


def _conv_bias_in_the_kernel():
    """Fix 5: the conv bias added inside PyTorch's convolution."""
    from keras.src.layers.convolutional.base_conv import BaseConv

    stock = BaseConv.call

    def conv_call(self, inputs):
        if not (self.use_bias and self.rank == 2 and self.data_format == "channels_last" and not self.lora_enabled):
            return stock(self, inputs)
        outputs = _conv2d_with_bias(self, inputs)
        return self.activation(outputs) if self.activation is not None else outputs

    return [(BaseConv, "call", conv_call)]


def _intermediates_freed():
    """Fix 6: a Functional forward pass lets each intermediate go after its last reader."""
    from keras.src.ops.function import Function

    stock = Function._run_through_graph

    def run_through_graph(self, inputs, operation_fn=lambda op: op, call_fn=None):
        if call_fn is not None:  # symbolic execution (output specs): nothing to free
            return stock(self, inputs, operation_fn=operation_fn, call_fn=call_fn)
        return _run_freeing_intermediates(self, inputs, operation_fn, stock)

    return [(Function, "_run_through_graph", run_through_graph)]


def _batched_affine_transforms():
    """Fix 7: Keras' affine_transform for a whole batch in one grid_sample call."""
    from keras.src.backend.torch import image as torch_image

    stock = torch_image.affine_transform

    def affine_transform(images, transform, interpolation="bilinear", fill_mode="constant", fill_value=0,
                         data_format=None):
        from keras.src.backend import standardize_data_format
        from keras.src.backend.torch.core import convert_to_tensor

        images, transform = convert_to_tensor(images), convert_to_tensor(transform)
        padding = {"constant": "zeros", "nearest": "border"}.get(fill_mode)
        if (padding is None or (fill_mode == "constant" and fill_value != 0) or images.ndim != 4
                or transform.ndim != 2 or interpolation not in ("bilinear", "nearest")
                or not images.dtype.is_floating_point):
            return stock(images, transform, interpolation=interpolation, fill_mode=fill_mode,
                         fill_value=fill_value, data_format=data_format)
        return _grid_sample_affine(images, transform, interpolation, padding,
                                   standardize_data_format(data_format) == "channels_last")

    return [(torch_image, "affine_transform", affine_transform)]


def _grid_sample_affine(images, transform, interpolation: str, padding: str, channels_last: bool):
    """Keras' convention: output pixel (x, y) reads input (a0 x + a1 y + a2, b0 x + b1 y + b2),
    in pixel units, for transform rows [a0, a1, a2, b0, b1, b2, c0, c1] (c0 = c1 = 0)."""
    import torch

    x = images.permute(0, 3, 1, 2) if channels_last else images  # NCHW
    height, width = x.shape[2:]
    t = transform.to(x.dtype)
    ys, xs = torch.meshgrid(torch.arange(height, dtype=x.dtype, device=x.device),
                            torch.arange(width, dtype=x.dtype, device=x.device), indexing="ij")
    source_x = t[:, 0, None, None] * xs + t[:, 1, None, None] * ys + t[:, 2, None, None]
    source_y = t[:, 3, None, None] * xs + t[:, 4, None, None] * ys + t[:, 5, None, None]
    grid = torch.stack([2 * source_x / max(width - 1, 1) - 1, 2 * source_y / max(height - 1, 1) - 1], dim=-1)
    out = torch.nn.functional.grid_sample(x, grid, mode=interpolation, padding_mode=padding, align_corners=True)
    return out.permute(0, 2, 3, 1) if channels_last else out


def _graph_nodes_called_bare():
    """Fix 8: a Functional graph's own nodes skip Keras' per-call bookkeeping where it does nothing."""
    from keras.src.layers.layer import Layer

    stock = Layer.__call__

    def __call__(self, *args, **kwargs):
        if getattr(_graph_node, "layer", None) is self:
            _graph_node.layer = None  # the node's own call only, never a sublayer's
            if type(self).__call__ is Layer.__call__:  # not a subclass with its own __call__
                outputs = _bare_layer_call(self, args, kwargs)
                if outputs is not NotImplemented:
                    return outputs
        return stock(self, *args, **kwargs)

    return [(Layer, "__call__", __call__)]


# In the order of the module docstring; each returns the (owner, attribute, new value) it replaces.
FIXES = (_layout_copies, _fused_batch_norms, _kernels_in_torch_layout, _fused_adam_updates,
         _conv_bias_in_the_kernel, _intermediates_freed, _batched_affine_transforms, _graph_nodes_called_bare)


def restore() -> None:
    """Put stock Keras back (for comparisons)."""
    while _originals:
        owner, name, value = _originals.pop()
        setattr(owner, name, value)


def _fused_batch_norm(layer, inputs, memory_format):
    """Training-mode batch norm in one fused PyTorch kernel; moving averages as Keras does."""
    import torch

    axis = layer.axis % inputs.ndim
    order = (0, axis, *[d for d in range(1, inputs.ndim) if d != axis])
    x = inputs.permute(order)  # channels at dim 1, as PyTorch's kernel wants
    if axis == inputs.ndim - 1:
        x = x.contiguous(memory_format=memory_format)  # a no-op for a contiguous NHWC input
    gamma = layer.gamma.value if layer.scale else None
    beta = layer.beta.value if layer.center else None
    outputs, mean, inverse_std = torch.native_batch_norm(x, gamma, beta, None, None, True, 0.0, layer.epsilon)
    with torch.no_grad():
        variance = inverse_std.pow(-2) - layer.epsilon  # biased, as Keras' moments
        momentum = layer.momentum
        layer.moving_mean.assign(layer.moving_mean.value * momentum + mean * (1.0 - momentum))
        layer.moving_variance.assign(layer.moving_variance.value * momentum + variance * (1.0 - momentum))
    inverse = [order.index(d) for d in range(inputs.ndim)]
    return outputs.permute(inverse)


def _store_as_torch_kernel(parameter) -> None:
    """Lay a (*spatial, in, out) kernel out in memory as (out, *spatial, in), keeping its shape.

    Keras' permute to (out, in, *spatial) is then a channels_last view that conv uses as is,
    and autograd returns the gradient in the same layout. Assigning to the variable later
    (`copy_`) keeps the layout; reading it gives the same values as before.
    """
    order = (parameter.ndim - 1, *range(parameter.ndim - 2), parameter.ndim - 2)  # (out, *spatial, in)
    inverse = [order.index(d) for d in range(parameter.ndim)]
    parameter.data = parameter.data.permute(order).contiguous().permute(inverse)


def _fused_adam(optimizer, grads, variables, learning_rate) -> None:
    """Keras' Adam update in PyTorch's fused kernel (weight decay stays with Keras, as before).

    Keras: w -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps). PyTorch: w -= lr /
    (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps'), the same update for eps' = eps /
    sqrt(1 - b2^t).
    """
    import torch
    from torch.optim._functional import adam

    step = float(optimizer.iterations.value) + 1
    index = optimizer._get_variable_index
    tensors = [(v.value, g, optimizer._momentums[index(v)].value, optimizer._velocities[index(v)].value)
               for v, g in zip(variables, grads)]
    params, grads, momentums, velocities = zip(*[_in_memory_order(*group) for group in tensors])
    # one step counter per weight, which the kernel advances to t before using it
    counters = list(torch.full((len(params),), step - 1, dtype=torch.float32, device=params[0].device).unbind())
    adam(list(params), list(grads), list(momentums), list(velocities), [], counters,
         fused=True, amsgrad=False, beta1=optimizer.beta_1, beta2=optimizer.beta_2, lr=float(learning_rate),
         weight_decay=0.0, eps=optimizer.epsilon / (1 - optimizer.beta_2 ** step) ** 0.5, maximize=False)


def _in_memory_order(*tensors):
    """Views of same-layout tensors with their dimensions in memory order, i.e. contiguous.

    The fused kernel copies a non-contiguous tensor in and out (5x slower for ResNet-50's
    kernels, stored as (out, H, W, in) behind Keras' (H, W, in, out)); an elementwise update
    gives the same result on views that alias the same memory in the same order.
    """
    first = tensors[0]
    if first.is_contiguous() or any(t.stride() != first.stride() for t in tensors):
        return tensors
    order = sorted(range(first.ndim), key=lambda d: -first.stride(d))
    views = tuple(t.permute(order) for t in tensors)
    return views if views[0].is_contiguous() else tensors


def _conv2d_with_bias(layer, inputs):
    """Keras' channels_last Conv2D on PyTorch (keras.src.backend.torch.nn.conv), with the bias
    passed to the convolution instead of added afterwards."""
    import torch
    from keras.src.backend.torch import nn as torch_nn
    from keras.src.backend.torch.core import convert_to_tensor

    x = torch_nn._transpose_spatial_inputs(convert_to_tensor(inputs))  # a channels_last view (fix 1)
    kernel = torch_nn._maybe_convert_to_channels_last(torch_nn._transpose_conv_kernel(convert_to_tensor(layer.kernel)))
    strides, dilation = tuple(layer.strides), tuple(layer.dilation_rate)
    padding = 0
    if layer.padding == "same":
        x, padding = torch_nn._apply_same_padding(x, kernel.shape[2:], strides, "channels_last", "conv", dilation)
    outputs = torch.nn.functional.conv2d(x, kernel, convert_to_tensor(layer.bias), stride=strides, padding=padding,
                                         dilation=dilation, groups=x.shape[1] // kernel.shape[1])
    return outputs.permute(0, 2, 3, 1)


def _run_freeing_intermediates(function, inputs, operation_fn, stock_run):
    """Keras' Function._run_through_graph (keras.src.ops.function, 3.15), which keeps every
    computed tensor in `tensor_dict` until it returns, with each intermediate dropped from it
    once the last node that reads it has run. Autograd still holds what backward needs."""
    from keras.src import tree

    tensor_dict = {id(x): y for x, y in zip(function.inputs, tree.flatten(inputs))}
    readers: dict[int, int] = {}  # tensor id -> nodes still to read it
    for nodes in function._nodes_by_depth.values():
        for node in nodes:
            if node.operation and not node.is_input:
                for x in node.input_tensors:
                    readers[id(x)] = readers.get(id(x), 0) + 1
    outputs_kept = {id(x) for x in function.outputs}
    for depth in sorted(function._nodes_by_depth, reverse=True):
        for node in function._nodes_by_depth[depth]:
            if not node.operation or node.is_input:
                continue  # input tensors already exist
            if any(id(x) not in tensor_dict for x in node.input_tensors):
                continue  # not computable: its inputs are kept (never freed), as before
            args, kwargs = node.arguments.fill_in(tensor_dict)
            operation = function._get_operation_for_node(node)
            _graph_node.layer = operation  # its Layer.__call__ may skip the bookkeeping (fix 8)
            try:
                outputs = operation_fn(operation)(*args, **kwargs)
            finally:
                _graph_node.layer = None
            del args, kwargs
            for x, y in zip(node.outputs, tree.flatten(outputs)):
                tensor_dict[id(x)] = y
            for x in node.input_tensors:
                readers[id(x)] -= 1
                if not readers[id(x)] and id(x) not in outputs_kept:
                    tensor_dict.pop(id(x), None)
    if any(id(x) not in tensor_dict for x in function.outputs):
        return stock_run(function, inputs, operation_fn=operation_fn)  # raises Keras' own error
    return tree.pack_sequence_as(function._outputs_struct, [tensor_dict[id(x)] for x in function.outputs])


def _bare_layer_call(layer, args, kwargs):
    """What Keras 3.15's Layer.__call__ (keras.src.layers.layer) does for a built layer's eager
    call on unmasked tensors inside an outer call, or NotImplemented where its other steps could
    matter: the inputs cast to the compute dtype, `training` resolved and passed on, the call
    in the layer's autocast scope. The skipped steps (build, input-spec check, name scope, mask
    propagation, activity regularizer, distribution layout, graph node) do nothing here; a
    node's recorded `mask=None` is passed on, as stock does."""
    import torch
    from keras.src import backend
    from keras.src.backend.common import global_state
    from keras.src.backend.torch.core import to_torch_dtype

    context = global_state.get_global_attribute("current_call_ctx")
    if context is None or len(args) != 1 or _needs_keras_path(layer, kwargs):
        return NotImplemented
    inputs = args[0]
    tensors = inputs if type(inputs) in (list, tuple) else (inputs,)  # a namedtuple: stock rebuilds it
    if not all(isinstance(t, torch.Tensor) and backend.get_keras_mask(t) is None for t in tensors):
        return NotImplemented
    if layer._convert_input_args:  # as stock: only tensors not already in the layer's input dtype
        dtype = layer.input_dtype
        try:
            wanted = to_torch_dtype(dtype)
        except ValueError:  # a dtype PyTorch has no tensor for ("string"): stock compares names
            return NotImplemented
        converted = [t if t.dtype == wanted else layer.dtype_policy.convert_input(t, layer.autocast, dtype)
                     for t in tensors]
        inputs = type(inputs)(converted) if type(inputs) in (list, tuple) else converted[0]
    for name in layer._call_context_args:  # Layer._resolve_and_populate_arg
        if name in kwargs:
            value = kwargs[name]
        elif context.get_value(name) is not None:
            value = context.get_value(name)
        else:
            parameter = layer._call_signature.parameters.get(name)
            value = None if parameter is None or parameter.default is parameter.empty else parameter.default
        context.set_value(name, value)
        if layer._call_has_context_arg.get(name, False) and value is not None:
            kwargs[name] = value
        elif not layer._call_has_context_arg.get(name, False):
            kwargs.pop(name, None)
    scope, compute_dtype = backend.get_autocast_scope(), layer.compute_dtype
    new_scope = None
    if scope is not None:
        if not layer.autocast or not backend.is_float_dtype(compute_dtype):
            new_scope = backend.AutocastScope(None)
        elif scope.dtype != compute_dtype:
            new_scope = backend.AutocastScope(compute_dtype)
    elif compute_dtype != layer.variable_dtype:
        new_scope = backend.AutocastScope(compute_dtype)
    if new_scope is None:
        return layer.call(inputs, **kwargs)
    with new_scope:
        return layer.call(inputs, **kwargs)


def _needs_keras_path(layer, kwargs: dict) -> bool:
    """Whether a step that the bare call skips could do something for this layer and call."""
    from keras.src.backend.torch.layer import TorchLayer
    from keras.src.distribution import distribution_lib

    unusual_layer = (not layer.built or not getattr(layer, "_called", False) or layer._remat_mode is not None
                     or getattr(layer, "quantization_mode", None) is not None
                     or layer.activity_regularizer is not None
                     or (layer.supports_masking and type(layer).compute_mask not in _masks_from_none()))
    torch_module_work = (layer._forward_hooks or layer._forward_pre_hooks or layer._backward_hooks
                         or layer._backward_pre_hooks or _global_module_hooks() or _tracing()
                         or layer._compiled_call_impl is not None or type(layer).forward is not TorchLayer.forward)
    other_kwargs = any(name not in layer._call_context_args and not (name == "mask" and value is None)
                       for name, value in kwargs.items())
    return bool(unusual_layer or torch_module_work or other_kwargs or distribution_lib.distribution() is not None)


def _tracing() -> bool:
    """Under TorchScript tracing (ONNX export), torch.compile, torch.export or FX, nn.Module's own
    __call__ records each layer's scope; the bare call would drop it, so Keras' path runs."""
    import torch

    return bool(torch._C._get_tracing_state() or torch.compiler.is_compiling()
                or torch.fx._symbolic_trace.is_fx_symbolic_tracing())


def _global_module_hooks() -> bool:
    from torch.nn.modules import module

    return bool(module._global_forward_hooks or module._global_forward_pre_hooks
                or module._global_backward_hooks or module._global_backward_pre_hooks)


@functools.cache  # read on every bare call: import once
def _masks_from_none() -> tuple:
    """compute_mask methods that give no mask when no input has one (so nothing to set)."""
    from keras.src.layers.layer import Layer
    from keras.src.layers.merging.base_merge import Merge
    from keras.src.layers.merging.concatenate import Concatenate

    return Layer.compute_mask, Merge.compute_mask, Concatenate.compute_mask

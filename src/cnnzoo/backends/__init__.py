"""The framework-facing side of cnnzoo: which Keras backend runs (`select`), the fixes to
Keras' PyTorch backend (`torch_speed`), data-parallel training (`distribute`). These are the
only modules, with benchmarks, that touch a framework directly.

Importing this package imports no framework: `select` chooses the backend before keras loads.
"""

from cnnzoo.backends.select import (
    Choice,
    choose,
    cpu_bf16,
    current,
    devices,
    has_accelerator,
    inference_threads,
    jax_gpu_plugin,
    select,
    versions,
)

__all__ = ["Choice", "choose", "cpu_bf16", "current", "devices", "has_accelerator", "inference_threads", "jax_gpu_plugin", "select", "versions"]

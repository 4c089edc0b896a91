"""cnnzoo: the classic deep-CNN case studies in Keras 3.

Importing cnnzoo only chooses the Keras backend (see `cnnzoo.backends.select`); keras itself and
the models load on first use, so `cnnzoo --backend jax ...` can still choose.
"""

from __future__ import annotations

import importlib

from cnnzoo import backends as _backends
from cnnzoo.errors import UserError

__version__ = "0.1.0"

try:
    _backends.select()
except UserError:
    pass  # no backend installed: said when a model is first needed, not on `cnnzoo --help`

# Public name -> module that defines it; loaded lazily (PEP 562).
_EXPORTS = {
    "HappyModel": "cnnzoo.models.happy",
    "ResNet50": "cnnzoo.models.resnet",
    "identity_block": "cnnzoo.models.resnet",
    "convolutional_block": "cnnzoo.models.resnet",
    "get_model": "cnnzoo.models.registry",
    "list_models": "cnnzoo.models.registry",
    "model_info": "cnnzoo.models.registry",
    "TrainConfig": "cnnzoo.training.config",
    "load_model": "cnnzoo.models.saving",
    "export": "cnnzoo.inference.export",
}


# Public submodules, also loaded on first use: `cnnzoo.explain.gradcam(model, images, k)`.
_SUBMODULES = ("explain",)


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"cnnzoo.{name}")
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'cnnzoo' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_EXPORTS, *_SUBMODULES])


__all__ = ["UserError", "__version__", *_EXPORTS, *_SUBMODULES]

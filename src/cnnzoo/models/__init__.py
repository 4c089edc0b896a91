"""Model families, one module each; importing this package registers every builder.

Every module here except the shared `registry` and `common` is a family module whose
`@register_model` decorators run on import, so a new family is just a new file.
"""

import importlib
import pkgutil

from cnnzoo.models.registry import get_model, list_models, model_info, register_model

_SHARED = {"registry", "common"}

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _info.name not in _SHARED and not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["get_model", "list_models", "model_info", "register_model"]

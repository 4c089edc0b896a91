"""Model families, one module each; importing this package registers every builder.

A new family is a new module here with `@register_model` builders, imported below.
"""

from cnnzoo.models import alexnet, happy, inception, lenet, resnet, vgg  # noqa: F401  (registers them)
from cnnzoo.models.registry import ModelInfo, Recipe, get_model, list_models, model_info, register_model

__all__ = ["ModelInfo", "Recipe", "get_model", "list_models", "model_info", "register_model"]

"""The model registry: lower-case name -> builder and the facts about it.

Modelled on torchvision's `_api.py`: a `register_model` decorator, `get_model`,
`list_models(pattern)`, and duplicate names refused. The CLI's choices, the docs tables
and the parametrised tests all come from here.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Callable

from cnnzoo.errors import UserError


@dataclass(frozen=True)
class ModelInfo:
    name: str
    builder: Callable
    description: str  # one line
    paper: str  # citation of the source
    year: int
    input_shape: tuple[int, int, int]  # default input, channels_last
    classes: int  # default number of classes
    reference_params: int | None = None  # published parameter count at the defaults

    def build(self, **kwargs):
        kwargs.setdefault("input_shape", self.input_shape)
        kwargs.setdefault("classes", self.classes)
        return self.builder(**kwargs)


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(
    name: str,
    *,
    description: str,
    paper: str,
    year: int,
    input_shape: tuple[int, int, int],
    classes: int,
    reference_params: int | None = None,
):
    """Class the decorated builder under `name`; a name can be registered once."""

    def decorate(builder: Callable) -> Callable:
        if name in _REGISTRY:
            raise ValueError(f"A model named {name!r} is already registered.")
        _REGISTRY[name] = ModelInfo(
            name, builder, description, paper, year, tuple(input_shape), classes,
            reference_params,
        )
        return builder

    return decorate


def list_models(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style pattern, sorted."""
    _load_families()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def model_info(name: str) -> ModelInfo:
    _load_families()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UserError(
            f"Unknown model {name!r}: choose one of {', '.join(list_models())}."
        ) from None


def get_model(name: str, **kwargs):
    """Build the registered model `name`; keyword arguments go to its builder."""
    return model_info(name).build(**kwargs)


def _load_families() -> None:
    # Importing the package imports every family module, which registers its builders.
    import cnnzoo.models  # noqa: F401

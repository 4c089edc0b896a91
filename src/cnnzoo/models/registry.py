"""The model registry: lower-case name -> builder and the facts about it.

Modelled on torchvision's `_api.py`: a `register_model` decorator, `get_model`,
`list_models(pattern)`, and duplicate names refused. Each fact about a network is stated
once, here, where the CLI's choices, the docs tables, the training defaults and the
parametrised tests read it: its default input and classes (the builder's own defaults),
the smallest input it takes, whether it has residual branches or auxiliary heads, and the
recipe it trains with (timm keeps `min_input_size` and its pretrained cfgs the same way).
"""

from __future__ import annotations

import fnmatch
import inspect
from dataclasses import dataclass, field
from typing import Callable

from cnnzoo.errors import UserError


@dataclass(frozen=True)
class Recipe:
    """A network's training defaults, chosen on the validation split (never the test split)."""

    epochs: int = 20
    batch_size: int = 32
    optimizer: str = "adam"  # or "sgd": SGD with Nesterov momentum 0.9 (training.config.OPTIMIZERS)
    lr: float = 1e-3  # the optimizer's peak learning rate, decayed to 0 on a cosine over the run
    warmup: float = 0.0  # epochs of linear learning-rate warm-up from 0 before the cosine
    weight_decay: float = 0.0  # decoupled (AdamW-style) decay per step, times the learning rate
    # BatchNormalization momentum while training. Keras' 0.99 averages over ~100 steps: on a
    # small dataset (~29 steps an epoch for signs) the moving statistics lag the weights, and
    # ResNet-50's validation accuracy stayed at 13-18% through 14 epochs while training
    # accuracy reached 86%; at 0.9 (PyTorch's default) it reached 88% in 6 epochs.
    bn_momentum: float = 0.9
    # ResNets only: start every residual branch at zero (its last BN scale), so that each block
    # begins as its shortcut and a very deep v1 network trains like a shallow one at first.
    zero_init_residual: bool = False


@dataclass(frozen=True)
class ModelInfo:
    name: str
    builder: Callable
    description: str  # one line
    paper: str  # citation of the source
    year: int
    reference_params: int | None = None  # published parameter count at the defaults
    min_input_size: int = 1  # the smallest height and width its strides and pooling allow
    residual: bool = False  # has residual branches (so `zero_init_residual` applies)
    # Loss weights of the auxiliary classifiers it can be built with (`aux_logits=True`), after
    # the main output's 1; empty: it has none.
    aux_loss_weights: tuple[float, ...] = ()
    recipe: Recipe = field(default_factory=Recipe)

    @property
    def aux_heads(self) -> bool:
        return bool(self.aux_loss_weights)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """The default input, channels_last: the builder's own default."""
        return tuple(_default(self.builder, "input_shape"))

    @property
    def classes(self) -> int:
        """The default number of classes: the builder's own default."""
        return _default(self.builder, "classes")

    def build(self, **kwargs):
        return self.builder(**kwargs)


def _default(builder: Callable, parameter: str):
    return inspect.signature(builder).parameters[parameter].default


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(name: str, **facts):
    """Register the decorated builder under `name` with the ModelInfo `facts`; a name can be
    registered once, and the builder must give `input_shape` and `classes` defaults."""

    def decorate(builder: Callable) -> Callable:
        if name in _REGISTRY:
            raise ValueError(f"A model named {name!r} is already registered.")
        parameters = inspect.signature(builder).parameters
        missing = [p for p in ("input_shape", "classes")
                   if p not in parameters or parameters[p].default is inspect.Parameter.empty]
        if missing:
            raise ValueError(f"The builder of {name!r} needs a default for {', '.join(missing)}.")
        _REGISTRY[name] = ModelInfo(name, builder, **facts)
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


def get_model(name: str, *, weights=None, **kwargs):
    """Build the registered model `name`; keyword arguments go to its builder.

    `weights`, in keras.applications' style, is a published checkpoint for it (a path: see
    `cnnzoo weights list`), loaded after every tensor is checked; the model then expects the
    checkpoint's input convention (`cnnzoo.models.weights.convert` gives a model that takes
    uint8 pixels and applies it itself). With include_top=False a checkpoint's classifier is
    left out, the way to put a new head on published features."""
    model = model_info(name).build(**kwargs)
    if weights is not None:
        from cnnzoo.models.weights import load_weights

        load_weights(model, weights, arch=name)
    return model


def _load_families() -> None:
    # Importing the package imports every family module, which registers its builders.
    import cnnzoo.models  # noqa: F401

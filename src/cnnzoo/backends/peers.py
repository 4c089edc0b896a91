"""torchvision and timm, importable beside a CPU-only torch.

PyPI's torchvision wheels are built against the CUDA torch: next to the CPU build of the same
torch (`torch==2.13.0+cpu`, what cnnzoo installs) their compiled operators (`_C.so`, which
links libtorch_cuda) cannot load. torchvision tolerates that everywhere except two lines of
`_meta_registrations.py`, which register fake kernels for `torchvision::nms` and `qnms`
unconditionally, so `import torchvision` fails with "operator torchvision::nms does not
exist" (pytorch/vision#9085). The model definitions never call those operators (they are
for detection boxes), so `import_torchvision` declares the two schemas when, and only when,
the compiled library cannot load; torchvision then imports with its C++ operators reported
absent (`torchvision.extension._has_ops()` is False) and every classification model works.
Where the library does load (a matching CUDA or CPU build), nothing is declared.

cnnzoo itself never needs these packages to convert weights (a checkpoint is tensors); the
tests use them as the peers that converted models are compared against, and `predict` reads
ImageNet's class names from torchvision's weights metadata.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from cnnzoo.errors import UserError

# The operators torchvision's _meta_registrations registers without checking they exist.
_UNGUARDED_OPS = {
    "nms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_declared = False


def _missing(package: str) -> UserError:
    return UserError(
        f"{package} is not installed: install cnnzoo's weights extra (`pip install -e '.[weights]'`, "
        "after torch==2.13.0) to compare with or read labels from it."
    )


def _compiled_ops_load(folder: Path) -> bool:
    import torch

    for library in sorted(folder.glob("_C.*")):
        if library.suffix in (".so", ".pyd", ".dylib"):
            try:
                torch.ops.load_library(str(library))
                return True
            except OSError:
                return False
    return False


def import_torchvision():
    """`import torchvision`, declaring its two unguarded operators first if its C++ library
    cannot load here (see the module docstring)."""
    global _declared
    if "torchvision" in sys.modules:
        return sys.modules["torchvision"]
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        raise _missing("torchvision")
    if not _declared and not _compiled_ops_load(Path(spec.origin).parent):
        import torch

        for name, schema in _UNGUARDED_OPS.items():
            try:
                torch.library.define(f"torchvision::{name}", schema)
            except RuntimeError:  # already declared (by another copy of this shim)
                pass
        _declared = True
    import torchvision

    return torchvision


def import_timm():
    """`import timm`; it imports torchvision, so that goes first through `import_torchvision`."""
    import_torchvision()
    if importlib.util.find_spec("timm") is None:
        raise _missing("timm")
    import timm

    return timm


def imagenet_categories() -> list[str] | None:
    """ImageNet-1k's 1,000 class names in the order every published checkpoint uses, from the
    installed torchvision's weights metadata (nothing is downloaded); None without torchvision."""
    try:
        torchvision = import_torchvision()
    except UserError:
        return None
    return list(torchvision.models.ResNet50_Weights.IMAGENET1K_V2.meta["categories"])

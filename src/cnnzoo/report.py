"""Pictures of models and runs, always written atomically (temp file + rename)."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from cnnzoo.errors import UserError

GRAPH_FORMATS = (".png", ".svg", ".pdf")


@contextmanager
def atomic_path(path: Path):
    """Yield a temporary path beside `path` (same suffix); rename it into place on success."""
    path = Path(path)
    if not path.parent.exists():
        raise UserError(f"Cannot write {path}: the folder {path.parent} does not exist.")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def plot_graph(model, path: Path, *, dpi: int = 96) -> Path:
    """Write the model graph with `keras.utils.plot_model` (format from the suffix)."""
    import keras

    path = Path(path)
    if path.suffix.lower() not in GRAPH_FORMATS:
        raise UserError(
            f"Cannot plot to {path}: the file name must end in {', '.join(GRAPH_FORMATS)}."
        )
    if shutil.which("dot") is None:
        raise UserError(
            "Graphviz's `dot` program is not on PATH, and plotting needs it: install Graphviz "
            "(`apt-get install graphviz`, `brew install graphviz` or `conda install graphviz`)."
        )
    with atomic_path(path) as tmp:
        keras.utils.plot_model(model, to_file=str(tmp), show_shapes=True, show_layer_names=True, dpi=dpi)
    return path

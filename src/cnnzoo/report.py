"""Pictures of models and runs, always written atomically (temp file + rename)."""

from __future__ import annotations

import shutil
from pathlib import Path

from cnnzoo.atomic import atomic_path
from cnnzoo.errors import UserError

GRAPH_FORMATS = (".png", ".svg", ".pdf")


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
    # model_to_dot + write, not plot_model: plot_model also tries to display the picture
    # through IPython when that is installed, which fails for .svg.
    graph = keras.utils.model_to_dot(model, show_shapes=True, show_layer_names=True, dpi=dpi)
    with atomic_path(path) as tmp:
        graph.write(str(tmp), format=path.suffix.lower().lstrip("."))
    return path

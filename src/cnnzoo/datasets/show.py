"""A labelled grid of samples, one row per class, drawn with matplotlib (Agg)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnzoo._io import atomic_path
from cnnzoo.analysis.report import picture_path
from cnnzoo.datasets import splits
from cnnzoo.errors import UserError

FORMATS = (".png", ".jpg", ".jpeg", ".svg", ".pdf")


def sample_grid(ds, path, *, split: str = "train", per_class: int = 8, seed: int = 0, dpi: int = 100) -> Path:
    """Write up to `per_class` images of each class of `ds.<split>` as one row per class.

    The samples are the files with the smallest hash of their key (salted with `seed`), so
    the same files are shown every time. Returns the path written (atomically).
    """
    path = picture_path(path, FORMATS)
    if per_class < 1:
        raise UserError(f"per_class must be at least 1. Received: per_class={per_class!r}")
    named = ds.splits()
    if split not in named:
        raise UserError(f"{ds.name} has no {split!r} split: choose one of {', '.join(named)}.")
    part = named[split]
    labels = part.labels
    order = np.argsort(splits.unit_hash(part.keys, f"cnnzoo-show-{seed}"), kind="stable")

    # A bare Figure on an Agg canvas: no pyplot state, no display, whatever backend is set.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = len(ds.class_names)
    height, width, channels = ds.image_shape
    cell = 1.0  # inches per image
    labels_text = [name if name == str(row) else f"{row}: {name}" for row, name in enumerate(ds.class_names)]
    margin = 0.3 + 0.075 * max(len(t) for t in labels_text)  # inches for the row labels
    fig = Figure(figsize=(per_class * cell * max(1.0, width / height) + margin + 0.1, rows * cell + 0.5))
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, per_class, squeeze=False)
    for row, name in enumerate(ds.class_names):
        chosen = [i for i in order if labels[i] == row][:per_class]
        for col in range(per_class):
            ax = axes[row][col]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if col < len(chosen):
                image = part.x[chosen[col]]
                if channels == 1:
                    ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=255)
                else:
                    ax.imshow(image)
            if col == 0:
                ax.set_ylabel(labels_text[row], rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle(f"{ds.name} — {split}, {len(part)} images, {height}x{width}x{channels}", fontsize=10)
    fig.subplots_adjust(left=margin / fig.get_figwidth(), right=0.99, bottom=0.02, top=1 - 0.4 / fig.get_figheight(),
                        wspace=0.05, hspace=0.08)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=path.suffix.lower().lstrip(".").replace("jpg", "jpeg"))
    return path

"""Pictures of models and runs, always written atomically (temp file + rename)."""

from __future__ import annotations

import shutil
from pathlib import Path

from cnnzoo._io import atomic_path
from cnnzoo.errors import UserError

GRAPH_FORMATS = (".png", ".svg", ".pdf")


def plot_graph(model, path: Path, *, dpi: int = 96) -> Path:
    """Write the model graph with `keras.utils.plot_model` (format from the suffix)."""
    import keras

    path = picture_path(path)
    if dpi < 1:
        raise UserError(f"The resolution must be at least 1 dot per inch. Received: dpi={dpi!r}")
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


def picture_path(path, formats=GRAPH_FORMATS) -> Path:
    """`path` as a Path, refused unless its suffix is one of the picture `formats` we write."""
    path = Path(path)
    if path.suffix.lower() not in formats:
        raise UserError(f"Cannot draw to {path}: the file name must end in {', '.join(formats)}.")
    return path


def _figure(*args, **kwargs):
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed, safe in CI and servers
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def plot_curves(history: dict[str, list[float]], path: Path, title: str = "") -> Path:
    """Loss and accuracy per epoch, training and validation side by side."""
    fig, axes = _figure(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for prefix, style in (("", "-o"), ("val_", "--s")):
            values = history.get(prefix + metric)
            if values:
                ax.plot(range(1, len(values) + 1), values, style, ms=3,
                        label="validation" if prefix else "training")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    return _save(fig, path)


def plot_confusion(matrix, class_names, path: Path, title: str = "") -> Path:
    """Confusion matrix with counts in the cells (rows: true class, columns: predicted)."""
    import numpy as np

    matrix = np.asarray(matrix)
    size = max(4, 0.6 * len(class_names) + 2)
    fig, ax = _figure(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ticks = range(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=45, ha="right")
    ax.set_yticks(ticks, class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center",
                color="white" if count > matrix.max() / 2 else "black")
    ax.set_title(title)
    return _save(fig, path)


def plot_mistakes(images, y_true, proba, class_names, path: Path, title: str = "", count: int = 32) -> Path:
    """The `count` most confidently wrong predictions, each image titled with its true class,
    the predicted one and the probability given to it (like fastai's plot_top_losses)."""
    import numpy as np

    from cnnzoo.analysis.metrics import confident_mistakes

    path = picture_path(path)
    chosen = confident_mistakes(y_true, proba, count)
    columns = min(8, max(1, len(chosen)))
    rows = max(1, -(-len(chosen) // columns))
    fig, axes = _figure(rows, columns, figsize=(1.9 * columns, 2.0 * rows + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    if not len(chosen):
        axes[0][0].text(0.5, 0.5, "no mistakes", ha="center", va="center")
    for ax, i in zip(axes.ravel(), chosen):
        image = np.asarray(images[i])
        ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=255)
        guess = int(proba[i].argmax())
        ax.set_title(f"true {class_names[int(y_true[i])]}\n→ {class_names[guess]} ({proba[i, guess]:.2f})", fontsize=7)
    fig.suptitle(title)
    return _save(fig, path)


def plot_reliability(curves: dict[str, dict], path: Path, title: str = "") -> Path:
    """Reliability diagrams: accuracy against confidence per bin, one line per named
    `calibration()` result (e.g. clean and shifted), the diagonal being perfect calibration."""
    path = picture_path(path)
    fig, ax = _figure(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfectly calibrated")
    for name, result in curves.items():
        points = [(b["confidence"], b["accuracy"]) for b in result["bins"] if b["count"]]
        if points:
            x, y = zip(*points)
            ax.plot(x, y, "-o", ms=3, label=f"{name} (ECE {result['ece']:.1%})")
    ax.set_xlabel("confidence (top probability)")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


# -- what a network looks at (cnnzoo explain / features / filters) ------------------------------
HEAT_COLORMAP = "jet"  # the Grad-CAM paper's colours: red where the map is strongest
HEAT_ALPHA = 0.45  # how much of the heat colour covers the image


def overlay(image, heat, *, alpha: float = HEAT_ALPHA):
    """uint8 (H, W, 3): `image` (uint8, 1 or 3 channels) with `heat` ((H, W) in [0, 1]) laid
    over it in colour; the weight of the colour grows with the heat, so cold regions stay
    readable."""
    import matplotlib
    import numpy as np

    image = np.asarray(image)
    rgb = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image[..., :3]
    heat = np.clip(np.asarray(heat, dtype="float32"), 0.0, 1.0)
    colour = matplotlib.colormaps[HEAT_COLORMAP](heat)[..., :3] * 255.0
    weight = alpha * (0.35 + 0.65 * heat)[..., None]
    return np.clip(rgb * (1.0 - weight) + colour * weight, 0, 255).astype("uint8")


def _show(ax, image) -> None:
    import numpy as np

    image = np.asarray(image)
    ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=255,
              interpolation="nearest")
    ax.axis("off")


def plot_explanation(image, heat, path: Path, *, title: str, caption: str = "") -> Path:
    """The image and the image with its heat map, side by side, titled with the class explained."""
    path = picture_path(path)
    fig, (left, right) = _figure(1, 2, figsize=(6.0, 3.4))
    _show(left, image)
    left.set_title("input" + (f" ({caption})" if caption else ""), fontsize=9)
    _show(right, overlay(image, heat))
    right.set_title(title, fontsize=9)
    return _save(fig, path)


def plot_contact_sheet(tiles, path: Path, *, title: str = "", columns: int = 6) -> Path:
    """`tiles` = [(uint8 image, caption)]: one picture of them all, in rows of `columns`."""
    path = picture_path(path)
    columns = max(1, min(columns, len(tiles)))
    rows = max(1, -(-len(tiles) // columns))
    fig, axes = _figure(rows, columns, figsize=(2.1 * columns, 2.35 * rows + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (image, caption) in zip(axes.ravel(), tiles):
        _show(ax, image)
        ax.set_title(caption, fontsize=7)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_feature_maps(image, maps: dict, path: Path, *, channels: int = 8, title: str = "") -> Path:
    """One row per layer (name and shape on the left): its first `channels` activation maps,
    each row on one colour scale so the channels compare; the input image on top."""
    import numpy as np

    path = picture_path(path)
    rows = 1 + len(maps)
    fig, axes = _figure(rows, channels, figsize=(1.25 * channels + 1.2, 1.3 * rows + 0.3), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    _show(axes[0][0], image)
    axes[0][0].set_title("input", fontsize=8)
    for row, (name, activation) in zip(axes[1:], maps.items()):
        activation = np.asarray(activation)
        shown = activation[..., :channels]
        top = float(shown.max()) or 1.0
        for k, ax in enumerate(row[: shown.shape[-1]]):
            ax.imshow(shown[..., k], cmap="viridis", vmin=min(0.0, float(shown.min())), vmax=top,
                      interpolation="nearest")
            ax.set_title(f"ch {k}", fontsize=6)
        height, width, depth = activation.shape
        row[0].text(-0.1, 0.5, f"{name}\n{height}x{width}x{depth}", transform=row[0].transAxes,
                    ha="right", va="center", fontsize=7)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_filters(kernels, path: Path, *, title: str = "") -> Path:
    """First-layer kernels ((N, kh, kw, C), C = 1 or 3) as tiles, like AlexNet's Figure 3:
    each scaled on its own so that zero is mid-grey and its strongest weight reaches black or
    white (or full colour)."""
    import numpy as np

    path = picture_path(path)
    kernels = np.asarray(kernels, dtype="float32")
    if kernels.shape[-1] not in (1, 3):  # colour only means something for 3 input channels
        kernels = kernels.mean(axis=-1, keepdims=True)
    scale = np.abs(kernels).reshape(len(kernels), -1).max(axis=1).reshape(-1, 1, 1, 1)
    tiles = (0.5 + 0.5 * kernels / np.where(scale > 0, scale, 1.0)) * 255.0
    columns = int(np.ceil(np.sqrt(len(tiles) * 1.5)))
    rows = -(-len(tiles) // columns)
    fig, axes = _figure(rows, columns, figsize=(0.55 * columns + 0.4, 0.55 * rows + 0.7), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, tile in zip(axes.ravel(), tiles.astype("uint8")):
        _show(ax, tile)
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)

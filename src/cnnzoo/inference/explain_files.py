"""`cnnzoo explain | features | filters` on files: a run folder or model file, image files
or folders, and the pictures written from `cnnzoo.inference.explain`'s arrays.

Images are decoded exactly as `cnnzoo predict` decodes them (the run's resize mode, the
model's input size), so a map explains the very decision `predict` reports.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnzoo.analysis import report
from cnnzoo.errors import UserError
from cnnzoo.inference import explain as ex
from cnnzoo.inference.predict import input_geometry, load_for_prediction, run_config

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
SHEET = "contact-sheet.png"
METHOD_NAMES = {"gradcam": "Grad-CAM", "saliency": "saliency"}


def image_files(paths) -> list[Path]:
    """Image files from files and folders (a folder's images, sorted by name)."""
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise UserError(f"The folder {path} holds no image files ({', '.join(IMAGE_SUFFIXES)}).")
            files.extend(found)
        else:
            files.append(path)
    if not files:
        raise UserError("No images given: name image files or a folder of them.")
    return files


class _Loaded:
    """A model file with what `predict` knows about it: class names, input size, scaling."""

    def __init__(self, model_file, *, arch=None, unsafe=False, input_shape=None):
        from cnnzoo.backends import torch_speed
        from cnnzoo.models.saving import takes_raw_pixels

        torch_speed.apply()  # before loading: kernels kept in PyTorch's layout halve a pass's time
        self.model = load_for_prediction(model_file, arch, unsafe, input_shape)
        config = run_config(model_file)
        self.height, self.width, self.channels = input_geometry(self.model)
        self.resize = config.get("preprocessing", {}).get("resize", "resize")
        self.scale = not takes_raw_pixels(self.model)
        units = int(self.model.outputs[0].shape[-1])
        self.class_names = [str(c) for c in config.get("class_names") or range(max(2, units))]
        self.name = Path(model_file).name

    def read(self, path) -> np.ndarray:
        from cnnzoo.datasets import read_image

        return read_image(path, (self.height, self.width), self.channels, resize=self.resize)

    def inputs(self, pixels: np.ndarray) -> np.ndarray:
        """What the model takes: the pixels, or pixels / 255 for a model that does not scale."""
        return pixels.astype("float32") / 255.0 if self.scale else pixels

    def class_index(self, name: str | None) -> int | None:
        """The index of the class called `name` (or given by its number), None for `None`."""
        if name is None:
            return None
        if name in self.class_names:
            return self.class_names.index(name)
        if name.isdigit() and int(name) < len(self.class_names):
            return int(name)
        raise UserError(f"The model {self.name} has no class {name!r}: its classes are "
                        f"{', '.join(self.class_names)}.")


def explain_files(model_file, images, out, *, class_name: str | None = None, method: str = "gradcam",
                  layer: str | None = None, arch=None, unsafe=False, input_shape=None, batch_size: int = 16) -> dict:
    """Explain each image's decision (or `class_name`) and write the pictures.

    One image and an `out` ending in .png/.svg/.pdf: that file. Otherwise `out` is a folder
    (made if missing) that gets one picture per image and `contact-sheet.png`. Returns
    {"items": [one dict per image], "sheet": path or None}.
    """
    if method not in ex.METHODS:
        raise UserError(f"Unknown method {method!r}: choose one of {', '.join(ex.METHODS)}.")
    files = image_files(images)
    many = len(files) > 1 or any(Path(p).is_dir() for p in images)  # a contact sheet too
    loaded = _Loaded(model_file, arch=arch, unsafe=unsafe, input_shape=input_shape)
    requested = loaded.class_index(class_name)
    if method == "gradcam":
        layer = ex.find_layer(loaded.model, layer).name if layer else ex.default_layer(loaded.model)
    pixels = np.stack([loaded.read(path) for path in files])  # every image checked before any work
    targets = _targets(files, Path(out), method, many)
    items = []
    for start in range(0, len(files), batch_size):
        batch = pixels[start:start + batch_size]
        result = ex.explain(loaded.model, loaded.inputs(batch), requested, method=method, layer=layer)
        for offset, (heat, proba, index) in enumerate(zip(result.maps, result.probabilities, result.class_index)):
            i = start + offset
            items.append(_describe(files[i], batch[offset], heat, proba, int(index), loaded, method, layer, targets[i]))
    sheet = None
    if many:
        sheet = report.plot_contact_sheet(
            [(report.overlay(item["pixels"], item["heat"]), item["caption"]) for item in items],
            Path(out) / SHEET, title=f"{METHOD_NAMES[method]} of {loaded.name}" + (f" at {layer}" if layer else ""))
    for item in items:
        del item["pixels"], item["heat"]
    return {"items": items, "sheet": sheet}


def _targets(files: list[Path], out: Path, method: str, many: bool) -> list[Path]:
    """Where each image's picture goes (see `explain_files`)."""
    if not many and out.suffix.lower() in report.GRAPH_FORMATS:
        return [out]
    if out.suffix.lower() in report.GRAPH_FORMATS:
        raise UserError(f"-o {out} names one picture, but {len(files)} images or a folder were given: name "
                        "a folder for their pictures and the contact sheet.")
    if out.exists() and not out.is_dir():
        raise UserError(f"-o {out} is a file: name a folder for the pictures.")
    out.mkdir(parents=True, exist_ok=True)
    targets, used = [], set()
    for path in files:
        name, k = f"{path.stem}.{method}.png", 1
        while name in used or name == SHEET:
            k += 1
            name = f"{path.stem}-{k}.{method}.png"
        used.add(name)
        targets.append(out / name)
    return targets


def _describe(path, pixels, heat, proba, index, loaded, method, layer, target) -> dict:
    names = loaded.class_names
    predicted = int(np.argmax(proba))
    title = f"{METHOD_NAMES[method]}: {names[index]} (p = {proba[index]:.2f})"
    if index != predicted:
        title += f"\npredicted: {names[predicted]} (p = {proba[predicted]:.2f})"
    if layer:
        title += f"\nat {layer}"
    report.plot_explanation(pixels, heat, target, title=title, caption=f"{pixels.shape[1]}x{pixels.shape[0]}")
    return {"file": str(path), "class": names[index], "index": index, "probability": float(proba[index]),
            "predicted": names[predicted], "predicted_probability": float(proba[predicted]),
            "method": method, "layer": layer, "out": str(target), "pixels": pixels, "heat": heat,
            "caption": f"{Path(path).name}\n{names[index]} {proba[index]:.2f}"}


def feature_grid(model_file, image, out, *, channels: int = 8, arch=None, unsafe=False, input_shape=None) -> dict:
    """The activations of one image at each stage of the network, drawn to `out`."""
    if not 1 <= channels <= 64:
        raise UserError(f"--channels must be between 1 and 64. Received: {channels}")
    report.picture_path(out)
    loaded = _Loaded(model_file, arch=arch, unsafe=unsafe, input_shape=input_shape)
    pixels = loaded.read(image)
    maps = ex.feature_maps(loaded.model, loaded.inputs(pixels[None]))
    report.plot_feature_maps(pixels, maps, Path(out), channels=channels,
                             title=f"{loaded.name}: activations of {Path(image).name} (first {channels} channels)")
    return {"out": str(out), "layers": {name: list(a.shape) for name, a in maps.items()}}


def filter_tiles(model_file, out, *, arch=None, unsafe=False, input_shape=None) -> dict:
    """The first convolution's kernels as tiles, drawn to `out`."""
    report.picture_path(out)
    loaded = _Loaded(model_file, arch=arch, unsafe=unsafe, input_shape=input_shape)
    name, kernels = ex.first_filters(loaded.model)
    count, height, width, depth = kernels.shape
    report.plot_filters(kernels, Path(out), title=f"{loaded.name}: the {count} kernels of {name} "
                                                  f"({height}x{width}x{depth})")
    return {"out": str(out), "layer": name, "shape": list(kernels.shape)}

"""Test-time augmentation: average a model's probabilities over views of each image.

- `flip`: the image and its left-right mirror (2 views);
- `10crop`: the 4 corner crops and the centre crop, and their mirrors (10 views), as in
  AlexNet. Crop size rule: the crop side is 7/8 of the image side, rounded (56 of 64, 196
  of 224: the 224-of-256 ratio of the ImageNet papers); each crop is resized back to the
  model's input size (bilinear), because cnnzoo loads images at exactly that size.

Mirroring views are wrong for handedness-sensitive data (hand signs); `cnnzoo evaluate`
uses no TTA unless asked.
"""

from __future__ import annotations

import numpy as np

from cnnzoo.errors import UserError

MODES = ("none", "flip", "10crop")


def crop_side(side: int) -> int:
    return int(round(side * 7 / 8))


def ten_crops(images: np.ndarray, crop: int) -> list[np.ndarray]:
    """(N, H, W, C) -> 10 arrays (N, crop, crop, C): top-left, top-right, bottom-left,
    bottom-right, centre, then the same five mirrored left-right."""
    height, width = images.shape[1:3]
    if not 0 < crop <= min(height, width):
        raise UserError(f"A {crop}-pixel crop does not fit {height}x{width} images.")
    top, left = (height - crop) // 2, (width - crop) // 2
    corners = [(0, 0), (0, width - crop), (height - crop, 0), (height - crop, width - crop), (top, left)]
    crops = [images[:, y:y + crop, x:x + crop] for y, x in corners]
    return crops + [c[:, :, ::-1] for c in crops]


def _resize(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from keras import ops

    resized = ops.convert_to_numpy(ops.image.resize(images.astype("float32"), size, interpolation="bilinear"))
    return np.clip(np.round(resized), 0, 255).astype(images.dtype) if images.dtype == np.uint8 else resized


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise UserError(f"Unknown test-time augmentation {mode!r}: use one of {', '.join(MODES)}.")


def views(images: np.ndarray, mode: str) -> list[np.ndarray]:
    """The views of `mode`, each the shape of `images` (N, H, W, C)."""
    check_mode(mode)
    if mode == "none":
        return [images]
    if mode == "flip":
        return [images, images[:, :, ::-1]]
    size = images.shape[1:3]
    return [_resize(np.ascontiguousarray(c), size) for c in ten_crops(images, crop_side(min(size)))]


def average_probabilities(predict, images: np.ndarray, mode: str) -> np.ndarray:
    """Mean of `predict(view)` ((N, K) probabilities) over the views of `mode`."""
    return np.mean([predict(np.ascontiguousarray(view)) for view in views(images, mode)], axis=0)

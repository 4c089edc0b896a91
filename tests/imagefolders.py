"""Tiny image-folder datasets that tests build for themselves (one sub-folder per class)."""

from pathlib import Path

import numpy as np
from PIL import Image


def make_folder(root: Path, classes, per_class: int = 12, size: int = 24) -> Path:
    """Class folders of small PNGs whose colour depends on the class, so they are easy to learn."""
    rng = np.random.default_rng(0)
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            base = np.full((size, size, 3), 40 + 80 * k, dtype=np.int16)
            noise = rng.integers(-20, 20, (size, size, 3))
            Image.fromarray(np.clip(base + noise, 0, 255).astype("uint8")).save(root / name / f"{i}.png")
    return root

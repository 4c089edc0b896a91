"""The robustness suite: a model's accuracy on its test images under controlled shifts, each
at three severities, in the spirit of ImageNet-C (Hendrycks & Dietterich 2019), so that a
score says how well a model works on photos unlike its training source, not only how well
it knows that source.

Every shift maps uint8 (N, H, W, C) images to images of the same shape and leaves the labels
alone; its randomness (angles, offsets, textures) comes from a seed, so every model is
scored on the same shifted images. A shift that cannot apply to a dataset is left out of its
mean: colour temperature for grey images, the background for images without a plain one and
for grey images (its mask finds the subject by its colour).

| shift | severities 1, 2, 3 |
| --- | --- |
| rotate | up to 10, 20, 35 degrees either way |
| scale | the subject at 85-105%, 70-110%, 60-120% of its size, placed anywhere in the frame |
| mirror | left-right (the other hand; one severity) |
| brightness | +-0.1, +-0.2, +-0.3 added on the [0, 1] scale |
| contrast | the spread around the mean times 0.6, 0.4, 0.25 |
| temperature | warmer or cooler: red and blue gains +-10%, 20%, 30% |
| blur | Gaussian, sigma 0.5, 1, 1.5 pixels at 64x64 (scaled with the image) |
| jpeg | JPEG quality 40, 20, 8 |
| noise | Gaussian sensor noise, sd 0.04, 0.08, 0.12 |
| background | the plain background (its unsaturated pixels around the subject) replaced by a flat colour, a smooth texture, a busy texture |
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image, ImageFilter

SEVERITIES = (1, 2, 3)


@dataclass(frozen=True)
class Shift:
    name: str
    apply: Callable  # (images uint8 NHWC, severity, rng) -> images
    severities: tuple[int, ...] = SEVERITIES
    colour_only: bool = False  # meaningless for grey images
    plain_background_only: bool = False  # needs a plain background to replace


def _pil(image: np.ndarray) -> Image.Image:
    return Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)


def _array(img: Image.Image, channels: int) -> np.ndarray:
    array = np.asarray(img, dtype=np.uint8)
    return array[..., None] if channels == 1 and array.ndim == 2 else array


def border_colour(image: np.ndarray) -> np.ndarray:
    """The median colour of an image's outermost pixels: its background, for a photo of one
    subject on a plain ground."""
    edges = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    return np.median(edges, axis=0).astype(np.uint8)


def _fill(image: np.ndarray):
    colour = border_colour(image)
    return int(colour[0]) if image.shape[-1] == 1 else tuple(int(c) for c in colour)


def rotate(images, severity, rng):
    limit = (10, 20, 35)[severity - 1]
    out = np.empty_like(images)
    for i, image in enumerate(images):
        angle = rng.uniform(limit / 2, limit) * rng.choice((-1, 1))  # at least half the limit
        img = _pil(image).rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=_fill(image))
        out[i] = _array(img, images.shape[-1])
    return out


def scale(images, severity, rng):
    low, high = ((0.85, 1.05), (0.7, 1.1), (0.6, 1.2))[severity - 1]
    out = np.empty_like(images)
    height, width = images.shape[1:3]
    for i, image in enumerate(images):
        factor = rng.uniform(low, high)
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        small = _pil(image).resize(size, Image.Resampling.BILINEAR)
        canvas = Image.new(small.mode, (width, height), _fill(image))
        # anywhere in the frame: a shrunk subject moves freely, an enlarged one is cropped anywhere
        left = int(rng.integers(min(0, width - size[0]), max(0, width - size[0]) + 1))
        top = int(rng.integers(min(0, height - size[1]), max(0, height - size[1]) + 1))
        canvas.paste(small, (left, top))
        out[i] = _array(canvas, images.shape[-1])
    return out


def mirror(images, severity, rng):
    return images[:, :, ::-1].copy()


def _float(images):
    return images.astype(np.float32) / 255.0


def _uint8(x):
    return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)


def brightness(images, severity, rng):
    delta = (0.1, 0.2, 0.3)[severity - 1] * rng.choice((-1.0, 1.0), size=(len(images), 1, 1, 1))
    return _uint8(_float(images) + delta)


def contrast(images, severity, rng):
    factor = (0.6, 0.4, 0.25)[severity - 1]
    x = _float(images)
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    return _uint8(mean + (x - mean) * factor)


def temperature(images, severity, rng):
    amount = (0.1, 0.2, 0.3)[severity - 1] * rng.choice((-1.0, 1.0), size=(len(images), 1, 1))
    gains = np.stack([1 + amount, np.ones_like(amount), 1 - amount], axis=-1)  # warm: more red, less blue
    return _uint8(_float(images) * gains)


def blur(images, severity, rng):
    sigma = (0.5, 1.0, 1.5)[severity - 1] * images.shape[1] / 64
    return np.stack([_array(_pil(image).filter(ImageFilter.GaussianBlur(sigma)), images.shape[-1])
                     for image in images])


def jpeg(images, severity, rng):
    quality = (40, 20, 8)[severity - 1]
    out = np.empty_like(images)
    for i, image in enumerate(images):
        buffer = io.BytesIO()
        _pil(image).save(buffer, "JPEG", quality=quality)
        out[i] = _array(Image.open(io.BytesIO(buffer.getvalue())), images.shape[-1])
    return out


def noise(images, severity, rng):
    sd = (0.04, 0.08, 0.12)[severity - 1]
    return _uint8(_float(images) + rng.normal(0, sd, images.shape))


def background_mask(image: np.ndarray, saturation: float = 0.2) -> np.ndarray:
    """True where a pixel belongs to the plain background of a photo of one subject: the
    background is unsaturated (white or grey paper or wall, its shadows and vignetting), the
    subject is the largest saturated region (skin), with its holes filled."""
    from scipy import ndimage

    hsv = np.asarray(Image.fromarray(image).convert("HSV"), dtype=np.float32) / 255.0
    subject = ndimage.binary_opening(hsv[..., 1] >= saturation)
    regions, count = ndimage.label(subject)
    if count == 0:
        return np.zeros(image.shape[:2], bool)  # nothing saturated: leave the image as it is
    sizes = ndimage.sum(subject, regions, range(1, count + 1))
    subject = ndimage.binary_fill_holes(ndimage.binary_closing(regions == 1 + int(np.argmax(sizes)), iterations=2))
    return ~subject


def texture(shape, severity, rng) -> np.ndarray:
    """A background: a flat colour (1), a smooth colour texture (2), a busy one (3); uint8 HxWxC."""
    height, width, channels = shape
    if severity == 1:
        return np.broadcast_to(rng.integers(0, 256, channels, dtype=np.uint8), shape).copy()
    cells = 4 if severity == 2 else 16
    coarse = rng.uniform(0, 255, (cells, cells, channels)).astype(np.uint8)
    img = _pil(coarse).resize((width, height), Image.Resampling.BICUBIC)
    smooth = _array(img, channels).astype(np.float32)
    if severity == 3:
        stripes = 60 * np.sin(np.arange(width) * rng.uniform(0.5, 1.5))[None, :, None]
        smooth = smooth + stripes + rng.normal(0, 25, shape)
    return np.clip(smooth, 0, 255).astype(np.uint8)


def background(images, severity, rng):
    out = images.copy()
    for i, image in enumerate(images):
        mask = background_mask(image)
        out[i][mask] = texture(image.shape, severity, rng)[mask]
    return out


SHIFTS = (
    Shift("rotate", rotate),
    Shift("scale", scale),
    Shift("mirror", mirror, severities=(1,)),
    Shift("brightness", brightness),
    Shift("contrast", contrast),
    Shift("temperature", temperature, colour_only=True),
    Shift("blur", blur),
    Shift("jpeg", jpeg),
    Shift("noise", noise),
    Shift("background", background, colour_only=True, plain_background_only=True),  # finds the subject by its colour
)


def shifts_for(channels: int, plain_background: bool) -> list[Shift]:
    """The shifts that apply to images with `channels` channels (and a plain background)."""
    return [s for s in SHIFTS if (channels == 3 or not s.colour_only) and (plain_background or not s.plain_background_only)]


def shifted(images: np.ndarray, shift: Shift, severity: int, seed: int = 0) -> np.ndarray:
    """`images` under `shift` at `severity`, the same for every call with this seed."""
    index = [s.name for s in SHIFTS].index(shift.name)
    return shift.apply(images, severity, np.random.default_rng([seed, index, severity]))


def suite(predict, images: np.ndarray, labels: np.ndarray, *, plain_background: bool, seed: int = 0) -> dict:
    """Accuracy (and the predicted probabilities) under every shift at every severity.

    `predict(images) -> (N, K)` probabilities. Returns {"clean": {...}, "shifts": {name:
    {severity: {"accuracy": a}}}, "mean": the mean over shifts of their mean over severities},
    with each entry's "proba" for calibration."""
    labels = np.asarray(labels).astype(np.int64).ravel()

    def score(batch):
        proba = predict(batch)
        return {"accuracy": float(np.mean(proba.argmax(axis=1) == labels)), "proba": proba}

    result = {"clean": score(images), "shifts": {}}
    for shift in shifts_for(images.shape[-1], plain_background):
        result["shifts"][shift.name] = {severity: score(shifted(images, shift, severity, seed))
                                        for severity in shift.severities}
    result["mean"] = float(np.mean([np.mean([r["accuracy"] for r in by.values()])
                                    for by in result["shifts"].values()]))
    return result


def plain_background(dataset: str) -> bool:
    """Whether a dataset's images show their subject on a plain background (its registry entry)."""
    from cnnzoo.datasets.sources import resolve

    return bool(getattr(getattr(resolve(dataset), "spec", None), "plain_background", False))


def report(predict, images: np.ndarray, labels, *, plain_background: bool, seed: int = 0,
           keys=None, limit: int | None = None) -> tuple[dict, dict]:
    """The suite as metrics.json records it: accuracy per shift and severity, their mean, the
    clean accuracy and the calibration over every shifted image; and that calibration's bins,
    for the reliability diagram. `limit` scores at most that many images, the same ones every
    time: those whose `keys` hash lowest."""
    from cnnzoo.analysis.metrics import calibration
    from cnnzoo.datasets.splits import unit_hash

    labels = np.asarray(labels).astype(np.int64).ravel()
    if limit is not None and len(images) > limit:
        chosen = np.sort(np.argsort(unit_hash(keys, "cnnzoo-robustness"), kind="stable")[:limit])
        images, labels = images[chosen], labels[chosen]
    scores = suite(predict, images, labels, plain_background=plain_background, seed=seed)
    shifted = np.concatenate([r["proba"] for by in scores["shifts"].values() for r in by.values()])
    curve = calibration(np.concatenate([labels for by in scores["shifts"].values() for _ in by]), shifted)
    table = {name: {str(severity): r["accuracy"] for severity, r in by.items()} for name, by in scores["shifts"].items()}
    return {"mean": scores["mean"], "clean": scores["clean"]["accuracy"], "images": int(len(images)), "shifts": table,
            "ece": curve["ece"]}, curve

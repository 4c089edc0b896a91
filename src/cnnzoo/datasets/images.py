"""Decoding one image into a uint8 HxWxC array, the same way for datasets and predict."""

from __future__ import annotations

import io
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cnnzoo.errors import UserError

# Bilinear with Pillow's antialiasing (its resize widens the filter when shrinking).
RESAMPLE = Image.Resampling.BILINEAR
RESIZE_MODES = ("resize", "pad")  # stretch to the size | keep the aspect and pad with black
# The largest image decoded (width x height), checked on its header before any pixel is: a
# 140 KB PNG can hold 180 megapixels (1.1 GB decoded). Pillow's own bomb check (which only
# warns below 179 megapixels) is left to this one, so the limit can be raised past it.
MAX_PIXELS = 40_000_000
Image.MAX_IMAGE_PIXELS = None
MODES = {1: "L", 3: "RGB"}  # Pillow mode of each channel count


def image_size_arg(image_size) -> tuple[int, int] | None:
    """None, an int or (height, width) -> (height, width) or None, validated."""
    if image_size is None:
        return None
    if isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool):
        size = (int(image_size), int(image_size))
    elif (
        isinstance(image_size, (tuple, list))
        and len(image_size) == 2
        and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in image_size)
    ):
        size = (int(image_size[0]), int(image_size[1]))
    else:
        raise UserError(
            f"image_size must be an int or (height, width). Received: image_size={image_size!r}"
        )
    if min(size) < 1 or max(size) > 4096:
        raise UserError(
            f"image_size must be between 1 and 4096 pixels. Received: image_size={image_size!r}"
        )
    return size


def channels_arg(channels) -> int | None:
    if channels is None or channels in (1, 3):
        return None if channels is None else int(channels)
    raise UserError(f"channels must be 1 (grayscale) or 3 (RGB). Received: channels={channels!r}")


def resize_arg(resize: str) -> str:
    if resize not in RESIZE_MODES:
        raise UserError(f"resize must be one of {', '.join(RESIZE_MODES)}. Received: resize={resize!r}")
    return resize


def to_array(img: Image.Image, size: tuple[int, int] | None, channels: int, resize: str) -> np.ndarray:
    """A Pillow image -> uint8 (H, W, channels) at `size` (None keeps its own size)."""
    mode = MODES[channels]
    if img.mode != mode:
        if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # 16-bit/float greyscale PNG, TIFF
            img = Image.fromarray(_to_uint8(np.asarray(img)))
        img = img.convert(mode)
    if size is not None and img.size != (size[1], size[0]):
        height, width = size
        if resize == "pad":  # shrink to fit if needed, keep the aspect, centre on black
            scale = min(1.0, width / img.width, height / img.height)
            if scale < 1.0:
                fitted = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
                img = img.resize(fitted, RESAMPLE)
            canvas = Image.new(mode, (width, height))
            canvas.paste(img, ((width - img.width) // 2, (height - img.height) // 2))
            img = canvas
        else:
            img = img.resize((width, height), RESAMPLE)
    array = np.asarray(img, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """16-bit or float greyscale -> 0-255: floats in [0, 1] (a float TIFF) are scaled by 255."""
    top = float(array.max()) if array.size else 0.0
    if np.issubdtype(array.dtype, np.floating) and top <= 1.0 and float(array.min()) >= 0.0:
        return np.round(array * 255.0).astype(np.uint8)
    if top <= 255:
        return array.astype(np.uint8)
    return (array.astype(np.float64) * (255.0 / (65535.0 if top <= 65535 else top))).astype(np.uint8)


def try_open(data: bytes, max_pixels: int = MAX_PIXELS, draft: tuple[str, tuple[int, int]] | None = None,
             ) -> tuple[Image.Image | None, str | None]:
    """Decode encoded image bytes into an upright Pillow image; (image, None) or (None, why it
    is not a usable image). `draft` = (mode, (width, height)) lets libjpeg decode a JPEG at 1/2,
    1/4 or 1/8 scale when that is still at least that size: a 3024x3024 photo then decodes in a few ms."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's EXIF and palette chatter
            img = Image.open(io.BytesIO(data))  # in memory: nothing to close
            if img.width * img.height > max_pixels:
                return None, (f"is {img.width}x{img.height} = {img.width * img.height:,} pixels, more than the "
                              f"limit of {max_pixels:,} (raise it with --max-megapixels)")
            if draft is not None and img.format == "JPEG":
                img.draft(*draft)
            img.load()
            if img.format != "PNG" or "exif" in img.info:  # skip the lookup for plain PNGs
                img = ImageOps.exif_transpose(img)  # phone photos store their rotation
            return img, None
    except UnidentifiedImageError:
        return None, "is not an image file that Pillow can read"
    except (OSError, SyntaxError, ValueError, zlib.error, EOFError) as error:
        return None, f"is corrupt or truncated ({error})"


def try_decode(
    data: bytes, size: tuple[int, int] | None, channels: int, resize: str = "resize", max_pixels: int = MAX_PIXELS,
) -> tuple[np.ndarray | None, str | None]:
    """Decode encoded image bytes; (array, None) or (None, why it is not a usable image)."""
    img, why = try_open(data, max_pixels, None if size is None else (MODES[channels], (size[1], size[0])))
    if img is None:
        return None, why
    try:
        return to_array(img, size, channels, resize), None
    except (OSError, ValueError) as error:
        return None, f"is corrupt or truncated ({error})"


def read_bytes(path) -> bytes:
    """An image file's bytes; a `UserError` naming the file when it cannot be read."""
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"Cannot read the image {path}: there is no such file.") from None
    except IsADirectoryError:
        raise UserError(f"Cannot read the image {path}: it is a folder, not an image file.") from None
    except OSError as error:
        raise UserError(f"Cannot read the image {path}: {error.strerror or error}.") from None


def read_image(path, image_size=None, channels: int = 3, *, resize: str = "resize",
               max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read one image file as uint8 (H, W, C), as the datasets decode theirs.

    `image_size` is an int or (height, width), None for the file's own size; `channels` is
    1 or 3; `resize` is "resize" (stretch) or "pad" (keep the aspect, pad with black).
    Raises `UserError` naming the file when it is missing or not a readable image.
    """
    size = image_size_arg(image_size)
    channels = channels_arg(channels) or 3
    resize = resize_arg(resize)
    array, why = try_decode(read_bytes(path), size, channels, resize, max_pixels)
    if array is None:
        raise UserError(f"The file {path} {why}: give a JPEG or PNG image.")
    return array


# NotImplementedError: a compression method zipfile lacks; RuntimeError: an encrypted member.
BAD_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, RuntimeError)
STREAM_HINT = "replace or delete it (a streamed folder cannot skip unreadable files)"


def decode_file(path, size: tuple[int, int], channels: int, resize: str, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """One image file -> uint8 (H, W, C), exactly as `load` decodes it; a `UserError`
    naming the file when it cannot be read or decoded."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:  # as the cached reader reports an unreadable file
        why = f"cannot be read ({error})"
    else:
        array, why = try_decode(data, size, channels, resize, max_pixels)
        if array is not None:
            return array
    raise UserError(f"The file {path} {why}: {STREAM_HINT}.")


class FileImages:
    """Stands in for a uint8 (N, H, W, C) array: indexing it with positions decodes those files."""

    def __init__(self, files, size: tuple[int, int], channels: int, resize: str, max_pixels: int = MAX_PIXELS):
        self.files = np.asarray(files, dtype=str)
        self.size, self.channels, self.resize, self.max_pixels = tuple(size), channels, resize, max_pixels
        self.shape = (len(self.files), *self.size, channels)
        self.dtype = np.dtype(np.uint8)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index) -> np.ndarray:
        index = np.asarray(index)
        if index.ndim == 0:
            return decode_file(self.files[index], self.size, self.channels, self.resize, self.max_pixels)
        out = np.empty((len(index), *self.size, self.channels), np.uint8)
        for i, position in enumerate(index):
            out[i] = decode_file(self.files[position], self.size, self.channels, self.resize, self.max_pixels)
        return out

    def subset(self, index) -> "FileImages":
        """The images at `index` (positions or a mask), still undecoded."""
        return FileImages(self.files[index], self.size, self.channels, self.resize, self.max_pixels)


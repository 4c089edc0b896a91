"""Training-time augmentation as Keras layers: they run inside the training step, on the
device, on any backend, and pass images through unchanged at inference.

Images reach them scaled to [0, 1] (after the model's Rescaling layer). Keras provides the
mirror, translation and rotation layers; the two colour augmentations of the lecture and
the Inception-style random-resized crop are not in Keras, so they are written here, each
seeded through a keras.random.SeedGenerator. Each dataset's default list is in its registry
entry (cnnzoo.datasets).

| name | what | layer |
| --- | --- | --- |
| mirror | left-right flip, p = 0.5 (wrong for handedness: hand signs) | keras RandomFlip |
| shift | translate up to 10% each way, edge pixels repeated | keras RandomTranslation |
| crop | pad-and-crop: shift up to 1/8 of the side, zero fill, whole pixels | keras RandomTranslation |
| resized-crop | a random box of 35-100% of the area, aspect 3/4-4/3, resized back | RandomResizedCrop |
| color | an independent offset per channel, uniform in +-0.1 | ChannelShift |
| pca | AlexNet's PCA colour: x + P (alpha * lambda), alpha ~ N(0, 0.1) | PCAColor |
| rotate | rotate up to +-10 degrees | keras RandomRotation |
| tilt | rotate up to +-30 degrees (a hand held at another angle) | keras RandomRotation |
| zoom | the subject at 70-125% of its size (zoom in 20% to out 40%) | keras RandomZoom |
| light | brightness +-0.2, contrast x0.6-1.4, and on colour images red/blue gains +-15% (white balance) | LightJitter |
| blur | Gaussian blur, sigma 0-1.2 pixels at 64x64 (scaled with the image), p = 0.5 | RandomBlur |
| noise | Gaussian sensor noise, sd drawn per image in 0-0.12 (a clean sensor to a dim room's), kept in [0, 1] | SensorNoise (keras GaussianNoise, clipped) |
| erase | a random rectangle of 2-20% of the image replaced by noise (random erasing) | keras RandomErasing |
| lowres | a small face: downscaled to 16-64 pixels across and enlarged back, then JPEG-like 8x8 block quantisation, p = 0.5 | LowResolution |
| background | colour images: the unsaturated pixels around the subject (a plain wall or paper) replaced by a random colour texture, p = 0.5 | BackgroundSwap |

`lowres` is for the door's face step (cnnzoo.inference.faces): a face 16-30 pixels across in a camera
frame, enlarged to the input size, looks like this. The last nine make a model work on photos unlike its source's (docs/RESULTS.md, robustness);
`background` suits photos of one subject on a plain background only (the sign datasets).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from cnnzoo.errors import UserError

AUGMENTATIONS = ("mirror", "shift", "crop", "resized-crop", "color", "pca", "rotate", "tilt", "zoom", "light", "blur",
                 "noise", "erase", "background", "lowres")

# Augmentations whose layer changed after runs had been recorded with them, and when: a run trained
# before used the older layer (noise: one sd of 0.03 for every image), so experiments/ hash the date
# into the settings of a run that uses them and never take an old record for a new run.
REVISED = {"noise": "2026-12-04"}


@keras.saving.register_keras_serializable(package="cnnzoo")
class ChannelShift(keras.layers.Layer):
    """Add an independent random offset to each channel of each image (training only)."""

    def __init__(self, max_delta: float = 0.1, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.max_delta, self.seed = float(max_delta), seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=None):
        if not training:
            return images
        shape = ops.shape(images)
        offsets = keras.random.uniform((shape[0], 1, 1, shape[-1]), -self.max_delta, self.max_delta,
                                       seed=self.seed_generator, dtype=images.dtype)
        return ops.clip(images + offsets, 0.0, 1.0)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "max_delta": self.max_delta, "seed": self.seed}


@keras.saving.register_keras_serializable(package="cnnzoo")
class PCAColor(keras.layers.Layer):
    """AlexNet's colour augmentation: add P @ (alpha * lambda) to every pixel of an image,
    where P, lambda are the eigenvectors/eigenvalues of the training set's RGB covariance and
    alpha ~ N(0, sigma) is drawn once per image (Krizhevsky et al. 2012, section 4.1)."""

    def __init__(self, eigenvalues, eigenvectors, sigma: float = 0.1, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.eigenvalues = np.asarray(eigenvalues, dtype="float32").reshape(-1)
        self.eigenvectors = np.asarray(eigenvectors, dtype="float32")  # columns are components
        self.sigma, self.seed = float(sigma), seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def offsets(self, alphas):
        """Per-image RGB offsets for alphas of shape (batch, channels)."""
        scaled = alphas * ops.convert_to_tensor(self.eigenvalues, dtype=alphas.dtype)
        return ops.matmul(scaled, ops.transpose(ops.convert_to_tensor(self.eigenvectors, dtype=alphas.dtype)))

    def shift(self, images, alphas):
        """The augmentation for given alphas: images + offsets, clipped to [0, 1]."""
        images = ops.convert_to_tensor(images)
        offsets = self.offsets(ops.cast(alphas, images.dtype))
        return ops.clip(images + offsets[:, None, None, :], 0.0, 1.0)

    def call(self, images, training=None):
        if not training:
            return images
        alphas = keras.random.normal((ops.shape(images)[0], len(self.eigenvalues)), stddev=self.sigma,
                                     seed=self.seed_generator, dtype=images.dtype)
        return self.shift(images, alphas)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "eigenvalues": self.eigenvalues.tolist(),
                "eigenvectors": self.eigenvectors.tolist(), "sigma": self.sigma, "seed": self.seed}


def pca_basis(images: np.ndarray, max_pixels: int = 1_000_000, seed: int = 0):
    """Eigenvalues (descending) and eigenvectors (columns) of the RGB covariance of uint8
    images on the [0, 1] scale, from at most `max_pixels` randomly chosen pixels."""
    pixels = images.reshape(-1, images.shape[-1])
    if len(pixels) > max_pixels:
        pixels = pixels[np.random.default_rng(seed).choice(len(pixels), max_pixels, replace=False)]
    values, vectors = np.linalg.eigh(np.atleast_2d(np.cov(pixels.astype("float64") / 255.0, rowvar=False)))
    order = np.argsort(values)[::-1]
    return values[order].astype("float32"), vectors[:, order].astype("float32")


@keras.saving.register_keras_serializable(package="cnnzoo")
class RandomResizedCrop(keras.layers.Layer):
    """Inception-style crop: a random box of `scale` of the area and `ratio` aspect, resized
    back to the input size (bilinear), per image (training only)."""

    def __init__(self, scale=(0.35, 1.0), ratio=(3 / 4, 4 / 3), seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.scale, self.ratio, self.seed = tuple(scale), tuple(ratio), seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=None):
        if not training:
            return images
        batch = ops.shape(images)[0]
        u = keras.random.uniform((batch, 4), seed=self.seed_generator, dtype="float32")
        area = self.scale[0] + (self.scale[1] - self.scale[0]) * u[:, 0]
        log_ratio = np.log(self.ratio[0]) + (np.log(self.ratio[1]) - np.log(self.ratio[0])) * u[:, 1]
        aspect = ops.exp(log_ratio)
        # box sides as fractions of the image; clipped to fit (then the area is smaller)
        width = ops.minimum(ops.sqrt(area * aspect), 1.0)
        height = ops.minimum(ops.sqrt(area / aspect), 1.0)
        left, top = (1.0 - width) * u[:, 2], (1.0 - height) * u[:, 3]
        h, w = images.shape[1], images.shape[2]
        # output pixel (x, y) reads input (width * x + left * w, height * y + top * h)
        zeros = ops.zeros_like(width)
        transform = ops.stack([width, zeros, left * w, zeros, height, top * h, zeros, zeros], axis=1)
        out = ops.image.affine_transform(images, ops.cast(transform, images.dtype), interpolation="bilinear",
                                         fill_mode="nearest")
        return ops.cast(out, images.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "scale": list(self.scale), "ratio": list(self.ratio), "seed": self.seed}


@keras.saving.register_keras_serializable(package="cnnzoo")
class LightJitter(keras.layers.Layer):
    """Another light and camera: brightness offset, contrast factor and, on colour images, a
    white-balance shift (red and blue gains moved oppositely), drawn per image (training only)."""

    def __init__(self, brightness: float = 0.2, contrast: float = 0.4, temperature: float = 0.15,
                 seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.brightness, self.contrast, self.temperature, self.seed = float(brightness), float(contrast), \
            float(temperature), seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=None):
        if not training:
            return images
        batch, channels = ops.shape(images)[0], images.shape[-1]
        u = keras.random.uniform((batch, 1, 1, 3), -1.0, 1.0, seed=self.seed_generator, dtype=images.dtype)
        mean = ops.mean(images, axis=(1, 2, 3), keepdims=True)
        x = mean + (images - mean) * (1.0 + self.contrast * u[..., 1:2]) + self.brightness * u[..., 0:1]
        if channels == 3:
            warm = self.temperature * u[..., 2:3]
            x = x * ops.concatenate([1.0 + warm, ops.ones_like(warm), 1.0 - warm], axis=-1)
        return ops.clip(x, 0.0, 1.0)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "brightness": self.brightness, "contrast": self.contrast,
                "temperature": self.temperature, "seed": self.seed}


@keras.saving.register_keras_serializable(package="cnnzoo")
class RandomBlur(keras.layers.Layer):
    """Gaussian blur of random strength (sigma up to `max_sigma` pixels at 64x64, scaled with the
    image), on a share `rate` of the images (training only): an out-of-focus or moving camera."""

    def __init__(self, max_sigma: float = 1.2, rate: float = 0.5, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.max_sigma, self.rate, self.seed = float(max_sigma), float(rate), seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=None):
        if not training:
            return images
        batch, size = ops.shape(images)[0], images.shape[1]
        u = keras.random.uniform((batch, 2), seed=self.seed_generator, dtype="float32")
        sigma = ops.maximum(self.max_sigma * size / 64 * u[:, 0], 1e-3)  # per image
        radius = int(np.ceil(2 * self.max_sigma * size / 64))
        offsets = ops.arange(-radius, radius + 1, dtype="float32")
        weights = ops.exp(-0.5 * (offsets[None, :] / sigma[:, None]) ** 2)
        weights = ops.cast(weights / ops.sum(weights, axis=1, keepdims=True), images.dtype)  # (batch, taps)
        x = images
        for axis in (1, 2):  # separable: rows, then columns; edges repeated
            pad = [[0, 0]] * 4
            pad[axis] = [radius, radius]
            padded = ops.pad(x, pad, mode="edge" if keras.backend.backend() != "torch" else "symmetric")
            length = x.shape[axis]
            index = [slice(None)] * 4
            total = None
            for tap in range(2 * radius + 1):
                index[axis] = slice(tap, tap + length)
                part = padded[tuple(index)] * weights[:, tap][:, None, None, None]
                total = part if total is None else total + part
            x = total
        chosen = ops.cast(u[:, 1:2] < self.rate, images.dtype)[:, :, None, None]
        return chosen * x + (1 - chosen) * images

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "max_sigma": self.max_sigma, "rate": self.rate, "seed": self.seed}


def _dct_matrix(n: int = 8) -> np.ndarray:
    """The orthonormal DCT-II basis (rows are frequencies), as JPEG uses on 8x8 blocks."""
    k, i = np.arange(n)[:, None], np.arange(n)[None, :]
    basis = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2 / n)
    basis[0] /= np.sqrt(2)
    return basis.astype("float32")


_DCT_KERNEL = np.einsum("ki,lj->ijkl", _dct_matrix(), _dct_matrix()).reshape(8, 8, 1, 64)  # (h, w, in, frequency)
_DCT_STEPS = (1 + np.add.outer(np.arange(8), np.arange(8)) / 4).reshape(64).astype("float32")  # as JPEG's tables


@keras.saving.register_keras_serializable(package="cnnzoo")
class LowResolution(keras.layers.Layer):
    """A face seen from afar (training only): on a share `rate` of the images, downscale to a random
    one of `sides` pixels, enlarge back (bilinear, as the face step enlarges a small
    face), then quantise each 8x8 block's DCT coefficients with a random step up to `max_step` (JPEG's
    blocking and ringing, at qualities of roughly 30-95)."""

    def __init__(self, sides=(16, 24, 36), max_step: float = 0.12, rate: float = 0.5,
                 seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.sides, self.max_step, self.rate, self.seed = tuple(int(v) for v in sides), float(max_step), float(rate), seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=None):
        if not training:
            return images
        batch, height, width = ops.shape(images)[0], images.shape[1], images.shape[2]
        # Each image takes one of the fixed sides (static shapes: JAX compiles one graph).
        pick = keras.random.randint((batch,), 0, len(self.sides), seed=self.seed_generator)
        x = ops.zeros_like(images)
        for k, side in enumerate(self.sides):
            small = (max(1, side * height // max(height, width)), max(1, side * width // max(height, width)))
            enlarged = ops.image.resize(ops.image.resize(images, small, interpolation="bilinear", antialias=True),
                                        (height, width), interpolation="bilinear")
            x = x + ops.cast(ops.equal(pick, k), images.dtype)[:, None, None, None] * enlarged
        if height % 8 == 0 and width % 8 == 0:
            x = self._block_quantise(x)
        chosen = ops.cast(keras.random.uniform((batch, 1, 1, 1), seed=self.seed_generator) < self.rate, images.dtype)
        return ops.clip(chosen * x + (1 - chosen) * images, 0.0, 1.0)

    def _block_quantise(self, x):
        """JPEG's lossy step: the 8x8 DCT as a stride-8 convolution (64 filters, one per frequency),
        coefficients rounded to a step that grows with frequency, and the inverse transform."""
        batch, height, width, channels = ops.shape(x)[0], x.shape[1], x.shape[2], x.shape[3]
        planes = ops.reshape(ops.transpose(x, (0, 3, 1, 2)), (-1, height, width, 1))  # channels into the batch
        kernel = ops.convert_to_tensor(_DCT_KERNEL, dtype=x.dtype)
        coeffs = ops.conv(planes, kernel, strides=8, padding="valid", data_format="channels_last")
        strength = keras.random.uniform((ops.shape(planes)[0], 1, 1, 1), 0.0, self.max_step,
                                        seed=self.seed_generator, dtype=x.dtype)
        step = ops.maximum(strength * ops.convert_to_tensor(_DCT_STEPS, dtype=x.dtype), 1e-4)
        coeffs = ops.round(coeffs / step) * step
        planes = ops.conv_transpose(coeffs, kernel, strides=8, padding="valid", data_format="channels_last")
        return ops.transpose(ops.reshape(planes, (batch, channels, height, width)), (0, 2, 3, 1))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "sides": list(self.sides),
                "max_step": self.max_step, "rate": self.rate, "seed": self.seed}


@keras.saving.register_keras_serializable(package="cnnzoo")
class SensorNoise(keras.layers.GaussianNoise):
    """Keras' GaussianNoise (training only), clipped to the [0, 1] pixel range; with `spread`,
    each image's standard deviation is drawn uniformly in [0, `stddev`] (cameras in good light and
    in bad), instead of one strength for all. On ResNet-50 and signs, a fixed 0.03 left the
    robustness suite's noise at 97/69/50% (severities 1-3; seed 0) and the spread 0-0.12 at 98/97/95%."""

    def __init__(self, stddev: float, seed: int | None = None, spread: bool = False, **kwargs):
        super().__init__(stddev, seed=seed, **kwargs)
        self.spread = bool(spread)

    def call(self, inputs, training=False):
        if not training:
            return inputs
        if not self.spread:
            return ops.clip(super().call(inputs, training=training), 0.0, 1.0)
        sd = keras.random.uniform((ops.shape(inputs)[0], 1, 1, 1), 0.0, self.stddev, seed=self.seed_generator,
                                  dtype=inputs.dtype)
        noise = keras.random.normal(ops.shape(inputs), seed=self.seed_generator, dtype=inputs.dtype)
        return ops.clip(inputs + sd * noise, 0.0, 1.0)

    def get_config(self):
        return {**super().get_config(), "spread": self.spread}


@keras.saving.register_keras_serializable(package="cnnzoo")
class BackgroundSwap(keras.layers.Layer):
    """Another wall behind the subject: on a share `rate` of colour images, the unsaturated
    pixels (saturation below `saturation`: white or grey paper, its shadows) are replaced by a
    wall drawn per image: a flat colour, a smooth colour texture or a busy one (small blotches
    and pixel noise), so that no one kind of wall stands for "not the subject" (training only;
    grey images pass through, they have no saturation to tell subject from background)."""

    def __init__(self, saturation: float = 0.2, rate: float = 0.5, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.saturation, self.rate, self.seed = float(saturation), float(rate), seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def _uniform(self, shape, dtype):
        return keras.random.uniform(shape, seed=self.seed_generator, dtype=dtype)

    def call(self, images, training=None):
        if not training or images.shape[-1] != 3:
            return images
        batch, height, width = ops.shape(images)[0], images.shape[1], images.shape[2]
        top, bottom = ops.max(images, axis=-1, keepdims=True), ops.min(images, axis=-1, keepdims=True)
        background = ops.cast((top - bottom) < self.saturation * (top + 1e-3), images.dtype)
        flat = self._uniform((batch, 1, 1, 3), images.dtype) * ops.ones_like(images)
        smooth = ops.image.resize(self._uniform((batch, 4, 4, 3), images.dtype), (height, width), interpolation="bilinear")
        blotches = ops.image.resize(self._uniform((batch, 16, 16, 3), images.dtype), (height, width),
                                    interpolation="bilinear")
        busy = ops.clip(blotches + 0.1 * keras.random.normal(ops.shape(images), seed=self.seed_generator,
                                                             dtype=images.dtype), 0.0, 1.0)
        kind = self._uniform((batch, 1, 1, 1), images.dtype)
        wall = ops.where(kind < 1 / 3, flat, ops.where(kind < 2 / 3, smooth, busy))
        chosen = ops.cast(self._uniform((batch, 1, 1, 1), images.dtype) < self.rate, images.dtype)
        mask = background * chosen
        return mask * wall + (1 - mask) * images

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "saturation": self.saturation, "rate": self.rate, "seed": self.seed}


def parse(names: str | tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
    """'mirror,crop' -> ('mirror', 'crop'); '' or 'none' -> (); unknown names -> UserError."""
    if names is None:
        return ()
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip() and n.strip() != "none"]
    unknown = [n for n in names if n not in AUGMENTATIONS]
    if unknown:
        raise UserError(f"Unknown augmentation {unknown[0]!r}: use a comma-separated list of "
                        f"{', '.join(AUGMENTATIONS)} (or none).")
    return tuple(names)


def layers_for(names, train_images: np.ndarray | None = None) -> list[keras.layers.Layer]:
    """The augmentation layers for `names`, in a fixed order (geometry, then colour).

    `train_images` (uint8) are needed for pca: its basis is the training set's colours.
    Their random streams follow keras.utils.set_random_seed (cnnzoo train's --seed).
    """
    names = set(parse(names))
    make = {
        "resized-crop": lambda: RandomResizedCrop(name="random_resized_crop"),
        "crop": lambda: keras.layers.RandomTranslation(0.125, 0.125, fill_mode="constant", interpolation="nearest",
                                                       name="random_crop"),
        "shift": lambda: keras.layers.RandomTranslation(0.1, 0.1, fill_mode="nearest", name="random_shift"),
        "zoom": lambda: keras.layers.RandomZoom((-0.2, 0.4), fill_mode="nearest", name="random_zoom"),
        "rotate": lambda: keras.layers.RandomRotation(10 / 360, fill_mode="nearest", name="random_rotate"),
        "tilt": lambda: keras.layers.RandomRotation(30 / 360, fill_mode="nearest", name="random_tilt"),
        "mirror": lambda: keras.layers.RandomFlip("horizontal", name="random_flip"),
        "background": lambda: BackgroundSwap(name="background_swap"),
        "color": lambda: ChannelShift(0.1, name="channel_shift"),
        "pca": lambda: PCAColor(*_basis(train_images), name="pca_color"),
        "light": lambda: LightJitter(name="light_jitter"),
        "blur": lambda: RandomBlur(name="random_blur"),
        "noise": lambda: SensorNoise(0.12, spread=True, name="sensor_noise"),
        "erase": lambda: keras.layers.RandomErasing(value_range=(0, 1), name="random_erasing"),
        "lowres": lambda: LowResolution(name="low_resolution"),  # last: the camera's resolution and JPEG
    }
    return [make[name]() for name in make if name in names]


# Keras flags these supports_jit=False for TensorFlow, whose image transforms are not XLA ops.
# On JAX they are keras.ops (affine_transform is jax.scipy's map_coordinates) and trace like any
# layer; left flagged, one of them makes Keras run the whole training step op by op (eager).
JIT_SAFE_ON_JAX = (keras.layers.RandomTranslation, keras.layers.RandomZoom, keras.layers.RandomRotation)


def allow_jit(model: keras.Model) -> None:
    """On JAX, let `model`'s training step compile into one XLA program despite those flags.

    Eager steps are slow, and under data parallelism they deadlock XLA:CPU: every op of the
    step is a program of its own with its own all-reduce, dispatched asynchronously without
    bound, until a device's launch waits on its in-flight limit while the other device waits
    in an all-reduce for it (docs/DISTRIBUTED.md). Call before compile, or after loading a
    compiled model (which resolved jit_compile at load time)."""
    if keras.backend.backend() != "jax":
        return
    layers = list(_layers(model))
    for layer in layers:
        if isinstance(layer, JIT_SAFE_ON_JAX):
            layer.supports_jit = True
    if model.compiled and not model.run_eagerly and all(layer.supports_jit for layer in layers):
        model.jit_compile = True
        model.train_function = model.test_function = model.predict_function = None


def _layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _layers(layer)


def _basis(train_images):
    if train_images is None:
        raise UserError("PCA colour augmentation needs the training images to compute its colour basis.")
    return pca_basis(train_images)

"""Augmentation layers: shapes, dtypes, ranges, identity at inference, PCA colour against a
NumPy reference, seeded reproducibility, and the names users type."""

import keras
import numpy as np
import pytest

from cnnzoo.datasets import default_augmentations
from cnnzoo.errors import UserError
from cnnzoo.models import augment

pytestmark = pytest.mark.jax  # backend-agnostic: run on the JAX subset too

RNG = np.random.default_rng(0)
UINT8 = RNG.integers(0, 256, (64, 16, 16, 3), dtype="uint8")
IMAGES = (UINT8[:4] / 255).astype("float32")


def _np(x):
    return keras.ops.convert_to_numpy(x)


@pytest.mark.parametrize("name", augment.AUGMENTATIONS)
def test_each_augmentation_keeps_shape_dtype_and_range_and_is_identity_at_inference(name):
    # Seeded before the layer is built: its seed generator is drawn at construction, so the
    # draws must not depend on which tests ran before. 16 images: a coin-flip augmentation
    # (mirror) leaves all of them unchanged with probability 2^-16, not 2^-4.
    keras.utils.set_random_seed(3)
    (layer,) = augment.layers_for(name, train_images=UINT8)
    images = (UINT8[:16] / 255).astype("float32")
    trained = _np(layer(images, training=True))
    assert trained.shape == images.shape and trained.dtype == np.float32
    assert trained.min() >= 0.0 and trained.max() <= 1.0
    assert not np.allclose(trained, images)  # it does change images while training
    np.testing.assert_array_equal(_np(layer(images, training=False)), images)


@pytest.mark.parametrize("name", augment.AUGMENTATIONS)
def test_the_same_seed_gives_the_same_augmentation(name):
    def run():
        keras.utils.set_random_seed(7)
        (layer,) = augment.layers_for(name, train_images=UINT8)
        return _np(layer(IMAGES, training=True))

    np.testing.assert_array_equal(run(), run())


def test_pca_colour_matches_numpy_for_fixed_alphas():
    values, vectors = augment.pca_basis(UINT8)
    pixels = UINT8.reshape(-1, 3) / 255.0
    ref_values, ref_vectors = np.linalg.eigh(np.cov(pixels, rowvar=False))
    np.testing.assert_allclose(values, ref_values[::-1], rtol=1e-4)
    np.testing.assert_allclose(np.abs(vectors), np.abs(ref_vectors[:, ::-1]), atol=1e-4)  # up to sign

    layer = augment.PCAColor(values, vectors, sigma=0.1)
    alphas = np.array([[0.1, -0.2, 0.05], [-0.15, 0.0, 0.3], [0.0, 0.0, 0.0], [2.0, 1.0, -1.0]], "float32")
    expected = np.clip(IMAGES + (vectors @ (alphas * values).T).T[:, None, None, :], 0.0, 1.0)
    np.testing.assert_allclose(_np(layer.shift(IMAGES, alphas)), expected, atol=1e-6)


def test_pca_colour_draws_alphas_with_the_given_sigma():
    # identity basis and unit eigenvalues: the per-image offset is alpha itself
    layer = augment.PCAColor(np.ones(3), np.eye(3), sigma=0.1)
    grey = np.full((4096, 2, 2, 3), 0.5, "float32")
    keras.utils.set_random_seed(0)
    offsets = _np(layer(grey, training=True))[:, 0, 0, :] - 0.5
    assert abs(offsets.std() - 0.1) < 0.005 and abs(offsets.mean()) < 0.005


def test_channel_shift_is_one_offset_per_image_and_channel():
    flat = np.full((8, 4, 4, 3), 0.5, "float32")
    keras.utils.set_random_seed(1)
    out = _np(augment.ChannelShift(0.1)(flat, training=True))
    assert np.all(out == out[:, :1, :1, :])  # constant over the image
    assert np.all(np.abs(out - 0.5) <= 0.1 + 1e-6)
    assert len(np.unique(out[:, 0, 0, :])) == 24  # independent per image and channel


def test_sensor_noise_spreads_its_strength_over_images_and_keeps_one_strength_without_spread():
    flat = np.full((300, 16, 16, 1), 0.5, "float32")
    keras.utils.set_random_seed(2)
    spread = _np(augment.layers_for("noise")[0](flat, training=True)).reshape(300, -1).std(axis=1)
    assert spread.min() < 0.01 and 0.11 < spread.max() < 0.13  # from a clean sensor to the suite's worst (0.12)
    assert 0.05 < np.median(spread) < 0.07  # uniform in between
    fixed = _np(augment.SensorNoise(0.03)(flat, training=True)).reshape(300, -1).std(axis=1)
    assert np.allclose(fixed, 0.03, atol=0.005)  # a model saved before `spread` trains on as it did
    restored = augment.SensorNoise.from_config(augment.layers_for("noise")[0].get_config())
    assert (restored.stddev, restored.spread) == (0.12, True)
    np.testing.assert_array_equal(_np(restored(flat[:2])), flat[:2])  # inference sees the photo as it is


def test_resized_crop_of_the_whole_image_is_the_image():
    layer = augment.RandomResizedCrop(scale=(1.0, 1.0), ratio=(1.0, 1.0))
    np.testing.assert_allclose(_np(layer(IMAGES, training=True)), IMAGES, atol=1e-5)


def test_resized_crop_of_a_quarter_magnifies_a_corner_to_centre_region():
    # an image whose value is its column index: a crop of half the width, resized back,
    # spans half the columns, so its values rise by about half as fast
    ramp = np.tile(np.arange(16, dtype="float32")[None, :, None], (16, 1, 3))[None] / 15
    keras.utils.set_random_seed(2)
    out = _np(augment.RandomResizedCrop(scale=(0.25, 0.25), ratio=(1.0, 1.0))(ramp, training=True))[0, 8, :, 0]
    assert np.all(np.diff(out) >= -1e-6)
    assert 0.4 < (out[-1] - out[0]) < 0.6


def test_names_and_defaults():
    assert augment.parse("mirror, pca") == ("mirror", "pca")
    assert augment.parse("none") == () and augment.parse("") == ()
    assert default_augmentations("smiles") == ("mirror", "shift", "lowres")
    # the other hand, distance, angle, light and camera: the robustness screen's pick
    assert default_augmentations("signs") == ("mirror", "shift", "zoom", "tilt", "light", "blur", "noise")
    assert default_augmentations("sign-digits") == default_augmentations("signs")
    assert default_augmentations("mnist") == ("shift",)  # a mirrored digit is no digit
    assert default_augmentations("folder:/x") == ()
    with pytest.raises(UserError, match="Unknown augmentation 'sharpen'"):
        augment.parse("mirror,sharpen")
    with pytest.raises(UserError, match="needs the training images"):
        augment.layers_for("pca")


def test_a_model_with_every_augmentation_saves_and_loads(tmp_path):
    from cnnzoo.training.fit import build_training_model

    model = build_training_model("lenet5", (32, 32, 1), 10, augmentations=",".join(augment.AUGMENTATIONS),
                                 train_images=RNG.integers(0, 256, (8, 32, 32, 1), dtype="uint8"))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    x = RNG.integers(0, 256, (2, 32, 32, 1), dtype="uint8")
    np.testing.assert_allclose(_np(loaded(x, training=False)), _np(model(x, training=False)), atol=1e-6)
    assert [layer.name for layer in loaded.layers[2:-1]] == [
        "random_resized_crop", "random_crop", "random_shift", "random_zoom", "random_rotate", "random_tilt", "random_flip",
        "background_swap", "channel_shift", "pca_color", "light_jitter", "random_blur", "sensor_noise", "random_erasing",
        "low_resolution"]


def test_background_swap_replaces_the_plain_wall_only_with_flat_smooth_and_busy_walls():
    """A skin-coloured square on white paper: every swapped image keeps the square and has a new
    wall; the walls are of all three kinds (spread of the wall: none, some, much)."""
    x = np.ones((48, 32, 32, 3), "float32")
    x[:, 8:24, 8:24] = (0.85, 0.6, 0.45)  # saturated: the subject
    layer = augment.BackgroundSwap(rate=1.0, seed=0)
    assert np.array_equal(_np(layer(x)), x)  # inference: unchanged
    out = _np(layer(x, training=True))
    np.testing.assert_array_equal(out[:, 8:24, 8:24], x[:, 8:24, 8:24])
    wall = out[:, :8].reshape(len(x), -1, 3)
    assert (np.abs(wall - 1.0).max(axis=(1, 2)) > 0.05).all()  # every wall is new
    spread = wall.std(axis=1).mean(axis=1)
    assert (spread < 1e-6).any() and ((spread > 0.05) & (spread < 0.2)).any() and (spread > 0.2).any(), spread
    grey = x[..., :1]
    assert np.array_equal(_np(layer(grey, training=True)), grey)  # grey: no saturation to tell them apart
    assert np.array_equal(_np(augment.BackgroundSwap(rate=0.0)(x, training=True)), x)


def test_low_resolution_loses_the_fine_detail_a_small_face_lacks():
    checks = np.indices((64, 64)).sum(axis=0) % 2  # the finest detail there is
    smooth = np.linspace(0, 1, 64)[None, :] * np.ones((64, 1))
    x = np.stack([checks, smooth])[:, :, :, None].astype("float32")
    layer = augment.LowResolution(rate=1.0, seed=0)
    assert np.array_equal(_np(layer(x)), x)  # inference: unchanged
    out = _np(layer(x, training=True))
    assert out.shape == x.shape and 0.0 <= out.min() and out.max() <= 1.0
    assert out[0].std() < 0.1 * x[0].std()  # the checkerboard is gone: it had 64 pixels across, now 16-36
    assert np.abs(out[1] - x[1]).mean() < 0.05  # a smooth ramp survives
    # The JPEG step alone: a fine quantisation gives the image back; a coarse one blocks it.
    fine = augment.LowResolution(max_step=1e-3)._block_quantise(keras.ops.convert_to_tensor(x))
    assert np.abs(_np(fine) - x).max() < 2e-3
    coarse = _np(augment.LowResolution(max_step=2.0, seed=1)._block_quantise(keras.ops.convert_to_tensor(x)))
    assert np.abs(coarse - x).mean() > 0.05


def test_a_fresh_process_loads_a_model_with_cnnzoo_augmentation(tmp_path):
    import subprocess
    import sys

    from cnnzoo.training.fit import build_training_model

    build_training_model("happy", (64, 64, 3), 1, augmentations="pca,color,resized-crop",
                         train_images=UINT8).save(tmp_path / "m.keras")
    code = ("import cnnzoo; from cnnzoo.models.saving import load_model; "
            f"print([l.name for l in load_model({str(tmp_path / 'm.keras')!r}).layers[2:5]])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['random_resized_crop', 'channel_shift', 'pca_color']"


def test_every_augmentation_trains_in_one_compiled_step_on_jax():
    """Keras flags its image-transform layers not jittable (for TensorFlow); on JAX allow_jit
    lifts that, so a model with every augmentation (rotate and tilt among them) trains in one
    XLA program: an eager step is slow, and under data parallelism it deadlocks XLA:CPU."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16, 16, 3)), *augment.layers_for(augment.AUGMENTATIONS, UINT8),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    augment.allow_jit(model)
    if keras.backend.backend() == "jax":
        assert model.jit_compile is True
    history = model.fit(IMAGES, np.array([0, 1, 0, 1]), batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])

"""Building blocks beyond the seed's: shapes, names, shortcuts, LRN against NumPy."""

import keras
import numpy as np
import pytest
from keras import layers

from cnnzoo.models.inception import inception_module
from cnnzoo.models.layers import LocalResponseNormalization
from cnnzoo.models.resnet import (
    ZeroPadShortcut,
    basic_block,
    bottleneck_block,
    convolutional_block,
    preact_bottleneck_block,
)

pytestmark = pytest.mark.jax


def lrn_reference(a, size, alpha, beta, k, axis=-1):
    """Krizhevsky et al. 2012, section 3.3, written out channel by channel."""
    a = np.moveaxis(a, axis, -1)
    out = np.empty_like(a)
    channels = a.shape[-1]
    for i in range(channels):
        lo, hi = max(0, i - size // 2), min(channels - 1, i + (size - 1) // 2)
        total = np.sum(a[..., lo:hi + 1] ** 2, axis=-1)
        out[..., i] = a[..., i] / (k + alpha * total) ** beta
    return np.moveaxis(out, -1, axis)


@pytest.mark.parametrize("size, alpha, beta, k", [(5, 1e-4, 0.75, 2.0), (3, 0.5, 0.5, 1.0), (4, 0.1, 1.0, 1.0)])
def test_local_response_normalization_matches_numpy(size, alpha, beta, k):
    x = np.random.default_rng(0).normal(0, 3, (2, 5, 4, 7)).astype("float32")
    layer = LocalResponseNormalization(size=size, alpha=alpha, beta=beta, k=k, data_format="channels_last")
    got = keras.ops.convert_to_numpy(layer(x))
    np.testing.assert_allclose(got, lrn_reference(x, size, alpha, beta, k), rtol=1e-5, atol=1e-6)


def test_local_response_normalization_channels_first_and_config():
    x = np.random.default_rng(1).normal(0, 3, (2, 6, 3, 3)).astype("float32")
    layer = LocalResponseNormalization(size=3, alpha=0.2, data_format="channels_first")
    got = keras.ops.convert_to_numpy(layer(x))
    np.testing.assert_allclose(got, lrn_reference(x, 3, 0.2, 0.75, 2.0, axis=1), rtol=1e-5, atol=1e-6)
    clone = LocalResponseNormalization.from_config(layer.get_config())
    assert (clone.size, clone.alpha, clone.beta, clone.k, clone.data_format) == (3, 0.2, 0.75, 2.0, "channels_first")
    with pytest.raises(ValueError, match="size"):
        LocalResponseNormalization(size=0)


def test_zero_pad_shortcut_subsamples_and_appends_zero_channels():
    x = np.arange(2 * 5 * 5 * 3, dtype="float32").reshape(2, 5, 5, 3)
    y = keras.ops.convert_to_numpy(ZeroPadShortcut(8, 2, data_format="channels_last")(x))
    assert y.shape == (2, 3, 3, 8)
    np.testing.assert_array_equal(y[..., :3], x[:, ::2, ::2, :])
    assert not y[..., 3:].any()
    first = keras.ops.convert_to_numpy(ZeroPadShortcut(8, 2, data_format="channels_first")(x))
    assert first.shape == (2, 8, 3, 2)  # read as 5 channels of 5x3
    np.testing.assert_array_equal(first[:, :5], x[:, :, ::2, ::2])
    assert not first[:, 5:].any()
    assert ZeroPadShortcut(8, 2).compute_output_shape((None, 5, 5, 3)) == (None, 3, 3, 8)


def _names(model):
    return {layer.name for layer in model.layers}


def _block_model(block, shape, *args, **kwargs):
    inputs = keras.Input(shape)
    return keras.Model(inputs, block(inputs, *args, **kwargs))


@pytest.mark.parametrize("shortcut, extra", [
    ("projection", {"res3a_branch1", "bn3a_branch1", "res3a_add"}),
    ("padding", {"res3a_branch1_pad", "res3a_add"}),
    (None, set()),
])
def test_basic_block_shortcut_options(shortcut, extra):
    model = _block_model(basic_block, (8, 8, 4), 16, 3, "a", stride=2, shortcut=shortcut)
    assert model.output_shape == (None, 4, 4, 16)
    main = {"res3a_branch2a", "bn3a_branch2a", "res3a_branch2a_relu", "res3a_branch2b", "bn3a_branch2b", "res3a_relu"}
    assert _names(model) - {model.layers[0].name} == main | extra
    out = model(np.random.default_rng(0).normal(size=(2, 8, 8, 4)).astype("float32"))
    assert keras.ops.convert_to_numpy(out).min() >= 0  # ends on ReLU
    same = _block_model(basic_block, (8, 8, 16), 16, 3, "b", shortcut=shortcut)
    assert same.output_shape == (None, 8, 8, 16)
    assert ("res3b_add" in _names(same)) == (shortcut is not None)  # identity when shapes match


def test_bottleneck_block_with_projection_is_the_seed_convolutional_block():
    ours = _block_model(bottleneck_block, (8, 8, 6), (2, 4, 6), 3, "a", stride=2)
    seed = _block_model(convolutional_block, (8, 8, 6), 3, (2, 4, 6), 3, "a", s=2)
    assert _names(ours) ^ _names(seed) <= {ours.layers[0].name, seed.layers[0].name}
    assert ours.count_params() == seed.count_params()
    padded = _block_model(bottleneck_block, (8, 8, 6), (2, 4, 12), 3, "a", stride=2, shortcut="padding")
    assert padded.output_shape == (None, 4, 4, 12) and "res3a_branch1_pad" in _names(padded)
    with pytest.raises(ValueError, match="shortcut"):
        _block_model(bottleneck_block, (8, 8, 6), (2, 4, 6), 3, "a", shortcut="identity")


def test_preact_bottleneck_block():
    model = _block_model(preact_bottleneck_block, (8, 8, 16), (4, 4, 32), 4, "a", stride=2)
    assert model.output_shape == (None, 4, 4, 32)
    names = _names(model)
    assert {"bn4a_preact", "res4a_branch1", "res4a_add"} <= names and "bn4a_branch1" not in names
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 16)).astype("float32")
    assert keras.ops.convert_to_numpy(model(x)).min() < 0  # no ReLU after the sum (v2)
    identity = _block_model(preact_bottleneck_block, (8, 8, 32), (4, 4, 32), 4, "b")
    assert "res4b_branch1" not in _names(identity)


def test_inception_module_concatenates_four_branches():
    model = _block_model(inception_module, (28, 28, 192), (64, 96, 128, 16, 32, 32), "inception_3a")
    assert model.output_shape == (None, 28, 28, 256)  # 64 + 128 + 32 + 32, the paper's 3a
    assert isinstance(model.get_layer("inception_3a_output"), layers.Concatenate)
    assert model.get_layer("inception_3a_5x5").kernel_size == (5, 5)
    assert model.get_layer("inception_3a_pool").strides == (1, 1)
    narrow = _block_model(inception_module, (28, 28, 192), (64, 96, 128, 16, 32, 32), "m", wide_kernel=3)
    assert narrow.get_layer("m_5x5").kernel_size == (3, 3)
    with pytest.raises(ValueError, match="six integers"):
        _block_model(inception_module, (28, 28, 192), (64, 96), "bad")


def test_keras_own_loader_reads_cnnzoo_layers_after_importing_cnnzoo_modelio(tmp_path):
    """Keras imports only its own modules while loading, so the README's documented call
    (`import cnnzoo.models.saving`, then `keras.saving.load_model`) must register every custom layer."""
    import subprocess
    import sys

    inputs = keras.Input((6, 6, 8))
    model = keras.Model(inputs, LocalResponseNormalization()(ZeroPadShortcut(16, 2)(inputs)))
    model.save(tmp_path / "m.keras")
    code = ("import cnnzoo.models.saving, keras; "
            f"print([type(l).__name__ for l in keras.saving.load_model({str(tmp_path / 'm.keras')!r}).layers])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['InputLayer', 'ZeroPadShortcut', 'LocalResponseNormalization']"


def test_a_model_file_written_before_the_package_regroup_still_loads_and_computes_the_same():
    """tests/fixtures/main-2026-12-01.keras was saved by cnnzoo before its modules moved (its
    config names cnnzoo.layers and cnnzoo.augment): every cnnzoo layer class in it must still load
    in safe mode, by its registered name, and give the outputs recorded beside it."""
    from pathlib import Path

    from cnnzoo.models.saving import load_model

    fixtures = Path(__file__).parent / "fixtures"
    model = load_model(fixtures / "main-2026-12-01.keras")
    names = {type(layer).__name__ for layer in model.layers} | {type(layer).__name__ for layer in model.layers[-1].layers}
    assert {"ChannelShift", "PCAColor", "RandomResizedCrop", "LocalResponseNormalization", "ZeroPadShortcut"} <= names
    recorded = np.load(fixtures / "main-2026-12-01-io.npz")
    np.testing.assert_allclose(model.predict(recorded["x"], verbose=0), recorded["y"], rtol=1e-5, atol=1e-6)

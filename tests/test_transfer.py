"""Starting from other weights (`init`), freezing them, and training on part of the data."""

import h5py
import keras
import numpy as np
import pytest
from imagefolders import make_folder
from keras.src.legacy.saving.legacy_h5_format import save_weights_to_hdf5_group

from cnnzoo.errors import UserError
from cnnzoo.models import get_model
from cnnzoo.training import transfer
from cnnzoo.training.config import TrainConfig
from cnnzoo.training.fit import train

pytestmark = pytest.mark.usefixtures("private_cache")  # conftest.py: a fresh $CNNZOO_HOME


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return {"two": make_folder(root / "two", ["frown", "smile"]),
            "three": make_folder(root / "three", ["circle", "square", "star"], per_class=20)}


def tiny(dataset, out, **kwargs):
    """ResNet-20 at 16x16 for one epoch: seconds."""
    return TrainConfig("resnet20", f"folder:{dataset}", epochs=1, batch_size=8, image_size=16, augment="none",
                       out=str(out), **kwargs)


@pytest.fixture(scope="module")
def pretrained(folders, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "pretrained"
    train(tiny(folders["two"], out), verbose=0)
    return out


def net(run):
    return transfer.architecture(keras.saving.load_model(run / "last.keras"))


def weights(model, name):
    return [keras.ops.convert_to_numpy(w) for w in model.get_layer(name).weights]


def test_image_size_sets_the_input(pretrained):
    assert net(pretrained).input_shape == (None, 16, 16, 3)
    assert net(pretrained).output_shape == (None, 2)


def test_frozen_base_keeps_the_pretrained_layers_and_trains_a_new_head(pretrained, folders, tmp_path):
    metrics = train(tiny(folders["three"], tmp_path / "frozen", init=str(pretrained), freeze=True), verbose=0)
    source, frozen = net(pretrained), net(tmp_path / "frozen")
    assert frozen.output_shape == (None, 3) and "fc3" in [layer.name for layer in frozen.layers]
    for name in ("conv1", "bn_conv1", "res4c_branch2b", "bn4c_branch2b"):
        assert not frozen.get_layer(name).trainable
        for a, b in zip(weights(source, name), weights(frozen, name), strict=True):
            np.testing.assert_array_equal(a, b)  # moving statistics too: frozen BN runs in inference mode
    assert frozen.get_layer("fc3").trainable
    assert sum(int(np.prod(w.shape)) for w in frozen.trainable_weights) == 64 * 3 + 3
    assert metrics["test"]["images"] > 0


def test_fine_tuning_starts_from_the_pretrained_layers_and_changes_them(pretrained, folders, tmp_path):
    config = tiny(folders["three"], tmp_path / "tuned", init=str(pretrained))
    model = keras.saving.load_model(pretrained / "last.keras")
    start = weights(transfer.architecture(model), "conv1")
    train(config, verbose=0)
    tuned = net(tmp_path / "tuned")
    assert tuned.get_layer("conv1").trainable
    assert not np.array_equal(start[0], weights(tuned, "conv1")[0])  # trained from there
    assert np.abs(start[0] - weights(tuned, "conv1")[0]).max() < 0.05  # one epoch, small steps


def test_published_keras_h5_weights_load_by_layer_name(tmp_path):
    """keras.applications' VGG16 file layout (legacy Keras .h5, weights only) loads into ours."""
    reference = keras.applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3))
    path = tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    with h5py.File(path, "w") as f:
        save_weights_to_hdf5_group(f, reference)
    ours = get_model("vgg16", include_top=False, input_shape=(32, 32, 3))
    copied = transfer.initialise(ours, path)
    assert len(copied) == 13 and copied[0] == "block1_conv1"
    x = np.random.default_rng(0).random((2, 32, 32, 3), dtype="float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(ours(x)), keras.ops.convert_to_numpy(reference(x)),
                               rtol=1e-4, atol=1e-5)


def test_weights_file_with_nothing_in_common_is_refused(tmp_path, pretrained):
    other = get_model("happy")
    path = tmp_path / "happy_weights.h5"
    with h5py.File(path, "w") as f:
        save_weights_to_hdf5_group(f, other)
    model = keras.saving.load_model(pretrained / "last.keras")
    with pytest.raises(UserError, match="No layer of ResNet20 matches a layer of .*happy_weights.h5 by name"):
        transfer.initialise(model, path)


def test_freeze_needs_init_and_fraction_must_be_a_share(folders, tmp_path):
    with pytest.raises(UserError, match="freeze keeps the layers copied from init fixed: give init"):
        train(tiny(folders["two"], tmp_path / "a", freeze=True), verbose=0)
    with pytest.raises(UserError, match=r"train_fraction must be in \(0, 1\]"):
        train(tiny(folders["two"], tmp_path / "b", train_fraction=1.5), verbose=0)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_train_fraction_keeps_nested_per_class_subsets(folders, tmp_path):
    from cnnzoo.datasets import load
    from cnnzoo.training.fit import training_subset

    data = load(f"folder:{folders['three']}", validation=0.1, progress=False)
    ten, thirty = training_subset(data, 0.1), training_subset(data, 0.3)
    assert set(ten.train.keys) < set(thirty.train.keys) < set(data.train.keys)
    assert min(ten.train.class_counts(3)) >= 1  # every class keeps at least one image
    assert 0.2 < len(thirty.train) / len(data.train) < 0.45
    assert (ten.val.keys == data.val.keys).all() and (ten.test.keys == data.test.keys).all()
    metrics = train(tiny(folders["three"], tmp_path / "part", train_fraction=0.3), verbose=0)
    assert metrics["train_images"] == len(thirty.train)


def test_cli_passes_the_transfer_options_through(pretrained, folders, tmp_path):
    from typer.testing import CliRunner

    from cnnzoo.cli import app
    from cnnzoo.training import runs

    out = tmp_path / "cli"
    result = CliRunner().invoke(app, [
        "train", "resnet20", "--dataset", f"folder:{folders['three']}", "--epochs", "1", "--batch-size", "8",
        "--image-size", "16", "--init", str(pretrained), "--freeze", "--train-fraction", "0.5", "--out", str(out)])
    assert result.exit_code == 0, result.output
    stored = runs.read_config(out)["train"]
    assert (stored["image_size"], stored["init"], stored["freeze"], stored["train_fraction"]) == (
        16, str(pretrained), True, 0.5)
    result = CliRunner().invoke(app, ["train", "resnet20", "--dataset", f"folder:{folders['three']}", "--freeze",
                                      "--out", str(tmp_path / "bad")])
    assert result.exit_code == 2
    assert "freeze keeps the layers copied from init fixed" in result.stderr

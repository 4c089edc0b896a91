"""Published weights: every supported (source, architecture) pair computes what the source
library's own network computes, and bad files end in one sentence.

For each pair in `cnnzoo.models.weights.PAIRS` the peer library builds its own network with
random weights (every batch-norm statistic and bias redrawn: tests/weights_peers.py), saves
them in its own format, and cnnzoo converts the file; both run on the same uint8 pixels,
each with its own preprocessing, in inference mode. Logits and include_top=False features
must agree within 1e-4 of the output's scale (the features except for deeper copies of a
builder whose features are compared). The inputs are small (32x35, odd and even
sides, so Keras' "same" padding and PyTorch's symmetric padding would differ) to keep the
default suite fast; `-m slow` repeats the ResNet-50s at 224x224.
"""

import numpy as np
import pytest
from weights_peers import PEERS, pixels, timm_peer

import keras

from cnnzoo.errors import UserError
from cnnzoo.models import model_info
from cnnzoo.models.weights import PAIRS, convert, preprocessing

SHAPE = (32, 35, 3)
# Where PyTorch flattens a map into a dense layer (VGG's fc1, AlexNet's fc6), the map before the
# adaptive pool must be more than 1x1 (and not square) for the row permutation to be tested.
SHAPES = {"alexnet_tv": (127, 159, 3), **{p.arch: (64, 96, 3) for p in PAIRS if p.scheme == "torchvision_vgg"}}
JAX = {"torchvision-resnet18_tv", "torchvision-googlenet_tv", "torchvision-alexnet_tv", "keras-resnet50v2_keras"}
TOLERANCE = 1e-4  # of the largest |output| of the peer
# Deeper copies of a builder whose include_top=False conversion is compared (resnet50 -> 101/152,
# resnet18_tv -> 34, resnet50_tv -> 101/152, vgg11(_bn)_tv -> 13/16/19, vgg16 -> 19): their
# backbones convert the same way, so for them the logits alone are compared.
FEATURES_AS_SHALLOWER = {"resnet101", "resnet152", "resnet101v2_keras", "resnet152v2_keras", "vgg19", "resnet34_tv",
                         "resnet101_tv", "resnet152_tv", *(f"vgg{d}{bn}_tv" for d in (13, 16, 19) for bn in ("", "_bn"))}


def agree(ours: np.ndarray, theirs: np.ndarray) -> float:
    """max |ours - theirs| as a share of max |theirs|."""
    assert ours.shape == theirs.shape
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


def run(model, shape, seed=1):
    return keras.ops.convert_to_numpy(model(pixels(shape, seed), training=False))


@pytest.mark.parametrize("pair", [pytest.param(p, marks=pytest.mark.jax) if p.id in JAX else p for p in PAIRS],
                         ids=[p.id for p in PAIRS])
def test_converted_weights_compute_what_the_source_network_computes(pair, tmp_path):
    shape = SHAPES.get(pair.arch, SHAPE)
    peer = PEERS[pair.source](pair, shape, tmp_path)
    model = convert(peer.top, pair.arch, input_shape=shape, classifier_activation=None)
    assert agree(run(model, shape), peer.logits) < TOLERANCE
    if pair.arch not in FEATURES_AS_SHALLOWER:
        backbone = convert(peer.notop, pair.arch, input_shape=shape, include_top=False)
        assert agree(run(backbone, shape), peer.features) < TOLERANCE
    net = model.layers[-1]
    assert sum(int(np.prod(w.shape)) for w in net.trainable_weights) == peer.trainable
    assert model_info(pair.arch).reference_params in (net.count_params(), peer.trainable) or shape != (224, 224, 3)
    convention = preprocessing.input_convention(model)
    assert convention.mode == pair.preprocessing and convention.labels == "imagenet"


@pytest.mark.slow
@pytest.mark.parametrize("pair", [p for p in PAIRS if p.arch.startswith("resnet50")], ids=lambda p: p.id)
def test_resnet50s_agree_at_224x224(pair, tmp_path):
    shape = (224, 224, 3)
    peer = PEERS[pair.source](pair, shape, tmp_path)
    model = convert(peer.top, pair.arch, classifier_activation=None)
    assert agree(run(model, shape), peer.logits) < TOLERANCE
    assert model.layers[-1].count_params() == model_info(pair.arch).reference_params or pair.source != "keras"


def test_timm_pth_checkpoints_convert_as_the_safetensors_ones(tmp_path):
    pair = next(p for p in PAIRS if p.id == "timm-resnet18_tv")
    peer = timm_peer(pair, SHAPE, tmp_path, suffix=".pth")
    model = convert(peer.top, pair.arch, input_shape=SHAPE, source="timm", classifier_activation=None)
    assert agree(run(model, shape=SHAPE), peer.logits) < TOLERANCE


# --- the comparison can fail: each mistake it must catch, made on purpose -------------------------

@pytest.fixture(scope="module")
def tv18(tmp_path_factory):
    """torchvision's resnet18 with random weights, saved as a state dict."""
    pair = next(p for p in PAIRS if p.id == "torchvision-resnet18_tv")
    return PEERS["torchvision"](pair, SHAPE, tmp_path_factory.mktemp("tv18"))


def test_the_papers_layout_with_torchvisions_weights_does_not_agree(tv18):
    """cnnzoo's paper ResNet-18 has the same weights but Keras' "same" padding on its strided 3x3s."""
    from cnnzoo.models import get_model
    from cnnzoo.models.weights import load_weights

    paper = get_model("resnet18", input_shape=SHAPE, classifier_activation=None)
    load_weights(paper, tv18.top, arch="resnet18_tv")
    x = preprocessing.ImagePreprocessing("torch")(pixels(SHAPE).astype("float32") / 255)
    assert agree(keras.ops.convert_to_numpy(paper(x, training=False)), tv18.logits) > 100 * TOLERANCE


def test_a_wrong_batch_norm_epsilon_does_not_agree(tv18):
    model = convert(tv18.top, "resnet18_tv", input_shape=SHAPE, classifier_activation=None)
    for layer in model.layers[-1].layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.epsilon = 1e-3  # Keras' default instead of torchvision's 1e-5
    assert agree(run(model, SHAPE), tv18.logits) > 10 * TOLERANCE


def test_an_unpermuted_flatten_does_not_agree(tmp_path, monkeypatch):
    """PyTorch flattens (C, H, W) into fc1, Keras (H, W, C): without the permutation, no agreement."""
    import dataclasses

    from cnnzoo.models.weights import schemes

    pair = next(p for p in PAIRS if p.id == "torchvision-alexnet_tv")
    shape = SHAPES[pair.arch]
    peer = PEERS["torchvision"](pair, shape, tmp_path)
    wrong = dataclasses.replace(schemes.SCHEMES[pair.scheme], flattened={})
    monkeypatch.setitem(schemes.SCHEMES, pair.scheme, wrong)
    model = convert(peer.top, pair.arch, input_shape=shape, classifier_activation=None)
    assert agree(run(model, shape), peer.logits) > 100 * TOLERANCE


# --- bad files: one sentence naming the first offending tensor, exit code 2, nothing written ------

class _RunsCode:
    """Unpickling this runs `touch marker` in a shell: code that a weights file must never run."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def _state(path):
    import torch

    return torch.load(path, weights_only=True)


def _save(state, path):
    import torch

    torch.save(state, path)
    return path


def _cli(*args):
    from typer.testing import CliRunner

    from cnnzoo.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def test_a_pickle_that_would_run_code_is_refused_unrun(tv18, tmp_path):
    import torch

    marker = tmp_path / "ran"
    state = _state(tv18.top)
    state["fc.bias"] = _RunsCode(marker)
    path = tmp_path / "resnet18-evil.pth"
    torch.save(state, path)
    with pytest.raises(UserError, match=r"resnet18-evil.pth is a pickle that would run code when loaded "
                                        r"\(it calls \w+\.system\), so cnnzoo refuses it"):
        convert(path, "resnet18_tv")
    result = _cli("weights", "convert", path, "--arch", "resnet18_tv", "-o", tmp_path / "out.keras")
    assert result.exit_code == 2 and "refuses it" in result.stderr
    assert not marker.exists() and not (tmp_path / "out.keras").exists()
    torch.load(path, weights_only=False)  # what the refusal prevented: the file does run code
    assert marker.exists()


@pytest.mark.parametrize("suffix", [".pth", ".safetensors", ".h5"])
def test_a_truncated_file_is_refused(tv18, tmp_path, suffix):
    whole = tmp_path / f"whole{suffix}"
    if suffix == ".pth":
        whole.write_bytes(tv18.top.read_bytes())
    elif suffix == ".safetensors":
        from safetensors.numpy import save_file

        save_file({k: v.numpy() for k, v in _state(tv18.top).items()}, whole)
    else:
        import h5py

        with h5py.File(whole, "w") as f:  # keras.applications' layout: layer groups named in layer_names
            f.attrs["layer_names"] = [b"block1_conv1"]
            f["block1_conv1/block1_conv1/kernel:0"] = np.ones((3, 3, 3, 64), "float32")
            f["block1_conv1"].attrs["weight_names"] = [b"block1_conv1/kernel:0"]
    data = whole.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: len(data) // 2])
    arch = "resnet18_tv" if suffix != ".h5" else "vgg16"
    with pytest.raises(UserError, match=r"cut\.\w+ is truncated or not a"):
        convert(cut, arch)
    result = _cli("weights", "convert", cut, "--arch", arch, "-o", tmp_path / "out.keras")
    assert result.exit_code == 2 and "is truncated" in result.stderr and not (tmp_path / "out.keras").exists()


def _edited(tv18, tmp_path, edit):
    state = _state(tv18.top)
    edit(state)
    return _save(state, tmp_path / "resnet18-edited.pth")


def test_a_missing_tensor_is_named_with_its_expected_shape(tv18, tmp_path):
    path = _edited(tv18, tmp_path, lambda s: s.pop("layer2.0.bn1.running_var"))
    with pytest.raises(UserError, match=r"^resnet18-edited.pth has no tensor layer2.0.bn1.running_var \(expected "
                                        r"shape \(128\)\), which resnet18_tv needs"):
        convert(path, "resnet18_tv")


def test_an_unexpected_tensor_is_named_with_its_shape(tv18, tmp_path):
    import torch

    path = _edited(tv18, tmp_path, lambda s: s.update({"head.extra.weight": torch.zeros(3, 7)}))
    with pytest.raises(UserError, match=r"^resnet18-edited.pth holds head.extra.weight with shape \(3, 7\), which "
                                        r"resnet18_tv has no place for"):
        convert(path, "resnet18_tv")


def test_a_misfitting_shape_names_the_tensor_and_both_shapes(tv18, tmp_path):
    import torch

    path = _edited(tv18, tmp_path, lambda s: s.update({"layer3.1.conv2.weight": torch.zeros(256, 256, 1, 1)}))
    with pytest.raises(UserError, match=r"^layer3.1.conv2.weight in resnet18-edited.pth has shape \(256, 256, 1, 1\), "
                                        r"but resnet18_tv expects \(256, 256, 3, 3\)"):
        convert(path, "resnet18_tv")


def test_a_checkpoint_of_another_architecture_names_the_first_tensor_that_differs(tv18, tmp_path):
    out = tmp_path / "model.keras"
    out.write_bytes(b"an older file the user keeps")
    result = _cli("weights", "convert", tv18.top, "--arch", "resnet50_tv", "-o", out)
    assert result.exit_code == 2
    message = " ".join(result.stderr.split())
    assert message.startswith("error: layer1.0.conv1.weight in torchvision-resnet18_tv.pth has shape (64, 64, 3, 3), "
                              "but resnet50_tv expects (64, 64, 1, 1)")
    assert message.count(". ") == 0 and message.endswith(".")  # one sentence
    assert out.read_bytes() == b"an older file the user keeps"  # nothing written over it
    result = _cli("weights", "convert", tv18.top, "--arch", "vgg16_tv", "-o", out)
    assert result.exit_code == 2 and "features.0.weight" in result.stderr
    result = _cli("weights", "convert", tv18.top, "--arch", "vgg16", "-o", out)  # keras only publishes vgg16
    assert result.exit_code == 2 and "A torch file cannot hold published weights for vgg16" in result.stderr


# --- the interfaces ---------------------------------------------------------------------------------

def test_weights_list_shows_every_pair(tmp_path):
    import os

    os.environ.setdefault("COLUMNS", "250")
    result = _cli("weights", "list")
    assert result.exit_code == 0, result.output
    for pair in PAIRS:
        assert pair.arch in result.output and pair.published.split(" ")[0][:20] in result.output
    assert _cli("weights", "list", "--source", "caffe").exit_code == 2


def test_docs_list_the_pairs_from_the_table():
    from pathlib import Path

    from cnnzoo.models.weights.pairs import markdown_table

    docs = (Path(__file__).resolve().parents[1] / "docs" / "MODELS.md").read_text()
    assert markdown_table() in docs  # regenerate with: python -c "...; print(markdown_table())"


def test_convert_writes_a_model_that_keeps_cnnzoos_contract(tv18, tmp_path):
    """uint8 pixels in, preprocessing inside, loadable in safe mode, ImageNet's top 5 from predict."""
    from PIL import Image

    from cnnzoo.backends.peers import imagenet_categories
    from cnnzoo.models.saving import load_model

    out = tmp_path / "resnet18.keras"
    result = _cli("weights", "convert", tv18.top, "--arch", "resnet18_tv", "--input-shape", "32,35,3", "-o", out)
    assert result.exit_code == 0, result.output
    assert "preprocessing inside (torch)" in result.output
    model = load_model(out)  # safe mode
    assert model.inputs[0].dtype == "uint8" and [layer.name for layer in model.layers[1:3]] == ["scale", "preprocess"]
    probabilities = run(model, SHAPE)
    logits = tv18.logits - tv18.logits.max(axis=1, keepdims=True)
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert np.abs(probabilities - expected).max() < 1e-5
    image = tmp_path / "photo.png"
    Image.fromarray(pixels((32, 35, 3))[0]).save(image)
    result = _cli("predict", out, image)
    assert result.exit_code == 0, result.output
    best = np.argsort(expected[0])[::-1][:5]
    names = imagenet_categories()
    assert "top 5: " + ", ".join(f"{names[k]} {expected[0][k]:.4f}" for k in best) in " ".join(result.output.split())


def test_get_model_takes_a_published_file_like_keras_applications(tv18):
    from cnnzoo.models import get_model

    model = get_model("resnet18_tv", input_shape=SHAPE, classifier_activation=None, weights=tv18.top)
    x = preprocessing.ImagePreprocessing("torch")(pixels(SHAPE).astype("float32") / 255)
    assert agree(keras.ops.convert_to_numpy(model(x, training=False)), tv18.logits) < TOLERANCE
    base = get_model("resnet18_tv", input_shape=SHAPE, include_top=False, weights=tv18.top)  # head left out
    assert agree(keras.ops.convert_to_numpy(base(x, training=False)), tv18.features) < TOLERANCE
    with pytest.raises(UserError, match=r"fc.weight in .* has shape \(1000, 512\), but resnet18_tv expects \(10, 512\)"):
        get_model("resnet18_tv", input_shape=SHAPE, classes=10, weights=tv18.top)


def test_train_starts_from_a_published_checkpoint_with_its_preprocessing(tv18, tmp_path, private_cache):
    from imagefolders import make_folder

    from cnnzoo.training import runs, transfer

    data = make_folder(tmp_path / "data", ["circle", "square", "star"], per_class=12, size=32)
    out = tmp_path / "run"
    result = _cli("train", "resnet18_tv", "--dataset", f"folder:{data}", "--epochs", "1", "--batch-size", "8",
                  "--image-size", "32", "--augment", "none", "--init", tv18.top, "--freeze", "--out", out)
    assert result.exit_code == 0, result.output
    model = keras.saving.load_model(out / runs.BEST)
    assert preprocessing.input_convention(model).mode == "torch"
    net = transfer.architecture(model)
    assert net.output_shape == (None, 3) and not net.get_layer("res3a_branch2a").trainable
    state = _state(tv18.top)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(net.get_layer("res3a_branch2a").kernel),
                                  state["layer2.0.conv1.weight"].numpy().transpose(2, 3, 1, 0))
    assert net.get_layer("bn3a_branch2a").epsilon == 1e-5


def test_keras_h5_published_weights_start_a_run_with_their_preprocessing(tmp_path):
    """--init with keras.applications' notop file for vgg16: converted (checked), caffe preprocessing."""
    from cnnzoo.training import transfer

    pair = next(p for p in PAIRS if p.id == "keras-vgg16")
    peer = PEERS["keras"](pair, SHAPE, tmp_path)
    start = transfer.read_start(peer.notop, arch="vgg16")
    assert start.preprocessing == "caffe" and sorted(start.layers)[:2] == ["block1_conv1", "block1_conv2"]
    assert "predictions" not in start.layers


def test_the_weights_extra_is_part_of_the_test_install():
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert set(extras["weights"]) <= set(extras["test"])
    assert "torchvision==0.28.0" in extras["weights"]  # the release that requires torch==2.13.0


def test_a_named_checkpoint_is_fetched_once_into_the_cache(tv18, tmp_path, monkeypatch):
    """--init torchvision:resnet18: torchvision's own URL, fetched into $CNNZOO_HOME/weights (the download
    replaced here by a copy of a local file: tests never download), then converted like a file."""
    import shutil

    from cnnzoo.models.weights import fetch
    from cnnzoo.training import transfer

    monkeypatch.setenv("CNNZOO_HOME", str(tmp_path / "home"))
    fetched = []

    def download(url, path):
        fetched.append(url)
        shutil.copy(tv18.top, path)

    monkeypatch.setattr(fetch, "_download", download)
    for _ in range(2):
        start = transfer.read_start("torchvision:resnet18", arch="resnet18_tv")
    assert fetched == ["https://download.pytorch.org/models/resnet18-f37072fd.pth"]  # once
    assert (tmp_path / "home" / "weights" / "torchvision" / "resnet18-f37072fd.pth").is_file()
    assert start.preprocessing == "torch" and "res2a_branch2a" in start.layers
    with pytest.raises(UserError, match="torchvision's resnet18 has no weights 'V9': choose one of IMAGENET1K_V1"):
        fetch.fetch("torchvision:resnet18.V9")

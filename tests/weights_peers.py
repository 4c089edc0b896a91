"""The peer libraries' own networks for tests/test_weights.py: built with random weights,
saved in the library's own format, and run on a batch of pixels with the library's own
preprocessing, so that a converted zoo model can be compared with what the peer computes.

Random weights must make every conversion mistake visible: the peers' fresh batch norms are
identities (mean 0, variance 1, scale 1, shift 0) and their fresh biases zeros, which would
hide a swapped, dropped or mis-ordered statistic. So every batch-norm statistic and bias is
redrawn: variances in [0.1, 1] (so that the epsilon matters too), scales that keep each
normalised channel's gain in [0.6, 1] (so that 50 blocks of ResNet-152 neither overflow nor
vanish), means and shifts around 0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import h5py
import keras
import numpy as np
from keras.src.legacy.saving.legacy_h5_format import save_weights_to_hdf5_group

from cnnzoo.backends.peers import import_timm, import_torchvision
from cnnzoo.models.weights.schemes import keras_resnet

SEED = 0


@dataclass
class Peer:
    """What a peer computed: logits (from `top`), features (from `notop`), and its files."""

    top: Path  # the checkpoint with its classifier
    notop: Path  # the checkpoint without it (keras: its own _notop file; torch: the same file)
    logits: np.ndarray
    features: np.ndarray  # NHWC
    trainable: int  # the peer's count of trainable weights


def pixels(shape, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(2, *shape), dtype=np.uint8)


# --- keras.applications ------------------------------------------------------------------------

def _randomise_keras(model, rng):
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            variance = rng.uniform(0.1, 1.0, n)
            layer.set_weights([np.sqrt(variance) * rng.uniform(0.6, 1.0, n), rng.normal(0, 0.1, n),
                               rng.normal(0, 0.1, n), variance])
        elif getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.normal(0, 0.1, layer.bias.shape).astype("float32"))


def _text(name) -> str:
    return name.decode() if isinstance(name, bytes) else name


def _save_keras(model, path: Path, rename=None):
    """keras.applications' published layout: a Keras 2 style weights-only .h5 (Keras' own writer),
    its layers optionally renamed (the old generation of names)."""
    with h5py.File(path, "w") as f:
        save_weights_to_hdf5_group(f, model)
    if rename:
        with h5py.File(path, "a") as f:
            names = []
            for name in [_text(n) for n in f.attrs["layer_names"]]:
                new = rename.get(name, name)
                if new != name:
                    f.move(name, new)
                    group = f[new]
                    if name in group:  # Keras 3 writes weight paths as layer/weight: a subgroup
                        group.move(name, new)
                    group.attrs["weight_names"] = [_text(n).replace(name + "/", new + "/", 1).encode()
                                                   for n in group.attrs["weight_names"]]
                names.append(new.encode())
            f.attrs["layer_names"] = names
    return path


def keras_peer(pair, shape, tmp: Path) -> Peer:
    constructor = getattr(keras.applications, pair.peer.split(".")[-1])
    module = keras.applications.resnet_v2 if "V2" in pair.peer else (
        keras.applications.vgg16 if "VGG" in pair.peer else keras.applications.resnet)
    keras.utils.set_random_seed(SEED)
    top = constructor(weights=None, input_shape=shape, classifier_activation=None)
    _randomise_keras(top, np.random.default_rng(SEED))
    # include_top=False is the same network up to its last feature map (post_relu, conv5_block3_out,
    # block5_pool): taken from `top` rather than built again, and saved as keras publishes it.
    last = next(layer for layer in reversed(top.layers) if len(layer.output.shape) == 4)
    notop = keras.Model(top.input, last.output)
    rename = None
    if pair.scheme == "keras_resnet_legacy":  # the same network, saved with Keras <= 2.2.4's names
        rename = {theirs: ours for ours, theirs in keras_resnet(pair.arch).items()}
    x = module.preprocess_input(pixels(shape).astype("float32"))
    return Peer(
        top=_save_keras(top, tmp / f"{pair.id}.h5", rename),
        notop=_save_keras(notop, tmp / f"{pair.id}_notop.h5", rename),
        logits=keras.ops.convert_to_numpy(top(x, training=False)),
        features=keras.ops.convert_to_numpy(notop(x, training=False)),
        trainable=sum(int(np.prod(w.shape)) for w in top.trainable_weights),
    )


# --- torchvision and timm --------------------------------------------------------------------

def _randomise_torch(model, torch):
    generator = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                n = module.num_features
                variance = torch.rand(n, generator=generator) * 0.9 + 0.1
                module.running_var.copy_(variance)
                module.weight.copy_(variance.sqrt() * (torch.rand(n, generator=generator) * 0.4 + 0.6))
                module.bias.copy_(torch.randn(n, generator=generator) * 0.1)
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
            elif isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)) and module.bias is not None:
                module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.1)


def _torch_run(model, x, torch) -> np.ndarray:
    with torch.no_grad():
        return model(x).numpy()


def _nhwc(array: np.ndarray) -> np.ndarray:
    return np.transpose(array, (0, 2, 3, 1))


def torchvision_peer(pair, shape, tmp: Path) -> Peer:
    import torch

    torchvision = import_torchvision()
    from torchvision.models.feature_extraction import create_feature_extractor

    name = pair.peer.split(".")[-1]
    torch.manual_seed(SEED)
    options = {"aux_logits": True, "transform_input": True, "init_weights": True} if name == "googlenet" else {}
    model = torchvision.models.get_model(name, weights=None, **options).eval()
    _randomise_torch(model, torch)
    path = tmp / f"{pair.id}.pth"
    torch.save(model.state_dict(), path)
    weights = torchvision.models.get_model_weights(name).DEFAULT  # its preprocessing: mean and std
    preset = weights.transforms()
    x = torch.from_numpy(pixels(shape)).permute(0, 3, 1, 2).float() / 255
    x = torchvision.transforms.functional.normalize(x, preset.mean, preset.std)
    last = {"googlenet": "inception5b", "alexnet": "features", "vgg": "features"}
    node = next((v for k, v in last.items() if name.startswith(k)), "layer4")
    features = create_feature_extractor(model, {node: "features"})
    with torch.no_grad():
        mapped = features(x)["features"].numpy()
    trainable = sum(p.numel() for n, p in model.named_parameters() if not re.match(r"aux[12]\.", n))
    return Peer(path, path, _torch_run(model, x, torch), _nhwc(mapped), trainable)


def timm_peer(pair, shape, tmp: Path, suffix: str = ".safetensors") -> Peer:
    import torch

    timm = import_timm()
    name = re.search(r"'(\w+)'", pair.peer).group(1)
    torch.manual_seed(SEED)
    model = timm.create_model(name, pretrained=False).eval()
    _randomise_torch(model, torch)
    path = tmp / f"{pair.id}{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(model.state_dict(), path)  # what timm publishes on the Hugging Face hub
    else:
        torch.save(model.state_dict(), path)
    config = timm.data.resolve_data_config({}, model=model)  # its preprocessing: mean and std
    x = torch.from_numpy(pixels(shape)).permute(0, 3, 1, 2).float() / 255
    mean = torch.tensor(config["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(config["std"]).view(1, 3, 1, 1)
    x = (x - mean) / std
    with torch.no_grad():
        features = model.forward_features(x).numpy()
    return Peer(path, path, _torch_run(model, x, torch), _nhwc(features),
                sum(p.numel() for p in model.parameters()))


PEERS = {"keras": keras_peer, "torchvision": torchvision_peer, "timm": timm_peer}

"""Where each weight of a zoo network is in a published checkpoint: one naming scheme per
implementation.

A scheme maps every zoo layer that has weights to the layer of the checkpoint that holds
them (`res2a_branch2a` -> `layer1.0.conv1` in torchvision, `conv2_block1_1_conv` in Keras),
says which layers are the classifier (absent from a "notop" file, ignored for
`include_top=False`) and which checkpoint entries carry nothing a zoo network uses (the
auxiliary heads of torchvision's GoogLeNet). The names are generated from the same
architecture data as the networks (stage tuples, VGG configs, Inception stages), so a scheme
cannot drift from the layers it describes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

from cnnzoo.models import inception, resnet, vgg


@dataclass(frozen=True)
class Scheme:
    name: str
    layout: str  # "torch" (state-dict keys, NCHW kernels) or "keras" (layer/weight, HWIO kernels)
    layers: Callable[[str], dict[str, str]]  # architecture name -> {zoo layer: checkpoint layer}
    head: tuple[str, ...]  # zoo layers of the classifier
    ignored: tuple[str, ...] = ()  # regexes of checkpoint keys that no zoo layer reads
    # zoo Dense layer -> (channels, height, width) of the map PyTorch flattened into it
    flattened: dict[str, tuple[int, int, int]] = field(default_factory=dict)


def _depth(arch: str) -> int:
    return int(re.match(r"resnet(\d+)", arch).group(1))


def _resnet_blocks(arch: str):
    """(stage, letter, index) of every block of the ResNet `arch`, as `_resnet` names them."""
    _, blocks = resnet.IMAGENET_DEPTHS[_depth(arch)]
    for stage, count in enumerate(blocks, start=2):
        for index, letter in enumerate(resnet.block_names(count)):
            yield stage, f"{stage}{letter}", index


def torchvision_resnet(arch: str) -> dict[str, str]:
    names = {"conv1": "conv1", "bn_conv1": "bn1", "fc1000": "fc"}
    for stage, block, index in _resnet_blocks(arch):
        module = f"layer{stage - 1}.{index}"
        for branch, number in (("2a", 1), ("2b", 2), ("2c", 3)):
            names[f"res{block}_branch{branch}"] = f"{module}.conv{number}"
            names[f"bn{block}_branch{branch}"] = f"{module}.bn{number}"
        names[f"res{block}_branch1"] = f"{module}.downsample.0"
        names[f"bn{block}_branch1"] = f"{module}.downsample.1"
    return names


def keras_resnet(arch: str) -> dict[str, str]:
    """keras.applications' current names (Keras >= 2.2.5): conv2_block1_1_conv, ..."""
    v2 = "v2" in arch
    names = {"conv1": "conv1_conv", "fc1000": "predictions"}
    names.update({"post_bn": "post_bn"} if v2 else {"bn_conv1": "conv1_bn"})
    for stage, block, index in _resnet_blocks(arch):
        keras_block = f"conv{stage}_block{index + 1}"
        for branch, number in (("2a", 1), ("2b", 2), ("2c", 3), ("1", 0)):
            names[f"res{block}_branch{branch}"] = f"{keras_block}_{number}_conv"
            names[f"bn{block}_branch{branch}"] = f"{keras_block}_{number}_bn"
        if v2:
            names[f"bn{block}_preact"] = f"{keras_block}_preact_bn"
    return names


def keras_resnet_legacy(arch: str) -> dict[str, str]:
    """Keras <= 2.2.4's names, the Caffe model's and cnnzoo's: res2a_branch2a, bn_conv1, fc1000."""
    return {zoo: zoo for zoo in torchvision_resnet(arch)}


def _vgg_config(arch: str) -> str:
    return "VGG" + re.match(r"vgg(\d+)", arch).group(1)


def keras_vgg(arch: str) -> dict[str, str]:
    names = {layer: layer for layer in ("fc1", "fc2", "predictions")}
    for stage, (_, convs) in enumerate(vgg.CONFIGS[_vgg_config(arch)], start=1):
        names.update({f"block{stage}_conv{c}": f"block{stage}_conv{c}" for c in range(1, convs + 1)})
    return names


def torchvision_vgg(arch: str) -> dict[str, str]:
    """`features.N` counts every module of torchvision's Sequential: conv, [BN,] ReLU, pool."""
    batch_norm = "_bn" in arch
    names, index = {"fc1": "classifier.0", "fc2": "classifier.3", "predictions": "classifier.6"}, 0
    for stage, (_, convs) in enumerate(vgg.CONFIGS[_vgg_config(arch)], start=1):
        for conv in range(1, convs + 1):
            names[f"block{stage}_conv{conv}"] = f"features.{index}"
            if batch_norm:
                names[f"block{stage}_conv{conv}_bn"] = f"features.{index + 1}"
            index += 3 if batch_norm else 2
        index += 1  # the max pool
    return names


def torchvision_alexnet(arch: str) -> dict[str, str]:
    return {"conv1": "features.0", "conv2": "features.3", "conv3": "features.6", "conv4": "features.8",
            "conv5": "features.10", "fc6": "classifier.1", "fc7": "classifier.4", "fc8": "classifier.6"}


def torchvision_googlenet(arch: str) -> dict[str, str]:
    names = {"predictions": "fc"}
    for ours, theirs in (("conv1_7x7_s2", "conv1"), ("conv2_3x3_reduce", "conv2"), ("conv2_3x3", "conv3")):
        names[ours], names[ours + "_bn"] = f"{theirs}.conv", f"{theirs}.bn"
    branches = {"1x1": "branch1", "3x3_reduce": "branch2.0", "3x3": "branch2.1", "5x5_reduce": "branch3.0",
                "5x5": "branch3.1", "pool_proj": "branch4.1"}
    for stage in inception.STAGES:
        if stage == "pool":
            continue
        module = stage[0]
        for ours, theirs in branches.items():
            names[f"inception_{module}_{ours}"] = f"inception{module}.{theirs}.conv"
            names[f"inception_{module}_{ours}_bn"] = f"inception{module}.{theirs}.bn"
    return names


SCHEMES = {scheme.name: scheme for scheme in (
    Scheme("torchvision_resnet", "torch", torchvision_resnet, head=("fc1000",)),
    Scheme("keras_resnet", "keras", keras_resnet, head=("fc1000",)),
    Scheme("keras_resnet_legacy", "keras", keras_resnet_legacy, head=("fc1000",)),
    Scheme("keras_vgg", "keras", keras_vgg, head=("fc1", "fc2", "predictions")),
    Scheme("torchvision_vgg", "torch", torchvision_vgg, head=("fc1", "fc2", "predictions"),
           flattened={"fc1": (512, 7, 7)}),
    Scheme("torchvision_alexnet", "torch", torchvision_alexnet, head=("fc6", "fc7", "fc8"),
           flattened={"fc6": (256, 6, 6)}),
    # The published file keeps the auxiliary classifiers it was trained with; cnnzoo's
    # googlenet_tv, like torchvision's model for inference, has none.
    Scheme("torchvision_googlenet", "torch", torchvision_googlenet, head=("predictions",),
           ignored=(r"^aux[12]\.",)),
)}

"""The supported (source, architecture) pairs: one table that drives the converter, the
equivalence tests (`tests/test_weights.py`, parametrised over it), `cnnzoo weights list` and
the table in docs/MODELS.md.

`peer` is the source library's own network, which the tests build with random weights and
compare against; `published` the file name(s) the source publishes for it; `preprocessing`
the input convention its weights were trained with (cnnzoo.models.weights.preprocessing);
`bn_epsilon` the batch-norm epsilon of the source's network, set on the zoo network's layers.
"""

from __future__ import annotations

from dataclasses import dataclass

from cnnzoo.errors import UserError

SOURCES = ("keras", "torchvision", "timm")


@dataclass(frozen=True)
class Pair:
    source: str
    arch: str  # the zoo network (a registered name)
    scheme: str  # cnnzoo.models.weights.schemes.SCHEMES
    peer: str
    published: str
    preprocessing: str
    bn_epsilon: float | None = None

    @property
    def id(self) -> str:
        generation = "-legacy" if self.scheme.endswith("_legacy") else ""
        return f"{self.source}-{self.arch}{generation}"


def _keras(arch, peer, published, preprocessing, scheme="keras_resnet", epsilon=1.001e-5):
    return Pair("keras", arch, scheme, f"keras.applications.{peer}", published, preprocessing, epsilon)


def _tv(arch, scheme, published, preprocessing="torch", epsilon=1e-5):
    peer = f"torchvision.models.{arch.removesuffix('_tv')}"
    return Pair("torchvision", arch, scheme, peer, published, preprocessing, epsilon)


def _timm(depth, tags):
    return Pair("timm", f"resnet{depth}_tv", "torchvision_resnet", f"timm.create_model('resnet{depth}')",
                ", ".join(f"timm/resnet{depth}.{tag}: model.safetensors" for tag in tags), "torch", 1e-5)


KERAS_FILE = "{}_weights_tf_dim_ordering_tf_kernels.h5 (and _notop.h5)"
PAIRS: tuple[Pair, ...] = (
    _keras("resnet50_keras", "ResNet50", KERAS_FILE.format("resnet50"), "caffe"),
    _keras("resnet50_keras", "ResNet50", KERAS_FILE.format("resnet50") + ", Keras <= 2.2.4's: res2a_branch2a, "
           "bn_conv1, fc1000", "caffe", scheme="keras_resnet_legacy"),
    _keras("resnet101", "ResNet101", KERAS_FILE.format("resnet101"), "caffe"),
    _keras("resnet152", "ResNet152", KERAS_FILE.format("resnet152"), "caffe"),
    _keras("resnet50v2_keras", "ResNet50V2", KERAS_FILE.format("resnet50v2"), "tf"),
    _keras("resnet101v2_keras", "ResNet101V2", KERAS_FILE.format("resnet101v2"), "tf"),
    _keras("resnet152v2_keras", "ResNet152V2", KERAS_FILE.format("resnet152v2"), "tf"),
    _keras("vgg16", "VGG16", KERAS_FILE.format("vgg16"), "caffe", scheme="keras_vgg", epsilon=None),
    _keras("vgg19", "VGG19", KERAS_FILE.format("vgg19"), "caffe", scheme="keras_vgg", epsilon=None),
    _tv("resnet18_tv", "torchvision_resnet", "resnet18-f37072fd.pth"),
    _tv("resnet34_tv", "torchvision_resnet", "resnet34-b627a593.pth"),
    _tv("resnet50_tv", "torchvision_resnet", "resnet50-0676ba61.pth (V1), resnet50-11ad3fa6.pth (V2)"),
    _tv("resnet101_tv", "torchvision_resnet", "resnet101-63fe2227.pth (V1), resnet101-cd907fc2.pth (V2)"),
    _tv("resnet152_tv", "torchvision_resnet", "resnet152-394f9c45.pth (V1), resnet152-f82ba261.pth (V2)"),
    _tv("vgg11_tv", "torchvision_vgg", "vgg11-8a719046.pth", epsilon=None),
    _tv("vgg11_bn_tv", "torchvision_vgg", "vgg11_bn-6002323d.pth"),
    _tv("vgg13_tv", "torchvision_vgg", "vgg13-19584684.pth", epsilon=None),
    _tv("vgg13_bn_tv", "torchvision_vgg", "vgg13_bn-abd245e5.pth"),
    _tv("vgg16_tv", "torchvision_vgg", "vgg16-397923af.pth", epsilon=None),
    _tv("vgg16_bn_tv", "torchvision_vgg", "vgg16_bn-6c64b313.pth"),
    _tv("vgg19_tv", "torchvision_vgg", "vgg19-dcbb9e9d.pth", epsilon=None),
    _tv("vgg19_bn_tv", "torchvision_vgg", "vgg19_bn-c79401a0.pth"),
    _tv("alexnet_tv", "torchvision_alexnet", "alexnet-owt-7be5be79.pth", epsilon=None),
    # Its published weights came with `transform_input=True`, which maps torchvision's mean/std
    # input to [-1, 1]: the convention that travels with them is [-1, 1].
    _tv("googlenet_tv", "torchvision_googlenet", "googlenet-1378be20.pth", preprocessing="tf", epsilon=1e-3),
    _timm(18, ("a1_in1k", "tv_in1k")),
    _timm(34, ("a1_in1k", "tv_in1k")),
    _timm(50, ("a1_in1k", "a1h_in1k", "tv2_in1k")),
    _timm(101, ("a1h_in1k", "tv2_in1k")),
    _timm(152, ("a1h_in1k", "tv2_in1k")),
)
# Which sources a file of each kind can come from (cnnzoo.models.weights.readers.kind_of).
SOURCES_OF_KIND = {"keras": ("keras",), "safetensors": ("timm",), "torch": ("torchvision", "timm")}


def list_pairs(source: str | None = None, arch: str | None = None) -> list[Pair]:
    return [p for p in PAIRS if (source is None or p.source == source) and (arch is None or p.arch == arch)]


def candidates(arch: str, kind: str, source: str | None) -> list[Pair]:
    """The pairs that can convert a file of `kind` into `arch` (optionally from `source`); a
    UserError in one sentence when there are none."""
    if source is not None and source not in SOURCES:
        raise UserError(f"Unknown weights source {source!r}: choose one of {', '.join(SOURCES)}.")
    if not list_pairs(arch=arch):
        supported = sorted({p.arch for p in PAIRS})
        raise UserError(f"cnnzoo converts no published weights into {arch!r}: choose one of {', '.join(supported)}.")
    sources = (source,) if source else SOURCES_OF_KIND[kind]
    found = [p for p in PAIRS if p.arch == arch and p.source in sources and p.source in SOURCES_OF_KIND[kind]]
    if not found:
        offered = ", ".join(sorted({p.source for p in list_pairs(arch=arch)}))
        raise UserError(f"A {kind} file cannot hold {source or 'published'} weights for {arch}: its weights "
                        f"come from {offered}.")
    return found


COLUMNS = ("source", "architecture", "peer network", "input convention", "parameters (as the source counts)",
           "published file")


def table_rows(source: str | None = None) -> list[tuple[str, ...]]:
    """One row per pair, for `cnnzoo weights list` and docs/MODELS.md (the same cells)."""
    from cnnzoo.models import model_info
    from cnnzoo.models.weights.preprocessing import DESCRIPTIONS

    rows = []
    for pair in list_pairs(source):
        generation = " (old names)" if pair.scheme.endswith("_legacy") else ""
        rows.append((pair.source, pair.arch + generation, pair.peer, f"{pair.preprocessing}: "
                     f"{DESCRIPTIONS[pair.preprocessing]}", f"{model_info(pair.arch).reference_params:,}",
                     pair.published))
    return rows


def markdown_table() -> str:
    """The pairs as the Markdown table in docs/MODELS.md."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "| " + " | ".join("---" for _ in COLUMNS) + " |"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in table_rows()]
    return "\n".join(lines)

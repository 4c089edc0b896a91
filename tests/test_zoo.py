"""The case-study zoo: every registered network builds, runs, saves, trains, and has the
published size; plain and residual twins differ only by their shortcuts.

Forward passes run at small inputs only; 224x224 models are built (for counts and
shapes) but never run in the default suite.
"""

import json
import os
import re
from pathlib import Path

import keras
import numpy as np
import pytest

from cnnzoo.errors import UserError
from cnnzoo.models import get_model, list_models, model_info
from cnnzoo.models.inception import aux_compile_args, drop_aux_heads
from cnnzoo.models.lenet import C3_TABLE, ConnectionTableConv2D, ScaledTanh, lenet5
from cnnzoo.models.resnet import plain, resnet

ZOO = ["lenet5", "lenet5_modern", "lenet5_paper", "alexnet", "vgg16", "vgg19", "resnet18", "resnet34", "resnet50",
       "resnet101", "resnet152", "resnet50v2", "resnet101v2", "resnet152v2", "plain18", "plain34",
       "googlenet"]
# The smallest input each network's pooling allows, where there is one (others work down to 1x1),
# as its registry entry states it.
MIN_SIZE = {name: model_info(name).min_input_size for name in list_models() if model_info(name).min_input_size > 1}


# Same builders as resnet50 / resnet50v2 / vgg16, only with more blocks: in the default suite
# they are built and their shapes checked; running them (seconds each on a CPU) is `slow`.
DEEPER = {"resnet101", "resnet152", "resnet101v2", "resnet152v2", "vgg19", "resnet110",
          # The peers' variants (for their weights) are run, logits and features, against the peers
          # themselves by tests/test_weights.py; here the deeper copies and the VGGs (whose adaptive
          # pool keeps fc1 at 102M weights at any input) are only built by default.
          "resnet34_tv", "resnet101_tv", "resnet152_tv", "resnet50_keras", "resnet101v2_keras", "resnet152v2_keras",
          *(f"vgg{d}{bn}_tv" for d in (11, 13, 16, 19) for bn in ("", "_bn"))}


def deeper_is_slow(names):
    return [pytest.param(n, marks=pytest.mark.slow) if n in DEEPER else n for n in names]


def as_json(config) -> str:
    return json.dumps(config, sort_keys=True, default=str)  # tuples and lists alike


def trainable(model) -> int:
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def small_input(name, size=64):
    """64x64 (or `size`), or the smallest supported input when that is larger; LeNet-5 reads
    one channel."""
    size = max(size, MIN_SIZE.get(name, 1))
    return (size, size, 1 if name.startswith("lenet") else 3)


def test_every_zoo_network_is_registered_with_its_facts():
    assert set(ZOO) <= set(list_models())
    for name in ZOO:
        info = model_info(name)
        assert info.paper and 1989 < info.year < 2020 and info.description
        assert info.classes == (10 if name.startswith("lenet") else 6 if name == "resnet50" else 1000)
        assert (info.reference_params is None) == name.startswith("plain")
    assert MIN_SIZE == {"lenet5": 32, "lenet5_modern": 32, "lenet5_paper": 32, "alexnet": 67, "vgg16": 32, "vgg19": 32, "resnet50": 5,
                        "happy": 2, "alexnet_tv": 63, "googlenet_tv": 15,
                        **{f"vgg{d}{bn}_tv": 32 for d in (11, 13, 16, 19) for bn in ("", "_bn")}}
    for name in list_models():  # every fact the registry states, for every network
        info = model_info(name)
        assert info.paper and info.description and info.input_shape == small_input(name, info.input_shape[0])
        assert info.residual == (name.startswith("resnet")), name
        assert info.aux_heads == (name == "googlenet"), name
        assert info.recipe.epochs >= 20 and info.recipe.lr > 0


# name, builder kwargs, expected total, expected trainable (None: not checked),
# {layer: output shape at that input}. Totals include BN's moving statistics, as Keras
# counts them; torchvision counts only trainable weights.
PAPER_SETTINGS = [
    ("lenet5", {}, 61_706, 61_706, {"c1": (28, 28, 6), "s4": (5, 5, 16), "c5": (1, 1, 120)}),
    ("lenet5_modern", {}, 61_706, None, {"s2": (14, 14, 6), "f6": (84,)}),
    # The paper's own count, Section II.B: "60,000 trainable parameters".
    ("lenet5_paper", {}, 60_000, 60_000, {"s2": (14, 14, 6), "c3": (10, 10, 16), "s4": (5, 5, 16), "f6": (84,),
                                          "rbf": (10,)}),
    ("alexnet", {}, 62_378_344, None, {"conv1": (55, 55, 96), "pool2": (13, 13, 256), "pool5": (6, 6, 256)}),
    ("alexnet", {"towers": 2}, 60_965_224, None, {"conv2": (27, 27, 256)}),  # the paper's two GPUs
    ("vgg16", {}, 138_357_544, None, {"block1_conv2": (224, 224, 64), "block5_pool": (7, 7, 512)}),
    ("vgg19", {}, 143_667_240, None, {"block5_conv4": (14, 14, 512), "fc2": (4096,)}),
    ("resnet18", {}, 11_699_112, 11_689_512, {"pool1": (56, 56, 64), "res5b_add": (7, 7, 512)}),
    ("resnet34", {}, 21_814_696, 21_797_672, {"res3d_relu": (28, 28, 128), "res5c_add": (7, 7, 512)}),
    ("resnet50", {"input_shape": (224, 224, 3), "classes": 1000}, 25_636_712, None,
     {"pool1": (55, 55, 64), "res5c_add": (7, 7, 2048)}),  # the course's stem: no pad before pool1
    ("resnet101", {}, 44_707_176, None, {"res2c_add": (56, 56, 256), "res4w_add": (14, 14, 1024)}),
    ("resnet152", {}, 60_419_944, None, {"res4b35_add": (14, 14, 1024), "res5c_add": (7, 7, 2048)}),
    ("resnet50v2", {}, 25_613_800, None, {"res3a_add": (28, 28, 512), "post_relu": (7, 7, 2048)}),
    ("resnet101v2", {}, 44_675_560, None, {"post_relu": (7, 7, 2048)}),
    ("resnet152v2", {}, 60_380_648, None, {"post_relu": (7, 7, 2048)}),
    # ResNet-18/34 less three projection shortcuts (1x1 conv + BN): 175,616 parameters.
    ("plain18", {}, 11_699_112 - 175_616, None, {"res5b_relu": (7, 7, 512)}),
    ("plain34", {}, 21_814_696 - 175_616, None, {"res5c_relu": (7, 7, 512)}),
    # The paper's CIFAR design (Section 4.2), option-A shortcuts: akamaster's trainable counts.
    ("resnet20", {}, 271_098, 269_722, {"conv1": (32, 32, 16), "res3a_add": (16, 16, 32), "res4c_add": (8, 8, 64)}),
    ("resnet56", {}, 857_082, 853_018, {"res4i_add": (8, 8, 64)}),
    ("resnet110", {}, 1_736_058, 1_727_962, {"res4r_add": (8, 8, 64)}),
    ("plain20", {}, 271_098, 269_722, {"res4c_relu": (8, 8, 64)}),  # no weights in option-A shortcuts
    ("plain56", {}, 857_082, 853_018, {"res4i_relu": (8, 8, 64)}),
    # torchvision's GoogLeNet has 3x3 kernels in the "5x5" branch (pytorch/vision#906):
    # with that layout ours has exactly its 6,624,904 trainable weights.
    ("googlenet", {"wide_kernel": 3}, 6_624_904 + 2 * 7_280, 6_624_904, {"inception_4e_output": (14, 14, 832)}),
    # The paper's 5x5 kernels add 16 weights per 5x5 filter input: 380,928 (+5.7%).
    ("googlenet", {}, 7_020_392, 6_624_904 + 380_928,
     {"conv1_7x7_s2": (112, 112, 64), "inception_3a_output": (28, 28, 256), "inception_5b_output": (7, 7, 1024)}),
]


@pytest.mark.jax
@pytest.mark.parametrize("name, kwargs, total, train, shapes", PAPER_SETTINGS,
                         ids=["-".join([p[0], *p[1]]) for p in PAPER_SETTINGS])
def test_parameter_counts_and_shapes_at_the_paper_input(name, kwargs, total, train, shapes):
    model = get_model(name, **kwargs)
    classes = kwargs.get("classes", model_info(name).classes)
    assert model.output_shape == (None, classes)
    if total is not None:
        assert model.count_params() == total
    if train is not None:
        assert trainable(model) == train
    for layer, shape in shapes.items():
        assert tuple(model.get_layer(layer).output.shape[1:]) == shape, layer
    reference = model_info(name).reference_params
    if name == "googlenet":  # the registry records torchvision's figure, for its layout
        assert reference == 6_624_904
    elif not kwargs and reference is not None:  # the registry's figure is what we reproduce
        assert reference in (model.count_params(), trainable(model))


def test_googlenet_is_within_one_percent_of_torchvision_in_its_layout():
    torchvision = 6_624_904
    assert abs(get_model("googlenet", wide_kernel=3).count_params() - torchvision) / torchvision < 0.01


# Feature maps at the small test input (64x64 or the smallest supported).
SMALL_SHAPES = {
    "alexnet": {"pool5": (1, 1, 256)},
    "vgg16": {"block5_pool": (2, 2, 512)},
    "resnet18": {"pool1": (16, 16, 64), "res5b_add": (2, 2, 512)},
    "resnet152": {"res5c_add": (2, 2, 2048)},
    "resnet50v2": {"post_relu": (2, 2, 2048)},
    "googlenet": {"inception_5b_output": (2, 2, 1024)},
    "lenet5": {"c5": (9, 9, 120), "flatten": (9720,)},
}


@pytest.mark.jax
@pytest.mark.parametrize("name", list_models())
def test_builds_and_predicts_at_a_small_input(name):
    shape = small_input(name)
    model = get_model(name, input_shape=shape, classes=3)
    assert model.output_shape == (None, 3)
    for layer, expected in SMALL_SHAPES.get(name, {}).items():
        assert tuple(model.get_layer(layer).output.shape[1:]) == expected, layer
    if name in DEEPER:
        return  # run in test_trains_one_epoch_on_real_hand_signs (slow)
    x = np.random.default_rng(0).uniform(size=(2, *shape)).astype("float32")
    y = keras.ops.convert_to_numpy(model(x, training=False))
    assert y.shape == (2, 3) and np.isfinite(y).all()
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("name", deeper_is_slow(list_models()))
def test_saves_loads_and_trains_one_step(name, tmp_path):
    """At 32x32 (or the smallest input): `.keras` round trip in safe mode, then one SGD step."""
    shape = small_input(name, size=32)
    model = get_model(name, input_shape=shape, classes=3)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)  # safe_mode: custom layers must be registered
    assert as_json(loaded.get_config()) == as_json(model.get_config())
    for ours, theirs in zip(model.weights, loaded.weights, strict=True):
        assert ours.path == theirs.path
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(ours), keras.ops.convert_to_numpy(theirs))
    x = np.random.default_rng(0).uniform(size=(2, *shape)).astype("float32")
    loaded.compile(optimizer=keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy")
    before = [keras.ops.convert_to_numpy(w).copy() for w in loaded.trainable_weights]
    history = loaded.fit(x, np.array([0, 2]), batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    after = [keras.ops.convert_to_numpy(w) for w in loaded.trainable_weights]
    assert any(not np.array_equal(b, a) for b, a in zip(before, after))


@pytest.mark.parametrize("name, size", sorted(MIN_SIZE.items()))
def test_too_small_inputs_are_refused_before_building(name, size):
    channels = 1 if name.startswith("lenet") else 3
    assert get_model(name, input_shape=(size, size, channels), classes=2).output_shape == (None, 2)
    with pytest.raises(UserError, match=f"smallest that works is {size}x{size}"):
        get_model(name, input_shape=(size - 1, size + 10, channels), classes=2)


def _without_shortcuts(model):
    """(name, type, output shape, parameters) of every layer that is not part of a shortcut."""
    return [(layer.name, type(layer).__name__, tuple(layer.output.shape), layer.count_params())
            for layer in model.layers if "branch1" not in layer.name and not layer.name.endswith("_add")]


@pytest.mark.jax
@pytest.mark.parametrize("depth, kwargs", [(18, {}), (34, {}), (50, {}), (20, {"layout": "cifar"})])
@pytest.mark.parametrize("shortcut", ["projection", "padding"])
def test_plain_and_residual_twins_differ_only_by_their_shortcuts(depth, kwargs, shortcut):
    size = {"input_shape": (32, 32, 3), "classes": 10}
    residual, twin = resnet(depth, shortcut=shortcut, **size, **kwargs), plain(depth, **size, **kwargs)
    assert _without_shortcuts(residual) == _without_shortcuts(twin)
    assert not [layer for layer in twin.layers if "branch1" in layer.name or layer.name.endswith("_add")]
    shortcut_params = sum(layer.count_params() for layer in residual.layers if "branch1" in layer.name)
    assert residual.count_params() == twin.count_params() + shortcut_params
    if shortcut == "padding":  # option A adds no parameters at all: a fair degradation study
        assert shortcut_params == 0
    # Same wiring: a block's last ReLU reads the sum in the residual net, the last BN in the plain one.
    last_bn = "bn3a_branch2c" if depth == 50 else "bn3a_branch2b"
    assert residual.get_layer("res3a_relu").input is residual.get_layer("res3a_add").output
    assert twin.get_layer("res3a_relu").input is twin.get_layer(last_bn).output


@pytest.mark.parametrize("name, blocks, branch_end", [
    ("resnet20", 9, "bn{}_branch2b"),  # basic blocks: the second BN
    ("resnet50", 16, "bn{}_branch2c"),  # the course's bottlenecks: the third BN
    ("resnet50v2", 16, "res{}_branch2c"),  # pre-activation: the last conv ends the branch
])
def test_zero_init_residual_starts_every_block_as_its_shortcut(name, blocks, branch_end):
    size = {"input_shape": (32, 32, 3), "classes": 6}
    model, default = get_model(name, zero_init_residual=True, **size), get_model(name, **size)
    ends = [layer for layer in model.layers if re.fullmatch(branch_end.format("[2-5][a-z0-9]+"), layer.name)]
    assert len(ends) == blocks
    for layer in ends:
        weight = layer.gamma if isinstance(layer, keras.layers.BatchNormalization) else layer.kernel
        assert not np.any(keras.ops.convert_to_numpy(weight))
        assert np.any(keras.ops.convert_to_numpy(default.get_layer(layer.name).weights[0]))
    # Nothing else changes: the other scales start at one, and the count is the same.
    assert all(np.all(keras.ops.convert_to_numpy(layer.gamma) == 1) for layer in model.layers
               if isinstance(layer, keras.layers.BatchNormalization) and layer not in ends)
    assert model.count_params() == default.count_params()
    # Block 3b keeps its input's shape, so it now passes the input through: v1 adds zero and
    # applies a ReLU to 3a's output (already >= 0), v2 adds zero and nothing else.
    end = "_add" if name == "resnet50v2" else "_relu"
    probe = keras.Model(model.inputs[0], [model.get_layer(f"res3a{end}").output, model.get_layer(f"res3b{end}").output])
    block_input, block_output = probe(np.random.default_rng(0).random((2, 32, 32, 3), "float32"))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(block_output), keras.ops.convert_to_numpy(block_input))


def test_vgg_convolutions_start_he_normal_as_torchvision_unless_told_otherwise():
    size = {"input_shape": (32, 32, 3), "classes": 6}
    std = lambda model: float(np.std(keras.ops.convert_to_numpy(model.get_layer("block3_conv2").kernel)))
    fan = 3 * 3 * 256  # block3_conv2: 3x3, 256 channels in and out
    assert std(get_model("vgg16", **size)) == pytest.approx(np.sqrt(2 / fan), rel=0.03)  # He, fan-out
    glorot = get_model("vgg19", kernel_initializer="glorot_uniform", **size)  # Keras applications' default
    assert std(glorot) == pytest.approx(np.sqrt(2 / (fan + fan)), rel=0.03)


def test_registered_plain_nets_equal_option_a_resnets_in_size():
    assert get_model("plain34").count_params() == resnet(34, shortcut="padding").count_params()
    assert get_model("plain18").name == "Plain18" and get_model("resnet34", shortcut="padding").name == "ResNet34"


def test_cifar_layout_has_the_papers_sizes():
    # Section 4.2, Table 6: ResNet-20 0.27M and ResNet-56 0.85M parameters (option A).
    for depth, millions in ((20, 0.27), (56, 0.85)):
        model = resnet(depth, layout="cifar", shortcut="padding", input_shape=(32, 32, 3), classes=10)
        assert round(trainable(model) / 1e6, 2) == millions
        assert model.get_layer("conv1").output.shape[1:] == (32, 32, 16)
    assert tuple(model.get_layer("res4i_relu").output.shape[1:]) == (8, 8, 64)


@pytest.mark.parametrize("call, message", [
    (lambda: resnet(19), "depth must be one of 18, 34, 50, 101, 152"),
    (lambda: resnet(21, layout="cifar"), "6n\\+2"),
    (lambda: resnet(18, version=2), "version 2 is built for the bottleneck depths"),
    (lambda: resnet(50, shortcut="identity"), "shortcut must be"),
    (lambda: resnet(50, layout="mobile"), "layout must be"),
    (lambda: lenet5(variant="fancy"), "variant must be 'classic', 'modern' or 'paper'"),
    (lambda: get_model("alexnet", towers=3), "towers must be 1 or 2"),
    (lambda: get_model("googlenet", wide_kernel=7), "wide_kernel must be 5"),
    (lambda: get_model("googlenet", aux_logits=True, input_shape=(64, 64, 3)), "smallest that works is 65x65"),
    (lambda: get_model("vgg16", classes=0), "classes must be a positive integer"),
    (lambda: get_model("resnet18", pooling="sum", include_top=False), "pooling must be"),
    (lambda: get_model("plain20", zero_init_residual=True), "a plain network has none"),
])
def test_bad_arguments_are_one_clear_sentence(call, message):
    with pytest.raises(UserError, match=message):
        call()


@pytest.mark.jax
def test_lenet5_classic_and_modern_variants():
    classic, modern = get_model("lenet5"), get_model("lenet5_modern")
    assert type(classic.get_layer("s2")).__name__ == "AveragePooling2D"
    assert type(modern.get_layer("s2")).__name__ == "MaxPooling2D"
    assert classic.get_layer("c1").activation.__name__ == "tanh"
    assert modern.get_layer("c3").activation.__name__ == "relu"


@pytest.mark.jax
def test_lenet5_paper_has_the_papers_layers_and_their_parameters():
    """Section II.B's figures, layer by layer; the input scaled so the background is -0.1 and
    the ink 1.175 (Appendix A); f(a) = 1.7159 tanh(2a/3), so f(1) = 1."""
    model = get_model("lenet5_paper")
    params = {name: model.get_layer(name).count_params() for name in ("c1", "s2_scale", "c3", "s4_scale", "c5", "f6")}
    assert params == {"c1": 156, "s2_scale": 12, "c3": 1_516, "s4_scale": 32, "c5": 48_120, "f6": 10_164}
    assert model.get_layer("rbf").count_params() == 0  # the codes are fixed, not trained
    normalize = model.get_layer("normalize")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(normalize(np.array([[0.0, 1.0]]))), [[-0.1, 1.175]], atol=1e-6)
    squash = keras.ops.convert_to_numpy(ScaledTanh()(np.array([-1.0, 0.0, 1.0, 50.0])))
    np.testing.assert_allclose(squash, [-1.0, 0.0, 1.0, 1.7159], atol=2e-4)


def test_c3_reads_only_the_maps_of_table_one():
    """Each C3 map changes when, and only when, an S2 map of its column of Table I changes; and
    the layer equals a dense convolution whose missing connections are zero."""
    layer = ConnectionTableConv2D(5, C3_TABLE)
    x = np.random.default_rng(0).normal(size=(1, 14, 14, 6)).astype("float32")
    y = keras.ops.convert_to_numpy(layer(x))
    for i in range(6):
        nudged = x.copy()
        nudged[..., i] += 1.0
        changed = np.abs(keras.ops.convert_to_numpy(layer(nudged)) - y).max(axis=(0, 1, 2)) > 1e-6
        assert set(np.flatnonzero(changed)) == {j for j, maps in enumerate(C3_TABLE) if i in maps}, i
    kernel = keras.ops.convert_to_numpy(layer.kernel)
    dense = np.zeros((5, 5, 6, 16), "float32")
    connection = 0
    for j, maps in enumerate(C3_TABLE):
        for i in maps:
            dense[:, :, i, j] = kernel[:, :, connection]
            connection += 1
    assert connection == 60 and kernel.shape == (5, 5, 60)
    layer.bias.assign(np.arange(16, dtype="float32"))
    reference = keras.layers.Conv2D(16, 5)
    reference.build(x.shape)
    reference.set_weights([dense, np.arange(16, dtype="float32")])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), keras.ops.convert_to_numpy(reference(x)),
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="beyond the input's 6"):
        ConnectionTableConv2D(5, [(0, 6)])(x)


def test_lenet5_paper_outputs_are_the_softmax_of_minus_the_rbf_distances(tmp_path):
    """The output units' answer is the class whose +-1 code is nearest F6's 84 outputs, and a
    saved model rebuilds the same codes (they are not weights)."""
    model = get_model("lenet5_paper")
    x = np.random.default_rng(1).uniform(size=(3, 32, 32, 1)).astype("float32")
    f6 = keras.ops.convert_to_numpy(keras.Model(model.input, model.get_layer("f6_tanh").output)(x))
    codes = model.get_layer("rbf")._codes
    assert codes.shape == (10, 84) and set(np.unique(codes)) == {-1.0, 1.0} and len(np.unique(codes, axis=0)) == 10
    distances = ((f6[:, None, :] - codes[None]) ** 2).sum(-1)
    rbf = keras.Model(model.input, model.get_layer("rbf").output)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(rbf(x)), 84 - distances, rtol=1e-5, atol=1e-4)
    expected = np.exp(-(distances - distances.min(1, keepdims=True)))
    expected /= expected.sum(1, keepdims=True)
    predicted = keras.ops.convert_to_numpy(model(x))
    np.testing.assert_allclose(predicted, expected, rtol=1e-4, atol=1e-6)
    model.save(tmp_path / "paper.keras")
    loaded = keras.saving.load_model(tmp_path / "paper.keras")
    np.testing.assert_array_equal(loaded.get_layer("rbf")._codes, codes)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x)), predicted, rtol=1e-6)


@pytest.mark.jax
def test_alexnet_lrn_and_dropout_are_optional_layers():
    with_lrn, without = get_model("alexnet"), get_model("alexnet", lrn=False)
    assert [layer.name for layer in with_lrn.layers if "norm" in layer.name] == ["norm1", "norm2"]
    assert not [layer for layer in without.layers if "norm" in layer.name]
    assert with_lrn.count_params() == without.count_params()
    assert with_lrn.get_layer("drop6").rate == 0.5


def test_backbones_for_transfer_learning():
    for name in ("alexnet", "vgg16", "resnet18", "resnet50v2", "googlenet", "lenet5"):
        shape = small_input(name)
        model = get_model(name, input_shape=shape, include_top=False, pooling="avg")
        assert len(model.output_shape) == 2, name
        assert get_model(name, input_shape=shape, include_top=False).output_shape[1:3] != (None, None)


def test_googlenet_auxiliary_heads_train_with_weighted_losses_and_drop_for_inference():
    model = get_model("googlenet", input_shape=(65, 65, 3), classes=4, aux_logits=True)
    assert [tuple(o.shape) for o in model.outputs] == [(None, 4)] * 3
    assert model.output_names == ["predictions", "aux1", "aux2"]
    rng = np.random.default_rng(0)
    x, y = rng.uniform(size=(2, 65, 65, 3)).astype("float32"), np.array([1, 3])
    model.compile(optimizer="adam", **aux_compile_args("sparse_categorical_crossentropy"))
    history = model.fit(x, (y, y, y), epochs=1, verbose=0)
    losses = history.history
    assert np.isclose(losses["loss"][0], losses["predictions_loss"][0]
                      + 0.3 * (losses["aux1_loss"][0] + losses["aux2_loss"][0]), rtol=1e-3)
    inference = drop_aux_heads(model)
    assert len(inference.outputs) == 1 and inference.count_params() == get_model(
        "googlenet", input_shape=(65, 65, 3), classes=4).count_params()
    np.testing.assert_allclose(keras.ops.convert_to_numpy(inference.predict(x, verbose=0)),
                               keras.ops.convert_to_numpy(model.predict(x, verbose=0)[0]), rtol=1e-5)
    assert drop_aux_heads(inference) is inference
    # The registered model is single-output: a plain fit with one-hot labels works.
    plain_model = get_model("googlenet", input_shape=(32, 32, 3), classes=4)
    plain_model.compile(optimizer="adam", loss="categorical_crossentropy")
    history = plain_model.fit(x[:, :32, :32], keras.utils.to_categorical(y, 4), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


@pytest.mark.jax
def test_channels_first():
    keras.config.set_image_data_format("channels_first")
    try:
        model = resnet(18, shortcut="padding", input_shape=(3, 32, 32), classes=5)
        assert model.get_layer("res3a_branch1_pad").output.shape[1:] == (128, 4, 4)
        alex = get_model("alexnet", input_shape=(3, 67, 67), classes=5)
        google = get_model("googlenet", input_shape=(3, 32, 32), classes=5)
        x = np.random.default_rng(0).uniform(size=(2, 3, 67, 67)).astype("float32")
        for net, data in ((model, x[:, :, :32, :32]), (alex, x), (google, x[:, :, :32, :32])):
            assert np.isfinite(keras.ops.convert_to_numpy(net.predict(data, verbose=0))).all()
        paper_first = get_model("lenet5_paper", input_shape=(1, 32, 32))
    finally:
        keras.config.set_image_data_format("channels_last")
    paper_last = get_model("lenet5_paper")  # the same weights give the same answers in either layout
    paper_last.set_weights(paper_first.get_weights())
    digits = x[:, :1, :32, :32]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(paper_first(digits)),
                               keras.ops.convert_to_numpy(paper_last(digits.transpose(0, 2, 3, 1))), rtol=1e-4, atol=1e-6)


# --- One epoch on real images: the builders are trainable, not just constructible --------

MIRROR = Path(os.environ.get("CNNZOO_DATA_MIRROR") or Path(__file__).resolve().parents[2] / "shared" / "data")


@pytest.fixture(scope="module")
def signs(tmp_path_factory):
    if not (MIRROR / "sign-language-digits.zip").exists():
        pytest.skip(f"the sign-language-digits archive is not in {MIRROR}")
    os.environ.setdefault("CNNZOO_DATA_MIRROR", str(MIRROR))
    from cnnzoo.datasets import load

    return {channels: load("signs", channels=channels, progress=False) for channels in (1, 3)}


@pytest.mark.slow
@pytest.mark.parametrize("name", ZOO)
def test_trains_one_epoch_on_real_hand_signs(name, signs):
    """256 SIGNS training images at the network's small input, one epoch of Adam."""
    shape = small_input(name)
    data = signs[shape[-1]]
    x = keras.ops.convert_to_numpy(
        keras.ops.image.resize(data.train.x[:256].astype("float32") / 255.0, shape[:2]))
    y = data.train.y[:256]
    classes = int(data.num_classes)
    model = get_model(name, input_shape=shape, classes=classes)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    before = [keras.ops.convert_to_numpy(w).copy() for w in model.trainable_weights]
    history = model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    unchanged = [w.path for w, b in zip(model.trainable_weights, before)
                 if np.array_equal(b, keras.ops.convert_to_numpy(w))]
    assert not unchanged, f"no gradient reached {unchanged[:5]}"
    assert history.history["loss"][0] < 3 * np.log(classes)  # not diverging

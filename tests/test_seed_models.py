"""HappyModel and the course's ResNet-50 match SPEC §1-2 exactly: names, shapes, counts."""

import keras
import numpy as np
import pytest

from cnnzoo import HappyModel, ResNet50, convolutional_block, identity_block
from cnnzoo.errors import UserError

pytestmark = pytest.mark.jax


def counts(model):
    size = lambda weights: sum(int(np.prod(w.shape)) for w in weights)  # noqa: E731
    return model.count_params(), size(model.trainable_weights), size(model.non_trainable_weights)


def layer_table(model):
    return [(layer.name, tuple(layer.output.shape[1:]), layer.count_params()) for layer in model.layers]


def test_happy_model_layers_shapes_and_counts():
    model = HappyModel(input_shape=(64, 64, 3))
    assert layer_table(model) == [
        ("input", (64, 64, 3), 0),
        ("zero_pad", (70, 70, 3), 0),
        ("conv0", (64, 64, 32), 4_736),
        ("bn0", (64, 64, 32), 128),
        ("relu0", (64, 64, 32), 0),
        ("max_pool", (32, 32, 32), 0),
        ("flatten", (32768,), 0),
        ("fc", (1,), 32_769),
    ]
    assert counts(model) == (37_633, 37_569, 64)
    assert model.get_layer("fc").activation.__name__ == "sigmoid"
    assert model.get_layer("conv0").kernel_size == (7, 7)
    assert model.get_layer("conv0").strides == (1, 1)
    assert model.get_layer("bn0").axis in (-1, 3)


def test_happy_model_predicts_probabilities():
    model = HappyModel()
    p = model.predict(np.random.default_rng(0).random((4, 64, 64, 3), dtype="float32"), verbose=0)
    assert p.shape == (4, 1)
    assert np.all((p >= 0) & (p <= 1))


def _block_model(block, **kwargs):
    inputs = keras.Input((4, 4, 6))
    return keras.Model(inputs, block(inputs, f=2, filters=[2, 4, 6], stage=1, block="a", **kwargs))


def test_identity_block_keeps_shape_and_is_non_negative():
    model = _block_model(identity_block)
    x = np.random.default_rng(1).normal(size=(3, 4, 4, 6)).astype("float32")
    out = keras.ops.convert_to_numpy(model(x, training=False))
    assert out.shape == (3, 4, 4, 6)
    assert out.min() >= 0
    assert [layer.name for layer in model.layers if isinstance(layer, keras.layers.Conv2D)] == [
        "res1a_branch2a", "res1a_branch2b", "res1a_branch2c"
    ]
    assert model.get_layer("res1a_branch2b").kernel_size == (2, 2)
    assert model.get_layer("res1a_branch2b").padding == "same"
    assert model.get_layer("res1a_branch2a").padding == "valid"


def test_convolutional_block_strides_and_projects_the_shortcut():
    model = _block_model(convolutional_block, s=2)
    x = np.random.default_rng(1).normal(size=(3, 4, 4, 6)).astype("float32")
    out = keras.ops.convert_to_numpy(model(x, training=False))
    assert out.shape == (3, 2, 2, 6)
    assert out.min() >= 0
    assert model.get_layer("res1a_branch1").strides == (2, 2)
    assert model.get_layer("res1a_branch2a").strides == (2, 2)
    assert model.get_layer("bn1a_branch1") is not None
    # Every block conv starts from glorot-uniform(seed 0), as in the course.
    kernel = model.get_layer("res1a_branch2c").kernel
    expected = keras.initializers.GlorotUniform(seed=0)(kernel.shape)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(kernel), keras.ops.convert_to_numpy(expected))


def _expected_resnet50_layers():
    """Names and output shapes at 64x64x3 / 6 classes, written out from SPEC §2."""
    rows = [
        ("input", (64, 64, 3)), ("conv1_pad", (70, 70, 3)), ("conv1", (32, 32, 64)),
        ("bn_conv1", (32, 32, 64)), ("conv1_relu", (32, 32, 64)), ("pool1", (15, 15, 64)),
    ]
    size = 15
    stages = [(2, [64, 64, 256], "abc", 1), (3, [128, 128, 512], "abcd", 2),
              (4, [256, 256, 1024], "abcdef", 2), (5, [512, 512, 2048], "abc", 2)]
    for stage, (f1, f2, f3), blocks, stride in stages:
        out = (size - 1) // stride + 1
        for block in blocks:
            r, b = f"res{stage}{block}_branch", f"bn{stage}{block}_branch"
            first = block == "a"
            if first:
                rows += [(r + "1", (out, out, f3)), (b + "1", (out, out, f3))]
            rows += [(r + "2a", (out, out, f1)), (b + "2a", (out, out, f1)), (r + "2a_relu", (out, out, f1)),
                     (r + "2b", (out, out, f2)), (b + "2b", (out, out, f2)), (r + "2b_relu", (out, out, f2)),
                     (r + "2c", (out, out, f3)), (b + "2c", (out, out, f3)),
                     (f"res{stage}{block}_add", (out, out, f3)), (f"res{stage}{block}_relu", (out, out, f3))]
        size = out
    return rows + [("avg_pool", (1, 1, 2048)), ("flatten", (2048,)), ("fc6", (6,))]


def test_resnet50_every_layer_name_and_shape():
    model = ResNet50(input_shape=(64, 64, 3), classes=6)
    actual = {name: shape for name, shape, _ in layer_table(model)}
    expected = _expected_resnet50_layers()
    assert sorted(actual) == sorted(name for name, _ in expected)
    assert {name: actual[name] for name, _ in expected} == dict(expected)
    # stage boundaries of SPEC §2
    assert actual["res2c_relu"] == (15, 15, 256)
    assert actual["res3d_relu"] == (8, 8, 512)
    assert actual["res4f_relu"] == (4, 4, 1024)
    assert actual["res5c_relu"] == (2, 2, 2048)


def test_resnet50_parameter_counts():
    assert counts(ResNet50(input_shape=(64, 64, 3), classes=6)) == (23_600_006, 23_546_886, 53_120)
    assert ResNet50(input_shape=(224, 224, 3), classes=1000).count_params() == 25_636_712


@pytest.mark.parametrize("size", [96, 224, 5])
def test_resnet50_builds_for_other_input_sizes(size):
    model = ResNet50(input_shape=(size, size, 3), classes=6)
    assert tuple(model.output.shape) == (None, 6)
    assert tuple(model.get_layer("avg_pool").output.shape) == (None, 1, 1, 2048)


def test_resnet50_forward_pass_gives_probability_vectors():
    model = ResNet50()
    x = np.random.default_rng(0).random((2, 64, 64, 3), dtype="float32")
    p = model.predict(x, verbose=0)
    assert p.shape == (2, 6)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)


def test_backbones_for_transfer_learning():
    assert tuple(ResNet50(include_top=False).output.shape) == (None, 2, 2, 2048)
    assert tuple(ResNet50(include_top=False, pooling="avg").output.shape) == (None, 2048)
    assert tuple(HappyModel(include_top=False, pooling="max").output.shape) == (None, 32)


def test_channels_first_moves_the_channel_axis():
    previous = keras.config.image_data_format()
    keras.config.set_image_data_format("channels_first")
    try:
        happy = HappyModel(input_shape=(3, 64, 64))
        resnet = ResNet50(input_shape=(3, 64, 64), classes=6)
    finally:
        keras.config.set_image_data_format(previous)
    assert happy.get_layer("bn0").axis == 1
    assert tuple(happy.get_layer("max_pool").output.shape) == (None, 32, 32, 32)
    assert happy.count_params() == 37_633
    assert resnet.get_layer("bn2a_branch2c").axis == 1
    assert counts(resnet) == (23_600_006, 23_546_886, 53_120)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_shape": (4, 4, 3)}, "the smallest that works is 5x5. Received: input_shape=(4, 4, 3)"),
        ({"input_shape": (64, 64)}, "input_shape must be three positive integers"),
        ({"input_shape": (64, 0, 3)}, "input_shape must be three positive integers"),
        ({"classes": 0}, "classes must be a positive integer. Received: classes=0"),
        ({"include_top": False, "pooling": "mean"}, "pooling must be None, 'avg' or 'max'"),
    ],
)
def test_resnet50_rejects_bad_arguments_before_building(kwargs, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ResNet50(**kwargs)


def test_happy_model_too_small_input():
    with pytest.raises(UserError, match="smallest that works is 2x2"):
        HappyModel(input_shape=(1, 1, 3))

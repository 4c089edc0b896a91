"""Parameters and multiply-accumulates: the counting rules, the lecture's figures, the CLI."""

import keras
import pytest
from keras import layers
from typer.testing import CliRunner

from cnnzoo.analysis.cost import bottleneck_example, layer_costs, total_macs
from cnnzoo.cli import app
from cnnzoo.models import get_model
from cnnzoo.models.layers import LocalResponseNormalization
from cnnzoo.models.resnet import resnet

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, list(args), env={"COLUMNS": "160"})


def test_bottleneck_example_is_exactly_the_lecture():
    macs = {title: total_macs(model) for title, model in bottleneck_example().items()}
    assert macs == {"5x5 conv": 28 * 28 * 32 * 5 * 5 * 192, "1x1 then 5x5": 28 * 28 * 16 * 192 + 28 * 28 * 32 * 5 * 5 * 16}
    assert macs == {"5x5 conv": 120_422_400, "1x1 then 5x5": 12_443_648}


def _costs(shape, *stack):
    inputs = keras.Input(shape)
    x = inputs
    for layer in stack:
        x = layer(x)
    return {row.name: row for row in layer_costs(keras.Model(inputs, x))}


def test_counting_rules_layer_by_layer():
    rows = _costs(
        (8, 8, 4),
        layers.Conv2D(6, 3, padding="same", name="conv"),  # 8*8*6 * 3*3*4
        layers.Conv2D(6, 3, groups=2, name="grouped"),  # 6*6*6 * 3*3*6/2
        layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="dw"),  # 6*6*12 * 9
        layers.SeparableConv2D(5, 1, name="sep"),  # 6*6*12*1 + 6*6*12*5
        layers.BatchNormalization(name="bn"),  # 6*6*5
        layers.AveragePooling2D(2, name="avg"),  # 3*3*5 * 4
        layers.MaxPooling2D(1, name="max"),  # 0
        LocalResponseNormalization(size=3, name="lrn"),  # 3*3*5 * 3
        layers.GlobalAveragePooling2D(name="gap"),  # 3*3*5
        layers.Dense(7, name="fc"),  # 5*7
        layers.Dropout(0.5, name="drop"),
    )
    expected = {"conv": 8 * 8 * 6 * 36, "grouped": 6 * 6 * 6 * 27, "dw": 6 * 6 * 12 * 9,
                "sep": 6 * 6 * 12 * 6, "bn": 180, "avg": 180, "max": 0, "lrn": 135, "gap": 45,
                "fc": 35, "drop": 0}
    assert {name: row.macs for name, row in rows.items()} == expected
    assert rows["conv"].params == 6 * 36 + 6 and rows["conv"].output_shape == (8, 8, 6)
    assert rows["bn"].type == "BatchNormalization" and rows["bn"].params == 20


def test_lenet5_paper_connections_are_the_papers():
    """Section II.B counts connections, biases included: C1 122,304, C3 151,600 (its sparse
    table), C5 48,120, F6 10,164; the RBF units compare 84 values with 10 codes."""
    rows = {row.name: row for row in layer_costs(get_model("lenet5_paper"))}
    biases = {"c1": 28 * 28 * 6, "c3": 10 * 10 * 16, "c5": 120, "f6": 84}
    assert {name: rows[name].macs + biases[name] for name in biases} == {"c1": 122_304, "c3": 151_600, "c5": 48_120,
                                                                        "f6": 10_164}
    assert rows["rbf"].macs == 840


def test_merges_shared_layers_and_nested_models():
    inputs = keras.Input((4, 4, 2))
    shared = layers.Conv2D(3, 1, name="shared")
    a, b = shared(inputs), shared(inputs)
    product = layers.Multiply(name="mul")([a, b])
    total = layers.Add(name="add")([a, product])
    inner = keras.Model(inputs, total, name="inner")
    outer_in = keras.Input((4, 4, 2))
    outer = keras.Model(outer_in, layers.Flatten(name="flat")(inner(outer_in)))
    rows = {row.name: row.macs for row in layer_costs(outer)}
    assert rows == {"inner/shared": 2 * 16 * 3 * 2, "inner/mul": 48, "inner/add": 0, "flat": 0}


@pytest.mark.parametrize("build, low, high", [
    # ResNet-50 v1 in Keras' layout: 3.87 G (the paper's Table 1 says 3.8e9 "FLOPs", i.e. MACs;
    # torchvision's 4.09 G puts the stride on the 3x3 conv, "v1.5").
    (lambda: resnet(50), 3.85e9, 4.1e9),
    # the course's ResNet-50 at 224: no padding before pool1, so stage 2 is 55x55 -> 3.84 G.
    (lambda: get_model("resnet50", input_shape=(224, 224, 3), classes=1000), 3.8e9, 3.9e9),
    (lambda: get_model("vgg16"), 15.4e9, 15.6e9),  # 15.47 G
    (lambda: get_model("googlenet"), 1.5e9, 1.6e9),  # 1.59 G with the paper's 5x5 branches
    (lambda: get_model("googlenet", wide_kernel=3), 1.49e9, 1.51e9),  # torchvision's 1.50 G
])
def test_reference_totals_at_224(build, low, high):
    assert low <= total_macs(build()) <= high


def test_cli_bottleneck_example():
    result = invoke("cost", "--example", "bottleneck")
    assert result.exit_code == 0, result.output
    for text in ("120,422,400", "12,443,648", "bottleneck_1x1", "28x28x16", "10.3%"):
        assert text in result.stdout


def test_cli_cost_of_a_model_layer_by_layer_and_totals():
    result = invoke("cost", "lenet5")
    assert result.exit_code == 0, result.output
    assert "c1" in result.stdout and "28x28x6" in result.stdout and "117,600" in result.stdout
    assert "61,706 parameters, 422,824 multiply-accumulates" in result.stdout
    totals = invoke("cost", "resnet50", "--input-shape", "224,224,3", "--classes", "1000", "--totals")
    assert totals.exit_code == 0, totals.output
    assert "25,636,712 parameters, 3,844,862,336 multiply-accumulates (3.84 GMACs)" in totals.stdout
    assert "res2a_branch2a" not in totals.stdout


@pytest.mark.parametrize("args, message", [
    (["cost"], "Name a model"),
    (["cost", "--example", "fancy"], "Unknown example 'fancy'"),
    (["cost", "lenet5", "--example", "bottleneck"], "either a model or --example"),
    (["cost", "nonet"], "Unknown model 'nonet'"),
    (["cost", "vgg16", "--input-shape", "16,16,3"], "smallest that works is 32x32"),
])
def test_cli_cost_user_errors_exit_2(args, message):
    result = invoke(*args)
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


def test_models_table_has_a_gmacs_column():
    result = invoke("models", "lenet5*")
    assert result.exit_code == 0, result.output
    assert "GMACs" in result.stdout
    rows = [line for line in result.stdout.splitlines() if line.startswith("│ lenet5")]
    assert len(rows) == 3 and all(("60,000" if "paper" in row else "61,706") in row and "0.000" in row for row in rows)

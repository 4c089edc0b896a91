"""Every numeric option of every command, given a value out of its range (zero, negative,
nan, inf, too large), ends in one sentence and exit code 2 before anything is loaded or
written; only an omitted option means "the default"."""

import pytest
import typer
from typer.testing import CliRunner

from cnnzoo.cli import app

runner = CliRunner()

# (command, option, a bad value, what the sentence says); a run folder must not appear.
TRAIN = ["train", "happy", "--dataset", "signs"]
MODEL = "MODEL_FILE"  # replaced by a real run folder for the commands that take one
BAD = [
    (TRAIN, "--epochs", "0", "epochs must be a whole number of at least 1. Received: epochs=0"),
    (TRAIN, "--epochs", "-2", "epochs must be a whole number of at least 1. Received: epochs=-2"),
    (TRAIN, "--batch-size", "0", "batch_size must be a whole number of at least 1. Received: batch_size=0"),
    (TRAIN, "--batch-size", "-4", "batch_size must be a whole number of at least 1"),
    (TRAIN, "--lr", "-1", "lr must be above 0. Received: lr=-1.0"),
    (TRAIN, "--lr", "0", "lr must be above 0. Received: lr=0.0"),
    (TRAIN, "--lr", "nan", "lr must be above 0. Received: lr=nan"),
    (TRAIN, "--lr", "inf", "lr must be above 0. Received: lr=inf"),
    (TRAIN, "--warmup", "-1", "warmup must be at least 0. Received: warmup=-1.0"),
    (TRAIN, "--weight-decay", "-0.1", "weight_decay must be at least 0"),
    (TRAIN, "--bn-momentum", "1.5", "bn_momentum must be at least 0 and below 1. Received: bn_momentum=1.5"),
    (TRAIN, "--seed", "-1", "seed must be a whole number of at least 0. Received: seed=-1"),
    (TRAIN, "--validation", "1", "validation must be at least 0 and below 1. Received: validation=1.0"),
    (TRAIN, "--image-size", "0", "image_size must be at least 1 and at most 4096. Received: image_size=0"),
    (TRAIN, "--image-size", "5000", "image_size must be at least 1 and at most 4096"),
    (TRAIN, "--train-fraction", "0", "train_fraction must be in (0, 1]"),
    (TRAIN, "--robustness-images", "-1", "robustness_images must be a whole number of at least 0"),
    (TRAIN, "--max-megapixels", "nan", "max_megapixels must be above 0. Received: max_megapixels=nan"),
    (TRAIN, "--seeds", "0", "--seeds must be at least 1, not 0."),
    (TRAIN, "--num-processes", "0", "--num-processes must be at least 1. Received: --num-processes 0"),
    (TRAIN + ["--num-processes", "2"], "--process-id", "2", "--process-id must be between 0 and 1"),
    (TRAIN, "--process-id", "-1", "--process-id must be at least 0"),
    (["evaluate", MODEL], "--max-megapixels", "0", "--max-megapixels must be a positive number."),
    (["predict", MODEL, "x.png"], "--max-megapixels", "-1", "--max-megapixels must be a positive number."),
    (["serve", MODEL], "--port", "0", "The port must be between 1 and 65535. Received: --port 0"),
    (["serve", MODEL], "--threshold", "1.5", "The threshold must be between 0 and 1. Received: threshold=1.5"),
    (["serve", MODEL], "--max-mb", "nan", "--max-mb must be a positive number. Received: --max-mb nan"),
    (["serve", MODEL], "--max-megapixels", "nan", "--max-megapixels must be a positive number."),
    (["serve", MODEL], "--threads", "0", "--threads must be at least 1. Received: --threads 0"),
    (["export", "happy", "-o", "m.onnx"], "--classes", "0", "HappyModel: classes must be a positive integer."),
    (["features", MODEL, "x.png", "-o", "f.png"], "--channels", "0", "--channels must be between 1 and 64."),
    (["features", MODEL, "x.png", "-o", "f.png"], "--channels", "65", "--channels must be between 1 and 64."),
    (["data", "info", "signs"], "--image-size", "0", "image_size must be between 1 and 4096 pixels."),
    (["data", "info", "signs"], "--channels", "2", "channels must be 1 (grayscale) or 3 (RGB)."),
    (["data", "info", "signs"], "--validation", "1.5", "validation must be a fraction from 0 up to"),
    (["data", "info", "signs"], "--max-megapixels", "inf", "--max-megapixels must be a positive number."),
    (["data", "show", "signs", "-o", "g.png"], "--per-class", "0", "--per-class must be at least 1."),
    (["data", "show", "signs", "-o", "g.png"], "--image-size", "-3", "image_size must be between 1 and 4096"),
    (["data", "show", "signs", "-o", "g.png"], "--channels", "0", "channels must be 1 (grayscale) or 3 (RGB)."),
    (["data", "show", "signs", "-o", "g.png"], "--validation", "-0.1", "validation must be a fraction"),
    (["data", "show", "signs", "-o", "g.png"], "--max-megapixels", "0", "--max-megapixels must be a positive"),
    (["cost", "happy"], "--classes", "0", "HappyModel: classes must be a positive integer. Received: classes=0"),
    (["summary", "happy"], "--classes", "-2", "HappyModel: classes must be a positive integer."),
    (["plot", "happy", "-o", "g.png"], "--classes", "0", "HappyModel: classes must be a positive integer."),
    (["plot", "happy", "-o", "g.png"], "--dpi", "0", "The resolution must be at least 1 dot per inch."),
]
# Options every value of which is valid (seeds of a split hash).
ANY_VALUE = {("data info", "--seed"), ("data show", "--seed")}


def numeric_options():
    """(command path, option) of every int or float option the CLI has."""
    def walk(command, path):
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                yield from walk(sub, [*path, name])
        else:
            for param in command.params:
                if param.param_type_name == "option" and param.type_descriptor.annotation in (int, float):
                    yield " ".join(path), param.opts[0]

    return set(walk(typer.main.get_command(app), []))


def test_the_table_covers_every_numeric_option():
    covered = {(" ".join(args[:2] if args[0] == "data" else args[:1]), option) for args, option, _, _ in BAD}
    assert numeric_options() - covered == ANY_VALUE


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """Any model file: the commands must refuse the number before they load it."""
    return tmp_path_factory.mktemp("model") / "model.keras"


@pytest.mark.parametrize("args, option, value, message", BAD, ids=[f"{a[0]} {o} {v}" for a, o, v, _ in BAD])
def test_an_out_of_range_number_is_one_sentence_and_nothing_is_written(args, option, value, message, model_file,
                                                                      tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    args = [str(model_file) if a == MODEL else a for a in args]
    extra = ["--out", str(out)] if args[0] == "train" else []
    result = runner.invoke(app, [*args, option, value, *extra], env={"COLUMNS": "1000"})
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert message in lines[0]
    assert not out.exists() and list(tmp_path.iterdir()) == []  # no run folder, no picture, nothing

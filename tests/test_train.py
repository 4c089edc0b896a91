"""train / evaluate / predict on tiny data of the tests' own: run folders, resume after a
kill, prediction formats, safe loading of model files, and the errors users meet."""

import json
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from imagefolders import make_folder
from PIL import Image
from typer.testing import CliRunner

from cnnzoo import HappyModel
from cnnzoo.cli import app
from cnnzoo.errors import UserError
from cnnzoo.models.saving import load_model
from cnnzoo.training import runs
from cnnzoo.training.config import TrainConfig
from cnnzoo.training.fit import train

runner = CliRunner()
PNG = b"\x89PNG\r\n\x1a\n"


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return {
        "three": make_folder(root / "three", ["circle", "square", "star"]),
        "two": make_folder(root / "two", ["frown", "smile"]),
    }


pytestmark = pytest.mark.usefixtures("private_cache")  # conftest.py: a fresh $CNNZOO_HOME


@pytest.fixture(scope="module")
def softmax_run(folders, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "softmax"
    result = invoke("train", "happy", "--dataset", f"folder:{folders['three']}", "--epochs", 2,
                    "--batch-size", 8, "--augment", "mirror,color", "--out", out)
    assert result.exit_code == 0, result.output
    return out, result.stdout


@pytest.fixture(scope="module")
def sigmoid_run(folders, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "sigmoid"
    train(TrainConfig("happy", f"folder:{folders['two']}", epochs=2, batch_size=8, out=str(out)), verbose=0)
    return out


def test_run_folder_holds_everything_needed(softmax_run):
    out, stdout = softmax_run
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["model.keras", "last.keras", "history.csv", "metrics.json", "config.json", "curves.png", "confusion.png",
         "reliability.png"]
    )
    history = runs.read_history(out)
    assert history["epoch"] == [1.0, 2.0]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "epoch_time"} <= set(history)
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["test"]) >= {"loss", "accuracy", "per_class", "confusion_matrix", "ece"}
    assert set(metrics["robustness"]) == {"mean", "clean", "images", "shifts", "ece"}  # a folder: no plain background
    assert "background" not in metrics["robustness"]["shifts"] and metrics["robustness"]["clean"] == metrics["test"]["accuracy"]
    assert [row["class"] for row in metrics["test"]["per_class"]] == ["circle", "square", "star"]
    assert np.array(metrics["test"]["confusion_matrix"]).shape == (3, 3)
    assert np.array(metrics["test"]["confusion_matrix"]).sum() == metrics["test"]["images"]
    assert metrics["backend"] == keras.backend.backend()
    assert metrics["versions"]["keras"] == keras.__version__
    assert metrics["wall_time_s"] > 0 and metrics["images_per_s"] > 0
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["epochs"] == 2 and config["train"]["batch_size"] == 8
    assert config["train"]["precision"] == "fp32"  # a CPU's default in the tests (conftest: CNNZOO_CPU_BF16=0)
    assert config["class_names"] == ["circle", "square", "star"]
    for picture in ("curves.png", "confusion.png", "reliability.png"):
        assert (out / picture).read_bytes()[:8] == PNG
    assert "test (" in stdout and "accuracy" in stdout


def test_saved_model_scales_pixels_itself(softmax_run):
    model = load_model(softmax_run[0])
    assert model.inputs[0].dtype == "uint8"
    # the recipe's BN momentum (0.9, not Keras' 0.99) is applied and saved
    assert model.get_layer("HappyModel").get_layer("bn0").momentum == 0.9
    # the augmentation asked for, in cnnzoo's order, and nothing else
    assert [layer.name for layer in model.layers[2:-1]] == ["random_flip", "channel_shift"]
    assert json.loads((softmax_run[0] / "config.json").read_text())["train"]["augment"] == "mirror,color"
    assert isinstance(model.get_layer("scale"), keras.layers.Rescaling)
    assert model.get_layer("HappyModel").output.shape[-1] == 3


def test_a_callback_that_stops_the_run_still_leaves_a_finished_run(folders, tmp_path):
    """train(callbacks=...) runs the caller's Keras callbacks; stopping early is a whole run."""

    class StopAfterOne(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.logs = dict(logs)
            self.model.stop_training = True

    stop = StopAfterOne()
    metrics = train(TrainConfig("happy", f"folder:{folders['two']}", epochs=3, batch_size=8, out=str(tmp_path / "run")),
                    verbose=0, callbacks=[stop])
    assert metrics["epochs"] == 1 and "val_accuracy" in stop.logs
    assert len(runs.read_history(tmp_path / "run")["epoch"]) == 1
    assert (tmp_path / "run" / "metrics.json").exists() and (tmp_path / "run" / "model.keras").exists()


def test_an_existing_run_is_not_overwritten(softmax_run, folders):
    out = softmax_run[0]
    before = (out / "model.keras").read_bytes()
    result = invoke("train", "happy", "--dataset", f"folder:{folders['three']}", "--out", out)
    assert result.exit_code == 2
    assert f"The run folder {out} already holds a run: continue it with --resume" in result.stderr
    assert (out / "model.keras").read_bytes() == before


def test_resume_after_a_kill_continues_from_the_last_finished_epoch(folders, tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "cnnzoo", "train", "happy", "--dataset", f"folder:{folders['three']}",
               "--epochs", "8", "--batch-size", "4", "--out", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while runs.finished_epochs(out) < 1 and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = runs.finished_epochs(out)
    assert 1 <= killed_at < 8, "the run must be killed part-way"
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")], "no temp file is left"
    assert keras.saving.load_model(out / "last.keras") is not None  # intact after the kill

    metrics = train(TrainConfig("happy", "ignored", out=str(out)), resume=True, verbose=0)
    history = runs.read_history(out)
    assert history["epoch"] == [float(e) for e in range(1, 9)]
    steps_per_epoch = int(np.ceil(json.loads((out / "metrics.json").read_text())["train_images"] / 4))
    last = keras.saving.load_model(out / "last.keras")
    assert int(keras.ops.convert_to_numpy(last.optimizer.iterations)) == 8 * steps_per_epoch
    assert metrics["epochs"] == 8
    # The same batches in the same order as an uninterrupted run: the same final weights.
    train(TrainConfig("happy", f"folder:{folders['three']}", epochs=8, batch_size=4, out=str(tmp_path / "whole")),
          verbose=0)
    whole = keras.saving.load_model(tmp_path / "whole" / "last.keras")
    for resumed, uninterrupted in zip(last.weights, whole.weights, strict=True):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(resumed), keras.ops.convert_to_numpy(uninterrupted),
                                   rtol=1e-4, atol=1e-6, err_msg=resumed.path)


def test_best_epoch_is_the_one_model_keras_holds():
    # RunRecorder replaces model.keras on ties, so the later of equal epochs is the best
    assert runs.best_epoch({"val_accuracy": [0.5, 0.9, 0.7, 0.9, 0.8]}) == 4
    assert runs.best_epoch({"accuracy": [0.2, 0.6]}) == 2


def _record_epochs(run, scores):
    """RunRecorder over a tiny model whose weights are set to the epoch's number before each
    epoch's end: which epoch a saved file holds can be read off its weights."""
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("adam", "mse")
    recorder = runs.RunRecorder(run, {})
    recorder.set_model(model)
    for epoch, score in enumerate(scores):
        model.set_weights([np.full_like(w, epoch + 1) for w in model.get_weights()])
        recorder.on_epoch_begin(epoch)
        recorder.on_epoch_end(epoch, {"loss": 1.0, "val_accuracy": score})


def _epoch_held(path) -> float:
    return float(keras.saving.load_model(path).get_weights()[0].flat[0])


def test_model_keras_is_the_best_epochs_checkpoint_kept_under_a_second_name_not_a_second_save(tmp_path):
    _record_epochs(tmp_path, [0.5, 0.9])
    # Epoch 2 is the best and the last: one file under two names, written once.
    assert (tmp_path / "model.keras").stat().st_ino == (tmp_path / "last.keras").stat().st_ino
    _record_epochs(tmp_path, [0.5, 0.9, 0.7])
    assert (_epoch_held(tmp_path / "model.keras"), _epoch_held(tmp_path / "last.keras")) == (2.0, 3.0)
    assert (tmp_path / "model.keras").stat().st_ino != (tmp_path / "last.keras").stat().st_ino
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.csv", "last.keras", "model.keras"]


def test_model_keras_is_a_copy_where_the_file_system_has_no_hard_links(tmp_path, monkeypatch):
    def no_links(*args):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(runs.os, "link", no_links)
    _record_epochs(tmp_path, [0.5, 0.9, 0.7])
    assert (_epoch_held(tmp_path / "model.keras"), _epoch_held(tmp_path / "last.keras")) == (2.0, 3.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.csv", "last.keras", "model.keras"]


def test_a_save_builds_keras_reference_objects_once_not_once_per_layer(tmp_path, monkeypatch):
    """Keras 3.15 stores its skip lists under one name and looks them up under another, so each
    layer saved built a Layer anew (cnnzoo.models.saving looks them up where they are stored)."""
    from keras.src.layers.layer import Layer

    model = HappyModel()
    model.compile(optimizer="adam", loss="binary_crossentropy")
    model.save(tmp_path / "first.keras")  # the lists are made here
    built, stock_init = [], Layer.__init__

    def counting_init(self, *args, **kwargs):
        built.append(type(self))
        stock_init(self, *args, **kwargs)

    monkeypatch.setattr(Layer, "__init__", counting_init)
    model.save(tmp_path / "second.keras")
    assert [cls for cls in built if cls is Layer] == []  # stock Keras: one per layer, object and container saved
    again = keras.saving.load_model(tmp_path / "second.keras")
    for saved, loaded in zip(model.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(saved, loaded)


def test_unknown_schedule_is_refused_before_anything_is_written(tmp_path):
    result = invoke("train", "happy", "--dataset", "signs", "--schedule", "linear", "--out", tmp_path / "r")
    assert result.exit_code == 2
    assert "Unknown schedule 'linear': use one of cosine, constant." in result.stderr
    assert not (tmp_path / "r").exists()


def test_unknown_augmentation_is_refused_before_anything_is_written(tmp_path):
    result = invoke("train", "happy", "--dataset", "signs", "--augment", "mirror,jitter", "--out", tmp_path / "r")
    assert result.exit_code == 2
    assert ("Unknown augmentation 'jitter': use a comma-separated list of mirror, shift, crop, resized-crop, color, "
            "pca, rotate, tilt, zoom, light, blur, noise, erase, background, lowres (or none).") in result.stderr
    assert not (tmp_path / "r").exists()


def test_resume_needs_a_run_folder(tmp_path):
    result = invoke("train", "happy", "--dataset", "signs", "--out", tmp_path, "--resume")
    assert result.exit_code == 2
    assert f"{tmp_path} is not a cnnzoo run folder: it has no config.json." in result.stderr


def test_predict_softmax_prints_class_and_probability_vector(softmax_run, folders):
    image = folders["three"] / "star" / "0.png"
    result = invoke("predict", softmax_run[0], image)
    assert result.exit_code == 0, result.output
    line = result.stdout.strip()
    assert line.startswith(f"{image}: ")
    vector = [float(v) for v in line[line.index("[") + 1 : line.index("]")].split()]
    assert len(vector) == 3
    assert sum(vector) == pytest.approx(1.0, abs=1e-3)
    predicted = line.split(": ")[1].split(" ")[0]
    assert predicted == ["circle", "square", "star"][int(np.argmax(vector))]


def test_predict_sigmoid_prints_probability_of_the_positive_class(sigmoid_run, folders, tmp_path):
    big = tmp_path / "big.jpg"  # any size: resized like training
    Image.open(folders["two"] / "smile" / "1.png").resize((300, 200)).convert("RGB").save(big)
    result = invoke("predict", sigmoid_run / "model.keras", big)
    assert result.exit_code == 0, result.output
    head, decision = result.stdout.strip().rsplit(" -> ", 1)
    assert head.startswith(f"{big}: p(smile) = ")
    p = float(head.rsplit("= ", 1)[1])
    assert 0.0 <= p <= 1.0
    assert decision == ("smile" if p >= 0.5 else "frown")


def test_evaluate_a_run_on_its_own_dataset(softmax_run, tmp_path):
    picture, mistakes = tmp_path / "cm.png", tmp_path / "mistakes.png"
    result = invoke("evaluate", softmax_run[0], "--confusion", picture, "--mistakes", mistakes)
    assert result.exit_code == 0, result.output
    saved = json.loads((softmax_run[0] / "metrics.json").read_text())["test"]
    assert f"accuracy {saved['accuracy']:.2%}" in result.stdout
    assert picture.read_bytes()[:8] == PNG
    assert mistakes.read_bytes()[:8] == PNG


def test_evaluate_robustness_prints_each_shift_per_severity_and_the_mean(softmax_run, tmp_path):
    result = invoke("evaluate", softmax_run[0], "--robustness", "--out", tmp_path / "eval")
    assert result.exit_code == 0, result.output
    recorded = json.loads((tmp_path / "eval" / "metrics.json").read_text())["test"]["robustness"]
    # a folder of the tests' own: colour, no plain background to replace
    assert list(recorded["shifts"]) == ["rotate", "scale", "mirror", "brightness", "contrast", "temperature",
                                        "blur", "jpeg", "noise"]
    lines = result.stdout.splitlines()
    for name, by in recorded["shifts"].items():
        row = next(line for line in lines if line.count("│") == 6 and line.split("│")[1].strip() == name)
        cells = [cell.strip() for cell in row.split("│")[2:-1]]
        assert cells[:len(by)] == [f"{by[s]:.1%}" for s in sorted(by)], row
        assert cells[-1] == f"{sum(by.values()) / len(by):.1%}"
    assert (f"robustness mean {recorded['mean']:.1%} (clean {recorded['clean']:.1%}); calibration error on the "
            f"shifted images {recorded['ece']:.1%}") in result.stdout
    trained = json.loads((softmax_run[0] / "metrics.json").read_text())["test"]
    assert recorded["clean"] == pytest.approx(trained["accuracy"])


def test_a_mistakes_picture_needs_a_picture_format(softmax_run, tmp_path):
    result = invoke("evaluate", softmax_run[0], "--mistakes", tmp_path / "mistakes.txt")
    assert result.exit_code == 2
    assert "Cannot draw to" in result.stderr and "must end in .png, .svg, .pdf" in result.stderr
    assert not (tmp_path / "mistakes.txt").exists()


def test_confident_mistakes_are_the_wrong_predictions_surest_first():
    from cnnzoo.analysis.metrics import confident_mistakes

    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.05, 0.95], [0.3, 0.7]])
    y_true = np.array([0, 0, 1, 0, 1])  # wrong: 1 (p 0.8), 2 (p 0.6), 3 (p 0.95)
    assert confident_mistakes(y_true, proba, 10).tolist() == [3, 1, 2]
    assert confident_mistakes(y_true, proba, 2).tolist() == [3, 1]
    assert confident_mistakes(np.array([0, 1, 0, 1, 1]), proba, 5).tolist() == []


def _lambda_model():
    inputs = keras.Input((8,))
    return keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Lambda(lambda t: t * 2.0)(inputs)))


def test_safe_mode_refuses_a_keras_file_with_a_lambda(tmp_path):
    path = tmp_path / "lambda.keras"
    _lambda_model().save(path)
    result = invoke("evaluate", path, "--dataset", "signs")
    assert result.exit_code == 2
    assert f"{path} contains a layer that can run arbitrary code (a Lambda)" in result.stderr
    assert "--unsafe" in result.stderr
    assert load_model(path, unsafe=True).count_params() == 18


def test_legacy_h5_full_model_loads_and_predicts_the_same(tmp_path):
    model = HappyModel()
    path = tmp_path / "happy.h5"
    model.save(path)  # Keras' legacy HDF5 saver, the format of the course's ResNet50.h5
    x = np.random.default_rng(0).random((2, 64, 64, 3), dtype="float32")
    loaded = load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5)
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]


def test_legacy_h5_with_a_lambda_is_refused_without_unsafe(tmp_path):
    path = tmp_path / "lambda.h5"
    _lambda_model().save(path)
    with pytest.raises(ValueError, match=r"contains layers that can run arbitrary code \(Lambda\)"):
        load_model(path)


def test_weights_only_file_needs_and_uses_an_architecture(tmp_path):
    model = HappyModel()
    path = tmp_path / "happy.weights.h5"
    model.save_weights(path)
    with pytest.raises(ValueError, match="holds weights only: name the architecture they belong to with --arch"):
        load_model(path)
    loaded = load_model(path, arch="happy")
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_missing_model_file(tmp_path):
    result = invoke("predict", tmp_path / "nope.keras", tmp_path / "x.png")
    assert result.exit_code == 2
    assert f"Model file {tmp_path / 'nope.keras'} does not exist" in result.stderr


def test_image_that_cannot_be_decoded(softmax_run, tmp_path):
    bad = tmp_path / "photo.png"
    bad.write_text("not an image")
    result = invoke("predict", softmax_run[0], bad)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: The file {bad} ")
    assert "give a JPEG or PNG image" in result.stderr


def test_model_and_dataset_classes_must_match(softmax_run, folders):
    result = invoke("evaluate", softmax_run[0], "--dataset", f"folder:{folders['two']}")
    assert result.exit_code == 2
    assert "predicts 3 classes but the dataset has 2 (frown, smile)" in result.stderr


@pytest.mark.parametrize("model", ["resnet50", "resnet101", "resnet152"])
def test_the_v1_bottleneck_resnets_train_with_warm_up_at_half_the_learning_rate(model):
    """At Adam 1e-3 without warm-up ResNet-50 and -101 collapsed mid-run on signs (train.py's RECIPES)."""
    config = TrainConfig(model, "smiles").resolved()
    assert (config.lr, config.warmup, config.epochs, config.batch_size) == (5e-4, 2, 30, 32)
    assert TrainConfig("resnet50v2", "smiles").resolved().lr == 1e-3  # pre-activation trains at the default


def test_signs_default_augmentation_trains_twice_the_recipes_epochs_at_half_its_rate_unless_told_otherwise():
    """Its harder images: ResNet-50 fitted 60% of them in 30 epochs, and diverged at its peak rate over 60."""
    config = TrainConfig("resnet50", "signs").resolved()
    assert (config.epochs, config.lr, config.warmup) == (60, 2.5e-4, 2)
    assert config.augment == "mirror,shift,zoom,tilt,light,blur,noise"
    assert (TrainConfig("resnet20", "sign-digits").resolved().epochs, TrainConfig("resnet20", "signs").resolved().lr) \
        == (40, 5e-4)
    # A run that names its augmentation gets the recipe as it is; a given epoch count or rate is kept.
    assert (TrainConfig("resnet50", "signs", augment="shift").resolved().epochs,
            TrainConfig("resnet50", "signs", augment="shift").resolved().lr) == (30, 5e-4)
    assert (TrainConfig("resnet50", "signs", epochs=5).resolved().epochs,
            TrainConfig("resnet50", "signs", lr=1e-3).resolved().lr) == (5, 1e-3)
    assert TrainConfig("resnet50", "signs", epochs=5).resolved().lr == 2.5e-4
    assert TrainConfig("happy", "smiles").resolved().epochs == TrainConfig("happy", "mnist").resolved().epochs


def test_a_run_shorter_than_the_recipes_warm_up_warms_up_for_all_of_it():
    """--epochs 1 on a recipe with two warm-up epochs is a smoke run, not an error; a given warm-up is checked."""
    assert TrainConfig("resnet50", "signs", epochs=1).resolved().warmup == 1
    with pytest.raises(UserError, match=r"warmup \(2 epochs\) is longer than the run \(1 epochs\)"):
        TrainConfig("resnet50", "signs", epochs=1, warmup=2).resolved()


def test_warmup_ramps_the_learning_rate_up_then_the_cosine_decays_it():
    from cnnzoo.training.fit import build_training_model, compile_for

    model = build_training_model("happy", (64, 64, 3), 1)
    compile_for(model, TrainConfig("happy", "smiles", epochs=10, lr=1e-3, warmup=2).resolved(), steps=5)
    schedule = keras.optimizers.schedules.deserialize(model.optimizer.get_config()["learning_rate"])
    lr = {step: float(schedule(step)) for step in (0, 5, 10, 30, 50)}
    assert lr[0] == 0.0 and lr[5] == pytest.approx(5e-4) and lr[10] == pytest.approx(1e-3)
    assert lr[30] == pytest.approx(5e-4, rel=1e-3) and lr[50] == pytest.approx(0.0, abs=1e-9)


def test_a_recipe_with_zero_init_residual_starts_the_residual_branches_at_zero():
    from cnnzoo.models import Recipe, model_info
    from cnnzoo.training.fit import build_training_model

    # resnet152 learned too slowly on signs without it, and resnet50 did not fit signs' default
    # augmentation (docs/RESULTS.md); the others train as they are.
    assert model_info("resnet152").recipe.zero_init_residual and model_info("resnet50").recipe.zero_init_residual
    assert not any(model_info(name).recipe.zero_init_residual for name in ("resnet101", "resnet20", "happy"))
    gamma = lambda model: keras.ops.convert_to_numpy(model.get_layer("ResNet20").get_layer("bn2a_branch2b").gamma)
    assert not np.any(gamma(build_training_model("resnet20", (32, 32, 3), 6, Recipe(zero_init_residual=True))))
    assert np.all(gamma(build_training_model("resnet20", (32, 32, 3), 6)) == 1)


def test_zero_init_residual_is_the_recipes_unless_asked_and_is_stored_with_the_run(folders, tmp_path):
    assert TrainConfig("resnet152", "signs").resolved().zero_init_residual
    assert TrainConfig("resnet50", "signs").resolved().zero_init_residual  # the README's main job
    assert not TrainConfig("resnet101", "signs").resolved().zero_init_residual
    assert not TrainConfig("resnet152", "signs", zero_init_residual=False).resolved().zero_init_residual
    out = tmp_path / "r"
    result = invoke("train", "resnet20", "--dataset", f"folder:{folders['three']}", "--epochs", 1,
                    "--batch-size", 8, "--zero-init-residual", "--out", out)
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["zero_init_residual"] and config["recipe"]["zero_init_residual"]


@pytest.mark.parametrize("model", ["vgg16", "plain20"])
def test_zero_init_residual_is_refused_for_a_network_without_residual_branches(model, tmp_path):
    result = invoke("train", model, "--dataset", "signs", "--zero-init-residual", "--out", tmp_path / "r")
    assert result.exit_code == 2
    assert (f"zero_init_residual starts every residual branch at zero, and {model} has no residual "
            "branches: use it with a ResNet, or leave it off.") in result.stderr
    assert not (tmp_path / "r").exists()


def _metrics(folder):
    return json.loads((folder / "metrics.json").read_text())["test"]


def test_an_ensemble_of_identical_models_is_the_single_model(softmax_run, tmp_path):
    run = softmax_run[0]
    single = invoke("evaluate", run, "--out", tmp_path / "one")
    pair = invoke("evaluate", run, run, "--ensemble", "--out", tmp_path / "two")
    assert single.exit_code == 0 and pair.exit_code == 0, pair.output
    one, two = _metrics(tmp_path / "one"), _metrics(tmp_path / "two")
    assert two["accuracy"] == one["accuracy"] and two["confusion_matrix"] == one["confusion_matrix"]
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-9)
    assert json.loads((tmp_path / "two" / "metrics.json").read_text())["members"] == [str(run), str(run)]
    assert (tmp_path / "two" / "confusion.png").read_bytes()[:8] == PNG
    assert "ensemble of 2" in pair.stdout


def test_several_models_need_the_ensemble_flag(softmax_run):
    result = invoke("evaluate", softmax_run[0], softmax_run[0])
    assert result.exit_code == 2
    assert "2 models given: add --ensemble to average their probabilities." in result.stderr


@pytest.mark.parametrize("mode", ["flip", "10crop"])
def test_evaluate_with_test_time_augmentation(softmax_run, tmp_path, mode):
    result = invoke("evaluate", softmax_run[0], "--tta", mode, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert f"tta {mode}" in result.stdout
    assert json.loads((tmp_path / "metrics.json").read_text())["tta"] == mode
    assert 0.0 <= _metrics(tmp_path)["accuracy"] <= 1.0 and _metrics(tmp_path)["images"] > 0


def test_unknown_tta_is_refused(softmax_run):
    result = invoke("evaluate", softmax_run[0], "--tta", "five")
    assert result.exit_code == 2
    assert "Unknown test-time augmentation 'five': use one of none, flip, 10crop." in result.stderr


def test_train_seeds_trains_one_run_per_seed(folders, tmp_path):
    out = tmp_path / "member"
    result = invoke("train", "happy", "--dataset", f"folder:{folders['two']}", "--epochs", 1, "--batch-size", 8,
                    "--seed", 5, "--seeds", 2, "--out", out)
    assert result.exit_code == 0, result.output
    for seed in (5, 6):
        folder = tmp_path / f"member-s{seed}"
        assert json.loads((folder / "config.json").read_text())["train"]["seed"] == seed
        assert (folder / "metrics.json").exists()
    assert f"cnnzoo evaluate --ensemble {tmp_path / 'member-s5'} {tmp_path / 'member-s6'}" in result.stdout.replace("\n", "")


def test_weight_decay_reaches_the_optimizer():
    from cnnzoo.training.fit import build_training_model, compile_for

    model = build_training_model("happy", (64, 64, 3), 1)
    compile_for(model, TrainConfig("happy", "smiles", weight_decay=0.1).resolved(), steps=5)
    assert model.optimizer.weight_decay == pytest.approx(0.1)
    compile_for(model, TrainConfig("happy", "smiles").resolved(), steps=5)
    assert model.optimizer.weight_decay is None  # the recipe's default: none


def test_the_optimizer_is_the_recipes_adam_unless_sgd_is_asked_for():
    from cnnzoo.training.fit import build_training_model, compile_for

    model = build_training_model("lenet5", (32, 32, 1), 10)
    compile_for(model, TrainConfig("lenet5", "mnist").resolved(), steps=5)
    assert isinstance(model.optimizer, keras.optimizers.Adam)
    compile_for(model, TrainConfig("lenet5", "mnist", optimizer="sgd", lr=0.05, weight_decay=5e-4).resolved(), steps=5)
    sgd = model.optimizer
    assert isinstance(sgd, keras.optimizers.SGD) and not isinstance(sgd, keras.optimizers.Adam)
    assert (sgd.momentum, sgd.nesterov, sgd.weight_decay) == (0.9, True, pytest.approx(5e-4))
    assert float(sgd.learning_rate) == pytest.approx(0.05)  # the cosine's peak, at step 0


def test_unknown_optimizer_is_refused_before_anything_is_written(tmp_path):
    result = invoke("train", "happy", "--dataset", "signs", "--optimizer", "rmsprop", "--out", tmp_path / "r")
    assert result.exit_code == 2
    assert "Unknown optimizer 'rmsprop': use one of adam, sgd." in result.stderr
    assert not (tmp_path / "r").exists()


def test_googlenet_trains_with_its_auxiliary_heads_from_the_cli(folders, tmp_path):
    """--aux-logits: three heads, the paper's 0.3 weights, the main head's accuracy picks the best
    epoch, and predict answers from the main head."""
    out = tmp_path / "aux"
    result = invoke("train", "googlenet", "--dataset", f"folder:{folders['three']}", "--aux-logits", "--epochs", 1,
                    "--batch-size", 8, "--image-size", 65, "--augment", "none", "--out", out)
    assert result.exit_code == 0, result.output
    history = runs.read_history(out)
    assert np.isclose(history["loss"][0], history["predictions_loss"][0]
                      + 0.3 * (history["aux1_loss"][0] + history["aux2_loss"][0]), rtol=1e-3)
    assert "accuracy" in history and "val_accuracy" in history  # the main head's, under the usual names
    best = keras.saving.load_model(out / "model.keras")
    assert best.output_names == ["predictions", "aux1", "aux2"]
    assert runs.read_config(out)["train"]["aux_logits"] is True
    image = next((folders["three"] / "star").iterdir())
    predicted = invoke("predict", out, image)
    assert predicted.exit_code == 0 and "[" in predicted.stdout  # one probability vector, of the main head


def test_aux_logits_is_refused_for_a_network_without_auxiliary_heads(tmp_path):
    result = invoke("train", "happy", "--dataset", "signs", "--aux-logits", "--out", tmp_path / "run")
    assert result.exit_code == 2
    assert "aux_logits trains a network's auxiliary classifiers, and happy has none" in result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("accelerator, bf16_cpu, wanted, expected", [
    (True, False, "1", "bf16"),  # a GPU
    (False, True, "1", "bf16" if keras.backend.backend() == "torch" else "fp32"),  # AVX512-BF16 or AMX, PyTorch
    (False, True, "0", "fp32"),  # CNNZOO_CPU_BF16=0
    (False, False, "1", "fp32"),  # a CPU without bfloat16 arithmetic
])
def test_auto_precision_is_bf16_where_it_is_faster(monkeypatch, accelerator, bf16_cpu, wanted, expected):
    from cnnzoo import backends
    from cnnzoo.training.config import TrainConfig

    monkeypatch.setattr(backends, "has_accelerator", lambda: accelerator)
    monkeypatch.setattr(backends, "cpu_bf16", lambda: bf16_cpu)
    monkeypatch.setenv("CNNZOO_CPU_BF16", wanted)
    assert TrainConfig("happy", "signs").resolved().precision == expected
    assert TrainConfig("happy", "signs", precision="fp32").resolved().precision == "fp32"  # asked for: kept

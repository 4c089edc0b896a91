"""Streaming a folder to fit: the cached arrays' splits and pixels, the (seed, epoch) order,
Keras' background threads, and the error for a bad file."""

import threading

import numpy as np
import pytest
from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter
from PIL import Image

from cnnzoo.datasets import batches as streaming
from cnnzoo.datasets import images, load
from cnnzoo.datasets.batches import ArrayBatches, build_before_fit
from cnnzoo.datasets.images import FileImages
from cnnzoo.errors import UserError

SIZE = 16


def folder_files(name, **options):
    """A folder listed for streaming: `load(..., stream=True)`."""
    return load(name, stream=True, **options)


def FileBatches(files, y, batch_size, *, image_size, **options):  # noqa: N802
    """Batches decoded from the given files."""
    return ArrayBatches(FileImages(files, (image_size, image_size), 3, "resize"), np.asarray(y), batch_size, **options)


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNZOO_HOME", str(tmp_path / "home"))


@pytest.fixture
def root(tmp_path):
    """Three classes of JPEGs and PNGs of odd sizes (so every image is resized), one grey."""
    rng = np.random.default_rng(0)
    root = tmp_path / "shapes"
    for k, name in enumerate(["circle", "square", "star"]):
        (root / name).mkdir(parents=True)
        for i in range(9):
            height, width = 20 + i, 31 - i
            pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            image = Image.fromarray(pixels)
            if i == 4:
                image.convert("L").save(root / name / f"{i}.png")
            elif i % 2:
                image.save(root / name / f"{i}.jpg", quality=90)
            else:
                image.save(root / name / f"{i}.png")
    return root


def stream(batches):
    xs, ys = zip(*(batches[i][:2] for i in range(len(batches))))
    return np.concatenate(xs), np.concatenate(ys)


@pytest.mark.parametrize("resize, channels", [("resize", 3), ("pad", 1)])
def test_streamed_batches_are_the_cached_arrays(root, resize, channels):
    cached = load(f"folder:{root}", image_size=SIZE, channels=channels, validation=0.25, seed=3,
                  resize=resize, progress=False)
    files = folder_files(f"folder:{root}", image_size=SIZE, channels=channels, validation=0.25, seed=3,
                         resize=resize)
    assert files.class_names == cached.class_names and files.image_shape == cached.image_shape
    assert files.preprocessing == cached.preprocessing
    for name, split in [("train", files.train), ("val", files.val), ("test", files.test)]:
        expected = getattr(cached, name)
        np.testing.assert_array_equal(split.keys, expected.keys)  # the same files in each split, same order
        np.testing.assert_array_equal(split.y, expected.y)
        x, y = stream(split.batches(4, shuffle=False))
        assert x.dtype == np.uint8 and x.shape == expected.x.shape
        np.testing.assert_array_equal(x, expected.x)  # pixel-identical
        np.testing.assert_array_equal(y, expected.y)
    np.testing.assert_array_equal(files.test.in_memory(progress=False).x, cached.test.x)
    assert len(files.train) + len(files.val) + len(files.test) == 27


def test_the_order_follows_seed_and_epoch_as_for_arrays(root):
    cached = load(f"folder:{root}", image_size=SIZE, progress=False)
    files = folder_files(f"folder:{root}", image_size=SIZE)
    streamed = files.train.batches(5, shuffle=True, seed=7)
    arrays = ArrayBatches(cached.train.x, cached.train.y, 5, shuffle=True, seed=7)
    first = stream(streamed)
    for got, want in zip(first, stream(arrays)):
        np.testing.assert_array_equal(got, want)
    streamed.on_epoch_end()
    arrays.on_epoch_end()
    second = stream(streamed)
    for got, want in zip(second, stream(arrays)):
        np.testing.assert_array_equal(got, want)
    assert not np.array_equal(first[0], second[0])  # another epoch, another order
    assert sorted(first[1]) == sorted(second[1])  # ... of the same images
    resumed = files.train.batches(5, shuffle=True, seed=7, epoch=1)  # a run resumed at epoch 1
    np.testing.assert_array_equal(stream(resumed)[0], second[0])
    other_seed = files.train.batches(5, shuffle=True, seed=8)
    assert not np.array_equal(stream(other_seed)[0], first[0])


def test_full_batches_and_padding_as_for_arrays(root):
    cached = load(f"folder:{root}", image_size=SIZE, progress=False)
    files = folder_files(f"folder:{root}", image_size=SIZE)
    full = files.train.batches(4, shuffle=True, full_batches=True)
    assert len(full) == len(files.train) // 4 and all(len(full[i][0]) == 4 for i in range(len(full)))
    padded = files.test.batches(2, shuffle=False, pad_to=2)
    want = ArrayBatches(cached.test.x, cached.test.y, 2, shuffle=False, pad_to=2)
    for i in range(len(padded)):
        for got, expected in zip(padded[i], want[i]):
            np.testing.assert_array_equal(got, expected)


def test_the_default_worker_count_is_one_per_core_up_to_four(monkeypatch):
    monkeypatch.setattr(streaming, "cpu_count", lambda: 16)
    assert streaming.default_workers() == streaming.MAX_WORKERS == 4
    monkeypatch.setattr(streaming, "cpu_count", lambda: 2)
    assert streaming.default_workers() == 2
    monkeypatch.setattr(streaming, "cpu_count", lambda: 1)
    assert streaming.default_workers() == 1  # Keras then decodes in the training thread


def test_keras_decodes_the_batches_in_background_threads(root, monkeypatch):
    monkeypatch.setattr(streaming, "cpu_count", lambda: 2)
    files = folder_files(f"folder:{root}", image_size=SIZE)
    batches = files.train.batches(4, shuffle=True, seed=1)
    assert (batches.workers, batches.max_queue_size, batches.use_multiprocessing) == (2, 4, False)
    expected = [stream(batches)[0]]
    batches.on_epoch_end()
    expected.append(stream(batches)[0])
    batches = files.train.batches(4, shuffle=True, seed=1, workers=3, max_queue_size=5)
    assert (batches.workers, batches.max_queue_size) == (3, 5)

    threads = set()
    decode = images.decode_file

    def recording(*args):
        threads.add(threading.current_thread())
        return decode(*args)

    monkeypatch.setattr(images, "decode_file", recording)
    adapter = PyDatasetAdapter(batches, shuffle=False)
    assert adapter.enqueuer is not None  # Keras' OrderedEnqueuer: a thread pool and a queue
    for want in expected:  # two epochs, as fit drives them
        adapter.on_epoch_begin()
        got = np.concatenate([x for x, _ in adapter.get_numpy_iterator()])
        adapter.on_epoch_end()
        np.testing.assert_array_equal(got, want)
    assert threads and threading.main_thread() not in threads

    serial = files.train.batches(4, shuffle=True, workers=1)
    assert PyDatasetAdapter(serial, shuffle=False).enqueuer is None  # decoded in the training thread


@pytest.fixture
def steps(monkeypatch):
    """The image batches the training step receives, as lists per epoch (a new list when
    the batch count wraps round to the epoch's length)."""
    import keras

    seen = []
    original = keras.Model.train_step

    def recording(self, data):
        seen.append(keras.ops.convert_to_numpy(data[0]).copy())
        return original(self, data)

    monkeypatch.setattr(keras.Model, "train_step", recording)
    return seen


def epochs_of(seen, steps_per_epoch):
    return [seen[i:i + steps_per_epoch] for i in range(0, len(seen), steps_per_epoch)]


def test_fit_trains_on_each_epochs_order_with_background_workers(root, steps):
    import keras

    files = folder_files(f"folder:{root}", image_size=SIZE, validation=0.25)
    batches = files.train.batches(4, shuffle=True, seed=5, workers=2)
    expected = []
    for epoch in range(4):  # fit's own set-up calls on_epoch_end once before the first epoch
        expected.append(list(files.train.batches(4, shuffle=True, seed=5, epoch=epoch)))
    model = keras.Sequential([keras.Input((SIZE, SIZE, 3)), keras.layers.Rescaling(1 / 255),
                              keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    build_before_fit(model, batches)
    history = model.fit(batches, epochs=3, shuffle=False, verbose=0,
                        validation_data=files.val.batches(4, shuffle=False, workers=2))
    assert np.isfinite(history.history["val_loss"]).all()
    trained = epochs_of(steps, len(batches))
    assert len(trained) == 3
    for epoch, got in enumerate(trained, start=1):  # exactly epoch 1, 2, 3's batches, in order
        assert len(got) == len(expected[epoch])
        for x, (want, _) in zip(got, expected[epoch]):
            np.testing.assert_array_equal(x, want)


def test_train_from_the_stream_sees_the_cached_runs_batches(root, tmp_path, steps):
    """Same splits, same pixels, the same batches each epoch: only Keras' shuffle of the
    batch order within an epoch (fit's shuffle=True, Python's random) may differ."""
    from cnnzoo.training import runs
    from cnnzoo.training.config import TrainConfig
    from cnnzoo.training.fit import train

    results, seen = {}, {}
    for stream in (False, True):
        config = TrainConfig("happy", f"folder:{root}", epochs=2, batch_size=8, image_size=32, stream=stream,
                             out=str(tmp_path / f"stream-{stream}"))
        results[stream] = train(config, verbose=0)
        seen[stream] = list(steps)
        steps.clear()
    cached, streamed = results[False], results[True]
    assert streamed["train_images"] == cached["train_images"] == len(folder_files(f"folder:{root}", validation=0.1).train)
    assert streamed["test"]["images"] == cached["test"]["images"]
    assert streamed["test"]["confusion_matrix"] != [] and len(seen[True]) == len(seen[False]) == 2 * 3

    def batch_set(batches):
        return sorted(x.tobytes() for x in batches)

    for got, want in zip(epochs_of(seen[True], 3), epochs_of(seen[False], 3)):
        assert batch_set(got) == batch_set(want)
    stored = runs.read_config(tmp_path / "stream-True")
    assert stored["train"]["stream"] is True
    assert stored["preprocessing"] == runs.read_config(tmp_path / "stream-False")["preprocessing"]


def corrupt(root):
    bad = root / "star" / "3.jpg"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])  # truncated, as an interrupted copy leaves it
    return bad


def test_a_bad_file_is_named_as_the_cached_reader_names_it(root):
    bad = corrupt(root)
    with pytest.raises(UserError) as cached:
        load(f"folder:{root}", image_size=SIZE, progress=False)
    files = folder_files(f"folder:{root}", image_size=SIZE)  # listing decodes nothing
    batches = FileBatches([bad], [2], 1, image_size=SIZE, shuffle=False)
    with pytest.raises(UserError) as streamed:
        batches[0]
    message = str(streamed.value)
    assert message.startswith(f"The file {bad} is corrupt or truncated (")
    assert message.split(": ")[0] == str(cached.value).split(": ")[0]  # the same file, the same why
    assert message.endswith("replace or delete it (a streamed folder cannot skip unreadable files).")
    assert "\n" not in message

    split = files.test if str(bad) in files.test.x.files else files.train
    with pytest.raises(UserError, match="The file .*3.jpg is corrupt or truncated"):
        split.in_memory(progress=False)
    in_threads = PyDatasetAdapter(split.batches(2, shuffle=False, workers=2), shuffle=False)
    in_threads.on_epoch_begin()
    with pytest.raises(UserError, match="The file .*3.jpg is corrupt or truncated"):
        for _ in in_threads.get_numpy_iterator():  # raised in a worker, reported in the training thread
            pass


def test_missing_file_and_not_a_folder(root, tmp_path):
    batches = FileBatches([root / "circle" / "gone.png"], [0], 1, image_size=SIZE, shuffle=False)
    with pytest.raises(UserError, match=r"The file .*gone.png cannot be read \(.*No such file"):
        batches[0]
    h5 = tmp_path / "train.h5"
    h5.write_bytes(b"")
    with pytest.raises(UserError, match="Only image folders can be streamed"):
        folder_files(f"h5:{h5}")


@pytest.mark.parametrize("dataset, augment, message", [
    ("signs", None, "Only image folders can be streamed, and signs is not one"),
    ("folder:x", "mirror,pca", "PCA colour augmentation needs every training image in memory"),
])
def test_train_refuses_what_cannot_be_streamed(tmp_path, dataset, augment, message):
    from cnnzoo.training.config import TrainConfig
    from cnnzoo.training.fit import train

    out = tmp_path / "run"
    with pytest.raises(UserError, match=message):
        train(TrainConfig("happy", dataset, augment=augment, stream=True, out=str(out)))
    assert not out.exists()  # refused before anything is written


def test_cli_train_stream(root, tmp_path):
    from typer.testing import CliRunner

    from cnnzoo.cli import app
    from cnnzoo.training import runs

    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "happy", "--dataset", f"folder:{root}", "--stream", "--epochs", "1",
                                      "--batch-size", "8", "--image-size", "32", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert runs.read_config(out)["train"]["stream"] is True and (out / "metrics.json").exists()
    refused = CliRunner().invoke(app, ["train", "happy", "--dataset", "signs", "--stream", "--out", str(tmp_path / "x")])
    assert refused.exit_code == 2 and "Only image folders can be streamed" in refused.output


def test_a_train_fraction_keeps_the_same_files_streamed_or_cached(root):
    from cnnzoo.training.fit import training_subset

    cached = training_subset(load(f"folder:{root}", image_size=SIZE, validation=0.1, progress=False), 0.5)
    streamed = training_subset(folder_files(f"folder:{root}", image_size=SIZE, validation=0.1), 0.5)
    assert 0 < len(streamed.train) < 27
    np.testing.assert_array_equal(streamed.train.keys, cached.train.keys)
    np.testing.assert_array_equal(stream(streamed.train.batches(4, shuffle=False))[0], cached.train.x)

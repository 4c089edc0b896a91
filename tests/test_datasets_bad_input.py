"""Bad input: each case gives one clear sentence naming the file, and leaves no cache behind.

Fixtures (zips in the upstream layout, image folders, .h5 files) are built here.
"""

import io
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from cnnzoo.datasets import load
from cnnzoo.errors import UserError

TOP = "Sign-Language-Digits-Dataset-master"
SKIP_HINT = "replace or delete it, or pass skip_bad=True (--skip-bad) to skip unreadable files."


def jpeg(seed, size=(64, 64)):
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def png(seed, size=(32, 32)):
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def home(tmp_path, monkeypatch):
    path = tmp_path / "home"
    monkeypatch.setenv("CNNZOO_HOME", str(path))
    monkeypatch.setenv("CNNZOO_DATA_MIRROR", str(tmp_path / "mirror"))
    (tmp_path / "mirror").mkdir()
    return path


def assert_nothing_cached(home):
    """No arrays were cached and no temp file is left anywhere under CNNZOO_HOME."""
    files = [p for p in Path(home).rglob("*") if p.is_file()]
    assert files == [], files


def folder(root, classes=("no", "yes"), per_class=4):
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            (root / name / f"{i}.jpg").write_bytes(jpeg(10 * c + i))
    return root


def error_of(*args, **kwargs) -> str:
    kwargs.setdefault("progress", False)
    with pytest.raises(UserError) as error:
        load(*args, **kwargs)
    message = str(error.value)
    assert "\n" not in message and message.endswith(".")
    return message


# ---------------------------------------------------------------- images


def test_corrupt_image_in_a_folder(home, tmp_path):
    root = folder(tmp_path / "faces")
    (root / "yes" / "2.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)  # a JPEG header, then noise
    message = error_of(f"folder:{root}")
    assert message.startswith(f"The file {root / 'yes' / '2.jpg'} is ")
    assert ("is corrupt or truncated (" in message) or ("is not an image file that Pillow can read" in message)
    assert message.endswith(SKIP_HINT)
    assert_nothing_cached(home)


def test_truncated_image_in_a_folder(home, tmp_path):
    root = folder(tmp_path / "faces")
    data = jpeg(99)
    (root / "no" / "9.jpg").write_bytes(data[: len(data) // 2])
    message = error_of(f"folder:{root}")
    assert message.startswith(f"The file {root / 'no' / '9.jpg'} is corrupt or truncated (")
    assert "truncated" in message and message.endswith(SKIP_HINT)
    assert_nothing_cached(home)


def test_non_image_file_in_a_class_folder(home, tmp_path):
    root = folder(tmp_path / "faces")
    (root / "no" / "notes.txt").write_text("shot in 2019\n")
    assert error_of(f"folder:{root}") == (
        f"The file {root / 'no' / 'notes.txt'} is not an image file that Pillow can read: {SKIP_HINT}"
    )
    assert_nothing_cached(home)


def test_corrupt_image_found_by_the_parallel_decoder(home, tmp_path, monkeypatch):
    from cnnzoo.datasets import readers

    monkeypatch.setattr(readers, "PARALLEL_FROM", 5)
    monkeypatch.setattr(readers, "CHUNK", 3)
    monkeypatch.setattr(readers, "cpu_count", lambda: 2)
    root = folder(tmp_path / "faces", per_class=8)
    (root / "yes" / "5.jpg").write_bytes(b"GIF89a broken")
    message = error_of(f"folder:{root}")
    assert message.startswith(f"The file {root / 'yes' / '5.jpg'} is ") and message.endswith(SKIP_HINT)
    assert_nothing_cached(home)
    ds = load(f"folder:{root}", skip_bad=True, progress=False)
    assert len(ds.skipped) == 1 and len(ds.train) + len(ds.test) == 15


def test_skip_bad_skips_and_reports_how_many(home, tmp_path, capsys):
    root = folder(tmp_path / "faces", per_class=6)
    (root / "no" / "notes.txt").write_text("shot in 2019\n")
    data = jpeg(99)
    (root / "yes" / "9.jpg").write_bytes(data[: len(data) // 3])
    ds = load(f"folder:{root}", skip_bad=True, progress=False)
    assert len(ds.train) + len(ds.test) == 12
    assert len(ds.skipped) == 2
    assert ds.skipped[0].startswith(f"The file {root / 'no' / 'notes.txt'} is not an image")
    assert ds.skipped[1].startswith(f"The file {root / 'yes' / '9.jpg'} is corrupt or truncated")
    err = capsys.readouterr().err
    assert f"cnnzoo: skipped 2 unreadable file(s) of folder:{root}, e.g. The file {root / 'no' / 'notes.txt'}" in err
    again = load(f"folder:{root}", skip_bad=True, progress=False)  # from the cache: still reported
    assert len(again.skipped) == 2 and "skipped 2" in capsys.readouterr().err
    # The default (no skipping) is still an error: skip_bad is part of the cache key.
    assert error_of(f"folder:{root}").startswith(f"The file {root / 'no' / 'notes.txt'} ")


def test_skipping_every_image_of_a_class_is_an_error(home, tmp_path):
    root = folder(tmp_path / "faces", per_class=2)
    for i in range(2):
        (root / "yes" / f"{i}.jpg").write_bytes(b"broken")
    assert error_of(f"folder:{root}", skip_bad=True) == (
        f"After skipping unreadable files, the folder {root} has no images left for the class yes: "
        "replace the bad files."
    )
    assert_nothing_cached(home)


def test_corrupt_and_truncated_images_inside_a_registered_zip(home, tmp_path):
    archive = tmp_path / "mirror" / "sign-language-digits.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for d in range(10):
            for i in range(3):
                zf.writestr(f"{TOP}/Dataset/{d}/IMG_{d}{i}.JPG", jpeg(d * 10 + i, (100, 100)))
        zf.writestr(f"{TOP}/Dataset/4/IMG_bad.JPG", jpeg(7, (100, 100))[:300])
    message = error_of("signs")
    assert message.startswith(f"The image {TOP}/Dataset/4/IMG_bad.JPG in {archive} is corrupt or truncated (")
    assert message.endswith(SKIP_HINT)
    assert_nothing_cached(home)
    ds = load("signs", skip_bad=True, progress=False)
    assert len(ds.skipped) == 1 and len(ds.train) + len(ds.test) == 18


def test_a_member_damaged_inside_the_zip(home, tmp_path):
    archive = tmp_path / "mirror" / "sign-language-digits.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:
        for d in range(6):
            for i in range(3):
                zf.writestr(f"{TOP}/Dataset/{d}/IMG_{d}{i}.JPG", jpeg(d * 10 + i))
    data = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo(f"{TOP}/Dataset/2/IMG_21.JPG")
    start = info.header_offset + 30 + len(info.filename) + 200
    data[start:start + 50] = bytes(50)  # flip bytes in the middle of the stored JPEG
    archive.write_bytes(bytes(data))
    message = error_of("signs")
    assert message.startswith(f"The image {TOP}/Dataset/2/IMG_21.JPG in {archive} cannot be read (Bad CRC-32")
    assert_nothing_cached(home)


# ---------------------------------------------------------------- folders


def test_empty_class_folder(home, tmp_path):
    root = folder(tmp_path / "faces")
    (root / "maybe").mkdir()
    assert error_of(f"folder:{root}") == (
        f"The class folder {root / 'maybe'} is empty: put its images in it or remove it."
    )
    (root / "maybe" / ".hidden").write_text("x")  # hidden files do not count
    assert error_of(f"folder:{root}").startswith(f"The class folder {root / 'maybe'} is empty")
    assert_nothing_cached(home)


def test_folder_without_class_folders_and_missing_folder(home, tmp_path):
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "1.jpg").write_bytes(jpeg(1))
    assert error_of(f"folder:{tmp_path / 'flat'}").startswith(
        f"The image folder {tmp_path / 'flat'} has no class sub-folders: put each class's images in a sub-folder"
    )
    assert error_of(f"folder:{tmp_path / 'nowhere'}") == (
        f"The image folder {tmp_path / 'nowhere'} does not exist or is not a folder: give folder:PATH "
        "with one sub-folder of images per class."
    )
    assert_nothing_cached(home)


def test_train_test_layout_with_a_class_missing_from_test(home, tmp_path):
    folder(tmp_path / "d" / "train", ("a", "b"))
    folder(tmp_path / "d" / "test", ("a",))
    assert error_of(f"folder:{tmp_path / 'd'}") == (
        f"The folder {tmp_path / 'd' / 'test'} has no sub-folder for the class 'b': add "
        f"{tmp_path / 'd' / 'test' / 'b'} with its images, or remove the class from the other split."
    )


# ---------------------------------------------------------------- .h5 files


def h5(path, **datasets):
    with h5py.File(path, "w") as f:
        for key, value in datasets.items():
            f[key] = value
    return path


def images(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)


def test_h5_missing_a_dataset(home, tmp_path):
    path = h5(tmp_path / "train_happy.h5", train_set_x=images(4), list_classes=np.array([0, 1]))
    assert error_of(f"h5:{path}") == (
        f"The HDF5 file {path} has no dataset 'train_set_y' (it holds list_classes, train_set_x): the "
        "course's files hold train_set_x, train_set_y, test_set_x, test_set_y and list_classes."
    )
    test = h5(tmp_path / "test_happy.h5", test_set_x=images(2))
    good = h5(tmp_path / "good.h5", train_set_x=images(4), train_set_y=np.array([0, 1, 0, 1]),
              list_classes=np.array([0, 1]))
    assert error_of(f"h5:{good},{test}").startswith(f"The HDF5 file {test} has no dataset 'test_set_y' ")
    assert_nothing_cached(home)


def test_h5_with_mismatched_x_and_y(home, tmp_path):
    path = h5(tmp_path / "train.h5", train_set_x=images(5), train_set_y=np.array([0, 1, 0, 1]),
              list_classes=np.array([0, 1]))
    assert error_of(f"h5:{path}") == (
        f"The HDF5 file {path} has 5 images in train_set_x but 4 labels in train_set_y: each image needs "
        "exactly one label."
    )
    assert_nothing_cached(home)


def test_h5_label_outside_the_class_list(home, tmp_path):
    path = h5(tmp_path / "train.h5", train_set_x=images(4), train_set_y=np.array([0, 1, 6, 1]),
              list_classes=np.arange(6))
    assert error_of(f"h5:{path}") == (
        f"The HDF5 file {path} has the label 6 in train_set_y, outside its list_classes (0 to 5): fix the "
        "labels or the class list."
    )
    assert_nothing_cached(home)


def test_h5_that_is_not_hdf5_or_not_images(home, tmp_path):
    (tmp_path / "train.h5").write_text("hello")
    assert error_of(f"h5:{tmp_path / 'train.h5'}").startswith(f"Cannot open {tmp_path / 'train.h5'} as an HDF5 file (")
    path = h5(tmp_path / "floats.h5", train_set_x=np.ones((4, 8, 8, 3), np.float32),
              train_set_y=np.array([0, 1, 0, 1]), list_classes=np.array([0, 1]))
    assert error_of(f"h5:{path}") == (
        f"The dataset train_set_x in {path} holds float32 values, not pixels 0-255: store the images as uint8."
    )
    path = h5(tmp_path / "flat.h5", train_set_x=np.ones((4, 12), np.uint8),
              train_set_y=np.array([0, 1, 0, 1]), list_classes=np.array([0, 1]))
    assert error_of(f"h5:{path}").startswith(f"The dataset train_set_x in {path} has shape (4, 12), not images")
    assert error_of(f"h5:{tmp_path / 'absent.h5'}") == (
        f"The HDF5 file {tmp_path / 'absent.h5'} does not exist: check the path after h5:."
    )
    assert_nothing_cached(home)


def test_unwritable_cache_home(tmp_path, monkeypatch):
    root = folder(tmp_path / "faces")
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv("CNNZOO_HOME", str(tmp_path / "file" / "home"))
    message = error_of(f"folder:{root}")
    assert message.startswith(f"Cannot write the dataset cache {tmp_path / 'file' / 'home' / 'datasets' / 'arrays'}/")
    assert message.endswith("free some space or point CNNZOO_HOME at a writable folder.")


# ---------------------------------------------------------------- arguments and names


@pytest.mark.parametrize("kwargs, start", [
    ({"image_size": 0}, "image_size must be between 1 and 4096 pixels. Received: image_size=0"),
    ({"image_size": (64, 64, 3)}, "image_size must be an int or (height, width)."),
    ({"channels": 2}, "channels must be 1 (grayscale) or 3 (RGB). Received: channels=2"),
    ({"validation": 1.5}, "validation must be a fraction from 0 up to (not including) 1. Received: validation=1.5"),
    ({"resize": "crop"}, "resize must be one of resize, pad. Received: resize='crop'"),
    ({"seed": "x"}, "seed must be an integer."),
])
def test_bad_arguments(home, kwargs, start):
    with pytest.raises(UserError) as error:  # Keras' style: "... Received: x=..."
        load("signs", progress=False, **kwargs)
    assert str(error.value).startswith(start)
    assert_nothing_cached(home)


def test_unknown_dataset_lists_the_choices(home):
    assert error_of("happy-house") == (
        "Unknown dataset 'happy-house': choose one of signs, sign-digits, sign-digits-6-9, smiles, mnist, or your own data "
        "as folder:PATH (one sub-folder per class) or h5:TRAIN.h5[,TEST.h5]."
    )

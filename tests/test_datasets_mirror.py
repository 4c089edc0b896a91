"""The registered datasets, loaded for real from the offline mirror ($CNNZOO_DATA_MIRROR).

The mirror is partial, so expected counts are read from the archives themselves, never
from the upstream totals. Every load goes to a temporary CNNZOO_HOME shared by this
module, so each set is decoded once and the cached second load can be timed.
"""

import os
import re
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from cnnzoo.datasets import dataset_info, list_datasets, load, read_image

MIRROR = Path(os.environ.get("CNNZOO_DATA_MIRROR") or Path(__file__).resolve().parents[2] / "shared" / "data")

# Independent of the registry: what each archive should give, by our own reading of it.
EXPECTED = {
    "signs": ("sign-language-digits.zip", r"[^/]+/Dataset/([0-5])/[^/]+\.JPG", [str(d) for d in range(6)], (64, 64, 3)),
    "sign-digits": ("sign-language-digits.zip", r"[^/]+/Dataset/([0-9])/[^/]+\.JPG", [str(d) for d in range(10)], (64, 64, 3)),
    "sign-digits-6-9": ("sign-language-digits.zip", r"[^/]+/Dataset/([6-9])/[^/]+\.JPG", [str(d) for d in range(6, 10)], (64, 64, 3)),
    "smiles": ("smiles.zip", r"[^/]+/SMILEs/(negatives|positives)/\w+7/[^/]+\.jpg", ["not smiling", "smiling"], (64, 64, 1)),
    "mnist": ("mnist.zip", r"[^/]+/(?:train|test)/([0-9])/[^/]+\.png", [str(d) for d in range(10)], (28, 28, 1)),
}


def archive_members(name):
    filename, pattern, _, _ = EXPECTED[name]
    with zipfile.ZipFile(MIRROR / filename) as zf:
        return [n for n in zf.namelist() if re.fullmatch(pattern, n)]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    assert (MIRROR / "mnist.zip").is_file(), f"the offline data mirror is missing at {MIRROR}"
    with pytest.MonkeyPatch.context() as mp:
        path = tmp_path_factory.mktemp("cnnzoo-home")
        mp.setenv("CNNZOO_HOME", str(path))
        mp.setenv("CNNZOO_DATA_MIRROR", str(MIRROR))
        yield path


@pytest.fixture(scope="module")
def loaded(home):
    """name -> (first load, seconds, second load, seconds)."""
    results = {}
    for name in list_datasets():
        start = time.perf_counter()
        first = load(name, progress=False)
        first_s = time.perf_counter() - start
        start = time.perf_counter()
        second = load(name, progress=False)
        results[name] = (first, first_s, second, time.perf_counter() - start)
    return results


def test_every_registered_set_is_covered():
    assert list_datasets() == ["signs", "sign-digits", "sign-digits-6-9", "smiles", "mnist"]


@pytest.mark.parametrize("name", list(EXPECTED))
def test_registered_set_shapes_dtypes_classes_and_counts(loaded, name):
    ds = loaded[name][0]
    _, _, class_names, shape = EXPECTED[name]
    members = archive_members(name)
    assert ds.name == name
    assert ds.class_names == class_names
    assert ds.image_shape == shape == dataset_info(name).image_shape
    assert ds.val is None
    for split in (ds.train, ds.test):
        assert split.x.dtype == np.uint8 and split.x.shape[1:] == shape
        assert split.y.dtype == np.int64 and split.y.shape == (len(split.x),)
        assert split.keys.shape == (len(split.x),)
        assert min(split.class_counts(len(class_names))) > 0  # every class in every split
    assert len(ds.train) + len(ds.test) == len(members)  # every image in the archive, once
    per_class = np.add(ds.train.class_counts(len(class_names)), ds.test.class_counts(len(class_names)))
    folders = [re.fullmatch(EXPECTED[name][1], m).group(1) for m in members]
    expected = [folders.count(f) for f in sorted(set(folders))]
    assert per_class.tolist() == expected
    assert ds.preprocessing == {
        "image_size": list(shape[:2]), "channels": shape[2], "scale": 1 / 255,
        "resize": "pad" if name == "mnist" else "resize",  # digits are centred in a larger input, as in the paper
        "resample": "bilinear", "dataset": name, "class_names": class_names,
        # Face crops record how they were framed, for the face step of predict and serve.
        **({"faces": {"detector": "haarcascade_frontalface_alt2.xml", "scale": 0.79, "dx": 0.0, "dy": 0.09,
                      "grey": True}} if name == "smiles" else {}),
    }
    print(f"\n{name}: train {ds.counts()['train']} test {ds.counts()['test']}")


@pytest.mark.parametrize("name", list(EXPECTED))
def test_splits_are_disjoint_and_test_fraction_is_as_documented(loaded, name):
    ds = loaded[name][0]
    train, test = set(ds.train.keys), set(ds.test.keys)
    assert len(train) == len(ds.train) and len(test) == len(ds.test)  # keys are unique
    assert not train & test
    if name == "mnist":  # the official split, whole
        assert all(k.startswith("train/") for k in train) and all(k.startswith("test/") for k in test)
        assert len(test) == len(archive_members("mnist")) - len(train)
    else:
        fraction = len(test) / (len(train) + len(test))
        assert 0.08 < fraction < 0.12, fraction


@pytest.mark.parametrize("name", list(EXPECTED))
def test_cached_second_load_is_fast_and_identical(loaded, name):
    first, first_s, second, second_s = loaded[name]
    print(f"\n{name}: first load {first_s:.2f} s, cached second load {second_s:.3f} s")
    assert second_s < 2.0
    assert first.cache_path == second.cache_path and first.cache_path.is_file()
    for a, b in ((first.train, second.train), (first.test, second.test)):
        np.testing.assert_array_equal(a.x, b.x)
        np.testing.assert_array_equal(a.y, b.y)
        np.testing.assert_array_equal(a.keys, b.keys)


def test_signs_is_the_digits_0_to_5_of_sign_digits_with_the_same_split(loaded):
    signs, digits = loaded["signs"][0], loaded["sign-digits"][0]
    digits_0_5 = {k for k, y in zip(digits.test.keys, digits.test.y) if y < 6}
    assert set(signs.test.keys) == digits_0_5


def test_sign_digits_6_9_shares_no_image_with_signs(loaded):
    """The transfer study pretrains on 6-9 and fine-tunes on signs: the two must not overlap."""
    signs, later = loaded["signs"][0], loaded["sign-digits-6-9"][0]
    signs_keys = set(signs.train.keys) | set(signs.test.keys)
    later_keys = set(later.train.keys) | set(later.test.keys)
    assert later_keys and not signs_keys & later_keys


def test_splits_are_stable_when_files_are_removed_from_a_copy_of_the_archive(loaded, tmp_path, monkeypatch):
    full = loaded["signs"][0]
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    with zipfile.ZipFile(MIRROR / "sign-language-digits.zip") as src, \
            zipfile.ZipFile(mirror / "sign-language-digits.zip", "w") as dst:
        for i, info in enumerate(src.infolist()):
            if i % 3 != 0:  # drop a third of the files
                dst.writestr(info, src.read(info))
    monkeypatch.setenv("CNNZOO_DATA_MIRROR", str(mirror))
    part = load("signs", progress=False)
    assert part.source == str(mirror / "sign-language-digits.zip")
    assert 0 < len(part.train) + len(part.test) < len(full.train) + len(full.test)
    full_test = set(full.test.keys)
    assert set(part.test.keys) <= full_test
    assert not set(part.train.keys) & full_test
    # ...and the pixels of a file do not depend on which other files are there.
    where = {k: i for i, k in enumerate(full.train.keys)}
    for i, key in enumerate(part.train.keys[:50]):
        np.testing.assert_array_equal(part.train.x[i], full.train.x[where[key]])


def test_validation_is_carved_stably_from_the_training_part(loaded):
    base = loaded["signs"][0]
    ds = load("signs", validation=0.2, progress=False)
    again = load("signs", validation=0.2, progress=False)
    assert set(ds.train.keys) | set(ds.val.keys) == set(base.train.keys)
    assert not set(ds.train.keys) & set(ds.val.keys)
    assert set(ds.test.keys) == set(base.test.keys)  # the test split does not move
    np.testing.assert_array_equal(ds.val.keys, again.val.keys)
    assert 0.15 < len(ds.val) / len(base.train) < 0.25
    assert min(ds.val.class_counts(6)) > 0
    other_seed = load("signs", validation=0.2, seed=1, progress=False)
    assert set(other_seed.test.keys) != set(ds.test.keys)


def test_one_hot_labels(loaded):
    ds = load("signs", one_hot=True, progress=False)
    assert ds.train.y.dtype == np.float32 and ds.train.y.shape == (len(ds.train), 6)
    np.testing.assert_array_equal(ds.train.y.sum(axis=1), 1.0)
    np.testing.assert_array_equal(ds.train.labels, loaded["signs"][0].train.y)


def test_sign_digits_at_native_size_and_smiles_in_rgb(home):
    native = load("sign-digits", image_size=100, progress=False)
    assert native.image_shape == (100, 100, 3) and native.train.x.shape[1:] == (100, 100, 3)
    # Three upstream photos are 3024x3024: they are resized like the rest.
    assert native.preprocessing["image_size"] == [100, 100]
    rgb = load("smiles", channels=3, progress=False)
    assert rgb.image_shape == (64, 64, 3)
    x = rgb.test.x
    np.testing.assert_array_equal(x[..., 0], x[..., 1])  # grey faces: R == G == B
    np.testing.assert_array_equal(x[..., 1], x[..., 2])


def test_mnist_padded_to_32_for_lenet(loaded):
    plain = loaded["mnist"][0]
    padded = load("mnist", image_size=32, resize="pad", progress=False)
    assert padded.image_shape == (32, 32, 1) and padded.preprocessing["resize"] == "pad"
    np.testing.assert_array_equal(padded.train.x[:, 2:30, 2:30], plain.train.x)
    assert not padded.test.x[:, :2].any() and not padded.test.x[:, 30:].any()


def test_read_image_matches_the_dataset_decoding(loaded, tmp_path):
    ds = loaded["signs"][0]
    key = ds.test.keys[0]
    with zipfile.ZipFile(MIRROR / "sign-language-digits.zip") as zf:
        member = next(n for n in zf.namelist() if n.endswith("/" + key))
        path = tmp_path / Path(key).name
        path.write_bytes(zf.read(member))
    np.testing.assert_array_equal(read_image(path, 64, 3), ds.test.x[0])


def test_nothing_half_written_in_the_cache(loaded, home):
    leftovers = [p for p in home.rglob("*") if p.name.startswith(".") or ".tmp" in p.name]
    assert leftovers == []
    assert not (home / "datasets" / "archives").exists()  # the mirror is read in place


def test_a_subject_split_keeps_each_students_photos_on_one_side(home):
    """Each student photographed the digits in order, so a photo's number less its digit is where
    the student's series starts (a retake moves it by one or two): no series start, give or take
    two, may be on two sides. Split by file, the same students are on every side."""

    def series(split):
        return np.array([int(re.search(r"IMG_(\d+)", key)[1]) - int(re.search(r"Dataset/(\d)/", key)[1])
                         for key in split.keys])

    def shared(a, b):
        return int((np.abs(series(a)[:, None] - series(b)[None, :]) <= 2).any(axis=1).sum())

    by_subject = load("signs", validation=0.1, split_by="subject", progress=False)
    assert shared(by_subject.test, by_subject.train) == 0 and shared(by_subject.val, by_subject.train) == 0
    assert shared(by_subject.test, by_subject.val) == 0
    sizes = [len(by_subject.train), len(by_subject.val), len(by_subject.test)]
    assert sum(sizes) == len(archive_members("signs")) and min(sizes) > 50
    by_file = load("signs", validation=0.1, progress=False)
    assert shared(by_file.test, by_file.train) > len(by_file.test) / 2, "the check can fail"
    assert set(by_subject.test.labels) == set(range(6)), "every class on the subjects' test side"

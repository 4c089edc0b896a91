"""The readers against generated bad files (hypothesis): whatever the bytes, decoding gives
an image of the asked shape or a reason, and loading gives a dataset or one UserError,
never another exception. Bounded to a few seconds each, for CI's default suite."""

import io
import zipfile

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from cnnzoo.datasets import load
from cnnzoo.datasets.images import try_decode
from cnnzoo.errors import UserError

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def encoded(fmt: str) -> bytes:
    buffer = io.BytesIO()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(buffer, fmt)
    return buffer.getvalue()


VALID = {fmt: encoded(fmt) for fmt in ("PNG", "JPEG", "BMP", "GIF", "TIFF")}


@st.composite
def damaged_images(draw):
    """A valid image with bytes flipped, cut short, or spliced with noise."""
    data = bytearray(VALID[draw(st.sampled_from(sorted(VALID)))])
    for _ in range(draw(st.integers(0, 6))):
        at = draw(st.integers(0, len(data) - 1))
        data[at] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(data)))
    return bytes(data[:cut]) + draw(st.binary(max_size=32))


def assert_image_or_reason(result, size, channels):
    array, why = result
    if array is None:
        assert isinstance(why, str) and why and "\n" not in why
    else:
        assert why is None and array.dtype == np.uint8 and array.shape == (*size, channels)


@FAST
@given(data=st.one_of(st.binary(max_size=512), damaged_images()), channels=st.sampled_from([1, 3]),
       resize=st.sampled_from(["resize", "pad"]))
def test_decoding_any_bytes_gives_an_image_or_a_reason(data, channels, resize):
    assert_image_or_reason(try_decode(data, (16, 16), channels, resize), (16, 16), channels)


@FAST
@given(data=damaged_images())
def test_a_damaged_image_in_a_folder_is_named_or_skipped(tmp_path_factory, data):
    root = tmp_path_factory.mktemp("fuzz")
    for name in ("a", "b"):
        (root / name).mkdir()
        (root / name / "good.png").write_bytes(VALID["PNG"])
    (root / "b" / "fuzzed.bin").write_bytes(data)
    try:
        load(f"folder:{root}", image_size=16, progress=False)
    except UserError as error:
        assert "fuzzed.bin" in str(error) and "\n" not in str(error)
    skipping = load(f"folder:{root}", image_size=16, skip_bad=True, progress=False)
    assert len(skipping.train) + len(skipping.test) in (2, 3)


@FAST
@given(shape=st.lists(st.integers(0, 5), min_size=0, max_size=5),
       dtype=st.sampled_from(["uint8", "int16", "float32", "float64", "int64", "bool"]),
       labels=st.lists(st.integers(-2, 3), max_size=6), classes=st.lists(st.integers(0, 3), max_size=4))
def test_an_h5_of_any_shapes_and_types_loads_or_is_one_sentence(tmp_path_factory, shape, dtype, labels, classes):
    path = tmp_path_factory.mktemp("h5") / "train.h5"
    with h5py.File(path, "w") as f:
        f["train_set_x"] = np.ones(shape, dtype)
        f["train_set_y"] = np.array(labels, np.int64)
        f["list_classes"] = np.array(classes, np.int64)
    try:
        ds = load(f"h5:{path}", progress=False)
    except UserError as error:
        assert "\n" not in str(error)
    else:
        assert ds.train.x.dtype == np.uint8 and ds.train.x.ndim == 4 and ds.num_classes >= 2


@pytest.fixture(scope="module")
def archive_bytes():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for digit in range(10):
            zf.writestr(f"Sign-Language-Digits-Dataset-master/Dataset/{digit}/{digit}.JPG", VALID["JPEG"])
    return buffer.getvalue()


@FAST
@given(flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), max_size=8),
       cut=st.floats(0.05, 1))
def test_a_damaged_archive_loads_or_is_one_sentence(tmp_path_factory, monkeypatch_session, archive_bytes, flips, cut):
    mirror = tmp_path_factory.mktemp("mirror")
    data = bytearray(archive_bytes)
    for where, value in flips:
        data[int(where * len(data))] = value
    (mirror / "sign-language-digits.zip").write_bytes(bytes(data[: max(1, int(cut * len(data)))]))
    monkeypatch_session.setenv("CNNZOO_DATA_MIRROR", str(mirror))
    monkeypatch_session.setenv("CNNZOO_HOME", str(mirror / "home"))
    try:
        load("signs", progress=False, download=False)
    except UserError as error:
        assert "\n" not in str(error)


@pytest.fixture(scope="module")
def monkeypatch_session():
    patch = pytest.MonkeyPatch()
    yield patch
    patch.undo()

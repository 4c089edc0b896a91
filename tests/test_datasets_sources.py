"""Where data comes from and how it is read: download, mirror, cache, folders, .h5 files.

Every fixture is built here (small zips in the upstream layouts, image folders, .h5 files
like the course's); downloads go to a local http.server or a file:// URL, never the
internet. Each test has its own CNNZOO_HOME.
"""

import dataclasses
import hashlib
import http.server
import io
import threading
import zipfile
from functools import partial
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from cnnzoo.datasets import dataset_info, load, read_image, readers, splits
from cnnzoo.errors import UserError

TOP = "Sign-Language-Digits-Dataset-master"


def image_bytes(seed, size=(100, 100), mode="RGB", fmt="JPEG"):
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(buffer, fmt)
    return buffer.getvalue()


def signs_zip(path, per_class=6, digits=range(10), extra=()):
    """A zip in the Sign-Language-Digits archive's layout."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{TOP}/README.md", "fixture")
        for d in digits:
            for i in range(per_class):
                zf.writestr(f"{TOP}/Dataset/{d}/IMG_{d}{i:03d}.JPG", image_bytes(d * 100 + i))
        for name, data in extra:
            zf.writestr(f"{TOP}/{name}", data)
    return path


@pytest.fixture
def home(tmp_path, monkeypatch):
    path = tmp_path / "home"
    monkeypatch.setenv("CNNZOO_HOME", str(path))
    monkeypatch.delenv("CNNZOO_DATA_MIRROR", raising=False)
    return path


def leftovers(root):
    return [p for p in Path(root).rglob("*") if p.name.startswith(".") or ".tmp" in p.name]


class Server:
    """A local http.server on a folder, counting requests."""

    def __init__(self, folder):
        self.requests = []
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.requests.append(self.path)
                super().do_GET()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(folder)))
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path):
    folder = tmp_path / "www"
    folder.mkdir()
    s = Server(folder)
    s.folder = folder
    yield s
    s.close()


def signs_spec(url, **changes):
    return dataclasses.replace(dataset_info("signs"), url=url, **changes)


# ---------------------------------------------------------------- download, mirror, cache


def test_download_over_http_is_verified_cached_and_not_repeated(home, server):
    signs_zip(server.folder / "master.zip")
    spec = signs_spec(server.url("master.zip"))
    ds = load(spec, progress=False)
    assert ds.class_names == [str(d) for d in range(6)]
    assert len(ds.train) + len(ds.test) == 36 and ds.image_shape == (64, 64, 3)
    archive = home / "datasets" / "archives" / "sign-language-digits.zip"
    assert ds.source == str(archive)
    assert archive.read_bytes() == (server.folder / "master.zip").read_bytes()
    assert server.requests == ["/master.zip"]
    load(spec, progress=False)  # cached arrays
    for npz in (home / "datasets" / "arrays").iterdir():
        npz.unlink()
    again = load(spec, progress=False)  # cached archive, decoded again
    assert server.requests == ["/master.zip"]
    np.testing.assert_array_equal(again.train.x, ds.train.x)
    assert leftovers(home) == []


def test_download_shows_progress_and_checks_known_size_and_sha256(home, server):
    data = signs_zip(server.folder / "master.zip").read_bytes()
    good = signs_spec(server.url("master.zip"), size=len(data), sha256=hashlib.sha256(data).hexdigest())
    assert len(load(good, progress=True).train) > 0


@pytest.mark.parametrize("change, words", [
    ({"sha256": "0" * 64}, "does not have signs's sha256 checksum"),
    ({"size": 123}, "bytes but signs's archive has 123"),
])
def test_download_failing_its_check_is_not_kept(home, server, change, words):
    signs_zip(server.folder / "master.zip")
    spec = signs_spec(server.url("master.zip"), **change)
    with pytest.raises(UserError) as error:
        load(spec, progress=False)
    message = str(error.value)
    assert message.startswith(f"The download of {spec.url} (not kept) ")
    assert words in message and "CNNZOO_DATA_MIRROR" in message
    assert list((home / "datasets" / "archives").iterdir()) == []


def test_download_of_something_else_fails_the_structure_check(home, server):
    signs_zip(server.folder / "master.zip", digits=range(5))  # no class 5
    spec = signs_spec(server.url("master.zip"))
    with pytest.raises(UserError, match=r"does not look like the signs archive: it has no images for the class 5"):
        load(spec, progress=False)
    (server.folder / "page.zip").write_text("<html>not a zip</html>")
    with pytest.raises(UserError, match=r"is not a readable zip file"):
        load(signs_spec(server.url("page.zip")), progress=False)
    assert list((home / "datasets" / "archives").iterdir()) == []


def test_download_from_a_file_url(home, tmp_path):
    archive = signs_zip(tmp_path / "master.zip")
    ds = load(signs_spec(archive.as_uri()), progress=False)
    assert len(ds.train) + len(ds.test) == 36


def test_no_internet_and_no_mirror_is_one_sentence_naming_url_variable_and_file(home):
    url = "http://127.0.0.1:9/master.zip"  # the discard port: nothing listens
    with pytest.raises(UserError) as error:
        load(signs_spec(url), progress=False)
    message = str(error.value)
    assert message.startswith("Cannot get the signs dataset: http://127.0.0.1:9/master.zip cannot be reached (")
    assert message.endswith(
        f"download {url} on a machine with internet access, save it as sign-language-digits.zip in a "
        "folder and point CNNZOO_DATA_MIRROR (now unset) at that folder."
    )
    assert "\n" not in message
    assert not (home / "datasets" / "archives").exists() or not any((home / "datasets" / "archives").iterdir())


def test_http_error_and_download_turned_off(home, server, tmp_path, monkeypatch):
    with pytest.raises(UserError, match=r"answered HTTP 404; download .* save it as sign-language-digits.zip"):
        load(signs_spec(server.url("missing.zip")), progress=False)
    monkeypatch.setenv("CNNZOO_DATA_MIRROR", str(tmp_path))
    with pytest.raises(UserError, match=r"downloads are turned off; .*CNNZOO_DATA_MIRROR \(now .*which has no "
                                         r"sign-language-digits.zip\) at that folder\.$"):
        load(signs_spec(server.url("master.zip")), download=False)
    assert server.requests == ["/missing.zip"]


def test_broken_off_download_leaves_nothing(home, server):
    class Short(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b"PK" + b"\0" * 500)  # then hang up

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Short)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        with pytest.raises(UserError, match="broke off"):
            load(signs_spec(f"http://127.0.0.1:{httpd.server_address[1]}/x.zip"), progress=False)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert list((home / "datasets" / "archives").iterdir()) == []


def test_the_mirror_is_tried_first_and_read_in_place(home, tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    signs_zip(mirror / "Sign-Language-Digits-Dataset-master.zip")  # GitHub's own name works too
    monkeypatch.setenv("CNNZOO_DATA_MIRROR", str(mirror))
    ds = load(signs_spec("http://127.0.0.1:9/unreachable.zip"), progress=False)
    assert ds.source == str(mirror / "Sign-Language-Digits-Dataset-master.zip")
    assert not (home / "datasets" / "archives").exists()


def test_a_damaged_mirror_archive_is_named(home, tmp_path, monkeypatch):
    (tmp_path / "sign-language-digits.zip").write_bytes(b"PK\x03\x04 truncated")
    monkeypatch.setenv("CNNZOO_DATA_MIRROR", str(tmp_path))
    with pytest.raises(UserError) as error:
        load("signs", progress=False)
    assert str(error.value).startswith(f"The archive {tmp_path / 'sign-language-digits.zip'} is not a readable zip file")
    assert "https://github.com/ardamavi/Sign-Language-Digits-Dataset/archive/refs/heads/master.zip" in str(error.value)


def test_a_damaged_cache_file_is_detected_and_rebuilt(home, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CNNZOO_DATA_MIRROR", str(tmp_path))
    signs_zip(tmp_path / "sign-language-digits.zip")
    ds = load("signs", progress=False)
    data = ds.cache_path.read_bytes()
    for damaged in (data[: len(data) // 2], data[:5000] + bytes(255 - b for b in data[5000:5100]) + data[5100:]):
        ds.cache_path.write_bytes(damaged)
        again = load("signs", progress=False)
        assert f"the cache file {ds.cache_path} is damaged" in capsys.readouterr().err
        np.testing.assert_array_equal(again.train.x, ds.train.x)
        assert ds.cache_path.read_bytes() == data  # rebuilt whole
    load("signs", progress=False)
    assert "damaged" not in capsys.readouterr().err


def test_an_interrupted_cache_write_leaves_nothing(home, tmp_path, monkeypatch):
    monkeypatch.setenv("CNNZOO_DATA_MIRROR", str(tmp_path))
    signs_zip(tmp_path / "sign-language-digits.zip")

    def savez_then_crash(file, **arrays):
        file.write(b"PK\x03\x04 partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", savez_then_crash)
    with pytest.raises(KeyboardInterrupt):
        load("signs", progress=False)
    assert list((home / "datasets" / "arrays").iterdir()) == []
    monkeypatch.undo()


# ---------------------------------------------------------------- splits


def test_split_hash_is_stable_under_additions_and_removals():
    keys = [f"class{k % 3}/img{i}.png" for i, k in enumerate(range(3000))]
    labels = [int(k[5]) for k in keys]
    mask = splits.held_out(keys, labels, 0.1, splits.test_salt(0))
    assert 0.08 < mask.mean() < 0.12
    more = keys[::2] + [f"class{i % 3}/new{i}.png" for i in range(500)]
    more_mask = splits.held_out(more, [int(k[5]) for k in more], 0.1, splits.test_salt(0))
    assert more_mask[:1500].tolist() == mask[::2].tolist()
    other_seed = splits.held_out(keys, labels, 0.1, splits.test_salt(1))
    assert other_seed.tolist() != mask.tolist()


def test_every_class_with_two_files_is_in_every_split():
    keys = ["a/1", "a/2", "b/1", "b/2", "b/3", "c/1"]
    labels = [0, 0, 1, 1, 1, 2]
    for seed in range(20):
        mask = splits.held_out(keys, labels, 0.1, splits.test_salt(seed))
        for label in (0, 1):
            chosen = mask[np.array(labels) == label]
            assert chosen.any() and not chosen.all()
        assert not mask[5]  # a class of one stays in training
    assert not splits.held_out(keys, labels, 0.0, "x").any()


# ---------------------------------------------------------------- other layouts


def test_mnist_layout_keeps_its_official_split(home, tmp_path, monkeypatch):
    with zipfile.ZipFile(tmp_path / "mnist.zip", "w") as zf:
        zf.writestr("mnist-pngs-main/train.csv", "filepath,label\n")
        for split, n in (("train", 4), ("test", 2)):
            for d in range(10):
                for i in range(n):
                    zf.writestr(f"mnist-pngs-main/{split}/{d}/{d}{i}.png",
                                image_bytes(d * 10 + i, (28, 28), "L", "PNG"))
    monkeypatch.setenv("CNNZOO_DATA_MIRROR", str(tmp_path))
    ds = load("mnist", progress=False)
    assert (len(ds.train), len(ds.test)) == (40, 20) and ds.image_shape == (28, 28, 1)
    assert all(k.startswith("test/") for k in ds.test.keys)
    # LeNet-5's 32x32: the digits are centred on black as in the paper, unless asked to stretch.
    padded = load("mnist", image_size=(32, 32), progress=False)
    assert padded.image_shape == (32, 32, 1) and padded.preprocessing["resize"] == "pad"
    np.testing.assert_array_equal(padded.train.x[:, 2:30, 2:30], ds.train.x)
    assert not padded.train.x[:, :2].any() and not padded.train.x[:, 30:].any()
    stretched = load("mnist", image_size=(32, 32), resize="resize", progress=False)
    assert stretched.preprocessing["resize"] == "resize" and not np.array_equal(stretched.train.x, padded.train.x)
    with zipfile.ZipFile(tmp_path / "mnist.zip") as zf:
        png = zf.read("mnist-pngs-main/test/3/30.png")
    np.testing.assert_array_equal(ds.test.x[list(ds.test.keys).index("test/3/30.png")],
                                  np.asarray(Image.open(io.BytesIO(png)))[..., None])
    with zipfile.ZipFile(tmp_path / "mnist.zip", "w") as zf:  # no test/ folder
        zf.writestr("mnist-pngs-main/train/0/0.png", image_bytes(0, (28, 28), "L", "PNG"))
    with pytest.raises(UserError, match="does not look like the mnist archive"):
        load("mnist", progress=False)


def make_folder(root, classes=("cat", "dog", "emu"), per_class=5):
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            fmt, suffix = (("PNG", "png") if i % 2 else ("JPEG", "jpg"))
            size = (40 + 10 * i, 30 + 5 * i)
            (root / name / f"{i}.{suffix}").write_bytes(image_bytes(c * 10 + i, size, "RGB", fmt))
    (root / classes[0] / ".DS_Store").write_bytes(b"junk")  # hidden files are ignored
    return root


def test_image_folder(home, tmp_path):
    root = make_folder(tmp_path / "pets")
    ds = load(f"folder:{root}", validation=0.25, progress=False)
    assert ds.class_names == ["cat", "dog", "emu"]
    assert ds.image_shape == (64, 64, 3)
    assert len(ds.train) + len(ds.val) + len(ds.test) == 15
    for part in (ds.train, ds.val, ds.test):
        assert min(part.class_counts(3)) > 0
    assert ds.source == str(root) and ds.name == f"folder:{root}"
    assert set(ds.train.keys) | set(ds.val.keys) | set(ds.test.keys) == {
        f"{c}/{i}.{'png' if i % 2 else 'jpg'}" for c in ("cat", "dog", "emu") for i in range(5)}
    # A new file changes the folder: the cache is rebuilt and the old files keep their split.
    (root / "dog" / "5.png").write_bytes(image_bytes(99, (50, 50), "RGB", "PNG"))
    grown = load(f"folder:{root}", validation=0.25, progress=False)
    assert len(grown.train) + len(grown.val) + len(grown.test) == 16
    assert set(ds.test.keys) <= set(grown.test.keys)
    assert set(ds.val.keys) <= set(grown.val.keys) | {"dog/5.png"}


def test_image_folder_with_train_and_test_subfolders(home, tmp_path):
    make_folder(tmp_path / "d" / "train", ("a", "b"), 4)
    make_folder(tmp_path / "d" / "test", ("a", "b"), 2)
    ds = load(f"folder:{tmp_path / 'd'}", image_size=(20, 30), channels=1, progress=False)
    assert ds.class_names == ["a", "b"] and ds.image_shape == (20, 30, 1)
    assert (len(ds.train), len(ds.test)) == (8, 4)
    assert all(k.startswith("test/") for k in ds.test.keys)


def test_parallel_decoding_gives_the_same_arrays(home, tmp_path, monkeypatch):
    root = make_folder(tmp_path / "pets", per_class=12)
    serial = load(f"folder:{root}", progress=False)
    for npz in (home / "datasets" / "arrays").iterdir():
        npz.unlink()
    monkeypatch.setattr(readers, "PARALLEL_FROM", 10)
    monkeypatch.setattr(readers, "CHUNK", 7)
    monkeypatch.setattr(readers, "cpu_count", lambda: 2)
    parallel = load(f"folder:{root}", progress=True)
    np.testing.assert_array_equal(serial.train.x, parallel.train.x)
    np.testing.assert_array_equal(serial.test.keys, parallel.test.keys)
    # Without JAX loaded, forked processes (another test may have imported JAX: hide it;
    # the pool is only built here, nothing is forked).
    with monkeypatch.context() as hidden:
        hidden.delitem(__import__("sys").modules, "jax", raising=False)
        with readers._pool(2, "folder", root) as pool:
            assert isinstance(pool, readers.ProcessPoolExecutor)
    # With JAX loaded (it warns about fork) the pool is threads; same arrays.
    for npz in (home / "datasets" / "arrays").iterdir():
        npz.unlink()
    monkeypatch.setitem(__import__("sys").modules, "jax", object())
    with readers._pool(2, "folder", root) as pool:
        assert isinstance(pool, readers.ThreadPoolExecutor)
    threaded = load(f"folder:{root}", progress=False)
    np.testing.assert_array_equal(serial.train.x, threaded.train.x)


def course_h5(path, x_key="train_set_x", y_key="train_set_y", n=24, classes=6, seed=0, **extra):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)
    y = np.arange(n) % classes
    with h5py.File(path, "w") as f:
        f[x_key] = x
        f[y_key] = y
        f["list_classes"] = np.arange(classes)
        for key, value in extra.items():
            f[key] = value
    return x, y


def test_course_h5_files_are_read_unchanged(home, tmp_path):
    x_train, y_train = course_h5(tmp_path / "train_signs.h5", n=30)
    x_test, y_test = course_h5(tmp_path / "test_signs.h5", "test_set_x", "test_set_y", n=12, seed=1)
    ds = load(f"h5:{tmp_path / 'train_signs.h5'},{tmp_path / 'test_signs.h5'}", progress=False)
    assert ds.class_names == ["0", "1", "2", "3", "4", "5"] and ds.image_shape == (64, 64, 3)
    np.testing.assert_array_equal(ds.train.x, x_train)
    np.testing.assert_array_equal(ds.train.y, y_train)
    np.testing.assert_array_equal(ds.test.x, x_test)
    np.testing.assert_array_equal(ds.test.y, y_test)
    # Validation from the training part, by a hash of each image's bytes: stable.
    val = load(f"h5:{tmp_path / 'train_signs.h5'},{tmp_path / 'test_signs.h5'}", validation=0.3, progress=False)
    assert len(val.train) + len(val.val) == 30 and min(val.val.class_counts(6)) > 0
    expected = {hashlib.blake2b(img.tobytes(), digest_size=16).hexdigest() for img in val.val.x}
    assert set(val.val.keys) == expected
    small = load(f"h5:{tmp_path / 'train_signs.h5'},{tmp_path / 'test_signs.h5'}", image_size=32, channels=1,
                 progress=False)
    assert small.train.x.shape == (30, 32, 32, 1)


def test_one_h5_file_with_or_without_a_test_set(home, tmp_path):
    rng = np.random.default_rng(5)
    course_h5(tmp_path / "both.h5", n=20, classes=2, test_set_x=rng.integers(0, 256, (6, 64, 64, 3), dtype=np.uint8),
              test_set_y=np.array([0, 1, 0, 1, 0, 1]))
    both = load(f"h5:{tmp_path / 'both.h5'}", progress=False)
    assert (len(both.train), len(both.test)) == (20, 6)
    course_h5(tmp_path / "train_happy.h5", n=40, classes=2)
    alone = load(f"h5:{tmp_path / 'train_happy.h5'}", progress=False)
    assert len(alone.train) + len(alone.test) == 40 and min(alone.test.class_counts(2)) > 0


# ---------------------------------------------------------------- read_image


def test_read_image(tmp_path):
    rgba = np.zeros((10, 20, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png", (5, 8), 3)
    assert out.dtype == np.uint8 and out.shape == (5, 8, 3)
    assert (out[..., 0] == 200).all() and not out[..., 1:].any()
    assert read_image(tmp_path / "a.png", None, 1).shape == (10, 20, 1)
    padded = read_image(tmp_path / "a.png", 40, 3, resize="pad")
    assert padded.shape == (40, 40, 3) and not padded[0].any() and (padded[20, 20] == [200, 0, 0]).all()
    with pytest.raises(UserError, match=r"^Cannot read the image .*nope.png: there is no such file\.$"):
        read_image(tmp_path / "nope.png", 64, 3)
    (tmp_path / "b.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(UserError) as error:
        read_image(tmp_path / "b.jpg", 64, 3)
    assert str(error.value) == (f"The file {tmp_path / 'b.jpg'} is not an image file that Pillow can read: "
                                "give a JPEG or PNG image.")
    with pytest.raises(UserError, match="channels must be 1"):
        read_image(tmp_path / "a.png", 64, 2)

"""Careless and hostile input, round two: each case ends in one sentence (exit code 2 on the
CLI), the legacy-file safety check cannot be walked around, resume is exact, and nothing
already written is lost."""

import errno
import io
import json
import os
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
from imagefolders import make_folder
from PIL import Image
from typer.testing import CliRunner

from cnnzoo.cli import app
from cnnzoo.datasets import load, read_image
from cnnzoo.errors import UserError
from cnnzoo.models.saving import load_model
from cnnzoo.training import runs
from cnnzoo.training.config import TrainConfig
from cnnzoo.training.fit import train

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("private_cache")


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "1000"})


def one_sentence(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0][len("error: "):]


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("data") / "faces", ["frown", "smile"])


@pytest.fixture(scope="module")
def run(faces, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "happy"
    train(TrainConfig("happy", f"folder:{faces}", epochs=2, batch_size=8, image_size=16, out=str(out)), verbose=0)
    return out


# ---------------------------------------------------------------- 1. the legacy .h5 safety check


def legacy_file(path, model, edit=None):
    """`model` saved in Keras' legacy .h5 format, its config changed by `edit(config)`."""
    model.save(path)
    if edit is not None:
        with h5py.File(path, "r+") as f:
            config = json.loads(f.attrs["model_config"])
            edit(config)
            f.attrs["model_config"] = json.dumps(config)
    return path


def canary_lambda(canary: Path):
    """A Lambda whose code leaves a file behind when it runs."""
    payload = eval(f"lambda t: (__import__('pathlib').Path({str(canary)!r}).touch(), t)[1]")  # the path in its code
    return keras.layers.Lambda(payload, name="payload")


def test_a_lambda_inside_a_wrapper_layer_is_refused_and_its_code_never_runs(tmp_path):
    canary = tmp_path / "ran"
    inputs = keras.Input((3, 4))
    model = keras.Model(inputs, keras.layers.TimeDistributed(canary_lambda(canary))(inputs))
    canary.unlink()  # building the model ran it once
    path = legacy_file(tmp_path / "wrapped.h5", model)
    with h5py.File(path) as f:  # the Lambda is not among the model's layers: it is the wrapper's `layer`
        layers = json.loads(f.attrs["model_config"])["config"]["layers"]
        assert [layer["class_name"] for layer in layers] == ["InputLayer", "TimeDistributed"]
    message = one_sentence(invoke("predict", path, tmp_path / "x.png"))
    assert message.startswith(f"{path} contains layers that can run arbitrary code (Lambda): load it only")
    assert not canary.exists()


def test_a_lambda_claiming_to_be_a_cnnzoo_layer_is_refused(tmp_path):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, canary_lambda(tmp_path / "ran")(inputs))

    def spoof(config):
        for layer in config["config"]["layers"]:
            if layer["class_name"] == "Lambda":
                layer["registered_name"] = "cnnzoo>ZeroPadShortcut"  # a real cnnzoo registration, another class

    path = legacy_file(tmp_path / "spoofed.h5", model, spoof)
    with pytest.raises(UserError, match=r"contains layers that can run arbitrary code \(Lambda\)"):
        load_model(path)

    def spoof_class(config):  # the registered name where a legacy file keeps it: in class_name
        for layer in config["config"]["layers"]:
            if layer["class_name"] == "Lambda":
                layer["class_name"] = "cnnzoo>Lambda"

    path = legacy_file(tmp_path / "spoofed-class.h5", model, spoof_class)
    with pytest.raises(UserError, match=r"arbitrary code \(cnnzoo>Lambda\)"):
        load_model(path)


def test_the_canary_is_live_so_the_refusal_is_what_keeps_it_from_running(tmp_path):
    canary = tmp_path / "ran"
    inputs = keras.Input((4,))
    model = keras.Model(inputs, canary_lambda(canary)(inputs))
    canary.unlink()
    path = legacy_file(tmp_path / "payload.h5", model)
    with pytest.raises(UserError, match="can run arbitrary code"):
        load_model(path)
    assert not canary.exists()
    load_model(path, unsafe=True)  # what safe loading prevents: the payload runs
    assert canary.exists()


def test_a_legacy_file_of_cnnzoo_layers_loads_in_safe_mode(tmp_path):
    from cnnzoo.training.fit import build_training_model

    model = build_training_model("resnet20", (16, 16, 3), 3, augmentations=("mirror", "color", "resized-crop"))
    path = legacy_file(tmp_path / "cnnzoo.h5", model)
    x = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    np.testing.assert_allclose(load_model(path).predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5)


# ---------------------------------------------------------------- 3. resume cannot change the run


def test_resume_refuses_new_settings_and_continues_with_its_own(run):
    message = one_sentence(invoke("train", "happy", "--dataset", "x", "--out", run, "--resume", "--epochs", 5))
    assert message == (f"--resume continues {run} with the settings it was started with (epochs=2), and cannot "
                       f"change epochs to 5: resume without it, or start a new run with --out (--init {run} starts "
                       "it from this run's weights).")
    assert runs.finished_epochs(run) == 2


# ---------------------------------------------------------------- 4. damaged model files


@pytest.mark.parametrize("damage", ["truncated", "random", "weights"])
@pytest.mark.parametrize("command", ["predict", "evaluate", "serve", "resume"])
def test_a_damaged_keras_file_is_one_sentence_everywhere(run, tmp_path, damage, command):
    copy = tmp_path / "run"
    copy.mkdir()
    for name in ("config.json", "history.csv", "last.keras", "model.keras"):
        (copy / name).write_bytes((run / name).read_bytes())
    target = copy / ("last.keras" if command == "resume" else "model.keras")
    data = target.read_bytes()
    if damage == "truncated":
        target.write_bytes(data[: len(data) // 2])
    elif damage == "random":
        target.write_bytes(np.random.default_rng(0).bytes(len(data)))
    else:  # a readable zip whose weights are cut short
        with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(target, "w") as out:
            for member in source.namelist():
                content = source.read(member)
                out.writestr(member, content[:100] if member.endswith(".h5") else content)
    image = tmp_path / "x.png"
    Image.new("RGB", (16, 16)).save(image)
    args = {"predict": ["predict", copy, image], "evaluate": ["evaluate", copy, "--dataset", f"folder:{run}"],
            "serve": ["serve", copy, "--port", 1], "resume": ["train", "happy", "-d", "x", "--out", copy, "--resume"]}
    message = one_sentence(invoke(*args[command]))
    assert message.startswith(str(target))
    assert ("is not a Keras model file" if damage != "weights" else "cannot be loaded as a Keras model") in message
    assert "File not found" not in message


# ---------------------------------------------------------------- 5. where the run goes


def test_an_out_that_is_a_file_or_under_one_or_not_writable(faces, tmp_path):
    (tmp_path / "file").write_text("x")
    train_to = ["train", "happy", "--dataset", f"folder:{faces}", "--epochs", 1, "--out"]
    assert one_sentence(invoke(*train_to, tmp_path / "file")) == (
        f"The run folder {tmp_path / 'file'} is a file: choose a folder with --out.")
    message = one_sentence(invoke(*train_to, tmp_path / "file" / "run"))
    assert message.startswith(f"Cannot create the run folder {tmp_path / 'file' / 'run'} (") and "--out" in message
    message = one_sentence(invoke(*train_to, "/sys/cnnzoo-run"))  # refused even to root
    assert message.startswith("Cannot create the run folder /sys/cnnzoo-run (")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_a_failure_before_the_first_file_leaves_no_folder(tmp_path):
    out = tmp_path / "a" / "b" / "run"
    message = one_sentence(invoke("train", "happy", "--dataset", f"folder:{tmp_path / 'nowhere'}", "--out", out))
    assert "does not exist" in message
    assert list(tmp_path.iterdir()) == []  # the folders made for the run are gone again


def test_a_full_disk_mid_run_keeps_the_finished_epochs_and_says_what_to_do(faces, tmp_path, monkeypatch):
    out = tmp_path / "run"
    save = keras.Model.save
    calls = []

    def full_after_the_first_epoch(self, path, *args, **kwargs):
        calls.append(Path(path).name)
        if sum(name.startswith(".last.") for name in calls) > 1:  # epoch 1 wrote its last.keras
            raise OSError(errno.ENOSPC, "No space left on device")
        return save(self, path, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "save", full_after_the_first_epoch)
    config = TrainConfig("happy", f"folder:{faces}", epochs=3, batch_size=8, image_size=16, out=str(out))
    with pytest.raises(UserError) as error:
        train(config, verbose=0)
    assert str(error.value) == (f"Cannot write {out / 'last.keras'} (No space left on device): the file there before "
                                "is unchanged; the run's finished epochs are intact: make room, then continue it with "
                                "--resume.")
    assert runs.finished_epochs(out) == 1 and load_model(out / "last.keras") is not None
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temp file left
    monkeypatch.setattr(keras.Model, "save", save)
    assert train(TrainConfig("happy", "x", out=str(out)), resume=True, verbose=0)["epochs"] == 3


# ---------------------------------------------------------------- 6. links and empty paths in folders


def test_dangling_links_and_link_loops_in_a_folder(faces, tmp_path):
    root = tmp_path / "linked"
    for name in ("frown", "smile"):
        (root / name).mkdir(parents=True)
        for image in sorted((faces / name).iterdir())[:3]:
            (root / name / image.name).write_bytes(image.read_bytes())
    (root / "frown" / "dangling.png").symlink_to(tmp_path / "gone.png")
    (root / "smile" / "loop.png").symlink_to(root / "smile" / "loop2.png")
    (root / "smile" / "loop2.png").symlink_to(root / "smile" / "loop.png")
    (root / "smile" / "up").symlink_to(root)  # a folder link back up: not followed
    with pytest.raises(UserError) as error:
        load(f"folder:{root}", progress=False)
    assert str(error.value).startswith(f"The file {root / 'frown' / 'dangling.png'} cannot be read (")
    ds = load(f"folder:{root}", skip_bad=True, progress=False)
    assert len(ds.skipped) == 3 and len(ds.train) + len(ds.test) == 6


@pytest.mark.parametrize("name", ["folder:", "folder:  "])
def test_an_empty_folder_path_is_refused_not_the_current_folder(name):
    with pytest.raises(UserError, match="folder: needs the path of an image folder"):
        load(name, progress=False)


# ---------------------------------------------------------------- 7. a damaged cache that cannot be deleted


def test_a_damaged_cache_in_a_read_only_folder_is_one_sentence(faces, monkeypatch, capsys):
    from cnnzoo.datasets import cache

    ds = load(f"folder:{faces}", progress=False)
    ds.cache_path.write_bytes(b"damaged")

    def read_only(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(Path, "unlink", read_only)
    monkeypatch.setattr(cache.tempfile if hasattr(cache, "tempfile") else __import__("tempfile"), "mkstemp", read_only)
    with pytest.raises(UserError) as error:
        load(f"folder:{faces}", progress=False)
    assert str(error.value).startswith(f"Cannot write {ds.cache_path} (Permission denied): ")
    assert "rebuilding it" in capsys.readouterr().err


# ---------------------------------------------------------------- 8. zips, .h5 files, certificates


def signs_zip(path, edit_member=None):
    """A small sign-language-digits archive in the upstream layout; `edit_member(info)` may
    change the first member's header (compression method, flags)."""
    top = "Sign-Language-Digits-Dataset-master"
    with zipfile.ZipFile(path, "w") as zf:
        for digit in range(10):
            for i in range(3):
                buffer = io.BytesIO()
                Image.new("RGB", (8, 8), (25 * digit, 9 * i, 0)).save(buffer, "JPEG")
                zf.writestr(f"{top}/Dataset/{digit}/{digit}_{i}.JPG", buffer.getvalue())
    if edit_member is not None:
        data = bytearray(path.read_bytes())
        for signature, offset in ((b"PK\x03\x04", 0), (b"PK\x01\x02", 2)):  # local header, central directory
            at = data.index(signature)
            edit_member(data, at + offset)
        path.write_bytes(bytes(data))
    return path


def unsupported_method(data, at):
    data[at + 8:at + 10] = struct.pack("<H", 99)  # compression method 99 (AES): zipfile cannot read it


def encrypted(data, at):
    data[at + 6:at + 8] = struct.pack("<H", struct.unpack("<H", data[at + 6:at + 8])[0] | 1)


@pytest.mark.parametrize("edit, why", [(unsupported_method, "compression method"), (encrypted, "encrypted")])
def test_zip_members_that_zipfile_cannot_read(tmp_path, monkeypatch, edit, why):
    monkeypatch.setenv("CNNZOO_DATA_MIRROR", str(tmp_path))
    signs_zip(tmp_path / "sign-language-digits.zip", edit)
    with pytest.raises(UserError) as error:
        load("signs", progress=False)
    message = str(error.value)
    assert message.startswith("The image Sign-Language-Digits-Dataset-master/Dataset/0/0_0.JPG in ") and why in message
    assert len(load("signs", skip_bad=True, progress=False).skipped) == 1


def test_h5_images_as_a_group_and_an_h5_without_images(tmp_path):
    with h5py.File(tmp_path / "group.h5", "w") as f:
        f.create_group("train_set_x")
        f["train_set_y"], f["list_classes"] = np.array([0, 1]), np.array([0, 1])
    with pytest.raises(UserError, match=r"train_set_x in the HDF5 file .*group.h5 is a group, not an array"):
        load(f"h5:{tmp_path / 'group.h5'}", progress=False)
    with h5py.File(tmp_path / "empty.h5", "w") as f:
        f["train_set_x"], f["train_set_y"] = np.zeros((0, 8, 8, 3), np.uint8), np.zeros(0, np.int64)
        f["list_classes"] = np.array([0, 1])
    message = one_sentence(invoke("data", "info", f"h5:{tmp_path / 'empty.h5'}"))
    assert message == f"h5:{tmp_path / 'empty.h5'} holds no images: give a dataset with images of at least two classes."


def test_serve_refuses_missing_or_unusable_certificates_before_loading(run, tmp_path):
    message = one_sentence(invoke("serve", run, "--ssl-certfile", tmp_path / "cert.pem", "--ssl-keyfile",
                                  tmp_path / "key.pem"))
    assert message.startswith(f"--ssl-certfile {tmp_path / 'cert.pem'} is not a file")
    (tmp_path / "cert.pem").write_text("not a certificate")
    (tmp_path / "key.pem").write_text("not a key")
    message = one_sentence(invoke("serve", run, "--ssl-certfile", tmp_path / "cert.pem", "--ssl-keyfile",
                                  tmp_path / "key.pem"))
    assert message.startswith(f"The certificate {tmp_path / 'cert.pem'} and key {tmp_path / 'key.pem'} cannot be used")


# ---------------------------------------------------------------- 9. skipping bad files in train and evaluate


def test_train_and_evaluate_skip_bad_files_and_name_them(faces, tmp_path):
    root = tmp_path / "faces"
    for name in ("frown", "smile"):
        (root / name).mkdir(parents=True)
        for image in (faces / name).iterdir():
            (root / name / image.name).write_bytes(image.read_bytes())
    (root / "smile" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    message = one_sentence(invoke("train", "happy", "-d", f"folder:{root}", "--out", tmp_path / "refused"))
    assert "broken.png" in message and message.endswith("(--skip-bad) to skip unreadable files.")
    out = tmp_path / "run"
    result = invoke("train", "happy", "-d", f"folder:{root}", "--skip-bad", "--epochs", 1, "--image-size", 16,
                    "--out", out)
    assert result.exit_code == 0, result.output
    skipped = json.loads((out / "metrics.json").read_text())["skipped"]
    assert skipped["count"] == 1 and "broken.png" in skipped["files"][0]
    result = invoke("evaluate", out, "--skip-bad", "--out", tmp_path / "scores")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "scores" / "metrics.json").read_text())["skipped"]["count"] == 1


# ---------------------------------------------------------------- 10. the finished-epoch count


def test_a_kill_between_last_keras_and_history_does_not_retrain_an_epoch(run, tmp_path):
    copy = tmp_path / "run"
    copy.mkdir()
    for name in ("config.json", "history.csv", "last.keras", "model.keras"):
        (copy / name).write_bytes((run / name).read_bytes())
    lines = (copy / "history.csv").read_text().splitlines()
    (copy / "history.csv").write_text("\n".join(lines[:-1]) + "\n")  # as a kill before its rewrite leaves it
    assert len(runs.resumable_history(copy)["epoch"]) == 2  # what last.keras holds
    assert (copy / "history.csv").read_text() == (run / "history.csv").read_text()  # rewritten from it


def test_a_history_that_does_not_parse_is_refused(run, tmp_path):
    copy = tmp_path / "run"
    copy.mkdir()
    (copy / "history.csv").write_text("epoch,loss\n1,0.5\n3,zero\n")
    with pytest.raises(UserError, match=rf"The training history {copy / 'history.csv'} is damaged"):
        runs.read_history(copy)
    (copy / "history.csv").write_text("epoch,loss\n2,0.5\n")
    with pytest.raises(UserError, match=r"is damaged \(its epochs are not 1, 2, 3, ...\)"):
        runs.read_history(copy)


# ---------------------------------------------------------------- 11. huge and float images


def header_only_png(path, width, height):
    """A PNG header claiming width x height, cut off just after its pixels begin: tiny on disk."""
    ihdr = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + ihdr + struct.pack(">I", zlib.crc32(ihdr))
                     + struct.pack(">I", 4096) + b"IDAT" + zlib.compress(b"\0" * 64)[:8])
    return path


def test_a_huge_image_is_refused_from_its_header_unless_the_limit_is_raised(run, tmp_path):
    huge = header_only_png(tmp_path / "huge.png", 12_000, 12_000)  # 144 megapixels, 33 bytes
    message = one_sentence(invoke("predict", run, huge))
    assert message == (f"The file {huge} is 12000x12000 = 144,000,000 pixels, more than the limit of 40,000,000 "
                       "(raise it with --max-megapixels): give a JPEG or PNG image.")
    raised = one_sentence(invoke("predict", run, huge, "--max-megapixels", 200))
    assert "corrupt or truncated" in raised  # past the limit, the file is read (and found cut short)
    with pytest.raises(UserError, match="more than the limit of 100"):
        read_image(header_only_png(tmp_path / "small.png", 20, 20), max_pixels=100)


def test_a_float_tiff_in_0_1_is_scaled_to_pixels_not_black(tmp_path):
    ramp = np.linspace(0, 1, 16 * 16, dtype=np.float32).reshape(16, 16)
    Image.fromarray(ramp, mode="F").save(tmp_path / "ramp.tif")
    pixels = read_image(tmp_path / "ramp.tif", channels=1)[..., 0]
    np.testing.assert_array_equal(pixels, np.round(ramp * 255).astype(np.uint8))


# ---------------------------------------------------------------- 12. one class


def test_a_folder_of_one_class_is_refused(tmp_path):
    root = make_folder(tmp_path / "one", ["smile"])
    message = one_sentence(invoke("train", "happy", "-d", f"folder:{root}", "--out", tmp_path / "run"))
    assert message == (f"folder:{root} has only one class (smile): a classifier needs at least two; add the images "
                       "of the other classes (a sub-folder each).")
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- 13. the door


@pytest.fixture(scope="module")
def door(run):
    from fastapi.testclient import TestClient

    from cnnzoo.serve.app import create_app

    with TestClient(create_app(run)) as client:
        yield client


def test_the_door_takes_only_jpeg_and_png(door):
    gif = io.BytesIO()
    Image.new("RGB", (16, 16)).save(gif, "GIF")
    answer = door.post("/predict", content=gif.getvalue(), headers={"content-type": "image/gif"})
    assert answer.status_code == 415
    assert answer.json()["error"] == ("The upload is a GIF image, and the door takes JPEG or PNG images: send a JPEG "
                                      "or PNG image.")


def test_the_door_does_not_echo_the_host_header(door):
    answer = door.get("/static", headers={"host": "attacker.example"}, follow_redirects=False)
    assert answer.status_code == 404 and "attacker.example" not in answer.headers.get("location", "")


def test_a_stalled_upload_is_cut_off(monkeypatch):
    import asyncio

    from cnnzoo.serve import app as door_app

    class Stalled:
        headers = {"content-length": "1000"}

        async def stream(self):
            yield b"x" * 10
            await asyncio.sleep(60)

    monkeypatch.setattr(door_app, "BODY_TIMEOUT_S", 0.2)
    with pytest.raises(door_app.RequestError) as error:
        asyncio.run(door_app._read_body(Stalled(), 10_000))
    assert error.value.status == 408 and "10 bytes came" in error.value.message


def test_the_door_sends_no_server_banner(run):
    from loadtest import serve_subprocess

    import httpx

    with serve_subprocess(run) as server:
        answer = httpx.get(server.url + "/health")
    assert answer.status_code == 200 and "server" not in answer.headers


# ---------------------------------------------------------------- 14. the set-up script


def test_the_set_up_script_says_what_to_install_where_it_cannot(tmp_path):
    script = Path(__file__).resolve().parents[1] / "tools" / "system-packages.sh"
    done = subprocess.run(["/bin/bash", str(script)], capture_output=True, text=True, env={"PATH": str(tmp_path)})
    assert done.returncode == 1
    assert done.stderr.strip() == ("cnnzoo's tests need graphviz chromium chromium-driver, and this machine has no "
                                   "apt-get: install them with its package manager (macOS: brew install graphviz "
                                   "chromium chromedriver).")
    present = subprocess.run(["/bin/bash", str(script)], capture_output=True, text=True, env=dict(os.environ))
    assert (present.returncode, present.stderr) == (0, "")  # this machine has them: nothing to do, nothing said


def test_the_readme_test_command_runs_the_set_up_script():
    sys.path.insert(0, str(Path(__file__).parent))
    from test_readme import readme_commands

    assert "bash tools/system-packages.sh && " in readme_commands()[1]

"""`cnnzoo data list | info | show` on small fixtures built here (a mirror of one zip, a folder)."""

import io
import zipfile

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cnnzoo.cli import app

runner = CliRunner()
TOP = "Sign-Language-Digits-Dataset-master"


def jpeg(seed, size=(100, 100)):
    buffer = io.BytesIO()
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.fixture
def env(tmp_path):
    """A mirror holding only a small sign-language-digits.zip (5 images per digit)."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    with zipfile.ZipFile(mirror / "sign-language-digits.zip", "w") as zf:
        for d in range(10):
            for i in range(5):
                zf.writestr(f"{TOP}/Dataset/{d}/IMG_{d}{i}.JPG", jpeg(10 * d + i))
    return {"CNNZOO_DATA_MIRROR": str(mirror), "CNNZOO_HOME": str(tmp_path / "home"), "COLUMNS": "200"}


def invoke(env, *args):
    return runner.invoke(app, ["data", *args], env=env)


def rows(output):
    return {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
            for line in output.splitlines() if line.startswith("│ ")}


def test_data_list(env):
    result = invoke(env, "list")
    assert result.exit_code == 0, result.output
    table = rows(result.stdout)
    assert table["signs"][:4] == ["6", "64x64x3", "30", "Apache-2.0"]
    assert table["sign-digits"][:3] == ["10", "64x64x3", "50"]
    assert table["smiles"][:3] == ["2", "64x64x1", "not fetched"]
    assert table["mnist"][:3] == ["10", "28x28x1", "not fetched"]
    assert "https://github.com/rasbt/mnist-pngs/archive/refs/heads/main.zip" in result.stdout
    assert "folder:PATH" in result.stdout and "h5:TRAIN.h5[,TEST.h5]" in result.stdout


def test_data_info_counts_each_class_in_each_split(env):
    result = invoke(env, "info", "sign-digits", "--validation", "0.25")
    assert result.exit_code == 0, result.output
    table = rows(result.stdout)
    assert list(table) == [str(d) for d in range(10)] + ["all"]
    for d in range(10):
        train, val, test, total = map(int, table[str(d)])
        assert total == 5 and train > 0 and val > 0 and test > 0
    assert table["all"][-1] == "50"
    assert "sign-digits: 10 classes, images 64x64x3 uint8" in result.stdout
    assert f"source   {env['CNNZOO_DATA_MIRROR']}/sign-language-digits.zip" in result.stdout
    assert f"cache    {env['CNNZOO_HOME']}/datasets/arrays/sign-digits-" in result.stdout


def test_data_show_writes_a_grid_with_one_row_per_class(env, tmp_path):
    out = tmp_path / "grids" / "signs.png"
    out.parent.mkdir()
    result = invoke(env, "show", "signs", "-o", str(out), "--per-class", "3", "--split", "test")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"wrote {out}"
    with Image.open(out) as img:
        assert img.format == "PNG"
        width, height = img.size
    assert height > width  # six rows of three
    assert [p.name for p in out.parent.iterdir()] == ["signs.png"]  # no temp file left


def test_data_show_of_a_folder_in_grayscale_as_svg(env, tmp_path):
    for name in ("left", "right"):
        (tmp_path / "lr" / name).mkdir(parents=True)
        for i in range(3):
            (tmp_path / "lr" / name / f"{i}.jpg").write_bytes(jpeg(i, (30, 30)))
    out = tmp_path / "lr.svg"
    result = invoke(env, "show", f"folder:{tmp_path / 'lr'}", "-o", str(out), "--channels", "1",
                    "--image-size", "32")
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "<svg" in text[:1000] and "0: left" in text and "1: right" in text


@pytest.mark.parametrize("args, message", [
    (("info", "nope"), "error: Unknown dataset 'nope': choose one of signs, sign-digits, sign-digits-6-9, smiles, mnist"),
    (("info", "smiles"), "error: Cannot get the smiles dataset:"),
    (("show", "signs", "-o", "grid.txt"), "error: Cannot draw to grid.txt: the file name must end in .png"),
    (("show", "signs", "-o", "g.png", "--split", "val"), "error: signs has no 'val' split: choose one of train, test."),
    (("info", "signs", "--channels", "2"), "error: channels must be 1 (grayscale) or 3 (RGB)."),
])
def test_user_errors_are_one_sentence_and_exit_2(env, args, message, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    # smiles is not in the mirror: its download goes to a closed local port, not the internet.
    from cnnzoo.datasets import registry

    monkeypatch.setitem(registry._REGISTRY, "smiles", __import__("dataclasses").replace(
        registry._REGISTRY["smiles"], url="http://127.0.0.1:9/master.zip"))
    result = invoke(env, *args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(message)
    assert "Traceback" not in result.output
    assert not (tmp_path / "g.png").exists() and not (tmp_path / "grid.txt").exists()

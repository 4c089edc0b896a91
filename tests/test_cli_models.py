"""`cnnzoo models | summary | plot | info`: output users read, files written, errors."""

import pytest
from typer.testing import CliRunner

from cnnzoo.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, list(args), env={"COLUMNS": "160"})


def _rows(pattern):
    result = invoke("models", pattern)
    assert result.exit_code == 0, result.output
    return {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.startswith("│ ")}


def test_models_lists_registered_models_with_parameter_counts():
    # Patterns keep this fast: the full table builds every network, VGG-19 included.
    assert "37,633" in _rows("happy")["happy"]
    assert sorted(_rows("resnet50v2*")) == ["resnet50v2", "resnet50v2_keras"]
    rows = _rows("resnet50")
    assert sorted(rows) == ["resnet50"]
    assert "23,600,006" in rows["resnet50"] and "64x64x3" in rows["resnet50"]
    assert "0.309" in rows["resnet50"]  # GMACs at 64x64x3


@pytest.mark.jax
def test_summary_of_happy_model():
    result = invoke("summary", "happy")
    assert result.exit_code == 0, result.output
    for text in ("conv0 (Conv2D)", "(None, 64, 64, 32)", "max_pool (MaxPooling2D)", "(None, 32768)",
                 "Total params: 37,633", "Trainable params: 37,569", "Non-trainable params: 64"):
        assert text in result.stdout


def test_summary_of_resnet50_at_imagenet_size():
    result = invoke("summary", "resnet50", "--input-shape", "224,224,3", "--classes", "1000")
    assert result.exit_code == 0, result.output
    assert "Total params: 25,636,712" in result.stdout
    assert "fc1000 (Dense)" in result.stdout
    assert "res5c_branch2c (Conv2D)" in result.stdout


def test_plot_writes_png(tmp_path):
    out = tmp_path / "graph.png"
    result = invoke("plot", "resnet50", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["graph.png"]  # no temp file left behind


def test_plot_writes_svg(tmp_path):
    out = tmp_path / "graph.svg"
    assert invoke("plot", "happy", "-o", str(out)).exit_code == 0
    assert b"<svg" in out.read_bytes()[:1000]


def test_plot_without_graphviz_is_one_sentence_exit_2(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot` anywhere
    result = invoke("plot", "happy", "-o", str(tmp_path / "g.png"))
    assert result.exit_code == 2
    assert "Graphviz's `dot` program is not on PATH" in result.stderr
    assert "apt-get install graphviz" in result.stderr
    assert not (tmp_path / "g.png").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["summary", "resnet5"], "Unknown model 'resnet5': choose one of "),
        (["summary", "resnet50", "--input-shape", "64,64"],
         "--input-shape must be three positive integers such as 64,64,3. Received: '64,64'"),
        (["summary", "resnet50", "--input-shape", "a,b,c"], "--input-shape must be three positive integers"),
        (["summary", "resnet50", "--input-shape", "4,4,3"], "the smallest that works is 5x5"),
        (["summary", "happy", "--classes", "0"], "classes must be a positive integer"),
        (["plot", "happy", "-o", "graph.jpg"], "the file name must end in .png, .svg, .pdf"),
        (["plot", "happy", "-o", "/no/such/folder/g.png"], "the folder /no/such/folder does not exist"),
    ],
)
def test_user_errors_are_one_sentence_with_exit_code_2(args, message):
    result = invoke(*args)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1


def test_unknown_model_lists_the_valid_names():
    result = invoke("summary", "nope")
    assert "happy" in result.stderr and "resnet50" in result.stderr


def test_info_reports_backend_versions_devices_and_data_locations(monkeypatch, tmp_path):
    monkeypatch.setenv("CNNZOO_DATA_MIRROR", str(tmp_path / "mirror"))
    monkeypatch.setenv("CNNZOO_HOME", str(tmp_path / "home"))
    result = invoke("info")
    assert result.exit_code == 0, result.output
    import keras

    assert f"backend       {keras.backend.backend()}" in result.stdout
    assert f"keras         {keras.__version__}" in result.stdout
    assert "devices       cpu" in result.stdout
    assert f"data mirror   {tmp_path / 'mirror'}" in result.stdout
    assert f"cache         {tmp_path / 'home'}" in result.stdout

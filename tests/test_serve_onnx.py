"""The Happy House door served from an exported `.onnx` file: the same answers as the Keras
door and as `cnnzoo predict` on the file, the run's facts from the file's metadata, bad
uploads still refused, and no Keras or framework imported by the ONNX door.
"""

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
from test_serve_api import assert_error, post_file, smiles_faces, tiny_run

import cnnzoo
from cnnzoo.inference.predict import predict_files
from cnnzoo.serve.app import create_app

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


@pytest.fixture(scope="module")
def sigmoid_run(tmp_path_factory):
    return tiny_run("sigmoid", tmp_path_factory)


@pytest.fixture(scope="module")
def exported(sigmoid_run, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx-door") / "door.onnx"
    cnnzoo.export(sigmoid_run, path)
    return path


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    folder = tmp_path_factory.mktemp("faces")
    out = []
    for name, data in smiles_faces(3):
        (folder / name).write_bytes(data)
        out.append((folder / name, data))
    return out


@pytest.fixture(scope="module")
def onnx_client(exported):
    with TestClient(create_app(exported)) as c:
        yield c


@pytest.fixture(scope="module")
def keras_client(sigmoid_run):
    with TestClient(create_app(sigmoid_run)) as c:
        yield c


def test_the_onnx_door_answers_as_the_keras_door_and_cnnzoo_predict(onnx_client, keras_client, exported, faces):
    expected = predict_files(exported, [path for path, _ in faces])  # `cnnzoo predict door.onnx`
    for (path, data), reference in zip(faces, expected):
        of_onnx, of_keras = post_file(onnx_client, data).json(), post_file(keras_client, data).json()
        np.testing.assert_allclose(of_onnx["probabilities"], reference["probabilities"], atol=1e-5)
        np.testing.assert_allclose(of_onnx["probabilities"], of_keras["probabilities"], atol=1e-4)
        assert of_onnx["prediction"]["class"] == of_keras["prediction"]["class"] == reference["class"]
        assert of_onnx["door"] == of_keras["door"] and of_onnx["happy"] == of_keras["happy"]


def test_the_onnx_door_describes_the_run_from_the_file(onnx_client, keras_client, exported, sigmoid_run):
    info, of_keras = onnx_client.get("/model").json(), keras_client.get("/model").json()
    assert info["name"] == sigmoid_run.name  # the run it was exported from
    for key in ("architecture", "dataset", "input_shape", "input_dtype", "output", "classes", "threshold",
                "parameters", "preprocessing"):
        assert info[key] == of_keras[key], key
    saved = json.loads((sigmoid_run / "metrics.json").read_text())
    assert info["metrics"]["test"]["accuracy"] == saved["test"]["accuracy"]
    health = onnx_client.get("/health").json()
    assert health["status"] == "ok" and health["model"] == sigmoid_run.name and health["batches"] >= 1


def test_the_onnx_door_refuses_bad_uploads_and_keeps_serving(onnx_client, faces):
    assert_error(onnx_client.post("/predict", content=faces[0][1][:300], headers={"content-type": "image/jpeg"}),
                 422, "corrupt or truncated")
    assert_error(onnx_client.post("/predict", content=b"text", headers={"content-type": "text/plain"}), 415)
    assert post_file(onnx_client, faces[1][1]).status_code == 200


def test_the_onnx_door_imports_no_keras_and_no_framework(exported):
    """What the door needs at serve time: onnxruntime, NumPy, Pillow, FastAPI; not Keras, torch
    or JAX (nor the onnx package: the metadata holds the parameter count)."""
    code = ("import sys; from cnnzoo.serve.app import create_app; app = create_app(sys.argv[1]); "
            "app.state.served.close(); "
            "print(sorted(m for m in ('keras', 'torch', 'jax', 'onnx', 'tensorflow') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code, str(exported)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"

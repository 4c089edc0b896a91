"""`cnnzoo serve`'s API through FastAPI's test client: every endpoint, every kind of bad
input (each a 4xx with a one-sentence JSON error, the server serving on), answers equal to
`cnnzoo predict`'s, concurrent requests that never mix, safe loading, and the command.

The models are tiny runs trained here (1 epoch on coloured squares); the faces are real
JPEGs from the smiles archive in the data mirror.
"""

import asyncio
import base64
import io
import json
import os
import socket
import struct
import threading
import warnings
import zlib
from pathlib import Path

import httpx
import keras
import loadtest
import numpy as np
import pytest
from imagefolders import make_folder
from PIL import Image
from typer.testing import CliRunner

from cnnzoo.cli import app as cli_app
from cnnzoo.datasets import read_image
from cnnzoo.errors import UserError
from cnnzoo.inference.predict import predict_files
from cnnzoo.serve import model as served_model
from cnnzoo.serve.app import create_app
from cnnzoo.serve.model import MicroBatcher
from cnnzoo.training.config import TrainConfig
from cnnzoo.training.fit import train

with warnings.catch_warnings():  # Starlette >= 1.x suggests httpx2; httpx still works
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

ROOT = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"
_RUNS: dict[str, Path] = {}  # tiny runs, trained once per session (the other serve tests reuse them)


# -- shared helpers (imported by test_serve_browser.py and test_serve_load.py) ----------------
def data_mirror() -> Path:
    return Path(os.environ.get("CNNZOO_DATA_MIRROR") or ROOT.parent / "shared" / "data")


def smiles_faces(per_class: int = 2) -> list[tuple[str, bytes]]:
    """(name, JPEG bytes) of real faces: `per_class` smiling, then as many not smiling."""
    faces = loadtest.smiles_faces(data_mirror() / "smiles.zip", per_class)
    assert len(faces) == 2 * per_class
    return faces


png_bytes = loadtest.png


def tiny_run(kind: str, tmp_path_factory) -> Path:
    """A run folder of HappyModel trained 1 epoch: 'sigmoid' (not smiling / smiling) or
    'softmax' (circle / square / star)."""
    if kind not in _RUNS:
        classes = {"sigmoid": ["not smiling", "smiling"], "softmax": ["circle", "square", "star"]}[kind]
        base = tmp_path_factory.mktemp(f"serve-{kind}")
        folder = make_folder(base / "data", classes, per_class=8)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("CNNZOO_HOME", str(base / "home"))
            train(TrainConfig("happy", f"folder:{folder}", epochs=1, batch_size=8, out=str(base / "run")),
                  verbose=0)
        _RUNS[kind] = base / "run"
    return _RUNS[kind]


def ihdr_png(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height, cut off where its pixel data begins."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    header = PNG + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    return header + struct.pack(">I", 4096) + b"IDAT" + zlib.compress(b"\0" * 64)[:8]


# -- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sigmoid_run(tmp_path_factory):
    return tiny_run("sigmoid", tmp_path_factory)


@pytest.fixture(scope="module")
def softmax_run(tmp_path_factory):
    return tiny_run("softmax", tmp_path_factory)


@pytest.fixture(scope="module")
def client(sigmoid_run):
    with TestClient(create_app(sigmoid_run)) as c:
        yield c


@pytest.fixture(scope="module")
def softmax_client(softmax_run):
    with TestClient(create_app(softmax_run)) as c:
        yield c


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """Real faces, also written to files so `cnnzoo predict` can read them."""
    folder = tmp_path_factory.mktemp("faces")
    out = []
    for name, data in smiles_faces(2):
        (folder / name).write_bytes(data)
        out.append((folder / name, data))
    return out


def post_file(client, data, name="face.jpg", content_type="image/jpeg", params=None):
    return client.post("/predict", files={"file": (name, data, content_type)}, params=params)


def assert_error(response, status, *fragments):
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["status"] == status
    assert body["error"].endswith("."), body  # one sentence
    for fragment in fragments:
        assert fragment in body["error"], body
    return body


# -- the endpoints -------------------------------------------------------------------------------
def test_health(client, sigmoid_run):
    body = client.get("/health").json()
    assert body["status"] == "ok"
    assert body["model"] == sigmoid_run.name
    assert len(body["version"]) == 12 and int(body["version"], 16) >= 0
    assert {"predictions", "refused", "failed", "queued", "uptime_s", "largest_batch"} <= body.keys()
    assert body["batches"] >= 1  # the warm-up pass at start


def test_model_describes_the_run_and_its_metrics(client, sigmoid_run):
    info = client.get("/model").json()
    assert info["name"] == sigmoid_run.name
    assert info["architecture"] == "happy"
    assert info["input_shape"] == [64, 64, 3]
    assert info["input_dtype"] == "uint8"
    assert info["classes"] == ["not smiling", "smiling"]
    assert info["output"] == "sigmoid" and info["threshold"] == 0.5
    assert info["parameters"] == 37_633  # HappyModel; the Rescaling layer has none
    assert info["dataset"].startswith("folder:")
    saved = json.loads((sigmoid_run / "metrics.json").read_text())
    assert info["metrics"]["test"]["accuracy"] == saved["test"]["accuracy"]
    assert info["metrics"]["test"]["images"] == saved["test"]["images"]
    assert info["metrics"]["epochs"] == 1
    assert info["limits"] == {"max_bytes": 10 * 1024 * 1024, "max_pixels": 40_000_000}


def test_openapi_schema_documents_the_api(client):
    schema = client.get("/openapi.json").json()
    assert set(schema["paths"]) == {"/predict", "/model", "/health"}
    predict = schema["paths"]["/predict"]["post"]
    assert set(predict["requestBody"]["content"]) == {"multipart/form-data", "image/*", "application/octet-stream"}
    assert {"200", "400", "413", "415", "422"} <= set(predict["responses"])
    fields = schema["components"]["schemas"]["Prediction"]["properties"]
    assert {"happy", "p_happy", "door", "probabilities", "classes", "model"} <= set(fields)
    # The docs pages would load scripts from a CDN, so they are not served.
    assert_error(client.get("/docs"), 404, "/docs")


def test_page_and_static_files_are_served_with_a_strict_policy(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "The Happy House" in page.text
    for asset, kind in (("/static/app.js", "javascript"), ("/static/style.css", "text/css")):
        response = client.get(asset)
        assert response.status_code == 200 and kind in response.headers["content-type"]
        assert "http://" not in response.text and "https://" not in response.text  # no CDN
    assert "http://" not in page.text.replace('href="/openapi.json"', "")
    assert page.headers["content-security-policy"].startswith("default-src 'self'")


def test_predict_a_face_as_cnnzoo_predict_does(client, faces, sigmoid_run):
    expected = predict_files(sigmoid_run, [path for path, _ in faces])
    for (path, data), reference in zip(faces, expected):
        response = post_file(client, data, path.name)
        assert response.status_code == 200, response.text
        body = response.json()
        p = reference["probabilities"][1]
        assert body["p_happy"] == pytest.approx(p, abs=1e-5)
        assert body["happy"] is (p >= 0.5)
        assert body["door"] == ("open" if p >= 0.5 else "closed")
        assert body["positive_class"] == "smiling" and body["threshold"] == 0.5
        assert body["classes"] == ["not smiling", "smiling"]
        assert body["probabilities"] == pytest.approx(reference["probabilities"], abs=1e-5)
        assert body["prediction"]["class"] == reference["class"]
        assert [c["class"] for c in body["top"]] == sorted(body["classes"], key=lambda c: -body["probabilities"][body["classes"].index(c)])
        assert body["model"] == {"name": sigmoid_run.name, "version": client.get("/health").json()["version"],
                                 "architecture": "happy"}
        assert body["image"] == {"format": "JPEG", "width": 64, "height": 64, "bytes": len(data)}
        assert "preview" not in body and body["elapsed_ms"] > 0


def test_raw_bodies_get_the_same_answer_as_uploads(client, faces):
    _, data = faces[0]
    expected = post_file(client, data).json()["probabilities"]
    for headers in ({"content-type": "image/jpeg"}, {"content-type": "application/octet-stream"}, {}):
        response = client.post("/predict", content=data, headers=headers)
        assert response.status_code == 200, (headers, response.text)
        assert response.json()["probabilities"] == expected


def test_preview_is_the_image_the_model_sees(client, faces):
    path, data = faces[0]
    body = post_file(client, data, params={"preview": "true"}).json()
    prefix = "data:image/png;base64,"
    assert body["preview"].startswith(prefix)
    seen = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["preview"][len(prefix):]))))
    assert seen.shape == (64, 64, 3)
    np.testing.assert_array_equal(seen, read_image(path, (64, 64), 3))  # decoded as training does


def png_array(data_url: str) -> np.ndarray:
    prefix = "data:image/png;base64,"
    assert data_url.startswith(prefix)
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url[len(prefix):]))))


def test_explain_adds_a_heat_map_of_the_decision(client, faces, sigmoid_run):
    """?explain=true: the same answer plus Grad-CAM of the class the answer reports, the map
    equal to cnnzoo.explain's on the same decoded pixels."""
    import cnnzoo.explain

    model = keras.saving.load_model(sigmoid_run / "model.keras")
    for path, data in faces:
        plain = post_file(client, data).json()
        body = post_file(client, data, params={"explain": "true"}).json()
        assert body["probabilities"] == plain["probabilities"] and body["door"] == plain["door"]
        explanation = body["explanation"]
        assert (explanation["method"], explanation["layer"]) == ("gradcam", "max_pool")
        assert explanation["class"] == body["prediction"]["class"]
        assert explanation["probability"] == body["prediction"]["probability"]
        assert png_array(explanation["image"]).shape == (64, 64, 3)
        heat = png_array(explanation["heatmap"])
        expected = cnnzoo.explain.gradcam(model, read_image(path, (64, 64), 3)[None], explanation["index"])[0]
        assert heat.shape == (64, 64) and heat.max() == 255
        np.testing.assert_allclose(heat / 255.0, expected, atol=1 / 255 + 1e-6)
    assert "explanation" not in plain
    assert client.get("/model").json()["explanation"] == {"method": "gradcam", "layer": "max_pool"}


def test_the_heat_map_explains_the_doors_decision_not_the_top_class(sigmoid_run, faces):
    with TestClient(create_app(sigmoid_run, threshold=0.01)) as c:  # the door opens for anyone
        for _, data in faces:
            body = post_file(c, data, params={"explain": "true"}).json()
            assert body["door"] == "open" and body["explanation"]["class"] == "smiling"
            assert body["explanation"]["probability"] == body["p_happy"]


def test_a_softmax_model_explains_its_top_class(softmax_client, faces):
    body = post_file(softmax_client, faces[0][1], params={"explain": "1"}).json()
    assert body["explanation"]["class"] == body["top"][0]["class"]


def test_a_large_photo_is_resized_like_training(client, tmp_path):
    rng = np.random.default_rng(1)
    photo = rng.integers(0, 255, (1200, 900, 3), dtype=np.uint8)
    (tmp_path / "photo.png").write_bytes(png_bytes(photo))
    body = post_file(client, png_bytes(photo), "photo.png", "image/png", {"preview": "1"}).json()
    assert body["image"] == {"format": "PNG", "width": 900, "height": 1200, "bytes": len(png_bytes(photo))}
    seen = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["preview"].split(",", 1)[1]))))
    np.testing.assert_array_equal(seen, read_image(tmp_path / "photo.png", (64, 64), 3))


def test_softmax_model_answers_with_its_top_classes_and_no_door(softmax_client, softmax_run, faces):
    info = softmax_client.get("/model").json()
    assert info["output"] == "softmax" and info["classes"] == ["circle", "square", "star"]
    assert info["threshold"] is None
    path, data = faces[0]
    body = post_file(softmax_client, data).json()
    assert not {"happy", "p_happy", "door", "threshold"} & body.keys()
    reference = predict_files(softmax_run, [path])[0]
    assert body["probabilities"] == pytest.approx(reference["probabilities"], abs=1e-5)
    assert sum(body["probabilities"]) == pytest.approx(1.0, abs=1e-4)
    probabilities = [c["probability"] for c in body["top"]]
    assert len(body["top"]) == 3 and probabilities == sorted(probabilities, reverse=True)
    assert body["prediction"] == body["top"][0]
    assert body["prediction"]["class"] == reference["class"]


# -- bad input: a 4xx with a JSON sentence, and the server keeps serving -----------------------------
def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


BAD_UPLOADS = {
    "text file as an image": (b"hello, I am not a picture\n" * 20, "image/png", 422, "is not an image"),
    "HTML page": (b"<!doctype html><html><body>hi</body></html>", "text/html", 422, "is not an image"),
    "truncated JPEG": ("face/2", "image/jpeg", 422, "is corrupt or truncated"),
    "truncated PNG": ("png/2", "image/png", 422, "is corrupt or truncated"),
    "header-only PNG": (ihdr_png(64, 64), "image/png", 422, "is corrupt or truncated"),
    "empty file": (b"", "image/jpeg", 400, "empty"),
    "7000x7000 PNG": (ihdr_png(7000, 7000), "image/png", 413, "7000x7000 = 49,000,000 pixels, more than the limit of 40,000,000"),
    # cnnzoo's own limit, from the header, before Pillow's bomb check could matter
    "decompression bomb": (ihdr_png(100_000, 100_000), "image/png", 413, "100000x100000 = 10,000,000,000 pixels"),
}


def _payload(spec, faces):
    if spec == "face/2":
        return _truncated(faces[0][1])
    if spec == "png/2":
        return _truncated(png_bytes(np.random.default_rng(2).integers(0, 255, (64, 64, 3), dtype=np.uint8)))
    return spec


@pytest.mark.parametrize("case", BAD_UPLOADS)
def test_bad_upload_is_a_4xx_naming_the_problem(client, faces, case):
    spec, content_type, status, fragment = BAD_UPLOADS[case]
    data = _payload(spec, faces)
    assert_error(post_file(client, data, "upload", content_type), status, fragment)  # multipart
    assert_error(client.post("/predict", content=data, headers={"content-type": "image/png"}), status, fragment)


@pytest.mark.parametrize("content_type", ["text/plain", "application/json", "application/x-www-form-urlencoded",
                                          "video/mp4"])
def test_wrong_content_type_is_415(client, faces, content_type):
    assert_error(client.post("/predict", content=faces[0][1], headers={"content-type": content_type}),
                 415, f"The content type {content_type} is not an image upload", "multipart/form-data")


def test_empty_body_is_400(client):
    assert_error(client.post("/predict", content=b"", headers={"content-type": "image/jpeg"}), 400, "empty")
    assert_error(client.post("/predict"), 400, "empty")  # no body, no content type


def test_multipart_without_a_file_field_is_400(client, faces):
    assert_error(client.post("/predict", files={"photo": ("face.jpg", faces[0][1], "image/jpeg")}),
                 400, "no file upload named 'file'")
    assert_error(client.post("/predict", data={"file": "not a file"}, files={"other": ("x", b"y")}),
                 400, "no file upload named 'file'")
    assert_error(client.post("/predict", content=b"--nope\r\n",
                             headers={"content-type": "multipart/form-data"}), 400, "multipart")


def test_body_over_the_limit_is_413_declared_or_streamed(client):
    big = b"\xff" * (10 * 1024 * 1024 + 1)
    assert_error(client.post("/predict", content=big, headers={"content-type": "image/jpeg"}),
                 413, "10,485,761 bytes, more than the limit of 10,485,760")
    assert_error(client.post("/predict", files={"file": ("big.jpg", big, "image/jpeg")}), 413, "limit")

    def chunks():  # no content-length: the limit must hold while the body streams in
        for _ in range(11):
            yield b"\0" * (1024 * 1024)

    assert_error(client.post("/predict", content=chunks(), headers={"content-type": "image/png"}),
                 413, "more than the limit of 10,485,760 bytes")


def test_smaller_limits_from_create_app(sigmoid_run, faces):
    with TestClient(create_app(sigmoid_run, max_bytes=3000, max_pixels=60 * 60)) as small:
        assert_error(post_file(small, faces[0][1]), 413, "64x64 = 4,096 pixels, more than the limit of 3,600")
        assert_error(small.post("/predict", content=b"x" * 3001, headers={"content-type": "image/png"}),
                     413, "3,001 bytes")
        assert small.get("/model").json()["limits"] == {"max_bytes": 3000, "max_pixels": 3600}


def test_unknown_paths_and_methods_answer_json(client):
    assert_error(client.get("/nothing-here"), 404, "There is nothing at /nothing-here")
    assert_error(client.get("/predict"), 405, "GET is not allowed on /predict")
    assert_error(client.post("/predict", params={"preview": "maybe"},
                             files={"file": ("f.jpg", b"x", "image/jpeg")}), 422, "preview")


def test_after_every_bad_request_the_server_still_serves(client, faces):
    before = client.get("/health").json()
    for spec, content_type, _, _ in BAD_UPLOADS.values():
        post_file(client, _payload(spec, faces), "upload", content_type)
    client.post("/predict", content=b"{}", headers={"content-type": "application/json"})
    after = client.get("/health").json()
    assert after["status"] == "ok"
    assert after["refused"] == before["refused"] + len(BAD_UPLOADS) + 1
    assert after["failed"] == 0
    good = post_file(client, faces[1][1])
    assert good.status_code == 200 and after["predictions"] < client.get("/health").json()["predictions"]


# -- concurrency and loading --------------------------------------------------------------------------
def test_concurrent_requests_each_get_their_own_answer(sigmoid_run, faces):
    """48 different images at once, through the ASGI app: every answer equals its image's
    answer when sent alone, so batching never mixes requests up."""
    rng = np.random.default_rng(3)
    images = [data for _, data in faces] + [
        png_bytes(rng.integers(0, 255, (48 + k, 40 + k, 3), dtype=np.uint8)) for k in range(44)]
    app = create_app(sigmoid_run)

    async def run():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://serve") as ac:
            alone = [(await ac.post("/predict", content=d, headers={"content-type": "image/png"})).json()
                     for d in images]
            together = await asyncio.gather(*[
                ac.post("/predict", content=d, headers={"content-type": "image/png"}) for d in images])
        return alone, together

    try:
        alone, together = asyncio.run(run())
    finally:
        app.state.served.close()
    assert all(r.status_code == 200 for r in together)
    for one, many in zip(alone, together):
        assert many.json()["probabilities"] == pytest.approx(one["probabilities"], abs=1e-5)
    assert len({tuple(a["probabilities"]) for a in alone}) > 10  # the images really differ


def test_micro_batcher_batches_waiting_requests_and_keeps_their_order():
    gate, calls = threading.Event(), []

    def forward(batch):
        calls.append(len(batch))
        gate.wait(5)
        return batch.reshape(len(batch), -1)[:, :1] * 10

    batcher = MicroBatcher(forward, max_batch=8)
    futures = [batcher.submit(np.full((2, 2, 1), k, np.float32)) for k in range(11)]
    gate.set()
    assert [float(f.result(5)[0]) for f in futures] == [10.0 * k for k in range(11)]
    assert sum(calls) == 11 and max(calls) == 8 and len(calls) < 11
    batcher.close()
    with pytest.raises(served_model.RequestError, match="shutting down"):
        batcher.submit(np.zeros((2, 2, 1)))


@pytest.mark.parametrize("pad", [False, True])
def test_micro_batcher_answers_explain_jobs_with_their_own_function_in_the_same_batch(pad):
    gate, busy = threading.Event(), threading.Event()
    calls = []

    def forward(batch):
        calls.append(("forward", len(batch)))
        busy.set()
        gate.wait(5)
        return batch.reshape(len(batch), -1)[:, :1]

    def explain(batch, classes):
        calls.append(("explain", len(batch), classes))
        return [("explained", float(row.ravel()[0])) for row in batch]

    batcher = MicroBatcher(forward, max_batch=8, explain=explain, pad_batches=pad)
    first = batcher.submit(np.full((1,), -1.0))  # holds the worker while the rest queue up
    assert busy.wait(5)
    futures = [batcher.submit(np.full((1,), float(k)), explain=k % 2 == 1, explain_class=7 if k == 3 else None)
               for k in range(6)]
    gate.set()
    first.result(5)
    results = [f.result(5) for f in futures]
    assert [r == ("explained", float(k)) if k % 2 else float(r[0]) == k for k, r in enumerate(results)] == [True] * 6
    # Each job's class to explain; a batch padded to 4 rows repeats its last row's class too.
    expected = [("forward", 4), ("explain", 4, [None, 7, None, None])] if pad else \
        [("forward", 3), ("explain", 3, [None, 7, None])]
    assert calls[1:] == expected
    batcher.close()
    with pytest.raises(served_model.RequestError, match="does not explain"):
        MicroBatcher(forward).submit(np.zeros(1), explain=True)


def test_a_failing_forward_pass_fails_only_its_batch():
    def forward(batch):
        if (batch < 0).any():
            raise RuntimeError("boom")
        return batch.reshape(len(batch), -1)

    batcher = MicroBatcher(forward, max_batch=1)
    bad, good = batcher.submit(np.array([-1.0])), batcher.submit(np.array([2.0]))
    with pytest.raises(RuntimeError, match="boom"):
        bad.result(5)
    assert good.result(5).tolist() == [2.0]
    batcher.close()


def test_a_failing_forward_pass_is_a_json_500_and_the_server_serves_on(sigmoid_run, faces):
    with TestClient(create_app(sigmoid_run)) as c:
        batcher = c.app.state.served.batcher
        working = batcher._forward
        batcher._forward = lambda batch: (_ for _ in ()).throw(RuntimeError("GPU fell off"))
        assert_error(post_file(c, faces[0][1]), 500, "failed to answer this request")
        batcher._forward = working
        assert post_file(c, faces[0][1]).status_code == 200
        health = c.get("/health").json()
        assert (health["status"], health["failed"], health["predictions"]) == ("ok", 1, 1)


def test_the_model_is_loaded_once(sigmoid_run, faces, monkeypatch):
    calls = []
    real = served_model.load_for_prediction  # load_model for a Keras file, OnnxModel for .onnx

    def counting(path, **kwargs):
        calls.append(kwargs)
        return real(path, **kwargs)

    monkeypatch.setattr(served_model, "load_for_prediction", counting)
    with TestClient(create_app(sigmoid_run)) as c:
        for _ in range(3):
            assert post_file(c, faces[0][1]).status_code == 200
    assert calls == [{"unsafe": False, "threads": served_model.default_threads()}]


def _lambda_model():
    inputs = keras.Input((64, 64, 3))
    x = keras.layers.Lambda(lambda t: t * 1.0)(inputs)
    return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(keras.layers.Flatten()(x)))


def test_safe_mode_refuses_code_in_a_model_file_unless_unsafe(tmp_path, faces):
    path = tmp_path / "lambda.keras"
    _lambda_model().save(path)
    with pytest.raises(UserError, match="can run arbitrary code"):
        create_app(path)
    result = CliRunner().invoke(cli_app, ["serve", str(path)])
    assert result.exit_code == 2 and "can run arbitrary code" in result.stderr and "--unsafe" in result.stderr
    with TestClient(create_app(path, unsafe=True)) as c:  # a bare file: class indices, pixels / 255
        info = c.get("/model").json()
        assert info["classes"] == ["0", "1"] and info["metrics"] is None and info["name"] == "lambda"
        body = post_file(c, faces[0][1]).json()
        assert body["positive_class"] == "1" and body["door"] in ("open", "closed")


# -- the command -------------------------------------------------------------------------------------
def test_serve_command_errors_are_one_sentence_exit_2(sigmoid_run, tmp_path):
    runner = CliRunner()
    missing = runner.invoke(cli_app, ["serve", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "does not exist" in missing.stderr
    threshold = runner.invoke(cli_app, ["serve", str(sigmoid_run), "--threshold", "1.5"])
    assert threshold.exit_code == 2 and "threshold must be between 0 and 1" in threshold.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        taken = runner.invoke(cli_app, ["serve", str(sigmoid_run), "--port", str(port)])
    assert taken.exit_code == 2 and f"Cannot listen on 127.0.0.1:{port}" in taken.stderr
    https = runner.invoke(cli_app, ["serve", str(sigmoid_run), "--ssl-certfile", str(tmp_path / "cert.pem")])
    assert https.exit_code == 2 and "HTTPS needs both --ssl-certfile and --ssl-keyfile" in https.stderr
    level = runner.invoke(cli_app, ["serve", str(sigmoid_run), "--log-level", "loud"])
    assert level.exit_code == 2 and "Unknown log level 'loud'" in level.stderr
    assert "Traceback" not in missing.output + threshold.output + taken.output + https.output + level.output


def test_connections_have_nagle_off():
    """asyncio sets TCP_NODELAY only on sockets whose proto says TCP; with Nagle on, every answer
    waited ~40 ms for the client's delayed ACK."""
    from cnnzoo.cli.serve import _listen

    async def accepted_nodelay(listener) -> int:
        seen = asyncio.get_running_loop().create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport):
                sock = transport.get_extra_info("socket")
                seen.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        server = await asyncio.get_running_loop().create_server(Probe, sock=listener)
        _, writer = await asyncio.open_connection(*listener.getsockname()[:2])
        value = await asyncio.wait_for(seen, 10)
        writer.close()
        server.close()
        return value

    assert asyncio.run(accepted_nodelay(_listen("127.0.0.1", 0))) != 0
    plain = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # what cnnzoo serve used to listen on
    plain.bind(("127.0.0.1", 0))
    plain.listen(1)
    assert asyncio.run(accepted_nodelay(plain)) == 0

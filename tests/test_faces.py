"""The face step (cnnzoo.inference.faces) on its own, through `cnnzoo predict --faces` and through
the door's API: a real photo's face is found and framed, frames that are crops stay whole, the
decision rule, and every kind of awkward frame answered without a 500.

The detector is real (OpenCV's Haar cascade); the classifier is the serve tests' tiny run with
the smiles dataset's face crop written into its config.json, so the face step is on by `auto`.
"""

import io
import json
import shutil
import threading
import time
import warnings

import numpy as np
import pytest
from door_faces import composite
from PIL import Image
from skimage import data as skdata
from test_serve_api import assert_error, post_file, smiles_faces, tiny_run
from typer.testing import CliRunner

from cnnzoo.cli import app as cli_app
from cnnzoo.datasets.registry import dataset_info
from cnnzoo.inference import faces
from cnnzoo.serve.app import create_app

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

SMILES = dataset_info("smiles").faces
# Where the astronaut's face is (x, y of her eyes' midpoint, her face's width), read off the photo.
ASTRONAUT_EYES, ASTRONAUT_FACE = (222, 108), 80


def encode(img: Image.Image, fmt="JPEG", **kw) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **kw)
    return out.getvalue()


def face_crops(n: int) -> list[np.ndarray]:
    """`n` real 64x64 grey faces from the smiles archive."""
    return [np.asarray(Image.open(io.BytesIO(b)).convert("L"))[:, :, None] for _, b in smiles_faces((n + 1) // 2)][:n]


@pytest.fixture(scope="module")
def face_run(tmp_path_factory):
    """The tiny sigmoid run, recorded as trained on the smiles face crops."""
    run = tmp_path_factory.mktemp("face-run") / "run"
    shutil.copytree(tiny_run("sigmoid", tmp_path_factory), run)
    config = json.loads((run / "config.json").read_text())
    config["preprocessing"]["faces"] = SMILES.record()
    (run / "config.json").write_text(json.dumps(config))
    return run


@pytest.fixture(scope="module")
def client(face_run):
    with TestClient(create_app(face_run)) as c:
        yield c


@pytest.fixture(scope="module")
def astronaut():
    return Image.fromarray(skdata.astronaut())


def heads(astronaut, spots, size=(640, 480), colour=(90, 140, 90)) -> Image.Image:
    """A flat frame with the astronaut's head (a 160-pixel square around her face) pasted at
    [(x, y, side)] (cut off where it passes the frame's edge)."""
    head = astronaut.crop((ASTRONAUT_EYES[0] - 80, ASTRONAUT_EYES[1] - 70, ASTRONAUT_EYES[0] + 80, ASTRONAUT_EYES[1] + 90))
    frame = Image.new("RGB", size, colour)
    for x, y, side in spots:
        frame.paste(head.resize((side, side), Image.Resampling.BILINEAR), (x, y))
    return frame


def on_eyes(box, eyes_at) -> bool:
    x, y, w, h = box
    return x < eyes_at[0] < x + w and y < eyes_at[1] < y + h * 0.6


def frame_with(faces_at, size=(640, 480), colour=(90, 140, 90)) -> Image.Image:
    """A flat frame with the smiles faces pasted at [(x, y, side)]."""
    frame = Image.new("RGB", size, colour)
    for crop, (x, y, side) in zip(face_crops(len(faces_at)), faces_at):
        frame.paste(Image.fromarray(crop[:, :, 0]).resize((side, side), Image.Resampling.BILINEAR).convert("RGB"), (x, y))
    return frame


# -- the detector and the crop --------------------------------------------------------------------
def test_the_astronauts_face_is_found_and_framed(astronaut):
    found, count = faces.find_faces(astronaut, SMILES, (64, 64), 3)
    assert count == 1 and len(found) == 1
    x, y, w, h = found[0].box
    assert w == h and abs(w - ASTRONAUT_FACE) < 20
    assert x < ASTRONAUT_EYES[0] < x + w and y < ASTRONAUT_EYES[1] < y + h * 0.5  # eyes in the upper half
    assert found[0].pixels.shape == (64, 64, 3) and not found[0].too_small
    assert np.array_equal(found[0].pixels[..., 0], found[0].pixels[..., 2])  # grey, as SMILEsmileD
    # The check can fail: upside down, the cascade finds nothing on her face.
    eyes = (512 - ASTRONAUT_EYES[0], 512 - ASTRONAUT_EYES[1])
    assert not any(x < eyes[0] < x + w and y < eyes[1] < y + h for x, y, w, h in faces.detect(astronaut.rotate(180)))


def iou(a, b) -> float:
    across = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    down = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return across * down / (a[2] * a[3] + b[2] * b[3] - across * down)


def test_pasted_faces_are_cut_out_as_they_were_pasted():
    rng = np.random.default_rng(0)
    frames = [composite(crop, rng, "gradient") for crop in face_crops(12)]  # the benchmark's frames

    def overlaps(crop):
        found = []
        for jpeg, _ in frames:
            img, factor, _ = faces.open_frame(jpeg, 1)
            found.append(faces.find_faces(img, crop, (64, 64), 1, factor=factor)[0])
        return [max((iou(f.box, truth) for f in fs), default=0.0) for fs, (_, truth) in zip(found, frames)]

    assert np.median(overlaps(SMILES)) > 0.85
    # The measured geometry matters: the cascade's own box (scale 1) frames them worse.
    assert np.median(overlaps(faces.DEFAULT_CROP)) < 0.7


def test_only_the_faces_at_the_door_are_judged(astronaut):
    # Her head at 320 pixels near the camera and at 130 farther back: both found, the near one judged.
    frame = heads(astronaut, [(20, 20, 320), (420, 60, 130)], size=(640, 480))
    found, count = faces.find_faces(frame, SMILES, (64, 64), 3)
    assert count == 2 and len(found) == 1 and on_eyes(found[0].box, (20 + 160, 20 + 140))
    # The rule, not the detector, left the far one out: at half the near one's width it is judged.
    far = heads(astronaut, [(20, 20, 260), (420, 60, 150)], size=(640, 480))
    assert len(faces.find_faces(far, SMILES, (64, 64), 3)[0]) == 2


def test_a_frame_the_first_cascade_misses_gets_the_fallbacks_look(astronaut, monkeypatch):
    names = []
    real = faces._cascade

    class Blind:  # the run's cascade sees nothing, as on a frame it misses
        def detectMultiScale2(self, *args, **kwargs):
            return (), ()

    def cascade(name):
        names.append(name)
        return Blind() if name == SMILES.detector else real(name)

    monkeypatch.setattr(faces, "_cascade", cascade)
    boxes = faces.detect(astronaut, SMILES.detector)
    assert names == [SMILES.detector, SMILES.detector, faces.FALLBACK]  # found on the fallback's first look
    assert len(boxes) == 1 and on_eyes(boxes[0], ASTRONAUT_EYES)


def test_a_weak_box_does_not_hide_the_face_a_later_look_finds(astronaut, monkeypatch):
    names = []
    real = faces._cascade
    texture = (40, 400, 60, 60)  # a box on the background, at DETECT_SIDE, that few windows agree on

    class Unsure:  # the run's cascade sees only the texture, on every look
        def detectMultiScale2(self, *args, **kwargs):
            return np.array([texture]), [faces.SURE // 2]

    def cascade(name):
        names.append(name)
        return Unsure() if name == SMILES.detector else real(name)

    monkeypatch.setattr(faces, "_cascade", cascade)
    boxes = faces.detect(astronaut, SMILES.detector)
    assert names == [SMILES.detector, SMILES.detector, faces.FALLBACK]  # it went on until a sure box
    assert len(boxes) == 1 and on_eyes(boxes[0], ASTRONAUT_EYES)  # and the weak one was dropped


def test_a_frame_that_is_a_crop_is_judged_whole():
    crop = face_crops(1)[0]
    found, _ = faces.find_faces(Image.fromarray(crop[:, :, 0]), SMILES, (64, 64), 3)
    assert [f.whole_frame for f in found] == [True] and found[0].box == (0, 0, 64, 64)
    assert np.array_equal(found[0].pixels[..., 0], crop[..., 0])
    # A larger frame of another shape is not a crop: nothing found is no face.
    assert faces.find_faces(Image.new("L", (300, 200), 128), SMILES, (64, 64), 3)[0] == []


def test_a_small_face_in_a_frame_of_crop_size_is_found_not_judged_whole():
    found_on_face = 0
    for crop in face_crops(5):  # a 20-pixel face in a 64-pixel frame: the benchmark's smallest case
        frame = Image.new("L", (64, 64), 128)
        frame.paste(Image.fromarray(crop[:, :, 0]).resize((20, 20), Image.Resampling.BILINEAR), (20, 20))
        found, _ = faces.find_faces(frame, SMILES, (64, 64), 3)
        found_on_face += len(found) == 1 and not found[0].whole_frame and on_eyes(found[0].box, (30, 27))
    assert found_on_face >= 4


def test_only_a_sure_smaller_face_keeps_a_crop_from_being_judged_whole(monkeypatch):
    pixels = face_crops(1)[0]
    crop = Image.fromarray(pixels[:, :, 0])
    box = (16.0, 16.0, 32.0, 32.0)  # its crop spans 0.4 of the frame: a face in it, or its features
    # (windows that agree, judged whole, the whole frame judged beside the face)
    for windows, whole, hedged in ((faces.MAYBE - 1, True, False), (faces.MAYBE, False, True),
                                   (faces.SURE - 1, False, True), (faces.SURE, False, False)):
        monkeypatch.setattr(faces, "_detect", lambda img, detector: [(windows, box)])
        found, _ = faces.find_faces(crop, SMILES, (64, 64), 3)
        assert [f.whole_frame for f in found] == [whole]
        assert [f.whole is not None for f in found] == [hedged]
        if hedged:  # the face's crop is the box's, and the whole frame is the crop as it came
            assert on_eyes(found[0].box, (32, 32)) and np.array_equal(found[0].whole[..., 0], pixels[..., 0])
    # A box spanning MAYBE_FACE of the frame or more is the face that fills it: judged whole alone.
    large = (0.0, 0.0, 60.0, 60.0)  # its crop: 0.79 x 60 / 64 = 0.74 of the side
    monkeypatch.setattr(faces, "_detect", lambda img, detector: [(faces.SURE - 1, large)])
    assert [f.whole_frame for f in faces.find_faces(crop, SMILES, (64, 64), 3)[0]] == [True]


def test_a_face_judged_with_its_whole_frame_averages_the_two_readings():
    a, b, c, d = (np.full((2, 2, 1), v, np.uint8) for v in range(4))
    plain = faces.Face((0, 0, 2, 2), a, False, views=(b,))
    hedged = faces.Face((0, 0, 2, 2), c, False, views=(d,), whole=a)
    assert [x[0, 0, 0] for x in faces.inputs([plain, hedged])] == [0, 1, 2, 3, 0]
    rows = np.array([[0.9, 0.1], [0.7, 0.3], [0.2, 0.8], [0.4, 0.6], [0.9, 0.1]])
    answers = faces.pooled(rows, [plain, hedged])
    np.testing.assert_allclose(answers, [[0.8, 0.2], [(0.3 + 0.9) / 2, (0.7 + 0.1) / 2]])


def test_the_decision_rule():
    assert faces.door([], [], 0.5) == ("closed", "no face found")
    assert faces.door([0.9, 0.8], [False, False], 0.5) == ("open", "every face is smiling")
    assert faces.door([0.9, 0.2], [False, False], 0.5) == ("closed", "a face is not smiling")
    assert faces.door([0.9], [True], 0.5)[1].startswith("a face is too small to judge")


def test_modes_follow_the_run():
    assert faces.face_crop("auto", {"faces": SMILES.record()}) == SMILES
    assert faces.face_crop("auto", {}) is None and faces.face_crop("off", {"faces": SMILES.record()}) is None
    assert faces.face_crop("on", {}) == faces.DEFAULT_CROP
    with pytest.raises(Exception, match="--faces must be one of auto, on, off"):
        faces.face_crop("maybe", {})


def test_a_smiles_run_records_its_crop():
    from cnnzoo.datasets.core import preprocessing_record

    assert preprocessing_record((64, 64, 3), "resize", "smiles", ["a", "b"])["faces"]["grey"] is True
    assert "faces" not in preprocessing_record((64, 64, 3), "resize", "signs", ["a", "b"])


# -- the door's API --------------------------------------------------------------------------------
def test_the_door_answers_per_face(client, astronaut):
    body = post_file(client, encode(astronaut)).json()
    assert body["faces_found"] == 1 and len(body["faces"]) == 1
    face = body["faces"][0]
    assert set(face) >= {"box", "p_happy", "happy", "too_small", "probabilities", "prediction"}
    assert body["p_happy"] == face["p_happy"] and body["decided_by"] == 0
    assert body["door"] == ("open" if face["happy"] else "closed") and body["reason"].startswith("the face is")
    assert body["detect_ms"] > 0
    assert client.get("/model").json()["faces"]["scale"] == SMILES.scale


def test_a_face_is_judged_on_its_crop_and_the_crop_rescaled(face_run, client, astronaut, tmp_path):
    from cnnzoo.analysis.metrics import predict_proba
    from cnnzoo.inference.predict import load_for_prediction, predict_files

    photo = encode(astronaut, quality=95)
    frame, factor, _ = faces.open_frame(photo, 3)
    (face,), _ = faces.find_faces(frame, SMILES, (64, 64), 3, factor=factor)
    assert len(face.views) == len(faces.RESCALES) and all(v.shape == face.pixels.shape for v in face.views)
    # The larger view holds more of the photo around the face (more edges), the smaller one less.
    edges = [np.abs(np.diff(a.astype(float), axis=1)).mean() for a in (face.views[1], face.pixels, face.views[0])]
    assert edges == sorted(edges) and len(set(edges)) == 3
    p = predict_proba(load_for_prediction(face_run), np.stack(faces.inputs([face])))[:, 1]
    assert len(p) == 3 and abs(p.mean() - p[0]) > 1e-5  # the views change the answer, so the API's can tell
    answer = post_file(client, photo).json()["faces"][0]["p_happy"]
    assert answer == pytest.approx(p.mean(), abs=3e-6) and answer != pytest.approx(p[0], abs=3e-6)
    (tmp_path / "astronaut.jpg").write_bytes(photo)
    (predicted,) = predict_files(face_run, [tmp_path / "astronaut.jpg"])  # cnnzoo predict's answer
    assert predicted["faces"][0]["probabilities"][1] == pytest.approx(p.mean(), abs=3e-6)
    # The heat map explains that pooled answer: its class and probability are the face's, not the crop's alone.
    explained = post_file(client, photo, params={"explain": "true"}).json()
    index = int(p.mean() >= explained["threshold"])
    assert explained["explanation"]["index"] == index
    assert explained["explanation"]["probability"] == pytest.approx(explained["probabilities"][index], abs=1e-6)
    assert explained["explanation"]["probability"] != pytest.approx([1 - p[0], p[0]][index], abs=3e-6)


def test_no_face_is_its_own_answer(client):
    body = post_file(client, encode(Image.new("RGB", (320, 240), (200, 180, 160)))).json()
    assert body["faces"] == [] and body["door"] == "closed" and body["reason"] == "no face found"
    assert "probabilities" not in body and "p_happy" not in body


def test_ten_faces_each_answered(client, astronaut):
    spots = [(20 + 190 * (k % 5), 30 + 200 * (k // 5), 160) for k in range(10)]
    body = post_file(client, encode(heads(astronaut, spots, size=(980, 440)))).json()
    assert body["faces_found"] == 10 and len(body["faces"]) == 10
    eyes = [(x + 80, y + 70) for x, y, _ in spots]
    assert all(any(on_eyes(f["box"], e) for f in body["faces"]) for e in eyes)  # one on each head
    assert body["door"] == ("open" if all(f["happy"] for f in body["faces"]) else "closed")


def test_a_face_at_the_edge_gets_a_box_inside_the_frame(client, astronaut):
    body = post_file(client, encode(heads(astronaut, [(-30, 200, 160)]))).json()  # her hair cut off by the edge
    assert len(body["faces"]) == 1
    x, y, w, h = body["faces"][0]["box"]
    assert x >= 0 and y >= 0 and x + w <= 640 and y + h <= 480 and on_eyes((x, y, w, h), (50, 270))
    # A face whose crop would pass the frame's edge is cut from a box moved inside it.
    square = faces.FaceCrop(scale=0.8)
    assert faces._crop_box((600, 430, 80, 80), square, 1.0, (640, 480)) == (576, 416, 64, 64)
    assert faces._crop_box((0, 0, 900, 900), square, 1.0, (640, 480)) == (160, 0, 480, 480)  # shrunk to fit


def test_a_tiny_face_is_not_found_and_a_small_one_is_too_small(client, astronaut):
    tiny = heads(astronaut, [(300, 200, 20)])  # a face of 10 pixels: under the detector's minimum
    assert post_file(client, encode(tiny)).json()["reason"] == "no face found"
    small = heads(astronaut, [(10, 10, 48)], size=(96, 72))  # a face of 24 pixels: found, cut from 23
    body = post_file(client, encode(small)).json()
    assert len(body["faces"]) == 1 and not body["faces"][0]["too_small"]
    smaller = heads(astronaut, [(10, 10, 32)], size=(96, 72))  # 16 pixels: found, cut from 15: too small
    body = post_file(client, encode(smaller)).json()
    assert [f["too_small"] for f in body["faces"]] == [True]
    assert body["door"] == "closed" and body["reason"].startswith("a face is too small to judge")


def test_a_huge_photo_is_detected_in_bounded_time(client, astronaut):
    huge = astronaut.resize((6000, 6000), Image.Resampling.BILINEAR)
    started = time.perf_counter()
    body = post_file(client, encode(huge, quality=80)).json()
    assert time.perf_counter() - started < 10
    assert [on_eyes(f["box"], (ASTRONAUT_EYES[0] * 6000 / 512, ASTRONAUT_EYES[1] * 6000 / 512))
            for f in body["faces"]] == [True]  # in the photo's own pixels


def test_grey_and_cmyk_photos_find_the_same_face(client, astronaut):
    rgb = post_file(client, encode(astronaut)).json()["faces"][0]["box"]
    grey = post_file(client, encode(astronaut.convert("L"), "PNG"), "g.png", "image/png").json()
    cmyk = post_file(client, encode(astronaut.convert("CMYK"))).json()
    for body in (grey, cmyk):
        assert len(body["faces"]) == 1
        assert max(abs(a - b) for a, b in zip(body["faces"][0]["box"], rgb)) <= 4


def test_bad_uploads_are_still_refused_in_one_sentence(client):
    assert_error(post_file(client, b"not an image"), 422, "not an image")
    assert_error(post_file(client, encode(Image.new("RGB", (40, 40)))[:60]), 422, "corrupt or truncated")
    assert client.get("/health").json()["failed"] == 0


def test_concurrent_frames_get_their_own_faces(client):
    frames = [encode(frame_with([(40 + 30 * k, 60, 100 + 10 * k)])) for k in range(6)]
    alone = [post_file(client, f).json()["faces"] for f in frames]
    together = [None] * len(frames)

    def send(k):
        together[k] = post_file(client, frames[k]).json()["faces"]

    threads = [threading.Thread(target=send, args=(k,)) for k in range(len(frames))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # The same boxes, and probabilities to float32 rounding (a micro-batch sums in another order).
    assert [[f["box"] for f in faces_] for faces_ in together] == [[f["box"] for f in faces_] for faces_ in alone]
    for mine, single in zip(together, alone):
        np.testing.assert_allclose([f["p_happy"] for f in mine], [f["p_happy"] for f in single], atol=1e-5)
    assert len({json.dumps([f["box"] for f in a]) for a in alone}) == len(frames)  # they differ: a swap would show


# -- cnnzoo predict --faces -------------------------------------------------------------------------
def test_predict_with_the_face_step(face_run, tmp_path, astronaut):
    astronaut.save(tmp_path / "astronaut.jpg")
    Image.new("RGB", (320, 240), (10, 20, 30)).save(tmp_path / "wall.png")
    runner = CliRunner()
    result = runner.invoke(cli_app, ["predict", str(face_run), str(tmp_path / "astronaut.jpg"), str(tmp_path / "wall.png")])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(f"{tmp_path / 'astronaut.jpg'}: face 1 at x=") and "p(smiling) = " in lines[0]
    assert lines[1].startswith(f"{tmp_path / 'astronaut.jpg'}: door ")
    assert lines[2] == f"{tmp_path / 'wall.png'}: door closed (no face found)"
    off = runner.invoke(cli_app, ["predict", str(face_run), str(tmp_path / "astronaut.jpg"), "--faces", "off"])
    assert off.exit_code == 0 and "face 1" not in off.output and "p(smiling) = " in off.output
    bad = runner.invoke(cli_app, ["predict", str(face_run), str(tmp_path / "astronaut.jpg"), "--faces", "maybe"])
    assert bad.exit_code == 2 and "--faces must be one of auto, on, off" in bad.output
    missing = runner.invoke(cli_app, ["predict", str(face_run), str(tmp_path / "none.jpg")])
    assert missing.exit_code == 2 and "there is no such file" in missing.output
    serve = runner.invoke(cli_app, ["serve", str(face_run), "--faces", "maybe"])  # refused before loading
    assert serve.exit_code == 2 and "--faces must be one of auto, on, off" in serve.output


def test_the_benchmarks_frames_hold_the_face_where_they_say():
    rng = np.random.default_rng(0)
    crop = face_crops(1)[0]
    for kind in ("picture", "noise", "gradient", "colour"):
        jpeg, (x, y, w, h) = composite(crop, rng, kind)
        img = Image.open(io.BytesIO(jpeg)).convert("L")
        assert 64 <= min(img.size) and max(img.size) <= 1024 and 20 <= w <= 200
        pasted = np.asarray(img.crop((x, y, x + w, y + h)).resize((64, 64)), dtype=float)
        assert np.corrcoef(pasted.ravel(), crop.ravel().astype(float))[0, 1] > 0.8  # tinted, still the face


def test_an_exported_face_model_keeps_its_face_step(face_run, tmp_path, astronaut):
    import cnnzoo

    cnnzoo.export(face_run, tmp_path / "face.onnx")
    with TestClient(create_app(tmp_path / "face.onnx")) as onnx_door:
        assert onnx_door.get("/model").json()["faces"]["detector"] == SMILES.detector
        body = post_file(onnx_door, encode(astronaut)).json()
    assert len(body["faces"]) == 1 and on_eyes(body["faces"][0]["box"], ASTRONAUT_EYES)

"""The Happy House page in a real browser: headless Chromium (Debian's chromium and
chromium-driver, driven by Selenium) against `cnnzoo serve` on loopback.

It uploads a real face from the smiles data and reads the rendered answer (the 64x64
image the model saw, the heat map of what decided it, the probability, the door), saves a screenshot as a test artifact
($CNNZOO_TEST_ARTIFACTS, default: pytest's temporary folder), uploads a non-image and
reads the error, takes a photo with Chromium's fake camera, and shows a softmax model's
top classes.
"""

import contextlib
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn
from PIL import Image
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from test_serve_api import smiles_faces, tiny_run

from cnnzoo.serve.app import create_app

WAIT_S = 30


@contextlib.contextmanager
def serving(app):
    """Run `app` with uvicorn on a free loopback port in a thread; yield its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT_S
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(WAIT_S)
        sock.close()


def _executable(env: str, *names: str) -> str:
    for candidate in (os.environ.get(env), *names):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    raise AssertionError(f"{' or '.join(names)} is not installed: apt-get install chromium chromium-driver "
                         f"(or set {env}).")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    options = webdriver.ChromeOptions()
    options.binary_location = _executable("CHROME_BIN", "chromium", "chromium-browser", "google-chrome")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1100,1000",
                 # A camera that needs no person and no permission prompt, for the webcam path.
                 "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=_executable("CHROMEDRIVER", "chromedriver"))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(WAIT_S)
    driver.set_script_timeout(WAIT_S)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("CNNZOO_TEST_ARTIFACTS") or tmp_path_factory.getbasetemp() / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("uploads")
    (name, data), *_ = smiles_faces(1)
    (folder / name).write_bytes(data)
    (folder / "notes.txt").write_text("These are my notes, not a photo.\n" * 10)
    return {"face": folder / name, "text": folder / "notes.txt"}


def _state(driver, state: str) -> None:
    """Wait until the page says it is in `state` (busy, done or error)."""
    WebDriverWait(driver, WAIT_S).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == state)


def _text(driver, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).text


def _upload(driver, path: Path) -> None:
    driver.find_element(By.ID, "file").send_keys(str(path))


def _open(driver, url: str, model_name: str) -> None:
    driver.get(url + "/")
    WebDriverWait(driver, WAIT_S).until(lambda d: model_name in d.find_element(By.ID, "model-line").text)


def test_upload_a_face_see_the_door_and_save_a_screenshot(browser, files, artifacts, tmp_path_factory):
    run = tiny_run("sigmoid", tmp_path_factory)
    with serving(create_app(run)) as url:
        face = files["face"]
        expected = httpx.post(url + "/predict", params={"explain": "true"},
                              files={"file": (face.name, face.read_bytes(), "image/jpeg")}).json()
        _open(browser, url, run.name)
        assert "classes: not smiling, smiling" in _text(browser, "model-line")
        assert "test accuracy" in _text(browser, "model-line")

        _upload(browser, face)
        _state(browser, "done")
        assert _text(browser, "probability-text").startswith(f"p(smiling) = {expected['p_happy']:.2f}")
        door = expected["door"]
        assert _text(browser, "door-text") == ("Door open: welcome home!" if door == "open"
                                               else "Door closed: no smile, no entry.")
        assert door in browser.find_element(By.ID, "door").get_attribute("class")
        assert _text(browser, "model-view-caption") == "as the model sees it (64x64)"
        seen = browser.execute_script("const i = document.getElementById('model-view');"
                                      "return [i.complete, i.naturalWidth, i.naturalHeight];")
        assert seen == [True, 64, 64]
        heatmap = browser.find_element(By.ID, "heatmap")  # what decided it, next to the answer
        assert heatmap.is_displayed() and heatmap.get_attribute("src") == expected["explanation"]["image"]
        assert browser.execute_script("const i = document.getElementById('heatmap');"
                                      "return [i.complete, i.naturalWidth, i.naturalHeight];") == [True, 64, 64]
        assert _text(browser, "heatmap-caption") == (f"what decided \u201c{expected['explanation']['class']}\u201d "
                                                     "(Grad-CAM at max_pool; red: strongest)")
        assert browser.find_element(By.ID, "photo").is_displayed()
        assert f"for {face.name}" in _text(browser, "status")
        assert not browser.find_element(By.ID, "error").is_displayed()

        shot = artifacts / "serve-page-face.png"
        shot.unlink(missing_ok=True)
        assert browser.save_screenshot(str(shot))
        with Image.open(shot) as picture:
            assert picture.format == "PNG" and picture.size[0] >= 1000
            assert len(picture.getcolors(1 << 20) or range(1 << 20)) > 50  # a rendered page, not a blank one

        _upload(browser, files["text"])  # a non-image: the error is shown, the answer hidden
        _state(browser, "error")
        assert _text(browser, "error") == "The upload is not an image that can be read: send a JPEG or PNG image."
        assert not browser.find_element(By.ID, "answer").is_displayed()
        assert _text(browser, "status") == "The door could not judge this file."
        browser.save_screenshot(str(artifacts / "serve-page-error.png"))

        _upload(browser, face)  # and the page recovers
        _state(browser, "done")
        assert not browser.find_element(By.ID, "error").is_displayed()
        assert httpx.get(url + "/health").json()["refused"] == 1


def test_take_a_photo_with_the_camera(browser, tmp_path_factory):
    run = tiny_run("sigmoid", tmp_path_factory)
    with serving(create_app(run)) as url:
        _open(browser, url, run.name)
        browser.find_element(By.ID, "camera-start").click()
        shoot = browser.find_element(By.ID, "camera-shoot")
        WebDriverWait(browser, WAIT_S).until(lambda d: shoot.is_enabled())
        assert _text(browser, "camera-start") == "Stop camera"
        WebDriverWait(browser, WAIT_S).until(
            lambda d: d.execute_script("return document.getElementById('video').videoWidth") > 0)
        shoot.click()
        _state(browser, "done")
        assert "for camera photo" in _text(browser, "status")
        assert _text(browser, "door-text").startswith("Door ")
        assert _text(browser, "probability-text").startswith("p(smiling) = ")
        assert httpx.get(url + "/health").json()["predictions"] == 1


def test_a_softmax_model_shows_its_top_classes(browser, files, tmp_path_factory):
    run = tiny_run("softmax", tmp_path_factory)
    with serving(create_app(run)) as url:
        expected = httpx.post(url + "/predict", content=files["face"].read_bytes()).json()
        _open(browser, url, run.name)
        _upload(browser, files["face"])
        _state(browser, "done")
        assert not browser.find_element(By.ID, "sigmoid-view").is_displayed()
        rows = browser.find_elements(By.CSS_SELECTOR, "#top-classes li .class-name")
        assert [r.text for r in rows] == [c["class"] for c in expected["top"]]
        assert sorted(r.text for r in rows) == ["circle", "square", "star"]
        assert browser.find_element(By.ID, "heatmap").is_displayed()
        assert f"\u201c{expected['top'][0]['class']}\u201d" in _text(browser, "heatmap-caption")


def test_the_face_step_draws_each_face_and_its_answer(browser, tmp_path_factory):
    import json

    from skimage import data as skdata

    from cnnzoo.datasets.registry import dataset_info

    run = tmp_path_factory.mktemp("face-page") / "run"  # the tiny run, recorded as trained on face crops
    shutil.copytree(tiny_run("sigmoid", tmp_path_factory), run)
    config = json.loads((run / "config.json").read_text())
    config["preprocessing"]["faces"] = dataset_info("smiles").faces.record()
    (run / "config.json").write_text(json.dumps(config))
    folder = tmp_path_factory.mktemp("face-uploads")
    Image.fromarray(skdata.astronaut()).save(folder / "astronaut.jpg")
    Image.new("RGB", (320, 240), (120, 160, 200)).save(folder / "wall.png")
    with serving(create_app(run)) as url:
        expected = httpx.post(url + "/predict", files={"file": ("a.jpg", (folder / "astronaut.jpg").read_bytes(),
                                                                "image/jpeg")}).json()
        (face,) = expected["faces"]
        _open(browser, url, run.name)
        _upload(browser, folder / "astronaut.jpg")
        _state(browser, "done")
        boxes = browser.find_elements(By.CSS_SELECTOR, "#face-boxes .face-box")
        assert len(boxes) == 1 and boxes[0].is_displayed()
        assert boxes[0].text == f"1: p(smiling) = {face['p_happy']:.2f}"
        # On the photo where the API put it: the box's place in the displayed photo, in its pixels.
        photo = browser.find_element(By.ID, "photo").rect
        shown = boxes[0].rect
        x, y, w, _ = face["box"]
        scale = photo["width"] / 512
        assert abs(shown["x"] - photo["x"] - x * scale) < 2 and abs(shown["y"] - photo["y"] - y * scale) < 2
        assert abs(shown["width"] - w * scale) < 2
        answers = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#face-list li")]
        assert answers == [f"Face 1: p(smiling) = {face['p_happy']:.2f}, " + ("smiling" if face["happy"] else "not smiling")]
        assert _text(browser, "door-text") == f"Door {expected['door']}: {expected['reason']}."
        browser.save_screenshot(str(folder / "serve-page-faces.png"))

        _upload(browser, folder / "wall.png")  # no face: its own answer, no box, no probability
        _state(browser, "done")
        assert browser.find_elements(By.CSS_SELECTOR, "#face-boxes .face-box") == []
        assert [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#face-list li")] == ["No face found in the photo."]
        assert _text(browser, "door-text") == "Door closed: no face found."
        assert not browser.find_element(By.ID, "probability-bar").is_displayed()

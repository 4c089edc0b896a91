"""A bounded load test on loopback: `cnnzoo serve` runs as its own process (the real command)
and gets 300 requests, 32 at a time, good faces and bad inputs mixed. Every good image must
get exactly the answer `cnnzoo predict` gives it, every bad one its 4xx, and the server must
still be healthy afterwards and stop cleanly on Ctrl+C (SIGINT).
"""

import httpx
import numpy as np
from loadtest import (Case, answer_probabilities, bad_cases, describe, mixed_cases, png, run_load, serve_subprocess,
                      smiles_faces)
from test_serve_api import data_mirror, tiny_run

from cnnzoo.inference.predict import predict_files

REQUESTS, CONCURRENCY, BAD_SHARE = 300, 32, 0.3
MAX_MB = 0.1  # a small body limit, so the over-limit requests stay small on the wire


def test_hundreds_of_concurrent_good_and_bad_requests(tmp_path_factory, tmp_path):
    run = tiny_run("sigmoid", tmp_path_factory)
    rng = np.random.default_rng(7)
    images = smiles_faces(data_mirror() / "smiles.zip", 6) + [
        (f"noise-{k}.png", png(rng.integers(0, 255, (40 + 9 * k, 70 - 4 * k, 3), dtype=np.uint8))) for k in range(8)]
    paths = []
    for name, data in images:
        (tmp_path / name).write_bytes(data)
        paths.append(tmp_path / name)
    reference = predict_files(run, paths)  # what `cnnzoo predict` says about each image
    good = [Case("good", data, None if k % 2 else "image/jpeg", 200, answer_probabilities(ref))
            for k, ((_, data), ref) in enumerate(zip(images, reference))]
    bad = bad_cases(images[0][1], max_bytes=int(MAX_MB * 1024 * 1024))
    cases = mixed_cases(good, bad, REQUESTS, BAD_SHARE, seed=1)
    n_good = sum(c.kind == "good" for c in cases)

    with serve_subprocess(run, extra_args=["--max-mb", MAX_MB]) as server:
        result = run_load(server.url, cases, concurrency=CONCURRENCY, timeout_s=60)
        health = httpx.get(server.url + "/health", timeout=10).json()
        assert httpx.post(server.url + "/predict", content=images[1][1], timeout=10).status_code == 200
        process = server.process
    print(describe(result))

    assert result.problems == []  # every answer right: statuses, JSON errors, probabilities
    assert len(result.outcomes) == REQUESTS
    assert result.counts()[200] == n_good and n_good >= 200
    assert {o.status for o in result.outcomes if o.case.kind != "good"} == {400, 413, 415, 422}
    assert health["status"] == "ok" and health["failed"] == 0
    assert health["predictions"] == n_good and health["refused"] == REQUESTS - n_good
    assert result.requests_per_s > 5 and result.latency_ms(99) < 30_000
    output = server.output()
    assert output.count('"POST /predict HTTP/1.1"') == REQUESTS + 1  # uvicorn's access log
    # Ctrl+C stops it cleanly: uvicorn finishes the shutdown, cnnzoo exits 130 as for any interrupt.
    assert process.returncode == 130 and "Application shutdown complete." in output, output
    assert f"Serving {run.name} (happy, classes: not smiling, smiling) at http://127.0.0.1:" in output


def test_a_face_door_under_load_answers_each_face_as_predict_does(tmp_path_factory, tmp_path):
    """With the face step (`--faces on`) each answer lists the faces found, a frame without one
    none: every answer must hold exactly `cnnzoo predict --faces on`'s faces and probabilities."""
    run = tiny_run("sigmoid", tmp_path_factory)
    rng = np.random.default_rng(3)
    images = smiles_faces(data_mirror() / "smiles.zip", 4) + [
        (f"noise-{k}.png", png(rng.integers(0, 255, (50 + 7 * k, 60, 3), dtype=np.uint8))) for k in range(4)]
    paths = []
    for name, data in images:
        (tmp_path / name).write_bytes(data)
        paths.append(tmp_path / name)
    reference = [answer_probabilities(r) for r in predict_files(run, paths, faces="on")]
    assert any(len(r) == 0 for r in reference) and any(len(r) > 0 for r in reference)  # both kinds of answer
    good = [Case("good", data, "image/jpeg", 200, ref) for (_, data), ref in zip(images, reference)]
    cases = mixed_cases(good, bad_cases(images[0][1], max_bytes=int(MAX_MB * 1024 * 1024)), 60, BAD_SHARE, seed=2)
    # The check can fail: other probabilities for a face, or a face for a frame without one.
    face, empty = (next(k for k, r in enumerate(reference) if bool(r) == found) for found in (True, False))
    shifted = tuple(tuple(v + 0.1 for v in f) for f in reference[face])
    wrong = [Case("good", images[face][1], "image/jpeg", 200, shifted),
             Case("good", images[empty][1], "image/jpeg", 200, ((0.5, 0.5),))]
    with serve_subprocess(run, extra_args=["--max-mb", MAX_MB, "--faces", "on"]) as server:
        result = run_load(server.url, cases, concurrency=8, timeout_s=60)
        caught = run_load(server.url, wrong, concurrency=2, timeout_s=60)
    assert result.problems == [] and len(result.outcomes) == 60
    assert len(caught.problems) == 2, caught.problems

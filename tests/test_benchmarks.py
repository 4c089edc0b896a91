"""The speed benchmark's peers do equal work and report in the documented format (tiny
budgets here; the figures themselves come from benchmarks/train_speed.py, not from tests)."""

import json
import sys
from pathlib import Path

import data_workers  # benchmarks/, on the path through conftest.py
import epoch_overhead
import explain_speed
import keras
import pytest
import time_to_accuracy
import train_speed
from imagefolders import make_folder

from cnnzoo.models import model_info

pytestmark = [pytest.mark.usefixtures("private_cache"),
              pytest.mark.skipif(keras.backend.backend() != "torch", reason="the PyTorch peer needs torch")]


@pytest.mark.parametrize("name, shape, classes", [("resnet50", (64, 64, 3), 6), ("happy", (64, 64, 3), 1)])
def test_the_pytorch_reference_has_the_keras_models_parameters(name, shape, classes):
    import torch_reference

    keras_count = model_info(name).build(input_shape=shape, classes=classes).count_params()
    assert torch_reference.parameter_count(torch_reference.build(name, classes)) == keras_count


def test_time_to_accuracy_is_the_first_epoch_at_the_target():
    curve = [(1, 10.0, 0.5), (2, 20.04, 0.971), (3, 30.0, 0.96), (4, 40.0, 0.99)]
    reached = time_to_accuracy.result(curve, 0.97, "s")
    assert (reached["seconds"], reached["epoch"], reached["best_accuracy"], reached["epochs_run"]) == (20.0, 2, 0.99, 4)
    missed = time_to_accuracy.result(curve[:1], 0.97, "s")
    assert (missed["seconds"], missed["epoch"], missed["best_accuracy"]) == (None, None, 0.5)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("data") / "shapes", ["circle", "square", "star"], per_class=8, size=64)


@pytest.mark.parametrize("peer", ["torch", "keras", "cnnzoo"])
def test_each_time_to_accuracy_peer_trains_scores_and_stops_at_the_target(shapes, peer):
    """Target 0: reached after the first epoch, which ends the run (the recipe has 30)."""
    result = time_to_accuracy.CHILDREN[peer]("resnet50", f"folder:{shapes}", 0.0)
    assert result["epochs_run"] == 1 and result["epoch"] == 1 and result["seconds"] > 0
    assert len(result["curve"]) == 1 and 0 <= result["best_accuracy"] <= 1
    table = train_speed.accuracy_table({"tiny": {p: (result if p == peer else {}) for p in train_speed.PEERS}})
    assert f"| tiny | {dict(zip(train_speed.PEERS, ['(a) cnnzoo', '(b) PyTorch', '(c) naive Keras']))[peer]} |" in table


def test_throughput_peers_report_images_per_second_and_memory():
    results = {"happy-64-b32": {"torch": train_speed.child_torch("happy-64-b32", 2, 1),
                                "keras": train_speed.child_keras("happy-64-b32", 2, 1, naive=True),
                                "cnnzoo": train_speed.child_keras("happy-64-b32", 2, 1, naive=False)}}
    for result in results["happy-64-b32"].values():
        assert result["batch"] == 32 and result["steps_timed"] == 2 and result["images_per_s"] > 0
        assert result["peak_rss_mib"] > 0
    assert "torch fixes" in results["happy-64-b32"]["cnnzoo"]["settings"]
    assert "| happy-64-b32 | 32 |" in train_speed.table(results)


@pytest.fixture
def fake_nvml(monkeypatch):
    """An NVML that reports the GPU busy 40% then 60% of the time, alternately."""
    import itertools
    import types

    readings = itertools.cycle([40, 60])
    module = types.SimpleNamespace(
        nvmlInit=lambda: None, nvmlDeviceGetHandleByIndex=lambda index: index,
        nvmlDeviceGetUtilizationRates=lambda handle: types.SimpleNamespace(gpu=next(readings)))
    monkeypatch.setitem(sys.modules, "pynvml", module)


def test_gpu_busy_averages_nvml_s_samples_and_is_none_without_nvml(fake_nvml, monkeypatch):
    import time

    import gpu_busy

    with gpu_busy.GpuBusy(interval=0.005) as busy:
        time.sleep(0.2)
    assert len(busy.samples) >= 4 and set(busy.samples) == {40, 60}
    assert 40 <= busy.percent <= 60
    monkeypatch.setitem(sys.modules, "pynvml", None)  # what `import pynvml` meets without the package
    with gpu_busy.GpuBusy(interval=0.005) as busy:
        time.sleep(0.05)
    assert busy.samples == [] and busy.percent is None


def test_on_a_gpu_cnnzoo_trains_on_while_its_busy_time_is_sampled(fake_nvml, monkeypatch):
    monkeypatch.setattr(train_speed, "_has_accelerator", lambda: True)
    monkeypatch.setattr(train_speed, "BUSY_SECONDS", 0.5)
    result = train_speed.child_keras("happy-64-b32", 2, 1, naive=False)
    assert 40 <= result["gpu_busy_percent"] <= 60
    results = {"happy-64-b32": {"cnnzoo": result, "torch": {"images_per_s": 1.0, "gpu_busy_percent": 97.4},
                                "keras": {"error": "failed"}}}
    assert train_speed.table(results).splitlines()[2].endswith(f"| {result['gpu_busy_percent']:.0f}% / 97% |")
    assert "GPU busy" not in train_speed.table({"happy-64-b32": {"cnnzoo": {}, "torch": {}, "keras": {}}})


def test_a_stopped_speed_run_keeps_its_finished_cases_and_update_runs_the_rest(tmp_path, monkeypatch):
    """The lent GPU runs under a time limit: each finished case is in the table at once."""
    measured = []

    def measure(peer, case, steps, warmup, epochs=None):
        if case == "happy-64-b256":
            raise KeyboardInterrupt  # the time limit
        measured.append((peer, case))
        return {"batch": 32, "images_per_s": 10.0, "step_ms": 3200.0, "peak_rss_mib": 1, "settings": peer}

    monkeypatch.setattr(train_speed, "measure", measure)
    out = tmp_path / "speed.md"
    run = ["train_speed.py", "--out", str(out), "--cases"]
    monkeypatch.setattr(sys, "argv", [*run, "happy-64-b32", "happy-64-b256"])
    with pytest.raises(KeyboardInterrupt):
        train_speed.main()
    assert list(json.loads(out.with_suffix(".json").read_text())["results"]) == ["happy-64-b32"]
    assert "| happy-64-b32 | 32 | 10.0 | 10.0 | 10.0 | 1.00x | 1.00x |" in out.read_text()

    monkeypatch.setattr(sys, "argv", [*run, "resnet50-64-b32", "--update"])
    train_speed.main()
    assert list(json.loads(out.with_suffix(".json").read_text())["results"]) == ["happy-64-b32", "resnet50-64-b32"]
    assert len(measured) == 6 and train_speed.default_out().name == "benchmarks-train.md"  # no GPU here


def test_the_benchmark_children_select_cnnzoo_s_backend_on_their_own():
    """train_speed.py runs each peer in a fresh process that imports time_to_accuracy first:
    without cnnzoo imported before keras, Keras would look for TensorFlow."""
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    code = "import time_to_accuracy, keras; print(keras.backend.backend())"
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(train_speed.__file__).parent, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == "torch"


def test_the_data_workers_benchmark_times_each_way_and_a_device_that_needs_no_host_cpu(tmp_path):
    output = tmp_path / "workers.md"
    data_workers.main(["--images", "48", "--source-size", "64", "--epochs", "2", "--models", "lenet5_modern",
                       "--device-ms", "5", "-o", str(output)])
    report = json.loads(output.with_suffix(".json").read_text())
    rows = [(r["model"], r["mode"]) for r in report["results"]]
    assert rows == [(model, mode) for model in ("lenet5_modern", "device_probe + 5 ms device")
                    for mode in ("arrays", "serial", "workers")]
    assert all(r["steps_measured"] > 0 and r["images_per_s"] > 0 for r in report["results"])
    assert all(r["step_ms_median"] >= 5 for r in report["results"][3:])  # the simulated device's time
    assert "| device_probe + 5 ms device | workers |" in output.read_text()


def test_explain_speed_times_predict_gradcam_and_saliency():
    result = explain_speed.child("happy", 2)
    assert result["layer"] == "max_pool" and result["repeats"] == 2
    assert all(result[f"{name}{kind}"] > 0 for name in ("gradcam", "saliency", "predict") for kind in ("_s", "_first_s"))
    assert f"| happy 64x64 | max_pool | {result['threads']} | on |" in explain_speed.table([result], "note")


def test_the_whole_job_peer_validates_and_writes_a_resumable_checkpoint_every_epoch(shapes, tmp_path):
    """epoch_overhead.py's plain PyTorch peer does the main job's work: its last.pt loads with
    weights_only=True and holds the model, Adam's state and the epoch; best.pt the best weights."""
    import torch

    times, scores, run, size = epoch_overhead.torch_job(2, tmp_path, "resnet50", f"folder:{shapes}")
    assert len(times) == len(scores) == 2 and all(0 <= s <= 1 for s in scores)
    for epoch in times:
        assert epoch["wall"] == pytest.approx(epoch["steps"] + epoch["validation"] + epoch["checkpoints"])
        assert min(epoch.values()) > 0
    assert run > sum(e["wall"] for e in times) and size >= 1
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    assert (last["epoch"], last["scores"]) == (2, scores)
    assert len(last["optimizer"]["state"]) == len(last["model"]) - sum(
        k.endswith(("running_mean", "running_var", "num_batches_tracked")) for k in last["model"])  # Adam's, per weight
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert best.keys() == last["model"].keys()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]  # no temporary file left
    row = epoch_overhead.summary("torch", times, scores, run, size)
    assert row["epochs"] == 1 and row["around_steps"] == pytest.approx(row["validation"] + row["checkpoints"], abs=0.02)

"""Training throughput, peak memory and time to accuracy: cnnzoo against plain PyTorch and
naive Keras, side by side.

    python benchmarks/train_speed.py [--cases resnet50-64-b32 happy-64-b32 resnet50-signs-97 ...] [--steps 12]

Peers, each in its own process (a Keras backend is fixed per process), on synthetic data of
the right shape:
  (a) cnnzoo as `cnnzoo train` runs it: default backend and precision, uint8 pixels scaled
      inside the model, `fit` on cnnzoo's batches, no augmentation (equal work with (b) and (c));
  (b) plain PyTorch (benchmarks/torch_reference.py, same layers): an idiomatic loop,
      channels_last; on a GPU also bf16 autocast and torch.compile, the best one reported;
  (c) the course's Keras code as a naive user runs it in Keras 3: stock Keras (no cnnzoo
      fixes) on the same backend as (a), fp32, float inputs, `model.fit` on arrays.
Each throughput figure is the median over timed steps after warm-up, each step
synchronised. On a GPU, (a) and (b) then train on for a few seconds more while NVML samples
how much of the time a kernel ran (benchmarks/gpu_busy.py): far below 100% means the step is
launch-bound. The time-to-accuracy case (resnet50-signs-97) trains on the real dataset until
the test accuracy first reaches 97%; its peers are described in benchmarks/time_to_accuracy.py.
Writes docs/benchmarks-train.json and .md (on a GPU: docs/benchmarks-train-gpu.json and .md)
after each case, so a run stopped at a time limit keeps the cases it finished; --update then
runs the rest into the same table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

# name: (model, input shape, classes, batch on a CPU, batch on a GPU)
CASES = {
    "resnet50-64-b32": ("resnet50", (64, 64, 3), 6, 32, 32),
    "resnet50-64-b256": ("resnet50", (64, 64, 3), 6, 256, 256),
    "resnet50-224": ("resnet50", (224, 224, 3), 1000, 16, 256),
    "happy-64-b32": ("happy", (64, 64, 3), 1, 32, 32),
    "happy-64-b256": ("happy", (64, 64, 3), 1, 256, 256),
}
# name: (model, dataset, test accuracy to reach), measured by benchmarks/time_to_accuracy.py
ACCURACY_CASES = {"resnet50-signs-97": ("resnet50", "signs", 0.97)}
PEERS = ("cnnzoo", "torch", "keras")
BUSY_SECONDS = 3.0  # how long (a) and (b) train on a GPU while its busy time is sampled


def _gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def _data(shape, classes: int, count: int):
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (count, *shape), dtype="uint8")
    y = rng.integers(0, max(classes, 2), count)
    return x, (y.astype("float32").reshape(-1, 1) if classes == 1 else y)


def _keras_timer():
    import cnnzoo  # noqa: F401  (selects the backend before keras loads)
    import keras

    class StepTimer(keras.callbacks.Callback):
        """Per-step wall time, each step synchronised by reading its loss."""

        def __init__(self):
            super().__init__()
            self.times: list[float] = []

        def on_train_batch_begin(self, batch, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            float(logs["loss"])
            self.times.append(time.perf_counter() - self.start)

    return StepTimer()


def child_keras(case: str, steps: int, warmup: int, naive: bool) -> dict:
    from cnnzoo.backends import torch_speed  # first: cnnzoo selects the backend as a user gets it

    import keras

    from cnnzoo.datasets.batches import ArrayBatches
    from cnnzoo.models import model_info
    from cnnzoo.training.config import PRECISIONS, TrainConfig
    from cnnzoo.training.fit import build_training_model, compile_for

    name, shape, classes, cpu_batch, gpu_batch = CASES[case]
    timer = _keras_timer()
    batch = gpu_batch if _has_accelerator() else cpu_batch
    x, y = _data(shape, classes, batch * (steps + warmup))
    if naive:  # the course's code: build, compile("adam"), fit float arrays
        model = model_info(name).build(input_shape=shape, classes=classes)
        model.compile(optimizer="adam", loss="binary_crossentropy" if classes == 1 else "sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        model.fit(x.astype("float32") / 255, y, batch_size=batch, epochs=1, verbose=0, callbacks=[timer])
        settings = "stock Keras, fp32"
    else:  # what `cnnzoo train` does
        config = TrainConfig(name, "synthetic", epochs=1, batch_size=batch).resolved()
        active = torch_speed.apply()
        keras.mixed_precision.set_global_policy(PRECISIONS[config.precision])
        model = build_training_model(name, shape, classes, model_info(name).recipe)
        compile_for(model, config, steps + warmup)
        batches = ArrayBatches(x, y, batch, shuffle=True)
        model.fit(batches, epochs=1, verbose=0, callbacks=[timer])
        settings = f"{config.precision}" + (", torch fixes" if active else "")
    result = _result(batch, timer.times[warmup:], f"keras {keras.__version__} on {keras.backend.backend()}, {settings}")
    if not naive and _has_accelerator():
        epochs = math.ceil(_busy_steps(result) / len(batches))
        result["gpu_busy_percent"] = _gpu_busy(lambda: model.fit(batches, epochs=epochs, verbose=0))
    return result


def _busy_steps(result: dict) -> int:
    """Steps that take about BUSY_SECONDS at the measured speed."""
    return max(1, math.ceil(BUSY_SECONDS / (result["step_ms"] / 1000)))


def _gpu_busy(train) -> float | None:
    """The GPU's busy percentage while `train()` runs (None where NVML is missing)."""
    from gpu_busy import GpuBusy

    with GpuBusy() as busy:
        train()
    return busy.percent


def _has_accelerator() -> bool:
    from cnnzoo import backends as backend

    return backend.has_accelerator()


def child_torch(case: str, steps: int, warmup: int) -> dict:
    import torch

    import torch_reference

    name, shape, classes, cpu_batch, gpu_batch = CASES[case]
    cuda = _gpu()
    device = "cuda" if cuda else "cpu"
    batch = gpu_batch if cuda else cpu_batch
    x, y = _data(shape, classes, batch)
    images = torch.from_numpy(x).to(device).permute(0, 3, 1, 2).float().div(255)
    images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.from_numpy(y).to(device)
    loss_fn = torch.nn.BCEWithLogitsLoss() if classes == 1 else torch.nn.CrossEntropyLoss()
    variants = [("eager fp32", False, None)]
    if cuda:
        variants += [("eager bf16", False, torch.bfloat16), ("compile bf16", True, torch.bfloat16)]
    best, best_step = None, None
    for label, compiled, autocast in variants:
        if cuda:  # each variant's own peak (the best one's network is kept for the busy time)
            torch.cuda.reset_peak_memory_stats()
        net = torch_reference.build(name, classes).to(device, memory_format=torch.channels_last)
        optimizer = torch.optim.Adam(net.parameters(), 1e-3)
        forward = torch.compile(net) if compiled else net

        def step(forward=forward, optimizer=optimizer, autocast=autocast):
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device, dtype=autocast or torch.float32, enabled=autocast is not None):
                loss = loss_fn(forward(images), labels)
            loss.backward()
            optimizer.step()

        times = []
        for _ in range(steps + warmup):
            start = time.perf_counter()
            step()
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        result = _result(batch, times[warmup:], f"torch {torch.__version__}, {label}, channels_last")
        if best is None or result["images_per_s"] > best["images_per_s"]:
            best, best_step = result, step
    if cuda:
        def train():
            for _ in range(_busy_steps(best)):
                best_step()
            torch.cuda.synchronize()

        best["gpu_busy_percent"] = _gpu_busy(train)
    return best


def _result(batch: int, times: list[float], settings: str) -> dict:
    step = statistics.median(times)
    result = {
        "batch": batch, "images_per_s": round(batch / step, 1), "step_ms": round(1000 * step, 1),
        "steps_timed": len(times), "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "settings": settings,
    }
    result["peak_device_mib"] = _peak_device_memory()
    return result


def _peak_device_memory():
    if "torch" in sys.modules and sys.modules["torch"].cuda.is_available():
        return round(sys.modules["torch"].cuda.max_memory_allocated() / 2**20)
    if "jax" in sys.modules:
        stats = sys.modules["jax"].devices()[0].memory_stats() or {}
        if "peak_bytes_in_use" in stats:
            return round(stats["peak_bytes_in_use"] / 2**20)
    return None


def measure(peer: str, case: str, steps: int, warmup: int, epochs: int | None = None) -> dict:
    """Run one peer on one case in a fresh process; its last line is the JSON result."""
    command = [sys.executable, __file__, "--child", peer, case, "--steps", str(steps), "--warmup", str(warmup)]
    if epochs:
        command += ["--epochs", str(epochs)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _ratio(a: dict, b: dict) -> str:
    if "images_per_s" not in a or "images_per_s" not in b:
        return "—"
    return f"{a['images_per_s'] / b['images_per_s']:.2f}x"


def accuracy_table(results: dict) -> str:
    lines = ["| case | peer | seconds to target | epoch reached | best test accuracy (epochs run) | settings |",
             "| --- | --- | ---: | ---: | --- | --- |"]
    for case, peers in results.items():
        for label, peer in zip(("(a) cnnzoo", "(b) PyTorch", "(c) naive Keras"), PEERS):
            r = peers[peer]
            if not r:
                continue
            if "error" in r:
                lines.append(f"| {case} | {label} | {r['error']} | | | |")
                continue
            seconds = f"{r['seconds']:.0f}" if r["seconds"] is not None else f"not reached in {r['epochs_run']} epochs"
            lines.append(f"| {case} | {label} | {seconds} | {r['epoch'] or '—'} | "
                         f"{r['best_accuracy']:.1%} ({r['epochs_run']}) | {r['settings']} |")
    ratios = []
    for case, peers in results.items():
        a = peers["cnnzoo"].get("seconds")
        for label, peer in (("b", "torch"), ("c", "keras")):
            other = peers[peer].get("seconds")
            if a and other:
                ratios.append(f"{case}: (a) took {a / other:.2f}x the time of ({label})")
    return "\n".join(lines) + ("\n\n" + "; ".join(ratios) + "." if ratios else "")


def table(results: dict) -> str:
    busy = any("gpu_busy_percent" in r for peers in results.values() for r in peers.values())
    lines = [
        "| case | batch | (a) cnnzoo img/s | (b) PyTorch img/s | (c) naive Keras img/s | a/b | a/c | peak RSS a / b / c (MiB) | device memory a / b / c (MiB) |"
        + (" GPU busy a / b |" if busy else ""),
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |" + (" --- |" if busy else ""),
    ]
    for case, peers in results.items():
        a, b, c = (peers[p] for p in PEERS)
        cell = lambda r, k: str(r.get(k, r.get("error", "—")))  # noqa: E731
        lines.append(
            f"| {case} | {a.get('batch', '—')} | {cell(a, 'images_per_s')} | {cell(b, 'images_per_s')} | "
            f"{cell(c, 'images_per_s')} | {_ratio(a, b)} | {_ratio(a, c)} | "
            f"{' / '.join(str(r.get('peak_rss_mib', '—')) for r in (a, b, c))} | "
            f"{' / '.join(str(r.get('peak_device_mib') or '—') for r in (a, b, c))} |"
            + (" " + " / ".join(_percent(r.get("gpu_busy_percent")) for r in (a, b)) + " |" if busy else "")
        )
    settings = sorted({f"({'abc'[i]}) {r[p]['settings']}" for r in results.values()
                       for i, p in enumerate(PEERS) if "settings" in r[p]})
    return "\n".join(lines) + "\n\nSettings: " + "; ".join(settings) + "."


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f}%"


def machine() -> str:
    name = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    try:
        import torch

        if torch.cuda.is_available():
            name += f", {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return name


def default_out() -> Path:
    """The CPU and the GPU tables are kept apart: each is measured on its own machine."""
    return ROOT / "docs" / ("benchmarks-train-gpu.md" if _gpu() else "benchmarks-train.md")


def write_tables(out: Path, machine: str, commands: dict, results: dict, steps: int, warmup: int) -> None:
    """The JSON (read back by --update) and the markdown table of the cases measured so far."""
    from cnnzoo import _io

    _io.write_json(out.with_suffix(".json"), {"machine": machine, "commands": commands, "results": results})
    throughput = {case: r for case, r in results.items() if case in CASES}
    accuracy = {case: r for case, r in results.items() if case in ACCURACY_CASES}
    runs = "\n".join(f"- {', '.join(c for c in results if commands.get(c) == run)}: {run}"
                      for run in dict.fromkeys(commands[c] for c in results))
    sections = [f"""# Training speed: cnnzoo vs plain PyTorch vs naive Keras

On {machine}. The peers are described in the script's docstring; all peers of a case ran
in the same run, one after the other:

{runs}
"""]
    if throughput:
        rendered = table(throughput)
        busy = ("; GPU busy is the share of time a kernel ran while (a) and (b) trained on for "
                f"{BUSY_SECONDS:.0f} s more (NVML)" if "GPU busy" in rendered else "")
        sections.append(f"""## Throughput and memory

Median images/s over {steps} synchronised steps after {warmup} warm-up steps, synthetic
data; peak RSS is each peer's whole process{busy}.

{rendered}
""")
    if accuracy:
        sections.append(f"""## Time to accuracy

Training seconds (the test split scored after each epoch, outside the clock) until the test
accuracy first reaches the target; benchmarks/time_to_accuracy.py describes each peer.

{accuracy_table(accuracy)}
""")
    _io.write_text(out, "\n".join(sections))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", nargs="+", default=[*CASES, *ACCURACY_CASES], choices=[*CASES, *ACCURACY_CASES])
    parser.add_argument("--peers", nargs="+", default=list(PEERS), choices=PEERS)
    parser.add_argument("--steps", type=int, default=12, help="timed steps per peer")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation, caches)")
    parser.add_argument("--epochs", type=int, help="time-to-accuracy: at most this many epochs (smoke runs); "
                        "default: the model's recipe")
    parser.add_argument("--out", type=Path, help="the markdown table (its .json beside it); default "
                        "docs/benchmarks-train.md, or docs/benchmarks-train-gpu.md on a GPU")
    parser.add_argument("--update", action="store_true",
                        help="keep the other cases of the existing table (its .json) and rerun only --cases")
    parser.add_argument("--child", nargs=2, metavar=("PEER", "CASE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        peer, case = args.child
        if case in ACCURACY_CASES:
            import time_to_accuracy

            result = time_to_accuracy.CHILDREN[peer](*ACCURACY_CASES[case], epochs=args.epochs)
        elif peer == "torch":
            result = child_torch(case, args.steps, args.warmup)
        else:
            result = child_keras(case, args.steps, args.warmup, naive=peer == "keras")
        print(json.dumps(result))
        return

    out = args.out or default_out()
    command = f"python benchmarks/train_speed.py --cases {' '.join(args.cases)} --steps {args.steps} --warmup {args.warmup}"
    command += (f" --epochs {args.epochs}" if args.epochs else "") + (" --update" if args.update else "")
    stamp = datetime.date.today().isoformat()
    if args.update and not out.with_suffix(".json").exists():
        sys.exit(f"--update: there is no table at {out.with_suffix('.json')} to add to; run without --update first.")
    previous = json.loads(out.with_suffix(".json").read_text()) if args.update else {}
    here = machine()
    if previous and previous.get("machine") != here:
        sys.exit(f"--update: the table in {out} was measured on {previous.get('machine')}, this is {here}; "
                 "rerun every case instead.")
    results, commands = previous.get("results", {}), previous.get("commands", {})
    for case in args.cases:  # every peer of a case in the same run
        results[case] = {p: (measure(p, case, args.steps, args.warmup, args.epochs) if p in args.peers else {})
                         for p in PEERS}
        commands[case] = f"`{command}`, {stamp}"
        print(case, json.dumps(results[case]), flush=True)
        write_tables(out, here, commands, results, args.steps, args.warmup)


if __name__ == "__main__":
    main()

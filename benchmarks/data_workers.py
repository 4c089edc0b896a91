"""How long training waits for data when a folder of JPEGs is decoded per batch: in the
training thread (workers=1) or in Keras' background threads (a streamed folder's default).

    python benchmarks/data_workers.py [--images 3000] [--models lenet5_modern,happy]
        [-o docs/benchmarks-data-workers.md]   # also writes the .json beside it

Writes a folder of synthetic 256x256 JPEGs (smooth colour fields, shapes and a little
noise, quality 90: about the size and decode cost of photos) into a temporary directory,
then trains each model on it at 64x64 for a few epochs three ways: from the decoded arrays
in memory (ArrayBatches, the reference: no decoding during training), streamed with
workers=1 (a streamed split's batches decoded in the training loop's own thread: Keras starts no worker
pool) and streamed with background workers (batches.default_workers()). A callback
times, per step, the wait for data (from the end of one step, or the start of the epoch,
to the start of the next step) and the step itself. The first epoch (warm-up) is left out.
Decode-only throughput is timed too, serial and through Keras' thread pool.

On a CPU the decoding threads compete with the training step for the same cores, so the
rows marked "+ N ms device" model an accelerator: the model is `device_probe` (global
average pooling and one dense layer, registered here: its step needs almost no host CPU, as
a GPU step needs only kernel launches) and after each step the training thread sleeps N ms
(--device-ms), as it waits on a GPU, leaving the cores to the workers. With workers the
data is ready when that "device" finishes, and images/s is the device's own rate (batch /
N ms); decoded serially, every step also waits for its batch to be decoded.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def write_jpegs(root: Path, count: int, size: int, classes: int, seed: int = 0) -> None:
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    for k in range(classes):
        (root / f"class{k}").mkdir(parents=True)
    for i in range(count):
        k = i % classes
        field = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)  # low-frequency colour field
        image = Image.fromarray(field).resize((size, size), Image.Resampling.BICUBIC)
        draw = ImageDraw.Draw(image)
        for _ in range(4):
            x0, y0 = rng.integers(0, size - 40, 2)
            box = [int(x0), int(y0), int(x0 + rng.integers(20, 120)), int(y0 + rng.integers(20, 120))]
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            (draw.ellipse if (k + i) % 2 else draw.rectangle)(box, fill=colour)
        pixels = np.asarray(image, np.int16) + rng.integers(-6, 7, (size, size, 3))
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(root / f"class{k}" / f"{i:05d}.jpg", quality=90)


def timing_callback():
    import keras

    class StepTimes(keras.callbacks.Callback):
        """Per epoch: data wait and compute time of every step, and the epoch's wall time."""

        def __init__(self):
            super().__init__()
            self.epochs = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = self.last = time.perf_counter()
            self.current = {"wait": [], "step": []}

        def on_train_batch_begin(self, batch, logs=None):
            self.begin = time.perf_counter()
            self.current["wait"].append(self.begin - self.last)

        def on_train_batch_end(self, batch, logs=None):
            self.last = time.perf_counter()
            self.current["step"].append(self.last - self.begin)

        def on_epoch_end(self, epoch, logs=None):
            self.current["wall"] = time.perf_counter() - self.start
            self.epochs.append(self.current)

    return StepTimes()


def register_device_probe() -> str:
    """A model that stands for the host side of an accelerator's step: next to no CPU work."""
    import keras

    from cnnzoo.models import list_models, register_model

    if "device_probe" in list_models():  # registered by an earlier call in this process
        return "device_probe"

    @register_model("device_probe", description="global average pooling and a dense layer: a step with next to "
                    "no host work", paper="cnnzoo benchmark", year=2026)
    def device_probe(input_shape=(64, 64, 3), classes=4, **_):
        inputs = keras.Input(input_shape)
        pooled = keras.layers.GlobalAveragePooling2D()(inputs)
        return keras.Model(inputs, keras.layers.Dense(classes, activation="softmax")(pooled), name="device_probe")

    return "device_probe"


def simulated_device(milliseconds: float):
    import keras

    class DeviceStep(keras.callbacks.Callback):
        """Holds the training thread after each step, as waiting on an accelerator does."""

        def on_train_batch_end(self, batch, logs=None):
            time.sleep(milliseconds / 1000)

    return DeviceStep()


def train_once(name, mode, files, arrays, args, workers, device_ms: float = 0):
    import keras

    from cnnzoo.datasets.batches import ArrayBatches, build_before_fit
    from cnnzoo.models import model_info
    from cnnzoo.training.config import TrainConfig
    from cnnzoo.training.fit import build_training_model, compile_for

    config = TrainConfig(name, "folder:bench", epochs=args.epochs, batch_size=args.batch_size,
                         augment="none").resolved()
    keras.utils.set_random_seed(0)
    model = build_training_model(name, files.image_shape, files.num_classes, model_info(name).recipe)
    compile_for(model, config, steps=-(-len(files.train) // args.batch_size))
    if mode == "arrays":
        batches = ArrayBatches(arrays.x, arrays.y, args.batch_size, shuffle=True, full_batches=True)
    else:
        batches = files.train.batches(args.batch_size, shuffle=True, full_batches=True,
                                workers=1 if mode == "serial" else workers)
    build_before_fit(model, batches)
    times = timing_callback()
    # The device callback runs first, so its wait counts as part of the step.
    model.fit(batches, epochs=args.epochs, callbacks=[simulated_device(device_ms), times] if device_ms else [times],
              verbose=0)
    measured = times.epochs[1:]  # the first epoch warms up torch and the page cache
    wait = [w for e in measured for w in e["wait"]]
    step = [s for e in measured for s in e["step"]]
    wall = sum(e["wall"] for e in measured)
    images = sum(len(e["step"]) for e in measured) * args.batch_size
    return {
        "model": name + (f" + {device_ms:g} ms device" if device_ms else ""), "mode": mode, "device_ms": device_ms,
        "workers": batches.workers, "max_queue_size": batches.max_queue_size,
        "keras_thread_pool": batches.workers > 1 or batches.use_multiprocessing,
        "epochs_measured": len(measured), "steps_measured": len(step),
        "wait_ms_median": 1000 * statistics.median(wait), "wait_ms_mean": 1000 * statistics.fmean(wait),
        "step_ms_median": 1000 * statistics.median(step), "step_ms_mean": 1000 * statistics.fmean(step),
        "wait_share": sum(wait) / (sum(wait) + sum(step)),
        # Per epoch, what is neither a step nor a wait: mostly the data's end-of-epoch work
        # (Keras' enqueuer stop waits 0.1 s for its queue to drain).
        "epoch_end_ms": 1000 * statistics.fmean(e["wall"] - sum(e["wait"]) - sum(e["step"]) for e in measured),
        "images_per_s": images / wall,
    }


def decode_only(files, args, workers) -> list[dict]:
    from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

    results = []
    for label, n in (("serial (training thread)", 1), ("Keras thread pool", workers)):
        batches = files.train.batches(args.batch_size, shuffle=True, workers=n)
        adapter = PyDatasetAdapter(batches, shuffle=False)
        start = time.perf_counter()
        adapter.on_epoch_begin()
        images = sum(len(x) for x, _ in adapter.get_numpy_iterator())
        adapter.on_epoch_end()
        seconds = time.perf_counter() - start
        results.append({"how": label, "workers": n, "images": images, "seconds": seconds,
                        "images_per_s": images / seconds, "ms_per_image": 1000 * seconds / images})
    return results


def markdown(report: dict) -> str:
    s = report["settings"]
    lines = [
        "# Decoding in background workers: how long training waits for data",
        "",
        f"Measured by `{report['command']}` on {report['machine']}.",
        "",
        f"{s['images']} synthetic {s['source_size']}x{s['source_size']} JPEGs (quality 90, "
        f"{s['jpeg_kb_mean']:.0f} KB on average) in {s['classes']} class folders; "
        f"{s['train_images']} in the training split, decoded and resized to {s['image_size']}x{s['image_size']} "
        f"(Pillow, libjpeg's draft mode, bilinear), batch {s['batch_size']}, {s['epochs']} epochs of which the "
        f"first (warm-up) is left out. Taken once"
        + (f", with torch kept to {report['omp_num_threads']} thread(s) by OMP_NUM_THREADS" if report["omp_num_threads"] else "")
        + ": the numbers show the pattern rather than this machine's best.",
        "",
        "*arrays*: the cached path, images decoded before training (ArrayBatches); *serial*: "
        "batches with workers=1, each batch decoded in the training loop's thread when it "
        "is needed (Keras starts no worker pool for workers=1); *workers*: batches with "
        "Keras' thread pool (its OrderedEnqueuer) decoding ahead while the step runs. *Wait* is "
        "the time from the end of one step (or the start of the epoch) to the start of the next; "
        "*share* is the waits' part of the measured training time; *epoch end* is the rest of an "
        "epoch's wall time (Keras' enqueuer stop waits 0.1 s for its queue to drain); *images/s* "
        "counts the whole epoch. Rows marked *+ N ms device* stand for an accelerator: the model "
        "`device_probe` (global average pooling and a dense layer) needs next to no host CPU, "
        "as a GPU step needs only kernel launches, and the training thread is held N ms after "
        "each step, as waiting on the device does; the workers have the CPU to themselves "
        "meanwhile (on a CPU-only machine the real rows make them compete with the step).",
        "",
        "| model | mode | workers (queue) | wait / step, median (mean) ms | step, median ms | wait share | epoch end, ms | images/s |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in report["results"]:
        queue = f"{r['workers']} ({r['max_queue_size']})" if r["keras_thread_pool"] else f"{r['workers']} (none)"
        lines.append(f"| {r['model']} | {r['mode']} | {queue} | {r['wait_ms_median']:.1f} ({r['wait_ms_mean']:.1f}) | "
                     f"{r['step_ms_median']:.1f} | {r['wait_share']:.0%} | {r['epoch_end_ms']:.0f} | {r['images_per_s']:.0f} |")
    lines += [
        "",
        "Decoding alone (one pass over the training split, no model):",
        "",
        "| how | workers | images/s | ms per image |",
        "| --- | ---: | ---: | ---: |",
    ]
    for d in report["decode_only"]:
        lines.append(f"| {d['how']} | {d['workers']} | {d['images_per_s']:.0f} | {d['ms_per_image']:.2f} |")
    lines += ["", "The thread pool's figure includes starting and stopping Keras' enqueuer once (a pass "
              "is one epoch), as training does every epoch.", "", "Raw numbers: the .json file beside this one.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--images", type=int, default=3000,
                        help="JPEGs in the folder (enough steps an epoch that its end, 0.1 s for Keras' enqueuer, weighs little)")
    parser.add_argument("--source-size", type=int, default=256, help="side of each JPEG")
    parser.add_argument("--image-size", type=int, default=64, help="side the models train at")
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--models", default="lenet5_modern,happy", help="comma-separated registered models")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device-ms", type=float, default=40,
                        help="simulated accelerator step of the device_probe rows (0: no such rows)")
    parser.add_argument("-o", "--output", type=Path, default=ROOT / "docs" / "benchmarks-data-workers.md")
    args = parser.parse_args(argv)

    from cnnzoo import _io  # first: cnnzoo selects the Keras backend
    from cnnzoo.backends import torch_speed
    from cnnzoo.datasets import load
    from cnnzoo.datasets.batches import default_workers

    sys.path.insert(0, str(ROOT / "experiments"))
    from common import machine

    torch_speed.apply()
    workers = default_workers()
    results = []
    with tempfile.TemporaryDirectory(prefix="cnnzoo-workers-") as tmp:
        root = Path(tmp) / "jpegs"
        write_jpegs(root, args.images, args.source_size, args.classes)
        jpegs = list(root.rglob("*.jpg"))
        files = load(f"folder:{root}", image_size=args.image_size, stream=True)
        decode = decode_only(files, args, workers)  # also warms the page cache
        for d in decode:
            print(f"decode only, {d['how']}: {d['images_per_s']:.0f} images/s", flush=True)
        arrays = files.train.in_memory(progress=False)
        names = args.models.split(",")
        runs = [(name, 0) for name in names] + ([(register_device_probe(), args.device_ms)] if args.device_ms else [])
        for name, device_ms in runs:
            for mode in ("arrays", "serial", "workers"):
                r = train_once(name, mode, files, arrays, args, workers, device_ms)
                results.append(r)
                print(f"{r['model']:10s} {mode:8s} workers {r['workers']}: wait {r['wait_ms_median']:.1f} ms/step "
                      f"(mean {r['wait_ms_mean']:.1f}), step {r['step_ms_median']:.1f} ms, share "
                      f"{r['wait_share']:.0%}, {r['images_per_s']:.0f} images/s", flush=True)
        kb = statistics.fmean(p.stat().st_size for p in jpegs) / 1024

    threads = os.environ.get("OMP_NUM_THREADS")
    command = (f"{'OMP_NUM_THREADS=' + threads + ' ' if threads else ''}python benchmarks/data_workers.py"
               + "".join(f" --{k.replace('_', '-')} {v}" for k, v in vars(args).items()
                         if k != "output" and v != parser.get_default(k)))
    report = {
        "command": command, "machine": machine(), "date": datetime.date.today().isoformat(),
        "omp_num_threads": threads, "default_workers": workers,
        "settings": {"images": args.images, "source_size": args.source_size, "image_size": args.image_size,
                     "classes": args.classes, "batch_size": args.batch_size, "epochs": args.epochs,
                     "train_images": len(files.train), "jpeg_kb_mean": kb},
        "results": results, "decode_only": decode,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    _io.write_text(args.output, markdown(report))
    _io.write_text(args.output.with_suffix(".json"), json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.output} and {args.output.with_suffix('.json').name}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    sys.exit(main())

"""Throughput of data-parallel training over 1, 2 and 4 simulated CPU devices (JAX).

    python benchmarks/data_parallel.py [--model happy] [--batch 64] [--steps 20]

Simulated devices share the same CPU cores, so this measures the cost of the distribution
machinery (sharding, all-reduce), not a speed-up. Writes docs/benchmarks-data-parallel.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, sys, time
import numpy as np
import cnnzoo, keras
from cnnzoo.backends import distribute
from cnnzoo.models import augment, model_info
from cnnzoo.datasets.batches import ArrayBatches
from cnnzoo.training.config import TrainConfig
from cnnzoo.training.fit import build_training_model, compile_for

model_name, batch, steps, devices = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
shape = model_info(model_name).input_shape
rng = np.random.default_rng(0)
x = rng.integers(0, 255, (batch * steps, *shape), dtype="uint8")
y = rng.integers(0, 6, batch * steps)
scope, count = distribute.data_parallel(devices, batch)
with scope:
    model = build_training_model(model_name, shape, 6)
    augment.allow_jit(model)  # as cnnzoo train does: the step compiles (issue 32)
    # resolved(): the recipe's defaults (warmup, schedule) filled in, as cnnzoo train passes them.
    compile_for(model, TrainConfig(model_name, "synthetic", epochs=3, batch_size=batch, lr=1e-3).resolved(), steps)
    data = ArrayBatches(x, y, batch, shuffle=True, full_batches=True)
    times = []
    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None): self.t = time.perf_counter()
        def on_epoch_end(self, epoch, logs=None): times.append(time.perf_counter() - self.t)
    model.fit(data, epochs=3, verbose=0, callbacks=[*distribute.step_callbacks(count), Timer()])
print("RESULT" + json.dumps({"devices": count, "images_per_s": batch * steps / min(times[1:])}))
"""


def measure(model: str, batch: int, steps: int, devices: int) -> dict:
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={max(devices, 1)}")
    out = subprocess.run([sys.executable, "-c", CHILD, model, str(batch), str(steps), str(devices)],
                         env=env, capture_output=True, text=True, check=True)
    return json.loads(next(l for l in out.stdout.splitlines() if l.startswith("RESULT"))[6:])


def _jax_version() -> str:
    from importlib.metadata import version

    return version("jax")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="happy")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    rows = [measure(args.model, args.batch, args.steps, n) for n in (1, 2, 4)]
    base = rows[0]["images_per_s"]
    lines = [
        "# Data-parallel overhead on simulated CPU devices",
        "",
        f"`python benchmarks/data_parallel.py --model {args.model} --batch {args.batch} --steps {args.steps}`, "
        f"{time.strftime('%Y-%m-%d')}, JAX {_jax_version()} on this {os.cpu_count()}-core CPU; best epoch of 3 after the first "
        "(compilation); global batch fixed, so each device gets batch/N; "
        "the training step compiled and Lockstep on (the fixed path of issue 32).",
        "",
        "| devices | images/s | relative to 1 device |",
        "| ---: | ---: | ---: |",
    ] + [f"| {r['devices']} | {r['images_per_s']:.0f} | {r['images_per_s'] / base:.2f} |" for r in rows]
    lines += ["", "Simulated devices share the same cores: this is the cost of sharding and all-reduce, "
              "not a speed-up. Real multi-GPU scaling is not measured yet (the lent GPU machine has one GPU)."]
    (ROOT / "docs").mkdir(exist_ok=True)
    (ROOT / "docs" / "benchmarks-data-parallel.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

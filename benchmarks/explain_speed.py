"""How long one heat map takes: Grad-CAM and saliency for one 64x64 image through ResNet-50,
next to a plain prediction of the same image.

    python benchmarks/explain_speed.py [--model resnet50] [--repeats 20]

Each setting runs in its own process (`OMP_NUM_THREADS` is read when torch starts): torch's
default threads, one thread, and one thread with cnnzoo's torch fixes off
(`CNNZOO_TORCH_SPEED=0`: stock Keras). Otherwise they are installed before the model is
built, as `cnnzoo explain` and `cnnzoo serve` install them before loading it, so the predict
column has them too. On the default backend, with the network as `cnnzoo train` builds it (uint8 pixels ->
Rescaling -> ResNet-50, 6 classes; its weights do not change the time). *first* is the
first call, which also clones the model with its taps (once per model and layer, kept with
the model); the other columns are medians over `--repeats` calls after it, each on a new
image, the three kinds of call taken in turn. Writes docs/benchmarks-explain.md and .json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 1.0  # the bound for one Grad-CAM


def child(model_name: str, repeats: int) -> dict:
    """Time predict, Grad-CAM and saliency in this process; returns seconds."""
    import cnnzoo  # noqa: F401, I001  (chooses the backend before keras loads)
    import keras
    import numpy as np
    from cnnzoo.backends import torch_speed
    from cnnzoo.inference import explain as ex
    from cnnzoo.training.fit import build_training_model

    shape = (64, 64, 3)
    torch_speed.apply()  # before building, as `cnnzoo explain` does before loading (off: CNNZOO_TORCH_SPEED=0)
    model = build_training_model(model_name, shape, 6)
    rng = np.random.default_rng(0)

    def image():
        return rng.integers(0, 256, (1, *shape)).astype("uint8")

    def timed(fn):
        start = time.perf_counter()
        fn(image())
        return time.perf_counter() - start

    result = {"model": model_name, "layer": ex.default_layer(model), "backend": keras.backend.backend(),
              "keras": keras.__version__,
              "threads": os.environ.get("OMP_NUM_THREADS", "default"), "repeats": repeats}
    timed(lambda x: model.predict_on_batch(x))  # Keras' own first-call set-up, not ours
    methods = {"gradcam": lambda x: ex.gradcam(model, x), "saliency": lambda x: ex.saliency(model, x),
               "predict": lambda x: model.predict_on_batch(x)}
    for name, fn in methods.items():
        result[f"{name}_first_s"] = timed(fn)
    result["fixes"] = torch_speed.active()
    times = {name: [] for name in methods}
    for _ in range(repeats):  # in turn, so a change in the machine's load hits all three alike
        for name, fn in methods.items():
            times[name].append(timed(fn))
    result.update({f"{name}_s": statistics.median(values) for name, values in times.items()})
    return result


def table(results: list[dict], note: str) -> str:
    rows = [
        "# How long one heat map takes",
        "",
        note,
        "",
        "| model | layer | threads | torch fixes | predict (ms) | Grad-CAM first (ms) | Grad-CAM (ms) | saliency (ms) | Grad-CAM / predict | under 1 s |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in results:
        rows.append(
            f"| {r['model']} 64x64 | {r['layer']} | {r['threads']} | {'on' if r['fixes'] else 'off'} | "
            f"{1000 * r['predict_s']:.0f} | "
            f"{1000 * r['gradcam_first_s']:.0f} | {1000 * r['gradcam_s']:.0f} | {1000 * r['saliency_s']:.0f} | "
            f"{r['gradcam_s'] / r['predict_s']:.1f}x | {'yes' if r['gradcam_s'] < TARGET_S else 'no'} |")
    rows += [
        "",
        ("Grad-CAM is one forward pass and a backward pass from the class score down to the "
        "explained layer only (for ResNet-50 res5c_relu: the average pool and the classifier), so "
        "it costs little more than a prediction; saliency back-propagates through the whole "
        "network to the pixels. The first call clones the model with its taps (see "
        "src/cnnzoo/inference/explain.py); `cnnzoo serve` does that at start-up."),
        "",
    ]
    return "\n".join(rows)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--settings", nargs="+", default=["default", "1", "1-stock"],
                        help="THREADS or THREADS-stock (cnnzoo's torch fixes off); THREADS 'default' or a number")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.model, args.repeats)))
        return
    load = os.getloadavg()[0]
    results = []
    for setting in args.settings:
        threads, _, stock = setting.partition("-")
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
        if threads != "default":
            env["OMP_NUM_THREADS"] = threads
        env["CNNZOO_TORCH_SPEED"] = "0" if stock else "1"
        run = subprocess.run([sys.executable, __file__, "--child", "--model", args.model, "--repeats",
                              str(args.repeats)], env=env, capture_output=True, text=True, check=False)
        if run.returncode:
            sys.exit(f"The {setting} run failed:\n{run.stderr[-3000:]}")
        results.append(json.loads(run.stdout.strip().splitlines()[-1]))
        print(results[-1], flush=True)
    note = (f"Measured by `python benchmarks/explain_speed.py --repeats {args.repeats}` on "
            f"{datetime.date.today()}: {os.cpu_count()} CPU core(s) ({platform.processor() or platform.machine()}), "
            f"load average {load:.1f} when it started (other people's jobs shared the cores), Python "
            f"{platform.python_version()}, Keras {results[0]['keras']} on {results[0]['backend']}; one image per "
            f"call, medians of {args.repeats} calls.")
    docs = ROOT / "docs"
    (docs / "benchmarks-explain.json").write_text(json.dumps(results, indent=2) + "\n")
    (docs / "benchmarks-explain.md").write_text(table(results, note))
    print(table(results, note))


if __name__ == "__main__":
    main()

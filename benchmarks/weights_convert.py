"""Time and memory of converting a published ResNet-50 checkpoint into a .keras model.

    python benchmarks/weights_convert.py [--repeat 3] [-o docs/benchmarks-weights.md]

Writes a ResNet-50 checkpoint in each source's format (random weights, the published files'
size and layout: torchvision's .pth, timm's .safetensors, keras.applications' .h5), then, in a
fresh process per run, converts it with `cnnzoo.models.weights.convert_file` into a .keras
model. Reported per source (median of the runs): the conversion's wall time (reading,
building the network, checking and assigning every tensor, saving), the whole command's wall
time (`cnnzoo weights convert`, Python and framework imports included), and the peak memory
the conversion adds to the process: peak resident memory (VmHWM) minus resident memory
after the imports, against the checkpoint's size. Writes a Markdown table (atomically).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {"torchvision": ("resnet50_tv", ".pth"), "timm": ("resnet50_tv", ".safetensors"),
           "keras": ("resnet50_keras", ".h5")}

# Runs in a fresh interpreter: the imports first, then the conversion alone is measured.
CHILD = r"""
import json, sys, time
import cnnzoo, keras
from cnnzoo.models.weights import convert_file

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
before = status("VmRSS:")
start = time.perf_counter()
convert_file(sys.argv[1], sys.argv[2], sys.argv[3])
print(json.dumps({"seconds": time.perf_counter() - start, "peak_added": status("VmHWM:") - before,
                  "rss_after_imports": before}))
"""


def write_checkpoint(source: str, folder: Path) -> Path:
    """A ResNet-50 with random weights in `source`'s own format."""
    arch, suffix = SOURCES[source]
    path = folder / f"resnet50-{source}{suffix}"
    if source == "keras":
        import h5py
        import keras
        from keras.src.legacy.saving.legacy_h5_format import save_weights_to_hdf5_group

        with h5py.File(path, "w") as f:
            save_weights_to_hdf5_group(f, keras.applications.ResNet50(weights=None))
        return path
    import torch

    from cnnzoo.backends.peers import import_timm, import_torchvision

    if source == "torchvision":
        torch.save(import_torchvision().models.resnet50().state_dict(), path)
    else:
        from safetensors.torch import save_file

        save_file(import_timm().create_model("resnet50").state_dict(), path)
    return path


def run(args: list[str]) -> tuple[float, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    start = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, env=env, check=True)
    return time.perf_counter() - start, done.stdout


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per source (median reported)")
    parser.add_argument("-o", "--output", type=Path, default=ROOT / "docs" / "benchmarks-weights.md")
    parser.add_argument("sources", nargs="*", default=list(SOURCES))
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "src"))
    sys.path.insert(0, str(ROOT / "experiments"))
    import cnnzoo  # noqa: F401  (chooses the backend)
    from common import machine

    from cnnzoo._io import write_text

    rows, load = [], os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="cnnzoo-bench-weights-") as tmp:
        folder = Path(tmp)
        for source in args.sources:
            arch, _ = SOURCES[source]
            checkpoint = write_checkpoint(source, folder)
            size = checkpoint.stat().st_size
            inner, command, peaks = [], [], []
            for _ in range(args.repeat):
                out = folder / "out.keras"
                _, stdout = run([sys.executable, "-c", CHILD, str(checkpoint), arch, str(out)])
                result = json.loads(stdout.strip().splitlines()[-1])
                inner.append(result["seconds"])
                peaks.append(result["peak_added"])
                wall, _ = run([sys.executable, "-m", "cnnzoo", "weights", "convert", str(checkpoint), "--arch", arch,
                               "-o", str(out)])
                command.append(wall)
            row = (source, arch, checkpoint.suffix, size / 2**20, statistics.median(inner), statistics.median(command),
                   statistics.median(peaks) / 2**20, statistics.median(peaks) / size)
            rows.append(row)
            print(f"{source:12s} {row[4]:5.2f} s convert, {row[5]:5.2f} s command, peak +{row[6]:.0f} MiB "
                  f"= {row[7]:.2f}x the {row[3]:.0f} MiB file", flush=True)
    lines = [
        "# Converting published weights",
        "",
        f"Measured by `python benchmarks/weights_convert.py --repeat {args.repeat}` — {machine()}; load average "
        f"{load[0]:.1f} at the start and {os.getloadavg()[0]:.1f} at the end (other jobs shared the cores when above 0-1).",
        "",
        "A ResNet-50 checkpoint with random weights in each source's own format and size, converted into a "
        ".keras model in a fresh process each run (median of the runs): *convert* is "
        "`cnnzoo.models.weights.convert_file` alone (read, build the network, check and assign every tensor, "
        "save atomically); *command* is `cnnzoo weights convert` from start to end, imports included; *peak "
        "memory* is what the conversion adds to the process (peak resident memory minus resident memory after the "
        "imports), also as a multiple of the file's size. Targets: under 10 s, under 3x the weights' size.",
        "",
        "| source | network | file | size (MiB) | convert (s) | command (s) | peak memory added (MiB) | x file size |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [f"| {s} | `{a}` | {suffix} | {mb:.0f} | {t:.2f} | {c:.2f} | {peak:.0f} | {ratio:.2f} |"
              for s, a, suffix, mb, t, c, peak, ratio in rows]
    write_text(args.output, "\n".join(lines) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

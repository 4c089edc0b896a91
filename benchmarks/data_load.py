"""Time the first load (decode + cache write) and the cached second load of each dataset.

    CNNZOO_DATA_MIRROR=../shared/data python benchmarks/data_load.py [--repeat 3] [-o docs/benchmarks-data.md]

Each set is loaded into a fresh, temporary CNNZOO_HOME, so the first load really decodes
the archive; the second load reads the .npz cache. Writes a Markdown table (atomically).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="cached loads to time (median reported)")
    parser.add_argument("-o", "--output", type=Path, default=ROOT / "docs" / "benchmarks-data.md")
    parser.add_argument("names", nargs="*", help="datasets (default: all registered)")
    args = parser.parse_args(argv)
    os.environ.setdefault("CNNZOO_DATA_MIRROR", str(ROOT.parent / "shared" / "data"))

    import PIL

    from cnnzoo._io import write_text
    from cnnzoo.datasets import list_datasets, load
    from cnnzoo.datasets.readers import cpu_count

    rows = []
    for name in args.names or list_datasets():
        with tempfile.TemporaryDirectory(prefix="cnnzoo-bench-") as home:
            os.environ["CNNZOO_HOME"] = home
            start = time.perf_counter()
            ds = load(name, progress=False)
            first = time.perf_counter() - start
            cached = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                load(name, progress=False)
                cached.append(time.perf_counter() - start)
            size_mb = ds.cache_path.stat().st_size / 1e6
        counts = ds.counts()
        row = (name, "x".join(map(str, ds.image_shape)), len(ds.train), len(ds.test),
               first, statistics.median(cached), size_mb,
               " / ".join(f"{a}+{b}" for a, b in zip(counts["train"], counts["test"])))
        rows.append(row)
        print(f"{name:12s} first {first:6.2f} s   cached {row[5]:.3f} s   train {row[2]}  test {row[3]}",
              flush=True)

    lines = [
        "# Dataset load times",
        "",
        f"Measured by `python benchmarks/data_load.py` on {date.today().isoformat()}: "
        f"{cpu_count()} CPU core(s) available, Python {platform.python_version()}, Pillow {PIL.__version__}, "
        f"archives read from the offline mirror ({os.environ['CNNZOO_DATA_MIRROR']}). "
        "*First* = decode the archive, resize and write the .npz cache (fresh `CNNZOO_HOME`); "
        f"*cached* = the median of {args.repeat} later loads, which read the cache and redo the split.",
        "",
        "| dataset | image | train | test | first load (s) | cached load (s) | cache (MB) | per class: train+test |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, shape, n_train, n_test, first, cached, size_mb, per_class in rows:
        lines.append(f"| {name} | {shape} | {n_train:,} | {n_test:,} | {first:.2f} | {cached:.3f} | "
                     f"{size_mb:.0f} | {per_class} |")
    lines += ["", "The mirror holds part of each upstream set, so the counts are what it holds.", ""]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_text(args.output, "\n".join(lines))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    sys.exit(main())

"""Load-test `cnnzoo serve` on loopback, the Keras door and the ONNX door in one run:
requests/s, p50/p99 latency, resident memory and start-up time.

    CNNZOO_DATA_MIRROR=../shared/data python benchmarks/serve_load.py runs/happy-smiles-s0 \
        [--onnx model.onnx] [--before OLD/src] [--requests 400] [--concurrency 1,8,32,64] \
        [--bad-share 0.25] [-o docs/benchmarks-serve.md]

Each server is the real command (`python -m cnnzoo serve`) in its own process: the run (Keras),
then its export (`cnnzoo export`, written to a temporary folder unless --onnx names one), and,
with --before, the run served by another checkout's cnnzoo (e.g. the commit before a change)
for a before/after comparison in the same conditions. The client (httpx, asyncio) runs here.
Requests are real faces from the smiles archive (multipart uploads and raw JPEG bodies) mixed
with bad inputs (non-images, truncated images, empty bodies, wrong content types, a pixel bomb,
an over-limit body). Every good answer is checked against `cnnzoo predict` on the same image
and the same file, and every bad one against its 4xx; a wrong answer makes the script fail.
Start-up is from starting the process to its first /health answer; memory is the server's
resident set (and its peak) after the load. Writes a Markdown report (atomically).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def trained(info: dict) -> str:
    metrics = info.get("metrics") or {}
    test = metrics.get("test") or {}
    if "accuracy" not in test:
        return ""
    return (f"; trained {metrics.get('epochs')} epochs on {metrics.get('dataset')}, test accuracy "
            f"{test['accuracy']:.1%}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="run folder or model file to serve")
    parser.add_argument("--onnx", type=Path, help="its ONNX export (default: exported here, to a temporary folder)")
    parser.add_argument("--before", type=Path, help="src/ folder of another cnnzoo checkout: serve the run with it too")
    parser.add_argument("--requests", type=int, default=400, help="requests per concurrency level")
    parser.add_argument("--concurrency", default="1,8,32,64", help="comma-separated levels")
    parser.add_argument("--bad-share", type=float, default=0.25, help="share of bad requests")
    parser.add_argument("--faces", type=int, default=40, help="faces per class from the smiles archive")
    parser.add_argument("--face-step", choices=("auto", "on", "off"), default="auto",
                        help="the doors' face step (serve --faces; auto: as the run was trained)")
    parser.add_argument("--max-mb", type=float, default=0.25, help="the server's body limit for this test")
    parser.add_argument("-o", "--output", type=Path, default=ROOT / "docs" / "benchmarks-serve.md")
    args = parser.parse_args(argv)
    mirror = Path(os.environ.get("CNNZOO_DATA_MIRROR") or ROOT.parent / "shared" / "data")
    levels = [int(v) for v in args.concurrency.split(",")]

    import httpx

    import cnnzoo  # noqa: F401  (picks the Keras backend before keras is imported)
    import keras

    from cnnzoo._io import write_text
    from cnnzoo.inference.export import export
    from cnnzoo.inference.predict import predict_files
    from loadtest import (Case, answer_probabilities, bad_cases, describe, mixed_cases, run_load, serve_subprocess,
                          smiles_faces)

    faces = smiles_faces(mirror / "smiles.zip", args.faces)
    bad = bad_cases(faces[0][1], max_bytes=int(args.max_mb * 1024 * 1024))
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    with tempfile.TemporaryDirectory(prefix="cnnzoo-serve-bench-") as folder:
        onnx_file = args.onnx or export(args.model, Path(folder) / "model.onnx")["path"]
        paths = []
        for name, data in faces:
            (Path(folder) / name).write_bytes(data)
            paths.append(Path(folder) / name)
        # name, what is served, its reference answers (`cnnzoo predict` on the same file), environment
        servers = [("keras", args.model, predict_files(args.model, paths, faces=args.face_step), {})]
        if args.before:
            servers.insert(0, ("keras, before", args.model, servers[0][2], {"PYTHONPATH": str(args.before.resolve())}))
        servers.append(("onnx", Path(onnx_file), predict_files(onnx_file, paths, faces=args.face_step), {}))

        rows, failures, healths, starts = [], [], [], []
        server_args = ["--max-mb", args.max_mb, "--log-level", "warning"]  # no access log line per request
        for setting, served, reference, env in servers:
            good = [Case("good", data, None if k % 2 else "image/jpeg", 200, answer_probabilities(r))
                    for k, ((_, data), r) in enumerate(zip(faces, reference))]
            face_step = [] if setting == "keras, before" else ["--faces", args.face_step]  # it had none
            with serve_subprocess(served, extra_args=server_args + face_step, env=env) as server:
                url = server.url
                info = httpx.get(url + "/model").json()
                run_load(url, mixed_cases(good, bad, 40, args.bad_share, seed=99), concurrency=8)  # warm-up
                for level in levels:
                    cases = mixed_cases(good, bad, args.requests, args.bad_share, seed=level)
                    before = httpx.get(url + "/health").json()
                    result = run_load(url, cases, concurrency=level, timeout_s=120)
                    after = httpx.get(url + "/health").json()
                    batch = (after["predictions"] - before["predictions"]) / max(1, after["batches"] - before["batches"])
                    print(setting, describe(result), f"mean batch {batch:.1f}", flush=True)
                    failures += result.problems
                    rows.append((setting, level, result, batch))
                health = httpx.get(url + "/health").json()
                healths.append((setting, health))
                starts.append((setting, server.ready_s, *server.memory_mib(), info))
            if health["status"] != "ok" or health["failed"]:
                failures.append(f"unhealthy after the load ({setting}): {health}")

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    today = datetime.date.today().isoformat()
    info = starts[-1][4]
    lines = [
        "# `cnnzoo serve` under load: the Keras door and the ONNX door",
        "",
        f"Measured by `python benchmarks/serve_load.py {args.model}{' --before ' + str(args.before) if args.before else ''}"
        f"{' --face-step ' + args.face_step if args.face_step != 'auto' else ''}` "
        f"on {today}: {cores} CPU core(s) ({cpu_model()}), load average {load_before:.1f} when it started, "
        f"Python {platform.python_version()}, Keras {keras.__version__} on {keras.backend.backend()}, "
        f"onnxruntime {_version('onnxruntime')}, model `{info['name']}` ({info['architecture']}, "
        f"{info['parameters']:,} parameters, input {'x'.join(map(str, info['input_shape']))}{trained(info)}). "
        f"Each server (`python -m cnnzoo serve --faces {args.face_step}`: "
        + ("each request goes through the face step, detector first" if args.face_step == "on" else
           "the face step when the run was trained on face crops" if args.face_step == "auto" else
           "the classifier alone, no face step")
        + "; one uvicorn process, access log off) and the client "
        "(httpx, asyncio) share the machine over loopback. *keras* serves the run folder, *onnx* its "
        "export (`cnnzoo export`; onnxruntime, no Keras or PyTorch imported)"
        + (", *keras, before* the run served by the code before this change" if args.before else "") + ".",
        "",
        f"Each level sends {args.requests} requests with at most *concurrency* in flight; "
        f"{args.bad_share:.0%} are bad (not an image, truncated, empty, wrong content type, a "
        "20000x20000 pixel bomb, a body over the limit) and must get their 4xx; the rest are "
        f"{len(faces)} real 64x64 faces from the smiles archive (multipart uploads and raw JPEG bodies), "
        "whose answers must equal `cnnzoo predict`'s on the same file. Latency is per request, from send to "
        "the parsed answer; p50/p99 are nearest-rank percentiles. *Mean batch* is how many good images the "
        "inference thread answered per forward pass (its micro-batching; see docs/SERVE.md).",
        "",
        "| server | concurrency | requests | wall (s) | requests/s | p50 (ms) | p99 (ms) | good p50 (ms) | good p99 (ms) "
        "| mean batch | wrong answers |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for setting, level, r, batch in rows:
        lines.append(
            f"| {setting} | {level} | {len(r.outcomes)} | {r.wall_s:.2f} | {r.requests_per_s:.1f} | {r.latency_ms(50):.1f} "
            f"| {r.latency_ms(99):.1f} | {r.latency_ms(50, 'good'):.1f} | {r.latency_ms(99, 'good'):.1f} "
            f"| {batch:.1f} | {len(r.problems)} |")
    lines += [
        "",
        "| server | start-up (s) | resident memory after the load (MiB) | peak (MiB) | runtime, threads |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for setting, ready, rss, peak, served_info in starts:
        runtime = f"{served_info.get('runtime', 'keras')}, {served_info.get('threads', 'torch default')}"
        lines.append(f"| {setting} | {ready:.2f} | {rss:.0f} | {peak:.0f} | {runtime} |")
    lines += [
        "",
        "After the load `/health` said: " + "; ".join(
            f"{setting}: status {h['status']}, {h['predictions']} predictions, {h['refused']} refused, "
            f"{h['failed']} failed" for setting, h in healths) + ".",
        "",
        "Caveat: these are small-machine figures. The client, the server and (when this was measured) "
        "other people's jobs shared the same cores, so they are a floor for what one server "
        "process does, not a capacity plan. Re-run the script on the serving machine for real numbers. "
        "Past the point where the machine is saturated, more requests in flight only wait longer "
        "(latency is about in-flight / throughput): p50 grows with concurrency and requests/s stops "
        "growing, or falls when the client's own work for more connections takes cores from the "
        "server. That tail is queueing and CPU contention, not the model: requests refused before "
        "they reach it (wrong content type) wait about as long.",
        "",
    ]
    write_text(args.output, "\n".join(lines))
    print(f"wrote {args.output}")
    if failures:
        print(f"{len(failures)} wrong answers, e.g. {failures[:3]}", file=sys.stderr)
        return 1
    return 0


def _version(package: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


if __name__ == "__main__":
    sys.exit(main())

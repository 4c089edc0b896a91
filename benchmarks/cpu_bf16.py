"""bfloat16 training on a CPU: cnnzoo's `--precision bf16` (Keras' `mixed_bfloat16` policy with
cnnzoo's PyTorch-backend fixes) against its float32, against the same policy with every layer
called through Keras' own `__call__` (cnnzoo before 2026-12-08, without fix 8), and against plain
PyTorch in float32 and under `torch.autocast`.

    python benchmarks/cpu_bf16.py [--cases resnet50-64-b32 resnet50-64-b256] [--steps 12] [--rounds 2]

The seed ResNet-50 (the README's main job) on synthetic 64x64 images, as
benchmarks/train_speed.py times it: each variant in a fresh process, the median step after
warm-up, each step synchronised by reading its loss; peak RSS per process. The variants run
interleaved, `--rounds` times each, and each figure is the median of its rounds, so a load
that comes and goes on a shared machine touches them alike. Writes docs/benchmarks-bf16.md.
Meaningful only on a CPU with bfloat16 arithmetic (AVX512-BF16 or AMX: `cnnzoo.backends.cpu_bf16`).
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import train_speed

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {  # name: what runs
    "cnnzoo fp32": "cnnzoo as `cnnzoo train` runs it, float32",
    "cnnzoo bf16": "cnnzoo `--precision bf16`: Keras' `mixed_bfloat16`, batch norm in PyTorch's fused kernel",
    "cnnzoo bf16, Keras layer calls": "the same with each layer called through Keras' `__call__` (no fix 8: cnnzoo before 2026-12-08)",
    "torch fp32": "plain PyTorch (benchmarks/torch_reference.py), float32, channels_last",
    "torch bf16": "plain PyTorch under torch.autocast(\"cpu\", bfloat16), channels_last",
}


def child_cnnzoo(case: str, steps: int, warmup: int, mode: str) -> dict:
    from cnnzoo.backends import torch_speed  # first: cnnzoo selects the backend as a user gets it

    import keras

    from cnnzoo.datasets.batches import ArrayBatches
    from cnnzoo.models import model_info
    from cnnzoo.training.config import TrainConfig
    from cnnzoo.training.fit import build_training_model, compile_for

    name, shape, classes, batch, _ = train_speed.CASES[case]
    timer = train_speed._keras_timer()
    x, y = train_speed._data(shape, classes, batch * (steps + warmup))
    config = TrainConfig(name, "synthetic", epochs=1, batch_size=batch, precision="fp32").resolved()
    torch_speed.apply()
    if mode == "cnnzoo bf16, Keras layer calls":
        torch_speed.restore()
        torch_speed.FIXES = tuple(f for f in torch_speed.FIXES if f is not torch_speed._graph_nodes_called_bare)
        torch_speed.apply()
    keras.mixed_precision.set_global_policy("float32" if mode == "cnnzoo fp32" else "mixed_bfloat16")
    model = build_training_model(name, shape, classes, model_info(name).recipe)
    compile_for(model, config, steps + warmup)
    model.fit(ArrayBatches(x, y, batch, shuffle=True), epochs=1, verbose=0, callbacks=[timer])
    return train_speed._result(batch, timer.times[warmup:], mode)


def child_torch(case: str, steps: int, warmup: int, mode: str) -> dict:
    import torch

    import torch_reference

    name, shape, classes, batch, _ = train_speed.CASES[case]
    x, y = train_speed._data(shape, classes, batch)
    images = torch.from_numpy(x).permute(0, 3, 1, 2).float().div(255).contiguous(memory_format=torch.channels_last)
    labels = torch.from_numpy(y)
    net = torch_reference.build(name, classes).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(net.parameters(), 1e-3)
    times = []
    for _ in range(steps + warmup):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "torch bf16"):
            loss = torch.nn.functional.cross_entropy(net(images), labels)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return train_speed._result(batch, times[warmup:], mode)


def measure(variant: str, case: str, steps: int, warmup: int) -> dict:
    command = [sys.executable, __file__, "--child", variant, case, "--steps", str(steps), "--warmup", str(warmup)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(results: dict) -> str:
    lines = ["| case | variant | step (ms, median of rounds) | images/s | vs cnnzoo fp32 | vs torch bf16 | peak RSS (MiB) |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for case, rows in results.items():
        for variant, r in rows.items():
            if "error" in r:
                lines.append(f"| {case} | {variant} | {r['error']} | | | | |")
                continue
            base, torch_bf16 = rows.get("cnnzoo fp32", {}), rows.get("torch bf16", {})
            lines.append(f"| {case} | {variant} | {r['step_ms']:.0f} | {r['images_per_s']:.0f} | "
                         f"{train_speed._ratio(r, base)} | {train_speed._ratio(r, torch_bf16)} | {r['peak_rss_mib']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", nargs="+", default=["resnet50-64-b32", "resnet50-64-b256"], choices=train_speed.CASES)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks-bf16.md")
    parser.add_argument("--child", nargs=2, metavar=("VARIANT", "CASE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        variant, case = args.child
        child = child_torch if variant.startswith("torch") else child_cnnzoo
        print(json.dumps(child(case, args.steps, args.warmup, variant)))
        return
    from cnnzoo.backends import cpu_bf16

    results = {}
    for case in args.cases:
        runs: dict[str, list[dict]] = {v: [] for v in VARIANTS}
        steps = args.steps if train_speed.CASES[case][3] <= 32 else max(3, args.steps // 3)
        for _ in range(args.rounds):
            for variant in VARIANTS:
                runs[variant].append(measure(variant, case, steps, args.warmup))
                print(case, variant, runs[variant][-1], flush=True)
        results[case] = {}
        for variant, rounds in runs.items():
            good = [r for r in rounds if "error" not in r]
            if not good:
                results[case][variant] = rounds[-1]
                continue
            step = statistics.median(r["step_ms"] for r in good)
            batch = good[0]["batch"]
            results[case][variant] = {**good[0], "step_ms": step, "images_per_s": batch / step * 1000,
                                      "peak_rss_mib": max(r["peak_rss_mib"] for r in good)}
    variants = "\n".join(f"- **{v}**: {what}" for v, what in VARIANTS.items())
    args.out.write_text(f"""# bfloat16 training on a CPU

`python benchmarks/cpu_bf16.py --cases {' '.join(args.cases)} --steps {args.steps} --rounds {args.rounds}` on
{train_speed.machine()} (bfloat16 arithmetic: {'yes' if cpu_bf16() else 'no'}); {datetime.date.today()}.
Seed ResNet-50, 64x64x3, 6 classes, synthetic images, Adam; the median training step of each
process after {args.warmup} warm-up steps, the median over {args.rounds} interleaved rounds.

{variants}

{table(results)}
""")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

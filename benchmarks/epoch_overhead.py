"""Where an epoch of `cnnzoo train` goes: its training steps, and what it does around them.

The README's main job (ResNet-50 on signs, the default recipe) for a few epochs through
cnnzoo.training.fit.train, with a callback that clocks every training step, the validation
pass, and the time from the validation's end to the epoch's end (last.keras, model.keras
when the epoch is the best so far, history.csv). "Around the steps" is the epoch's wall time
less its training steps: the validation pass, the checkpoints and the batches' assembly.

Five variants, each in its own process, in one run:
  link: model.keras is the best epoch's last.keras under a second name (a hard link: cnnzoo's way);
  save: model.keras is a second serialisation of the model (cnnzoo before 2026-12-02);
  lists: as link, with Keras' own lookup of its attribute skip lists, which misses its cache and
         builds a reference Layer for every layer saved (cnnzoo before 2026-12-07; models/saving.py);
  shift: as link, with `--augment shift` and no robustness suite at the end: the work the peer does;
  torch: the plain PyTorch peer doing the main job's work (benchmarks/torch_reference.py's ResNet-50
         and recipe, shifts only): train, validate every epoch in batches of the recipe's size, write
         a resumable checkpoint (model, Adam's state, schedule, epoch) atomically every epoch, and
         the best epoch's weights (`torch.save` of the state dict), then score the test split.
The first epoch (compilation, first batches) is left out of the means; "run" is the whole
training call (data loading, every epoch, the final test scoring and the run's files).

    python benchmarks/epoch_overhead.py [--epochs 6] [--out docs/benchmarks-epoch.md]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cnnzoo  # noqa: F401  (selects the Keras backend before anything imports keras)

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = {"link": "the best epoch's last.keras under a second name (a hard link)",
            "save": "a second serialisation of the model (before 2026-12-02)",
            "lists": "a hard link, saved with Keras' uncached skip lists (before 2026-12-07)",
            "shift": "cnnzoo, `--augment shift`, no robustness suite (the peer's work)",
            "torch": "plain PyTorch doing the same work as `shift`"}
PARTS = ("steps", "validation", "checkpoints")


def _clock():
    import keras

    class EpochClock(keras.callbacks.Callback):
        """Per epoch: wall time and the seconds in training steps, validation and checkpoints.
        It runs after cnnzoo's RunRecorder, so its epoch end comes after the checkpoints."""

        def __init__(self):
            super().__init__()
            self.epochs: list[dict] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.begun = time.perf_counter()
            self.epochs.append(dict.fromkeys(PARTS, 0.0))

        def on_train_batch_begin(self, batch, logs=None):
            self.step = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.epochs[-1]["steps"] += time.perf_counter() - self.step

        def on_test_begin(self, logs=None):
            self.validating = time.perf_counter()

        def on_test_end(self, logs=None):
            self.validated = time.perf_counter()
            self.epochs[-1]["validation"] += self.validated - self.validating

        def on_epoch_end(self, epoch, logs=None):
            now = time.perf_counter()
            self.epochs[-1]["checkpoints"] = now - self.validated
            self.epochs[-1]["wall"] = now - self.begun

    return EpochClock()


def child(variant: str, epochs: int) -> dict:
    from cnnzoo.training import runs
    from cnnzoo.training.config import TrainConfig
    from cnnzoo.training.fit import train

    if variant == "save":
        runs.RunRecorder._keep_as_best = lambda self: self._save(self.run / runs.BEST)
    if variant == "lists":
        from keras.src.saving import saving_lib

        saving_lib.get_attr_skipset = saving_lib.get_attr_skipset.__wrapped__
    if variant == "torch":
        with tempfile.TemporaryDirectory() as out:
            return summary(variant, *torch_job(epochs, Path(out)))
    clock = _clock()
    extra = {"augment": "shift", "robustness_images": 0} if variant == "shift" else {}
    with tempfile.TemporaryDirectory() as out:
        begun = time.perf_counter()
        train(TrainConfig("resnet50", "signs", epochs=epochs, out=out, **extra), verbose=0, callbacks=[clock])
        run = time.perf_counter() - begun
        size = round((Path(out) / runs.LAST).stat().st_size / 2**20)
        scores = runs.read_history(Path(out))["val_accuracy"]
    return summary(variant, clock.epochs, scores, run, size)


def torch_job(epochs: int, out: Path, model: str = "resnet50", dataset: str = "signs"):
    """The plain PyTorch peer's main job, its files in `out`: (per-epoch times, validation
    accuracies, run seconds, MiB of its checkpoint)."""
    import os

    import torch
    import torch_reference
    from time_to_accuracy import _data

    from cnnzoo.models import model_info
    from cnnzoo.training.config import TrainConfig

    def save(obj, name: str) -> None:  # atomic, as cnnzoo writes its files
        torch.save(obj, out / f".{name}.tmp")
        os.replace(out / f".{name}.tmp", out / name)

    recipe = model_info(model).recipe
    begun = time.perf_counter()
    data = _data(model, dataset, TrainConfig(model, dataset).validation)
    trainer = torch_reference.RecipeTrainer(model, len(data.class_names), data.train.x, data.train.y, recipe, epochs)
    val_x = trainer.tensor(data.val.x)
    times, scores = [], []
    for epoch in range(epochs):
        start = time.perf_counter()
        trainer.train_epoch()
        validating = time.perf_counter()
        scores.append(trainer.accuracy(val_x, data.val.y, recipe.batch_size))
        validated = time.perf_counter()
        save({"model": trainer.net.state_dict(), "optimizer": trainer.optimizer.state_dict(),
              "schedule": trainer.schedule.state_dict(), "epoch": epoch + 1, "scores": scores}, "last.pt")
        if scores[-1] >= max(scores):
            save(trainer.net.state_dict(), "best.pt")
        end = time.perf_counter()
        times.append({"steps": validating - start, "validation": validated - validating,
                      "checkpoints": end - validated, "wall": end - start})
    trainer.accuracy(trainer.tensor(data.test.x), data.test.y, recipe.batch_size)
    return times, scores, time.perf_counter() - begun, round((out / "last.pt").stat().st_size / 2**20)


def summary(variant: str, epochs: list[dict], scores: list[float], run: float, size: int) -> dict:
    timed = epochs[1:]  # the first epoch compiles
    mean = {key: statistics.mean(e[key] for e in timed) for key in (*PARTS, "wall")}
    best_kept = sum(score >= max(scores[:epoch + 1]) for epoch, score in enumerate(scores) if epoch)
    return {"variant": variant, "epochs": len(timed), **{k: round(v, 2) for k, v in mean.items()},
            "around_steps": round(mean["wall"] - mean["steps"], 2), "best_kept": best_kept, "last_mib": size,
            "run": round(run, 1), "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def table(results: list[dict]) -> str:
    lines = ["| variant | epochs timed (new best) | epoch (mean s) | training steps | validation | checkpoints | "
             "the rest | around the steps | run (s) | checkpoint (MiB) | peak RSS (MiB) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        rest = r["wall"] - r["steps"] - r["validation"] - r["checkpoints"]
        lines.append(f"| {VARIANTS[r['variant']]} | {r['epochs']} ({r['best_kept']}) | {r['wall']:.2f} | "
                     f"{r['steps']:.2f} | {r['validation']:.2f} | {r['checkpoints']:.2f} | {rest:.2f} | "
                     f"{r['around_steps']:.2f} ({r['around_steps'] / r['wall']:.0%}) | {r['run']:.0f} | "
                     f"{r['last_mib']} | {r['peak_rss_mib']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=6, help="epochs a variant trains (the first is not timed)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks-epoch.md")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.epochs)))
        return
    sys.path.insert(0, str(ROOT / "experiments"))
    from common import machine

    from cnnzoo.training.config import auto_precision

    results = []
    for variant in VARIANTS:
        done = subprocess.run([sys.executable, __file__, "--child", variant, "--epochs", str(args.epochs)],
                              check=True, capture_output=True, text=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(results[-1], flush=True)
    command = "python benchmarks/epoch_overhead.py" + (f" --epochs {args.epochs}" if args.epochs != 6 else "")
    ours, peer = (next(r for r in results if r["variant"] == v) for v in ("shift", "torch"))
    args.out.write_text(
        "# Where an epoch of the main job goes\n\n"
        f"`{command}` on {machine()}; precision {auto_precision()} (cnnzoo's `auto`; the peer's autocast "
        "follows it). ResNet-50 on signs, the default recipe (the last two rows: shifts "
        f"only), batch 32, {args.epochs} epochs; means over the epochs after the first (in brackets: those that "
        "were the best so far, whose best model is kept). \"Around the steps\" is the epoch's wall time less "
        "its training steps; \"the rest\" is what is neither steps, validation nor checkpoints (assembling the "
        "batches, callbacks; the PyTorch peer's steps include its batches' assembly). \"Run\" is the whole "
        "training call, data loading and the final test scoring included. The checkpoint holds Adam's state "
        "too (cnnzoo's last.keras, the peer's last.pt).\n\n"
        + table(results) + "\n\n"
        f"The same work: cnnzoo's epoch took {ours['wall'] / peer['wall']:.2f}x the PyTorch peer's, its steps "
        f"{ours['steps'] / peer['steps']:.2f}x, its whole run {ours['run'] / peer['run']:.2f}x.\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

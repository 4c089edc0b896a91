"""Study: transfer learning, from scratch vs frozen base + new head vs fine-tuning everything.

ResNet-20 (CIFAR layout) is pretrained on `sign-digits-6-9` (the hand signs 6-9: no image in
common with `signs`), then trained on `signs` (0-5) with 10%, 30% and 100% of its training
images (nested per-class subsets), three ways, with one recipe: (a) from scratch, (b) the
pretrained layers frozen and a new classifier trained, (c) all layers fine-tuned from the
pretrained weights. Images at 32x32, the network's design size. The pretrained weights
come from our own run: nothing is downloaded.

    python experiments/study_transfer.py [--seeds 1] [--epochs N]
    cnnzoo study transfer ...

A published checkpoint can be the pretrained start instead (`cnnzoo weights list`; the file
is converted into the zoo network, its preprocessing inside the model; nothing downloaded):

    cnnzoo study transfer --init resnet18-f37072fd.pth --model resnet18_tv --image-size 64

Writes docs/STUDIES.md (section transfer) and docs/figures/transfer.png.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cnnzoo  # noqa: E402,F401  (selects the backend)
from common import (  # noqa: E402
    command_line, machine, mean_sd, pyplot, save_figure, study_parser, total_training, train_or_reuse,
    write_section,
)

from cnnzoo.models import model_info  # noqa: E402
from cnnzoo.training.config import TrainConfig  # noqa: E402

MODEL, IMAGE_SIZE = "resnet20", 32
PRETRAIN, TARGET = "sign-digits-6-9", "signs"
FRACTIONS = (0.1, 0.3, 1.0)
# Overrides of the recipe per start. A new head alone (64 features -> 6 classes) learns too
# slowly at Adam 1e-3 within 20 epochs: validation accuracy 25% (10% of the data) and 66%
# (100%); at 1e-2, 53% and 82%. So the frozen start trains its head at 1e-2.
MODES = {"scratch": {}, "frozen base + new head": {"freeze": True, "lr": 1e-2}, "fine-tune all": {}}


def run_mode(mode: str, fraction: float, pretrained: str, args) -> list[dict]:
    init = None if mode == "scratch" else pretrained
    return [train_or_reuse(TrainConfig(args.model, TARGET, epochs=args.epochs, image_size=args.image_size, init=init,
                                       train_fraction=fraction * args.train_fraction, seed=seed, **MODES[mode]),
                           "transfer", args.runs)
            for seed in range(args.seeds)]


def plot(results: dict, path: Path, title: str) -> None:
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(6.5, 4.2))
    for mode in MODES:
        means = [100 * statistics.mean(r["test"]["accuracy"] for r in results[mode, f]) for f in FRACTIONS]
        axis.plot([100 * f for f in FRACTIONS], means, marker="o", label=mode)
    axis.set_xscale("log")
    axis.set_xticks([100 * f for f in FRACTIONS], [f"{f:.0%}" for f in FRACTIONS])
    axis.set_xlabel(f"share of {TARGET}' training images")
    axis.set_ylabel("test accuracy (%)")
    axis.set_title(f"{title} on {TARGET}")
    axis.grid(alpha=0.3)
    axis.legend()
    save_figure(figure, path)


def summary(results: dict) -> str:
    def mean(mode, fraction):
        return statistics.mean(r["test"]["accuracy"] for r in results[mode, fraction])

    few, every = FRACTIONS[0], FRACTIONS[-1]
    return (f"With {few:.0%} of the images, fine-tuning the pretrained network reaches "
            f"{mean('fine-tune all', few):.1%} against {mean('scratch', few):.1%} from scratch; with all of them, "
            f"{mean('fine-tune all', every):.1%} against {mean('scratch', every):.1%}. A frozen base with a new "
            f"head reaches {mean('frozen base + new head', few):.1%} and {mean('frozen base + new head', every):.1%}.")


def main(argv=None) -> None:
    parser = study_parser(__doc__)
    parser.add_argument("--init", help="start from this published checkpoint (or run folder) instead of "
                                       f"pretraining on {PRETRAIN}")
    parser.add_argument("--model", default=MODEL, help=f"the zoo network (default {MODEL}; with --init: the one "
                                                         "the checkpoint is for)")
    parser.add_argument("--image-size", type=int, default=IMAGE_SIZE, help=f"input side (default {IMAGE_SIZE})")
    args = parser.parse_args(argv)
    defaults = vars(parser.parse_args([]))
    base = None
    if args.init is None:
        base = train_or_reuse(TrainConfig(args.model, PRETRAIN, epochs=args.epochs, image_size=args.image_size,
                                          train_fraction=args.train_fraction), "transfer", args.runs)
    pretrained = args.init or base["run"]
    results = {(mode, fraction): run_mode(mode, fraction, pretrained, args)
               for fraction in FRACTIONS for mode in MODES}
    figure = args.docs / "figures" / "transfer.png"
    start = (f"pretrained on {PRETRAIN}" if base else f"from {Path(args.init).name}")
    plot(results, figure, f"{args.model} {start}")
    if base:
        origin = (f"pretrained on `{PRETRAIN}` ({base['train_images']} training images,\n"
                  f"test accuracy {base['test']['accuracy']:.1%})")
    else:
        origin = f"started from the published checkpoint `{Path(args.init).name}` (converted by cnnzoo)"
    epochs = next(iter(results.values()))[0]["epochs"]
    header = " | ".join(f"{f:.0%} of the images" for f in FRACTIONS)
    rows = [f"| start | {header} |", "| --- |" + " --- |" * len(FRACTIONS)]
    for mode in MODES:
        cells = []
        for fraction in FRACTIONS:
            rs = results[mode, fraction]
            cells.append(f"{mean_sd(r['test']['accuracy'] for r in rs)} ({rs[0]['train_images']} images, "
                         f"{statistics.mean(r['wall_time_s'] for r in rs) / 60:.1f} min)")
        rows.append(f"| {mode} | {' | '.join(cells)} |")
    recipe = model_info(args.model).recipe
    write_section("transfer", f"""
## 3. Transfer learning

`{command_line("study_transfer.py", args, defaults)}` — {machine()}.

`{args.model}` at {args.image_size}x{args.image_size} {origin}, then trained on `{TARGET}` with part of its training
images (the validation and test splits stay whole): from scratch; with the pretrained layers
frozen (their BatchNormalization on its moving statistics) and a new classifier; or with every
layer fine-tuned. One recipe for all: Adam {recipe.lr:g} cosine (the new head alone: 1e-2, chosen on
validation), {epochs} epochs, batch {recipe.batch_size}, the default augmentation (shift);
{args.seeds} seed(s). Test accuracy on `{TARGET}`
(mean ± sd over seeds), with the training images used and the training time per run:

{summary(results)}

{chr(10).join(rows)}

Time: {total_training([*([base] if base else []), *(m for seeds in results.values() for m in seeds)])} (a rerun reuses finished runs).

![test accuracy vs share of training data](figures/transfer.png)

A published ImageNet checkpoint can be the pretrained start instead: with the file at hand
(`cnnzoo weights list` names each source's file and the zoo network it converts into, proven
equal to the source's network), the study runs the same three starts from it, and the
converted network brings the weights' own preprocessing (torchvision's mean and std here):

```bash
cnnzoo study transfer --init resnet18-f37072fd.pth --model resnet18_tv --image-size 64 --seeds 3
```

One run alone: `cnnzoo train resnet18_tv --dataset signs --image-size 64 --init resnet18-f37072fd.pth
--freeze` (or keras.applications' `vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5` with `vgg16`).
""", args.docs / "STUDIES.md")
    print(f"wrote {args.docs / 'STUDIES.md'} and {figure}")


if __name__ == "__main__":
    main()

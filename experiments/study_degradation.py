"""Study: do deeper plain networks train worse, and residual ones not? (He et al. 2015, Fig. 6)

Plain-N and ResNet-N of the paper's CIFAR design (6n+2 layers; the same layers, only the
shortcuts differ, and option-A shortcuts add no parameters) trained with one recipe and one
budget on sign-digits (10 classes) at 32x32. The figure is the paper's: training error
(solid) and validation error (dashed) per epoch, plain nets left, residual nets right.

    python experiments/study_degradation.py [--depths 20 32 56] [--epochs 15] [--seeds 1]
    cnnzoo study degradation ...

Writes docs/STUDIES.md (section degradation) and docs/figures/degradation.png; the runs are
kept in runs/degradation/ and reused while their settings do not change.
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
from cnnzoo.training import runs  # noqa: E402
from cnnzoo.training.config import TrainConfig  # noqa: E402

DATASET, IMAGE_SIZE = "sign-digits", 32
FAMILIES = ("plain", "resnet")


def train_family(family: str, depth: int, args) -> list[dict]:
    """metrics.json of each seed's run, with the run's history added."""
    results = []
    for seed in range(args.seeds):
        config = TrainConfig(f"{family}{depth}", DATASET, epochs=args.epochs, image_size=IMAGE_SIZE,
                             train_fraction=args.train_fraction, seed=seed)
        metrics = train_or_reuse(config, "degradation", args.runs)
        metrics["history"] = runs.read_history(Path(metrics["run"]))
        results.append(metrics)
    return results


def final_train_error(result: dict) -> float:
    return 1 - result["history"]["accuracy"][-1]


def plot(results: dict, path: Path) -> None:
    plt = pyplot()
    depths = sorted({depth for _, depth in results})
    colours = dict(zip(depths, plt.cm.viridis([i / max(1, len(depths) - 1) * 0.85 for i in range(len(depths))])))
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for axis, family in zip(axes, FAMILIES):
        for depth in depths:
            history = results[family, depth][0]["history"]  # the first seed, as the paper shows one run
            epochs = history["epoch"]
            axis.plot(epochs, [100 * (1 - a) for a in history["accuracy"]], color=colours[depth],
                      label=f"{family}-{depth}")
            if "val_accuracy" in history:
                axis.plot(epochs, [100 * (1 - a) for a in history["val_accuracy"]], color=colours[depth],
                          linestyle="--", linewidth=1)
        axis.set_title(("Plain" if family == "plain" else "Residual") + " networks")
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
        axis.legend()
    axes[0].set_ylabel("error (%): training solid, validation dashed")
    figure.suptitle(f"Plain vs residual on {DATASET} ({IMAGE_SIZE}x{IMAGE_SIZE}), same layers and recipe")
    save_figure(figure, path)


def verdict(results: dict, depths: list[int]) -> str:
    """One sentence per family from the numbers: does the final training error grow with depth?"""
    sentences = []
    for family in FAMILIES:
        errors = [statistics.mean(final_train_error(r) for r in results[family, d]) for d in depths]
        trend = ", ".join(f"{e:.1%} ({family}-{d})" for d, e in zip(depths, errors))
        grows = errors[-1] > errors[0] + 0.01
        sentences.append(f"{'Plain' if family == 'plain' else 'Residual'} nets: final training error {trend}; "
                         + ("deeper trains **worse** (degradation)." if grows else "deeper does not train worse."))
    return "\n".join(f"- {s}" for s in sentences)


def main(argv=None) -> None:
    parser = study_parser(__doc__)
    # 20/32/56 for 15 epochs: about 35 minutes on the 2-core CPU (depth 44 adds 15 more).
    parser.add_argument("--depths", type=int, nargs="+", default=[20, 32, 56])
    parser.set_defaults(epochs=15)
    args = parser.parse_args(argv)
    defaults = vars(parser.parse_args([]))
    depths = sorted(args.depths)
    results = {(family, depth): train_family(family, depth, args) for depth in depths for family in FAMILIES}
    figure = args.docs / "figures" / "degradation.png"
    plot(results, figure)
    epochs = results["plain", depths[0]][0]["epochs"]
    rows = ["| depth | parameters | plain: final training error | plain: test accuracy | residual: final training error "
            "| residual: test accuracy | train time per run (plain / residual) |",
            "| ---: | ---: | ---: | --- | ---: | --- | ---: |"]
    for depth in depths:
        plain, residual = results["plain", depth], results["resnet", depth]
        params = cnnzoo.get_model(f"resnet{depth}", input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3)).count_params()
        times = " / ".join(f"{statistics.mean(r['wall_time_s'] for r in rs) / 60:.1f} min" for rs in (plain, residual))
        rows.append(
            f"| {depth} | {params:,} | {statistics.mean(map(final_train_error, plain)):.1%} | "
            f"{mean_sd(r['test']['accuracy'] for r in plain)} | {statistics.mean(map(final_train_error, residual)):.1%} | "
            f"{mean_sd(r['test']['accuracy'] for r in residual)} | {times} |")
    recipe = model_info("resnet20").recipe
    write_section("degradation", f"""
## 1. Degradation: plain vs residual depth

`{command_line("study_degradation.py", args, defaults)}` — {machine()}.

Plain-N and ResNet-N (He et al. 2015, Section 4.2: three stages of 3x3 layers with 16/32/64
filters; option-A shortcuts, so the two nets of a depth have the same parameters) on
`{DATASET}` at {IMAGE_SIZE}x{IMAGE_SIZE}, {args.seeds} seed(s), {epochs} epochs each, one recipe for
all: Adam {recipe.lr:g} with cosine decay, batch {recipe.batch_size}, BN momentum {recipe.bn_momentum},
the dataset's default augmentation (shift). "Final training error" is the last epoch's running
training error (with augmentation, as in the paper's curves).

{verdict(results, depths)}

Time: {total_training(m for seeds in results.values() for m in seeds)} (a rerun reuses finished runs).

{chr(10).join(rows)}

![training and validation error per epoch](figures/degradation.png)
""", args.docs / "STUDIES.md")
    print(f"wrote {args.docs / 'STUDIES.md'} and {figure}")


if __name__ == "__main__":
    main()

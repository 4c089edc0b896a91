"""Study: what the 1x1 bottleneck saves, on paper and in training (the lecture's Inception claim).

First the lecture's cost example, computed by `cnnzoo.analysis.cost` on the real layers: a 5x5 conv
with 32 filters on a 28x28x192 volume is 120.4M multiply-accumulates; a 1x1 conv to 16
channels first brings it to 12.4M. Then a trained comparison on signs: the same small
network (a 3x3/2 conv from 56x56x3 to the lecture's 28x28x192 volume, one Inception module
with GoogLeNet's 3a widths, global average pool, classifier) with the naive module of the
paper's Fig. 2a (no 1x1 reductions) and with the real one (Fig. 2b): accuracy, parameters,
MACs and measured training speed.

    python experiments/study_bottleneck.py [--seeds 2] [--epochs 12]
    cnnzoo study bottleneck ...

Writes docs/STUDIES.md (section bottleneck) and docs/figures/bottleneck.png.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cnnzoo  # noqa: E402,F401  (selects the backend)
import keras  # noqa: E402
from common import (  # noqa: E402
    command_line, machine, mean_sd, pyplot, save_figure, study_parser, total_training, train_or_reuse,
    write_section,
)
from keras import layers  # noqa: E402

from cnnzoo.analysis.cost import bottleneck_example, layer_costs, total_macs  # noqa: E402
from cnnzoo.models.inception import inception_module  # noqa: E402
from cnnzoo.models.layers import conv_bn_relu  # noqa: E402
from cnnzoo.models import list_models, model_info, register_model  # noqa: E402
from cnnzoo.models.layers import check_arguments  # noqa: E402
from cnnzoo.models.inception import PAPER, STAGES  # noqa: E402
from cnnzoo.training.config import TrainConfig  # noqa: E402

DATASET, IMAGE_SIZE = "signs", 56  # 56x56 -> the lecture's 28x28x192 volume after the stem
WIDTHS_3A = dict(STAGES[0:1])["3a"]
VARIANTS = {"inception_naive": False, "inception_1x1": True}  # registered name -> 1x1 reductions


def one_module_net(name: str, reductions: bool):
    def build(input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3), classes: int = 6, **_):
        input_shape = check_arguments(name, input_shape, classes, min_size=3)  # the stem's 3x3 conv
        inputs = keras.Input(input_shape, name="input")
        x = conv_bn_relu(inputs, 192, 3, "stem", strides=2)  # 28x28x192 at 56x56
        x = inception_module(x, WIDTHS_3A, "inception", reductions=reductions)
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        return keras.Model(inputs, layers.Dense(classes, activation="softmax", name="predictions")(x), name=name)

    if name not in list_models():
        register_model(name, description=f"one Inception module ({'Fig. 2b' if reductions else 'naive, Fig. 2a'}) "
                       "on a 3x3/2 stem", paper=PAPER, year=2014, min_input_size=3)(build)
    return build


for _name, _reductions in VARIANTS.items():
    one_module_net(_name, _reductions)


def module_cost(model) -> tuple[int, int]:
    """(MACs, parameters) of the Inception module's layers alone."""
    rows = [row for row in layer_costs(model) if row.name.startswith("inception")]
    return sum(r.macs for r in rows), sum(r.params for r in rows)


def plot(results: dict, path: Path) -> None:
    plt = pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    labels = list(results)
    module_macs = [results[k]["module_macs"] / 1e6 for k in labels]
    speed = [results[k]["images_per_s"] for k in labels]
    axes[0].bar(labels, module_macs, color=["tab:red", "tab:green"])
    axes[0].set_ylabel("module MACs per image (millions)")
    axes[1].bar(labels, speed, color=["tab:red", "tab:green"])
    axes[1].set_ylabel("training images/s (measured)")
    for axis, values in zip(axes, (module_macs, speed)):
        for i, v in enumerate(values):
            axis.text(i, v, f"{v:,.0f}", ha="center", va="bottom")
    figure.suptitle("Inception module on a 28x28x192 volume: naive vs 1x1 reductions")
    save_figure(figure, path)


def main(argv=None) -> None:
    parser = study_parser(__doc__, seeds=2)
    parser.set_defaults(epochs=12)
    args = parser.parse_args(argv)
    defaults = vars(parser.parse_args([]))
    lecture = {title: total_macs(model) for title, model in bottleneck_example().items()}
    results = {}
    for name, reductions in VARIANTS.items():
        runs = [train_or_reuse(TrainConfig(name, DATASET, epochs=args.epochs, image_size=IMAGE_SIZE,
                                           train_fraction=args.train_fraction, seed=seed), "bottleneck", args.runs)
                for seed in range(args.seeds)]
        model = cnnzoo.get_model(name)
        macs, params = module_cost(model)
        results[name] = {
            "runs": runs, "module_macs": macs, "module_params": params, "params": model.count_params(),
            "macs": total_macs(model), "images_per_s": statistics.median(r["images_per_s"] for r in runs),
        }
    figure = args.docs / "figures" / "bottleneck.png"
    plot(results, figure)
    naive, reduced = results["inception_naive"], results["inception_1x1"]
    rows = ["| network | module MACs | module parameters | network MACs | parameters | test accuracy | "
            "training images/s | train time per run |", "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: |"]
    for name, r in results.items():
        rows.append(f"| `{name}` | {r['module_macs'] / 1e6:.1f}M | {r['module_params']:,} | {r['macs'] / 1e6:.1f}M | "
                    f"{r['params']:,} | {mean_sd(x['test']['accuracy'] for x in r['runs'])} | "
                    f"{r['images_per_s']:.0f} | {statistics.mean(x['wall_time_s'] for x in r['runs']) / 60:.1f} min |")
    recipe = model_info(next(iter(VARIANTS))).recipe
    write_section("bottleneck", f"""
## 2. The 1x1 bottleneck

`{command_line("study_bottleneck.py", args, defaults)}` — {machine()}.

The lecture's example, counted by `cnnzoo.analysis.cost` on Keras layers (`cnnzoo cost --bottleneck-example`):
a 5x5 "same" conv with 32 filters on 28x28x192 costs **{lecture['5x5 conv'] / 1e6:.1f}M** MACs; a 1x1
conv to 16 channels first, **{lecture['1x1 then 5x5'] / 1e6:.1f}M** ({lecture['1x1 then 5x5'] / lecture['5x5 conv']:.1%}).

Trained: one Inception module with GoogLeNet's 3a widths {WIDTHS_3A} on the same 28x28x192
volume (a 3x3/2 conv from `{DATASET}` at {IMAGE_SIZE}x{IMAGE_SIZE}), naive (Fig. 2a: 1x1, 3x3, 5x5 and
pool side by side, the pool passing all 192 channels) against the real module (Fig. 2b: 1x1
reductions before the 3x3 and 5x5, a 1x1 projection after the pool); global average pool and
softmax on top. {args.seeds} seed(s), {args.epochs} epochs, Adam {recipe.lr:g} cosine, batch {recipe.batch_size},
default augmentation. The 1x1 module costs {reduced['module_macs'] / naive['module_macs']:.0%} of the naive one's
MACs and trains {reduced['images_per_s'] / naive['images_per_s']:.1f}x as many images per second here.

{chr(10).join(rows)}

Time: {total_training(m for r in results.values() for m in r['runs'])} (a rerun reuses finished runs).

![module MACs and measured training speed](figures/bottleneck.png)
""", args.docs / "STUDIES.md")
    print(f"wrote {args.docs / 'STUDIES.md'} and {figure}")


if __name__ == "__main__":
    main()

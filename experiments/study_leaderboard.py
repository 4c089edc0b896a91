"""Study: the case-study leaderboard, every zoo network trained on signs and smiles, and the
networks that fit MNIST's digits on mnist.

Each network with its default recipe (`cnnzoo train NAME --dataset signs`) except the input
size (and on mnist the batch: common.BATCH_SIZE): the smaller of the network's default input and
the dataset's 64x64 (the images have no more detail than that; 224x224 would cost 12x the
compute on this CPU), and never below the network's smallest input (AlexNet: 67x67). LeNet-5
keeps its 32x32 grey input. On mnist every network reads the 28x28 digits centred in 32x32, as
LeNet-5 does, so only the networks built for small images are on its board (the CIFAR-layout
ResNets and plain nets, LeNet-5 both ways, HappyModel, and GoogLeNet, whose input can be that
small; not AlexNet, whose pooling needs 67x67).
Reported: parameters and GMACs at that input, training time per run, test accuracy over the seeds.

    python experiments/study_leaderboard.py [--models NAME ...] [--datasets signs smiles mnist] [--seeds 3]
        [--board NAME ...] [--jobs N]
    cnnzoo study leaderboard ...

Only the networks named by --models (default: all) are trained, on the --datasets (default:
both); the table lists every zoo network on both datasets and shows the finished runs of the
others, so the board fills in over several sessions and machines: each finished run's
metrics.json is recorded in docs/runs/experiments/ (committed; the run folders in
runs/experiments/ are not), and a recorded run, in any precision, is not trained again. Runs
are shared with experiments/train_targets.py.
Runs train cheapest first (MACs x images x epochs), so a session stopped part-way leaves whole
rows. --jobs N trains N runs at once, each in its own process: one small network leaves a lent
GPU mostly idle, and on this 2-core CPU two one-thread runs get through 1.25x the images of one
two-thread run. Such runs shared the machine, which the table says beside their time.
Writes docs/STUDIES.md (section leaderboard) and docs/figures/leaderboard.png.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cnnzoo  # noqa: E402,F401  (selects the backend)
from common import (  # noqa: E402
    BATCH_SIZE, RECORDED_AUGMENT, command_line, machine, mean_sd, pyplot, record_path, save_figure, study_parser,
    total_training, train_or_reuse, write_section,
)

from cnnzoo import _io  # noqa: E402
from cnnzoo.analysis.cost import total_macs  # noqa: E402
from cnnzoo.datasets import dataset_info  # noqa: E402
from cnnzoo.models import get_model, list_models, model_info  # noqa: E402
from cnnzoo.training.config import PRECISIONS, TrainConfig  # noqa: E402
from cnnzoo.training.fit import output_units  # noqa: E402

DATASETS = ("signs", "smiles", "mnist")
SIDE = {"mnist": 32}  # every network's input on these datasets: MNIST's digits padded as for LeNet-5
SMALL_IMAGES = 32  # mnist's board: the networks whose default input is at most this, and
ALSO_SMALL = ("happy", "googlenet")  # the course's HappyModel, and GoogLeNet (its smallest input is 1)
SMALLEST_INPUT = {"alexnet": 67}  # the networks whose pooling needs more than 64x64
SEEDS_SHOWN = 5  # finished runs of seeds 0..4 count, whoever trained them
ZOOM = 4  # accuracy points below the best that the figure shows to scale
TRAIN_IMAGES = {"signs": 899, "smiles": 9_668, "mnist": 54_000}  # per epoch, as recorded: orders --jobs' runs by cost


def zoo() -> list[str]:
    """The registered case-study networks (not the models a study script registers)."""
    return [n for n in list_models() if model_info(n).builder.__module__.startswith("cnnzoo.models")]


def on_board(name: str, dataset: str) -> bool:
    return dataset not in SIDE or model_info(name).input_shape[0] <= SMALL_IMAGES or name in ALSO_SMALL


def image_size(name: str, dataset: str) -> int | None:
    """The leaderboard's input side, or None where it is the network's default."""
    default = model_info(name).input_shape[0]
    side = SIDE.get(dataset) or max(min(default, dataset_info(dataset).image_size[0]), SMALLEST_INPUT.get(name, 1))
    return None if side == default else side


def config(name: str, dataset: str, seed: int, args, precision: str = "auto") -> TrainConfig:
    return TrainConfig(name, dataset, image_size=image_size(name, dataset), epochs=args.epochs,
                       batch_size=BATCH_SIZE.get(dataset),
                       train_fraction=args.train_fraction, seed=seed, precision=precision)


def finished_run(name: str, dataset: str, seed: int, args, *, train: bool) -> dict | None:
    """This seed's metrics from a run finished on any machine, else (with `train`) from one
    trained here. A lent GPU trains in bf16, which changes a run's hash: every precision counts."""
    def run(precision: str = "auto", reuse_only: bool = True):
        return train_or_reuse(config(name, dataset, seed, args, precision), "experiments", args.runs,
                              reuse_only=reuse_only, record=args.docs / "runs")

    for precision in PRECISIONS:
        if found := run(precision):
            return found
    return run(reuse_only=False) if train else None


@functools.cache
def cost(name: str, dataset: str) -> tuple[int, int, str]:
    """(parameters, MACs, 'HxWxC') of the network as trained on `dataset`."""
    info = model_info(name)
    side = image_size(name, dataset) or info.input_shape[0]
    shape = (side, side, info.input_shape[2])
    model = get_model(name, input_shape=shape, classes=output_units(info.classes, dataset_info(dataset).num_classes))
    return model.count_params(), total_macs(model), "x".join(map(str, shape))


def train_time(runs: list[dict]) -> str:
    """Median training time per run (a run that shared the machine does not skew it), naming any
    GPU it ran on (recorded runs come from any machine)."""
    if not runs:
        return "—"
    gpus = sorted({d for m in runs for d in m["devices"] if not d.startswith("cpu")})
    minutes = f"{statistics.median(m['wall_time_s'] for m in runs) / 60:.1f} min"
    shared = max(m.get("concurrent_runs", 1) for m in runs)
    minutes += f" ({shared} runs at once)" if shared > 1 else ""
    return f"{minutes} on {', '.join(gpus)}" if gpus else minutes


def expected_time(name: str, dataset: str, shape: str, rows: list[dict]) -> str:
    """What a run not trained yet would take on this CPU, from the network's training speed
    (images a second, validation included) at the same input on another dataset: the cost
    that has kept it off the board."""
    measured = [(r["dataset"], m["images_per_s"]) for r in rows if (r["name"], r["shape"]) == (name, shape)
                for m in r["runs"]
                if all(d.startswith("cpu") for d in m["devices"]) and m.get("concurrent_runs", 1) == 1]
    if not measured:
        return "—"
    seconds = TRAIN_IMAGES[dataset] * model_info(name).recipe.epochs / statistics.median(s for _, s in measured)
    return f"about {seconds / 60:.0f} min here (its speed on {', '.join(sorted({d for d, _ in measured}))})"


def train_missing(args, names: list[str]) -> list[str]:
    """Train the missing seeds of `names` on --datasets, cheapest first (MACs x images x epochs),
    so a stopped session or lease leaves whole rows: here one at a time, or --jobs at a time, each
    in its own process, whose records note how many runs shared the machine. Returns the runs
    that failed."""
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # this process builds models too (cost)
    todo = [(name, dataset, seed) for dataset in args.datasets for name in names for seed in range(args.seeds)
            if on_board(name, dataset) and finished_run(name, dataset, seed, args, train=False) is None]
    todo.sort(key=lambda run: cost(run[0], run[1])[1] * TRAIN_IMAGES[run[1]] * model_info(run[0]).recipe.epochs)
    jobs = min(args.jobs, len(todo))
    if jobs <= 1:
        for name, dataset, seed in todo:
            finished_run(name, dataset, seed, args, train=True)
        return []
    env = {**os.environ, "XLA_PYTHON_CLIENT_PREALLOCATE": "false",  # JAX: share the GPU's memory
           "XLA_PYTHON_CLIENT_MEM_FRACTION": f"{0.9 / jobs:.3f}",
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // jobs)))}
    options = ["--docs", str(args.docs), "--runs", str(args.runs), "--train-fraction", str(args.train_fraction)]
    options += ["--epochs", str(args.epochs)] if args.epochs else []

    def train(run: tuple[str, str, int]) -> str | None:
        name, dataset, seed = run
        done = subprocess.run([sys.executable, __file__, "--child", name, dataset, str(seed), *options], env=env,
                              capture_output=True, text=True)
        if done.returncode != 0:
            print(f"{name} on {dataset}, seed {seed}: failed:\n{done.stderr[-3000:]}", flush=True)
            return f"{name} on {dataset} (seed {seed})"
        recorded = record_path(config(name, dataset, seed, args), "experiments", args.docs / "runs")
        metrics = json.loads(recorded.read_text())
        _io.write_json(recorded, {**metrics, "concurrent_runs": jobs})
        print(f"{name} on {dataset}, seed {seed}: {metrics['test']['accuracy']:.1%} "
              f"in {metrics['wall_time_s'] / 60:.1f} min", flush=True)
        return None

    print(f"training {len(todo)} runs, {jobs} at a time", flush=True)
    with ThreadPoolExecutor(jobs) as pool:
        return [failed for failed in pool.map(train, todo) if failed]


def plot(rows: list[dict]):
    """The figure: one panel per dataset, zoomed on the networks within ZOOM points of the best.
    There the choice is made, and at full scale their labels piled up; the others sit on the
    lower edge with their accuracy in the label, and adjustText moves the labels apart."""
    from adjustText import adjust_text

    plt = pyplot()
    shown = [d for d in DATASETS if any(r["dataset"] == d and r["mean"] is not None for r in rows)] or [None]
    figure, axes = plt.subplots(1, len(shown), figsize=(6.5 * len(shown), 6.5), sharex=True, squeeze=False)
    for axis, dataset in zip(axes[0], shown):
        axis.set_xscale("log")
        axis.set_xlabel("GMACs per image at the trained input (log)")
        axis.grid(alpha=0.3)
        if dataset is None:
            axis.set_title("no network trained yet")
            continue
        done = [r for r in rows if r["dataset"] == dataset and r["mean"] is not None]
        best = 100 * max(r["mean"] for r in done)
        floor = best - ZOOM
        texts, points = [], []
        for r in done:
            x, y = r["macs"] / 1e9, 100 * r["mean"]
            points.append((x, max(y, floor)))
            if y >= floor:
                accuracies = [m["test"]["accuracy"] for m in r["runs"]]
                sd = 100 * statistics.stdev(accuracies) if len(accuracies) > 1 else 0
                axis.errorbar(x, y, yerr=sd, fmt="o", color="C0", ecolor=(0.12, 0.47, 0.71, 0.4), markersize=5,
                              capsize=2, linewidth=0.8)
                texts.append(axis.text(x, y, r["name"], fontsize=7))
            else:
                axis.plot(x, floor, "v", color="C3", markersize=6, clip_on=False)
                texts.append(axis.text(x, floor, f"{r['name']} {y:.1f}%", fontsize=7, color="C3"))
        axis.set_ylim(floor, min(100.5, best + 1.5))
        axis.set_ylabel("test accuracy (%), mean ± sd over seeds")
        axis.set_title(f"{dataset}: the networks within {ZOOM} points of the best\n"
                       f"(below: on the lower edge, accuracy in red)", fontsize=10)
        adjust_text(texts, x=[x for x, _ in points], y=[y for _, y in points], ax=axis, expand=(1.5, 2.0),
                    arrowprops=dict(arrowstyle="-", color="grey", linewidth=0.5))
    figure.suptitle("Case-study networks: accuracy vs compute")
    return figure


def main(argv=None) -> None:
    parser = study_parser(__doc__, seeds=3)
    parser.add_argument("--models", nargs="*", default=None,
                        help="networks to train (default: all; none named: only rebuild the table)")
    parser.add_argument("--board", nargs="+", default=None, help="networks in the table (default: all)")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS,
                        help="train the --models on these (the table lists every dataset)")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at once, each in its own process")
    parser.add_argument("--child", nargs=3, metavar=("NAME", "DATASET", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs {args.jobs}: give the number of runs to train at once, 1 or more.")
    if args.child:  # one run of train_missing with --jobs
        name, dataset, seed = args.child
        finished_run(name, dataset, int(seed), args, train=True)
        return
    defaults = vars(parser.parse_args([]))
    train_now = set(zoo() if args.models is None else args.models)
    failed = train_missing(args, [name for name in args.board or zoo() if name in train_now])
    rows = []
    for dataset in DATASETS:
        for name in [n for n in args.board or zoo() if on_board(n, dataset)]:  # every finished seed of every network
            found = [finished_run(name, dataset, seed, args, train=False)
                     for seed in range(max(args.seeds, SEEDS_SHOWN))]
            found = [m for m in found if m is not None]
            params, macs, shape = cost(name, dataset)
            accuracies = [m["test"]["accuracy"] for m in found]
            row = {"name": name, "dataset": dataset, "runs": found, "params": params, "macs": macs, "shape": shape,
                   "mean": statistics.mean(accuracies) if found else None}
            row["cells"] = ((f"{mean_sd(accuracies)} ({len(found)})", train_time(found)) if found
                            else ("not trained yet", expected_time(name, dataset, shape, rows)))
            rows.append(row)
    figure = args.docs / "figures" / "leaderboard.png"
    save_figure(plot(rows), figure)
    lines = ["| dataset | network | input | parameters | GMACs | test accuracy (seeds) | train time per run |",
             "| --- | --- | --- | ---: | ---: | --- | ---: |"]
    for r in sorted(rows, key=lambda r: (DATASETS.index(r["dataset"]), r["mean"] is None, -(r["mean"] or 0))):
        accuracy, time = r["cells"]
        lines.append(f"| {r['dataset']} | `{r['name']}` | {r['shape']} | {r['params']:,} | {r['macs'] / 1e9:.3g} | "
                     f"{accuracy} | {time} |")
    recorded = ", ".join(f"{dataset} `{RECORDED_AUGMENT[dataset]}`" for dataset in DATASETS)
    write_section("leaderboard", f"""
## 4. Leaderboard

`{command_line("study_leaderboard.py", args, defaults)}` — {machine()}.

Every zoo network with its recipe (the `Recipe` each registers, [models/](../src/cnnzoo/models/))
and the augmentation each dataset had before the robustness study chose stronger defaults
({recorded}; `cnnzoo train NAME --dataset DATASET --augment ...`: one recipe for
every row, so that the rows compare networks; the new defaults are measured in
[RESULTS.md](RESULTS.md)), at the smaller of its default input and the data's 64x64 (never
below its smallest input; LeNet-5 reads 32x32 grey); on mnist, the networks built for small
images, each reading the 28x28 digits centred in 32x32. Parameters and GMACs at that input
and the dataset's classes; test accuracy on the dataset's test split, best epoch chosen on
validation; training time per run (the median over seeds), on a CPU unless a GPU is named: the
runs of the command above on the machine named with it, and the rows recorded before them with
the times of the machine that ran them then (a record names its device, not the CPU's model)
("N runs at once": trained N at a time on that machine, `--jobs N`, so each took longer
than it would alone). Every finished run is recorded in [runs/](runs/) (its metrics.json), so the table
keeps the runs of earlier sessions and other machines. "Not trained yet" marks the networks
no machine has had the hours for yet, with what a run would take on this CPU where its speed is
known (from its runs at the same input on another dataset, at that dataset's batch size);
`--models NAME ...` trains them and the table fills in.

{chr(10).join(lines)}

Time: {total_training(m for r in rows for m in r['runs'])} (a rerun reuses finished runs).

The figure plots each dataset's networks within {ZOOM} points of its best to scale, with the sd over
seeds as error bars; the others sit on its lower edge, their accuracy in the label.

![accuracy vs GMACs](figures/leaderboard.png)
""", args.docs / "STUDIES.md")
    print(f"wrote {args.docs / 'STUDIES.md'} and {figure}")
    if failed:
        sys.exit(f"{len(failed)} run{'s' * (len(failed) > 1)} failed: {', '.join(failed)}; their errors are printed above, and "
                 "the table lists them as not trained. Fix the cause and run the same command again.")


if __name__ == "__main__":
    main()

"""Study: models that work on other people's photos. The robustness suite
(cnnzoo.analysis.robustness) scores the test split under controlled shifts; this study
chooses each dataset's default augmentation by that suite's mean on the *validation* images
(never the test split), then measures the chosen recipe against the old default.

1. Screen: each candidate augmentation on a cheap network (resnet20 at 32x32 for signs,
   HappyModel for smiles), one seed; the candidate with the best robustness mean on the
   validation images wins (ties: clean validation accuracy). Where the dataset gives its default
   augmentation a longer schedule than the recipe's (signs), the screen runs again on it and
   picks the winner there: strong augmentation needs the time to fit. On signs, the old default
   and the winner are also trained on the subject-disjoint split (every student on one side).
2. Confirm: the README's main job (resnet50 on signs) and the smiles networks (HappyModel,
   resnet20) with the old default and the winner (also on the schedule the dataset gives its
   default augmentation, where that differs from the recipe's: signs trains twice the recipe's
   epochs at half its peak learning rate), `--seeds` each: clean test accuracy, robustness-suite
   mean, calibration error (ECE) on clean and shifted test images, and, on signs, the winner's
   clean accuracy on the subject-disjoint split. Where a network's recipe changed since its rows
   were recorded (common.RECORDED_RECIPE: ResNet-50's zero-initialised residual branches), the
   dataset's default augmentation gets a row of its own on today's recipe. The row that
   `cnnzoo train` runs without flags is marked "(the default)".
3. Networks (`--phase networks`, not part of `all`: hours for the whole zoo here): the
   leaderboard's networks on signs as `cnnzoo train NAME --dataset signs` trains them today (the
   dataset's default augmentation and schedule, each network's recipe, the leaderboard's input
   size), seed 0: which architectures work on other people's photos. `--networks NAME ...` trains
   those (default: every one); the table lists every finished run and names the others.

    python experiments/robustness.py [--phase screen|confirm|networks|all] [--seeds 3] [--networks NAME ...]
        [--epochs N --train-fraction F]

Writes docs/RESULTS.md (section robustness). Each finished run's metrics.json (with its
validation-split robustness) is recorded in docs/runs/robustness/, so the tables regenerate
without the run folders (runs/robustness/).
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cnnzoo  # noqa: E402,F401  (selects the backend)
from common import (  # noqa: E402
    RECORDED_RECIPE, ROOT, as_recorded, command_line, machine, mean_sd, record_path, run_folder, study_parser,
    train_or_reuse, write_section,
)
from study_leaderboard import image_size, on_board, zoo  # noqa: E402

from cnnzoo import _io  # noqa: E402
from cnnzoo.training.config import TrainConfig  # noqa: E402

FOLDER = "robustness"
GEOMETRY = "mirror,shift,zoom,tilt"  # the other hand, other distances and angles
CAMERA = GEOMETRY + ",light,blur,noise"  # and another light and camera
CANDIDATES = {
    # Most informative first: `--candidates N` screens the first N of each list.
    "signs": {"shift (the old default)": "shift", "+ light, blur, noise, background": CAMERA + ",background",
              "+ light, blur, noise": CAMERA, "mirror, shift, zoom, tilt": GEOMETRY,
              "+ erase, background": CAMERA + ",erase,background", "mirror,shift": "mirror,shift",
              "+ erase": CAMERA + ",erase"},
    "smiles": {"mirror,shift,lowres (the old default)": "mirror,shift,lowres",
               "+ light, blur, noise": CAMERA + ",lowres", "+ zoom, tilt (mirror, shift, zoom, tilt)": GEOMETRY + ",lowres",
               "+ erase": CAMERA + ",erase,lowres"},
}
# Confirmed on the dataset's longer schedule beside the screens' winners: what the suite's weakest
# shift under the default asks for (signs: a new wall behind the hand, 45/38/15%).
EXTRA = {"signs": {"what the weakest shift asks for": CAMERA + ",background"}}
# (network, input side, share of the training images). smiles has 9,668 training faces
# (HappyModel: about 90 s an epoch here), so its screen trains on a tenth of each class.
SCREEN = {"signs": ("resnet20", 32, 1.0), "smiles": ("happy", None, 0.1)}
CONFIRM = {"signs": [("resnet50", None)], "smiles": [("happy", None), ("resnet20", 32)]}
NETWORKS_ON = "signs"  # the dataset of the README's main job and of the outside photos


def longer_schedule(dataset: str) -> tuple[float, float] | None:
    """(multiple of the recipe's epochs, of its peak learning rate) that the dataset gives its
    default augmentation (DatasetSpec.augment_schedule), where it is not the recipe's own."""
    from cnnzoo.datasets import default_augment_schedule

    schedule = default_augment_schedule(dataset)
    return None if schedule == (1, 1) else schedule


def schedule_words(schedule: tuple[float, float]) -> str:
    """How the tables name a `config` schedule other than the recipe's."""
    return f"{schedule[0]:g}x the recipe's epochs at {schedule[1]:g}x its peak learning rate"


def is_default(cfg: TrainConfig) -> bool:
    """Whether `cnnzoo train` without flags (but the input size) trains what `cfg` trains."""
    plain = TrainConfig(cfg.model, cfg.dataset, image_size=cfg.image_size).resolved()
    ran = as_recorded(cfg).resolved()
    what = ("augment", "epochs", "lr", "split_by", "zero_init_residual")
    return [getattr(ran, f) for f in what] == [getattr(plain, f) for f in what]


def todays_recipe(model: str) -> dict:
    """The recipe fields `model` has changed since the committed records were made
    (common.RECORDED_RECIPE), at today's values: what a row of today's recipe sets."""
    from cnnzoo.models import model_info

    recipe = model_info(model).recipe
    return {name: getattr(recipe, name) for name, then in RECORDED_RECIPE.get(model, {}).items()
            if getattr(recipe, name) != then}


def config(model, dataset, augment, seed, args, image_size=None, split_by="file", fraction=1.0,
           schedule=(1, 1), today: bool = False) -> TrainConfig:
    """`schedule`: multiples of the recipe's epochs and of its peak learning rate (harder
    training images take longer to fit). `today`: the model's recipe as it is now; otherwise as
    the records were made (they differ where the recipe changed since: todays_recipe)."""
    from cnnzoo.models import model_info

    recipe = model_info(model).recipe
    epochs = args.epochs if schedule[0] == 1 else round(schedule[0] * (args.epochs or recipe.epochs))
    lr = None if schedule[1] == 1 else schedule[1] * recipe.lr
    return TrainConfig(model, dataset, augment=augment, seed=seed, image_size=image_size, epochs=epochs, lr=lr,
                       train_fraction=args.train_fraction * fraction, split_by=split_by,
                       **(todays_recipe(model) if today else {}))


def measured(cfg: TrainConfig, args, train: bool = True) -> dict | None:
    """The run's metrics (trained or reused), with its robustness on the validation images;
    without `train`, only a finished run's (else None)."""
    from cnnzoo.inference.evaluate import evaluate_models

    metrics = train_or_reuse(cfg, FOLDER, args.runs, record=args.docs / "runs", robustness=True, reuse_only=not train)
    if metrics is None:
        return None
    if "validation" not in metrics:
        folder = run_folder(cfg, FOLDER, args.runs)
        result = evaluate_models([folder], split="val", robustness=True)
        metrics["validation"] = {"accuracy": result["accuracy"], "ece": result["ece"],
                                 "robustness": result["robustness"]}
        recorded = record_path(cfg, FOLDER, args.docs / "runs")
        _io.write_json(recorded, metrics)
    return metrics


def screen(dataset: str, args, schedule=(1, 1)) -> tuple[str, list[tuple[str, dict]]]:
    model, size, fraction = SCREEN[dataset]
    rows = []
    for label, augment in list(CANDIDATES[dataset].items())[:args.candidates]:
        metrics = measured(config(model, dataset, augment, 0, args, size, fraction=fraction, schedule=schedule), args)
        rows.append((label, metrics))
        print(f"{dataset} {label} {schedule}: validation robustness {metrics['validation']['robustness']['mean']:.1%}, "
              f"clean {metrics['validation']['accuracy']:.1%}", flush=True)
    best = max(rows, key=lambda r: (round(r[1]["validation"]["robustness"]["mean"], 3),
                                    r[1]["validation"]["accuracy"]))
    return CANDIDATES[dataset][best[0]], rows


def subject_split(model, dataset, augment, seed, args, size=None, train: bool = True,
                  schedule=(1, 1), today: bool = False) -> dict | None:
    """The run's metrics on the subject-disjoint split (no robustness: its test is other people);
    without `train`, only a finished run's (else None)."""
    return train_or_reuse(config(model, dataset, augment, seed, args, size, "subject", schedule=schedule, today=today),
                          FOLDER, args.runs,
                          record=args.docs / "runs", reuse_only=not train)


def screen_table(dataset: str, rows, winner: str, args, schedule=(1, 1)) -> str:
    model, size, fraction = SCREEN[dataset]
    subjects = dataset_subjects(dataset)
    lines = [f"**{dataset}**, screened on {model}" + (f" at {size}x{size}" if size else "")
             + (f" with {fraction:.0%} of each class's training images" if fraction < 1 else "")
             + (f", {schedule_words(schedule)}" if tuple(schedule) != (1, 1) else "")
             + ", seed 0; chosen by the validation images' robustness mean:", "",
             ("| augmentation | val clean | val robustness mean | test clean | test robustness mean | test ECE | "
              "test ECE shifted | subject-disjoint test clean |"),
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for label, m in rows:
        augment = CANDIDATES[dataset][label]
        mark = " **(screen winner)**" if augment == winner else ""
        subject = "—"
        if subjects and (augment == winner or "old default" in label):
            split = subject_split(model, dataset, augment, 0, args, size, schedule=schedule)
            subject = f"{split['test']['accuracy']:.1%}"
        lines.append(f"| {label}{mark} | {m['validation']['accuracy']:.1%} | "
                     f"{m['validation']['robustness']['mean']:.1%} | {m['test']['accuracy']:.1%} | "
                     f"{m['robustness']['mean']:.1%} | {m['test']['ece']:.1%} | {m['robustness']['ece']:.1%} | "
                     f"{subject} |")
    return "\n".join(lines)


def dataset_subjects(dataset: str) -> bool:
    from cnnzoo.datasets import dataset_info

    return dataset_info(dataset).subject_pattern is not None


def confirm_rows(dataset: str, augments: dict[str, tuple[str, tuple, bool]], args, train: bool = True,
                 not_run: list[str] | None = None) -> list[str]:
    """The confirmation's rows, from {label: (augmentation, `config`'s schedule, today's recipe)},
    each over the seeds it has: without `train`, the finished runs among the first `--seeds` (rows
    with none left out, and named in `not_run`)."""
    lines = []
    for model, size in CONFIRM[dataset]:
        seen = []  # a row of today's recipe is another row's runs where this model's recipe has not changed
        for label, (augment, schedule, today) in augments.items():
            configs = {seed: config(model, dataset, augment, seed, args, size, schedule=schedule, today=today)
                       for seed in range(args.seeds)}
            if configs[0] in seen:
                continue
            seen.append(configs[0])
            found = {seed: measured(cfg, args, train) for seed, cfg in configs.items()}
            runs = [m for m in found.values() if m]
            if not runs:
                if not_run is not None:
                    not_run.append(f"{model}, {label}")
                continue
            subject = ""
            if dataset_subjects(dataset):  # over the row's own seeds
                split = [subject_split(model, dataset, augment, seed, args, size, train=args.confirm_subjects,
                                       schedule=schedule, today=today)
                         for seed, m in found.items() if m]
                done = [m for m in split if m]
                subject = mean_sd(m["test"]["accuracy"] for m in done) if done else "not run"
                if done and len(done) < len(split):
                    subject += f" ({len(done)} of {len(split)} seeds)"
            if is_default(configs[0]):
                label += " **(the default)**"
            lines.append(
                f"| {model} | {label} | {len(runs)} | {mean_sd(m['validation']['robustness']['mean'] for m in runs)} | "
                f"{mean_sd(m['test']['accuracy'] for m in runs)} | "
                f"{mean_sd(m['robustness']['mean'] for m in runs)} | {subject or '—'} | "
                f"{mean_sd(m['test']['ece'] for m in runs)} | {mean_sd(m['robustness']['ece'] for m in runs)} | "
                f"{statistics.median(m['wall_time_s'] for m in runs) / 60:.1f} min |")
    return lines


def confirmed(dataset: str, winners: dict[tuple, str]) -> dict[str, tuple[str, tuple, bool]]:
    """The confirmation's rows {label: (augmentation, schedule, today's recipe)}: the old default on
    the recipe's schedule, each screen's winner on its own schedule and on the longer one (where the
    dataset has one), EXTRA's candidates on the longer one, all with the recipes the records were
    made with, and the dataset's default as `cnnzoo train` runs it today. The final pick among them
    is by their validation robustness."""
    from cnnzoo.datasets import default_augment_schedule, default_augmentations

    old = next(a for label, a in CANDIDATES[dataset].items() if "old default" in label)
    first = winners[(1, 1)]
    longer = longer_schedule(dataset)

    def tags(augment):
        return ", ".join(tag for tag, won in (("screen winner", augment == first),
                                               ("longer screen's winner", longer and augment == winners[longer]))
                         if won)

    # A screen that keeps the old default confirms it in one row, not the same runs twice.
    rows = {f"{dataset}: {old} (default before the study{', ' + tags(old) if tags(old) else ''})": (old, (1, 1), False)}
    if first != old:
        rows[f"{dataset}: {first} ({tags(first)})"] = (first, (1, 1), False)
    if longer:
        for augment in dict.fromkeys((first, winners[longer])):
            rows[f"{dataset}: {augment} ({tags(augment)}), {schedule_words(longer)}"] = (augment, longer, False)
    for why, augment in EXTRA.get(dataset, {}).items() if longer else ():
        if (augment, longer, False) not in rows.values():
            rows[f"{dataset}: {augment} ({why}), {schedule_words(longer)}"] = (augment, longer, False)
    changed = {name: value for model, _ in CONFIRM[dataset] for name, value in todays_recipe(model).items()}
    default = (",".join(default_augmentations(dataset)), default_augment_schedule(dataset), bool(changed))
    if default not in rows.values():
        words = [f"{schedule_words(default[1])}" if longer_schedule(dataset) else "",
                 f"today's recipe ({', '.join(f'{k}={v}' for k, v in changed.items())})" if changed else ""]
        rows[", ".join([f"{dataset}: {default[0]}", *filter(None, words)])] = default
    return rows


def network_config(model: str, args) -> TrainConfig:
    """`cnnzoo train MODEL --dataset signs` as it runs today, at the leaderboard's input, seed 0."""
    from cnnzoo.datasets import default_augmentations

    return config(model, NETWORKS_ON, ",".join(default_augmentations(NETWORKS_ON)), 0, args,
                  image_size(model, NETWORKS_ON), schedule=longer_schedule(NETWORKS_ON) or (1, 1), today=True)


def network_run(model: str, args, train: bool) -> tuple[int, dict | None]:
    """(input side, metrics) of `network_config`'s run; a run that spelled out the network's
    default input (the screens') counts as the same run."""
    import dataclasses

    from cnnzoo.models import model_info

    cfg = network_config(model, args)
    side = cfg.image_size or model_info(model).input_shape[0]
    spelled = dataclasses.replace(cfg, image_size=side)
    found = measured(cfg, args, train=False) or measured(spelled, args, train=False)
    return side, found or (measured(cfg, args) if train else None)


def networks_table(args, train: list[str]) -> str:
    """The leaderboard's networks under the default recipe, best validation robustness first (the
    test split never orders anything): those named in `train` are trained (or reused), the others
    shown where a finished run exists."""
    rows, missing = [], []
    for model in zoo():
        if not on_board(model, NETWORKS_ON):
            continue
        side, m = network_run(model, args, train=model in train)
        if m is None:
            missing.append(f"`{model}`")
            continue
        val_suite = m["validation"]["robustness"]["mean"]
        line = (f"| `{model}` | {side}x{side} | {val_suite:.1%} | {m['test']['accuracy']:.1%} | "
                f"{m['robustness']['mean']:.1%} | {m['test']['ece']:.1%} | {m['robustness']['ece']:.1%} | "
                f"{m['wall_time_s'] / 60:.1f} min |")
        rows.append((val_suite, line))
    if not rows:
        return ""
    title = (f"**The leaderboard's networks on {NETWORKS_ON}**, each as `cnnzoo train NAME --dataset {NETWORKS_ON}` "
             "trains it today (the dataset's default augmentation and schedule, the network's recipe; the "
             "leaderboard's input size), seed 0, best validation robustness mean first:")
    return "\n".join([
        title, "",
        "| network | input | val robustness mean | test clean | robustness mean | ECE clean | ECE shifted | time |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        *(line for _, line in sorted(rows, key=lambda r: -r[0])),
        *([f"\nNot trained on this recipe yet: {', '.join(missing)}."] if missing else [])])


def main(argv=None) -> None:
    parser = study_parser(__doc__, seeds=3)
    parser.add_argument("--phase", choices=("screen", "confirm", "networks", "all"), default="all")
    parser.add_argument("--networks", nargs="+", help="with --phase networks: train these (default: every one)")
    parser.add_argument("--datasets", nargs="+", default=list(CANDIDATES))
    parser.add_argument("--confirm-subjects", action="store_true",
                        help="also train the confirmed networks on the subject-disjoint split (a run per seed)")
    parser.add_argument("--candidates", type=int, default=max(map(len, CANDIDATES.values())),
                        help="screen the first N candidates of each dataset (the old default is the first)")
    args = parser.parse_args(argv)
    if args.networks is not None:
        if args.phase != "networks":
            parser.error("--networks names the networks that --phase networks trains: add --phase networks.")
        if unknown := sorted(set(args.networks) - {m for m in zoo() if on_board(m, NETWORKS_ON)}):
            parser.error(f"--networks: {', '.join(unknown)} is not a network of the {NETWORKS_ON} leaderboard "
                         "(`cnnzoo models` lists the zoo).")
    sections, winners = [], {}
    for dataset in args.datasets:
        winners[dataset] = {}
        # The recipe's schedule, then the default's where longer: stronger candidates get the time they need.
        for schedule in ((1, 1), longer_schedule(dataset)):
            if schedule:
                winners[dataset][schedule], rows = screen(dataset, args, schedule)
                sections.append(screen_table(dataset, rows, winners[dataset][schedule], args, schedule))
    if args.epochs is not None:
        sections.append(f"A budget override ({args.epochs} epochs, shorter than the recipes): stronger augmentation "
                        "needs longer schedules, so after a short one the stronger candidates have not yet fitted "
                        "the clean images and neither their clean accuracy nor their robustness is what they "
                        "reach. The datasets' default augmentations are not changed on such a screen.")
    # A screen lists the confirmation's finished runs, so screening one dataset keeps the others' rows.
    confirming = args.phase in ("confirm", "all")
    lines = [("| network | augmentation | seeds | val robustness mean | test clean | robustness mean | "
              "subject-disjoint clean | ECE clean | ECE shifted | time per run |"),
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    not_run = []
    for dataset in args.datasets:
        lines += confirm_rows(dataset, confirmed(dataset, winners[dataset]), args, train=confirming, not_run=not_run)
    if len(lines) > 2:
        seeds = f"up to {args.seeds} seeds a row (mean ± sd over its seeds)" if args.seeds > 1 else "1 seed a row"
        sections.append(f"**Confirmed**, {seeds}:\n\n" + "\n".join(lines)
                        + (f"\n\nNot confirmed yet (no finished run): {'; '.join(not_run)}." if not_run else ""))
    if networks := networks_table(args, train=(args.networks or zoo()) if args.phase == "networks" else []):
        sections.append(networks)
    defaults = {"seeds": 3, "phase": "all", "datasets": list(CANDIDATES), "epochs": None, "train_fraction": 1.0,
                "confirm_subjects": False, "networks": None,
                "candidates": max(map(len, CANDIDATES.values()))}
    write_section(FOLDER, "## Robustness: screening augmentations with the robustness suite\n\n"
                  f"`{command_line('robustness.py', args, defaults)}` on {machine()}.\n\n" + "\n\n".join(sections),
                  args.docs / "RESULTS.md" if args.docs != ROOT / "docs" else ROOT / "docs" / "RESULTS.md")


if __name__ == "__main__":
    main()

"""Each study of experiments/ end to end on a tiny budget (one epoch, part of the data): its
code path trains, writes its section of STUDIES.md and its figure, and `cnnzoo study` runs it."""

import importlib.util
import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cnnzoo.cli import app

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
PNG = b"\x89PNG\r\n\x1a\n"


def script(name):
    """experiments/NAME.py as a module (the folder is not a package)."""
    spec = importlib.util.spec_from_file_location(name, EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def study(name):
    return script(f"study_{name}")


pytestmark = pytest.mark.usefixtures("private_cache")  # conftest.py: a fresh $CNNZOO_HOME


def run(name, tmp_path, *options):
    study(name).main([str(o) for o in (*options, "--seeds", 1, "--epochs", 1, "--docs", tmp_path / "docs",
                                        "--runs", tmp_path / "runs")])
    section = re.search(f"<!-- {name}:start -->(.*)<!-- {name}:end -->", (tmp_path / "docs" / "STUDIES.md").read_text(),
                        re.S)
    assert section, f"no {name} section"
    assert (tmp_path / "docs" / "figures" / f"{name}.png").read_bytes().startswith(PNG)
    return section.group(1)


NETWORKS_TABLE = "**The leaderboard's networks on signs**"  # robustness.py's last table


def run_metrics(suite: float = 0.8, clean: float = 0.9) -> dict:
    """What a robustness study reads of a finished run's metrics.json, with its validation scores."""
    return {"test": {"accuracy": clean, "ece": 0.01}, "robustness": {"mean": suite, "ece": 0.02},
            "validation": {"accuracy": clean, "ece": 0.01, "robustness": {"mean": suite}}, "wall_time_s": 60.0}


def table_rows(section):
    return [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| ---")][1:]


def signs_rows(section):
    """The leaderboard's rows for signs (it lists smiles too, trained or not)."""
    return [row for row in table_rows(section) if row.startswith("| signs |")]


def test_degradation_trains_both_families_per_depth(tmp_path):
    section = run("degradation", tmp_path, "--depths", 20, "--train-fraction", 0.05)
    assert "python experiments/study_degradation.py --epochs 1 --train-fraction 0.05 --depths 20`" in section
    assert re.search(r"- Plain nets: final training error \d+\.\d% \(plain-20\)", section)
    assert re.search(r"- Residual nets: final training error \d+\.\d% \(resnet-20\)", section)
    [row] = table_rows(section)
    assert row.startswith("| 20 | 271,098 |")  # the same parameters for both: option-A shortcuts
    assert len(list((tmp_path / "runs" / "degradation").iterdir())) == 2


def test_bottleneck_reports_the_lecture_costs_and_both_modules(tmp_path):
    section = run("bottleneck", tmp_path, "--train-fraction", 0.05)
    assert "costs **120.4M** MACs" in section and "**12.4M** (10.3%)" in section
    naive, reduced = table_rows(section)
    assert naive.startswith("| `inception_naive` | 303.6M | 387,968 |")
    assert reduced.startswith("| `inception_1x1` | 128.3M | 164,800 |")


@pytest.mark.slow  # 10 trainings (50 s); tests/test_transfer.py covers --init and --freeze in CI
def test_transfer_compares_three_starts_at_three_data_sizes(tmp_path):
    section = run("transfer", tmp_path, "--train-fraction", 0.15)
    rows = table_rows(section)
    assert [row.split(" | ")[0] for row in rows] == ["| scratch", "| frozen base + new head", "| fine-tune all"]
    assert all(len(row.split(" | ")) == 4 for row in rows)
    assert "pretrained on `sign-digits-6-9`" in section
    runs = sorted(p.name.split("-")[0] for p in (tmp_path / "runs" / "transfer").iterdir())
    assert runs == ["resnet20"] * 10  # the pretraining run + 3 starts x 3 data sizes


def test_leaderboard_trains_the_named_networks_and_lists_the_rest(tmp_path):
    section = run("leaderboard", tmp_path, "--models", "lenet5", "--board", "lenet5", "happy",
                  "--datasets", "signs", "--train-fraction", 0.2)
    trained, waiting = signs_rows(section)
    assert re.match(r"\| signs \| `lenet5` \| 32x32x1 \| 61,366 \| 0.000422 \| \d+\.\d% \(1\) \| \d+\.\d min \|", trained)
    assert waiting == "| signs | `happy` | 64x64x3 | 201,478 | 0.0196 | not trained yet | — |"
    # Not trained elsewhere, at the 32x32x1 it read on signs: what a run would take at that speed
    # (the datasets' training images, the recipe's 20 epochs); HappyModel has no speed to go by.
    [record] = (tmp_path / "docs" / "runs" / "experiments").glob("lenet5-signs-*.json")
    speed = json.loads(record.read_text())["images_per_s"]
    rows = {tuple(row.split(" | ")[:2]): row for row in table_rows(section)}
    for dataset, images in (("smiles", 9_668), ("mnist", 54_000)):
        expected = f"| not trained yet | about {images * 20 / speed / 60:.0f} min here (its speed on signs) |"
        assert rows[f"| {dataset}", "`lenet5`"].endswith(expected), rows[f"| {dataset}", "`lenet5`"]
        assert rows[f"| {dataset}", "`happy`"].endswith("| not trained yet | — |")


def test_the_leaderboard_trains_lenet5_on_mnist_padded_and_boards_only_small_image_networks(tmp_path):
    section = run("leaderboard", tmp_path, "--models", "lenet5", "--board", "lenet5", "happy", "alexnet", "resnet20",
                  "--datasets", "mnist", "--train-fraction", 0.01)
    rows = [row for row in table_rows(section) if row.startswith("| mnist |")]
    assert [row.split(" | ")[1] for row in rows] == ["`lenet5`", "`happy`", "`resnet20`"]  # AlexNet needs 67x67
    assert re.match(r"\| mnist \| `lenet5` \| 32x32x1 \| 61,706 \| 0.000423 \| \d+\.\d% \(1\) \| \d+\.\d min \|", rows[0])
    assert rows[1].startswith("| mnist | `happy` | 32x32x3 |") and rows[2].startswith("| mnist | `resnet20` | 32x32x3 |")
    [record] = (tmp_path / "docs" / "runs" / "experiments").glob("lenet5-mnist-*.json")
    assert 400 < json.loads(record.read_text())["train_images"] < 700  # about 1% of MNIST's 54,000 (hashed picks)
    [config] = (tmp_path / "runs").rglob("lenet5-mnist-*/config.json")
    assert json.loads(config.read_text())["train"]["batch_size"] == 128  # MNIST's size asks for more than 32


def test_the_leaderboard_trains_the_cheapest_runs_first(tmp_path, monkeypatch):
    """Whatever order the networks are named in, so a session stopped part-way leaves whole cheap rows."""
    leaderboard = study("leaderboard")
    trained, finished_run = [], leaderboard.finished_run

    def spy(name, dataset, seed, args, *, train):
        trained.extend([name] if train else [])
        return finished_run(name, dataset, seed, args, train=train)

    monkeypatch.setattr(leaderboard, "finished_run", spy)
    leaderboard.main([str(o) for o in ("--models", "happy", "lenet5", "--board", "happy", "lenet5", "--datasets", "signs",
                                       "--seeds", 2, "--epochs", 1, "--train-fraction", 0.1, "--docs", tmp_path / "docs",
                                       "--runs", tmp_path / "runs")])
    assert trained == ["lenet5", "lenet5", "happy", "happy"]  # 0.0004 GMACs before 0.0196


def test_the_leaderboard_trains_several_runs_at_once_and_says_they_shared_the_machine(tmp_path):
    section = run("leaderboard", tmp_path, "--models", "lenet5", "lenet5_modern", "--board", "lenet5", "lenet5_modern",
                  "--datasets", "signs", "--train-fraction", 0.1, "--jobs", 2)
    rows = signs_rows(section)
    assert len(rows) == 2 and all(re.search(r"\| \d+\.\d% \(1\) \| \d+\.\d min \(2 runs at once\) \|$", r) for r in rows)
    records = sorted((tmp_path / "docs" / "runs" / "experiments").iterdir())
    assert [r.name.split("-")[0] for r in records] == ["lenet5", "lenet5_modern"]
    assert all(json.loads(r.read_text())["concurrent_runs"] == 2 for r in records)
    assert len(list((tmp_path / "runs" / "experiments").iterdir())) == 2  # each trained once, by its own process


def test_the_leaderboard_names_the_parallel_runs_that_failed_writes_the_table_and_exits_non_zero(
        tmp_path, monkeypatch, capsys):
    import subprocess

    crashed = subprocess.CompletedProcess([], 1, "", "Traceback (most recent call last):\nMemoryError: out of memory")
    monkeypatch.setattr(subprocess, "run", lambda *args, **kwargs: crashed)
    with pytest.raises(SystemExit, match=r"^2 runs failed: lenet5_modern on signs \(seed 0\), lenet5 on signs "
                                         r"\(seed 0\); their errors are printed above"):
        run("leaderboard", tmp_path, "--models", "lenet5", "lenet5_modern", "--board", "lenet5", "lenet5_modern",
            "--datasets", "signs", "--jobs", 2)
    assert "MemoryError: out of memory" in capsys.readouterr().out
    section = (tmp_path / "docs" / "STUDIES.md").read_text()
    assert "| signs | `lenet5` | 32x32x1 | 61,366 | 0.000422 | not trained yet | — |" in section


def test_the_leaderboard_refuses_fewer_than_one_job(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        run("leaderboard", tmp_path, "--models", "lenet5", "--jobs", 0)
    assert stopped.value.code == 2
    assert "--jobs 0: give the number of runs to train at once, 1 or more." in capsys.readouterr().err
    assert not (tmp_path / "docs").exists()


def test_the_leaderboard_keeps_recorded_runs_whose_folders_are_gone(tmp_path):
    first = run("leaderboard", tmp_path, "--models", "lenet5", "--board", "lenet5", "--datasets", "signs",
                "--train-fraction", 0.1)
    [record] = (tmp_path / "docs" / "runs" / "experiments").iterdir()
    assert record.name.startswith("lenet5-signs-") and record.name.endswith("-s0.json")
    assert json.loads(record.read_text())["test"]["images"] == 107
    shutil.rmtree(tmp_path / "runs")  # a new checkout: the run folders are gone, the record is not
    again = run("leaderboard", tmp_path, "--models", "lenet5", "--board", "lenet5", "--datasets", "signs",
                "--train-fraction", 0.1)
    assert signs_rows(again) == signs_rows(first)
    assert not (tmp_path / "runs").exists()  # nothing was trained again


def test_the_leaderboard_counts_the_bf16_runs_of_a_lent_gpu(tmp_path):
    """Precision is part of a run's hash and a GPU trains in bf16: its records must fill this CPU's table."""
    from types import SimpleNamespace

    options = ("--models", "lenet5", "--board", "lenet5", "--datasets", "signs", "--train-fraction", 0.1)
    first = run("leaderboard", tmp_path, *options)
    [record] = (tmp_path / "docs" / "runs" / "experiments").iterdir()
    gpu_config = study("leaderboard").config("lenet5", "signs", 0, SimpleNamespace(epochs=1, train_fraction=0.1), "bf16")
    gpu_run = script("common").run_folder(gpu_config, "experiments").name
    assert gpu_run != record.stem
    record.rename(record.with_name(f"{gpu_run}.json"))  # as if the GPU had trained it
    shutil.rmtree(tmp_path / "runs")
    again = run("leaderboard", tmp_path, *options)
    assert signs_rows(again) == signs_rows(first)
    assert not (tmp_path / "runs").exists()  # found, not trained again in fp32


def test_a_changed_recipe_keeps_its_records_and_gives_todays_recipe_runs_of_its_own(monkeypatch):
    """ResNet-50's recipe starts the residual branches at zero since its records were made: a study
    that leaves the field to the recipe trains and finds what it recorded (the hash the older recipe
    gave), and today's recipe, asked for, makes runs of its own, which the robustness table marks as
    what `cnnzoo train` runs."""
    import dataclasses

    from cnnzoo.models import registry
    from cnnzoo.models.resnet import BOTTLENECK_V1_RECIPE
    from cnnzoo.training.config import TrainConfig

    common, robustness = script("common"), script("robustness")
    left = TrainConfig("resnet50", "signs", augment="shift")
    today = robustness.config("resnet50", "signs", "shift", 0, robustness.study_parser("x").parse_args([]),
                              today=True)
    assert (common.as_recorded(left).resolved().zero_init_residual, left.resolved().zero_init_residual) == (False, True)
    assert today.zero_init_residual is True
    now = {c: common.run_folder(c, "robustness").name for c in (left, today)}
    assert now[left] != now[today]
    monkeypatch.setitem(registry._REGISTRY, "resnet50",
                        dataclasses.replace(registry.model_info("resnet50"), recipe=BOTTLENECK_V1_RECIPE))
    monkeypatch.setattr(common, "RECORDED_RECIPE", {})
    assert common.run_folder(left, "robustness").name == now[left]  # as hashed before the change


def test_the_optimizer_setting_leaves_the_hashes_of_adam_runs_alone():
    """Runs recorded before `optimizer` existed trained with Adam: leaving it to the recipe, or
    naming adam, must find them; SGD is a run of its own."""
    from cnnzoo.training.config import TrainConfig

    common = script("common")
    row = {"batch_size": 128, "validation": 0.0, "augment": "none"}  # train_targets' classic MNIST row
    left, adam, sgd = (TrainConfig("lenet5", "mnist", optimizer=o, **row) for o in (None, "adam", "sgd"))
    names = [common.run_folder(c, "experiments").name for c in (left, adam, sgd)]
    assert names[0] == names[1] != names[2]
    assert (EXPERIMENTS.parent / "docs" / "runs" / "experiments" / f"{names[0]}.json").exists()  # recorded 2026-12-07


def test_a_revised_augmentation_layer_makes_a_new_run_and_leaves_the_others_records_alone(monkeypatch):
    """Runs recorded with the older `noise` layer (one sd for all images) must not be taken for the
    current one's; runs without it keep their hashes and records."""
    from cnnzoo.models import augment
    from cnnzoo.training.config import TrainConfig

    common = script("common")
    noisy, plain = (TrainConfig("resnet20", "signs", augment=a) for a in ("shift,noise", "shift,blur"))
    now = [common.run_folder(c, "robustness").name for c in (noisy, plain)]
    monkeypatch.setattr(augment, "REVISED", {})
    before = [common.run_folder(c, "robustness").name for c in (noisy, plain)]
    assert now[0] != before[0] and now[1] == before[1]


def test_every_row_of_the_committed_leaderboard_is_found_from_its_records(tmp_path):
    """A new TrainConfig or Recipe field, or any change to the run hash, must not orphan the
    records on main: each measured row of docs/STUDIES.md is found again, seed by seed, by the
    table's own lookup (no run folders: records only)."""
    from types import SimpleNamespace

    docs = EXPERIMENTS.parent / "docs"
    board = re.search("<!-- leaderboard:start -->(.*)<!-- leaderboard:end -->", (docs / "STUDIES.md").read_text(), re.S)[1]
    rows = re.findall(r"^\| (\w+) \| `(\w+)` \|.*\((\d)\) \| [^|]+ \|$", board, re.M)
    assert len(rows) > 20
    leaderboard = study("leaderboard")
    defaults = SimpleNamespace(epochs=None, train_fraction=1.0, docs=docs, runs=tmp_path / "runs")
    for dataset, name, seeds in rows:
        found = [seed for seed in range(leaderboard.SEEDS_SHOWN)
                 if leaderboard.finished_run(name, dataset, seed, defaults, train=False)]
        assert len(found) == int(seeds), f"{name} on {dataset}: records of seeds {found}, the table says {seeds}"
    assert not (tmp_path / "runs").exists()  # nothing trained


def test_the_leaderboard_figure_keeps_a_dense_cluster_readable():
    """Many networks within a point of each other (signs: 97.5-99.1%) get labels that do not
    overlap; one far below sits on the lower edge, its accuracy in its label."""
    import itertools

    leaderboard = study("leaderboard")
    near = [{"name": f"resnet{depth}", "dataset": "signs", "macs": 4e7 * (1.15 ** i),
             "mean": 0.975 + 0.016 * ((i * 7) % 5) / 4, "runs": [{"test": {"accuracy": 0.98}}] * 3}
            for i, depth in enumerate(range(20, 164, 9))]
    far = [{"name": "plain56", "dataset": "signs", "macs": 1.26e8, "mean": 0.489, "runs": []},
           {"name": "lenet5", "dataset": "signs", "macs": 4.2e5, "mean": 0.822, "runs": []}]  # spans the axis
    waiting = {"name": "vgg19", "dataset": "smiles", "macs": 1.6e9, "mean": None, "runs": []}
    figure = leaderboard.plot([*near, *far, waiting])
    [axis] = figure.axes  # smiles has nothing trained: no panel
    renderer = figure.canvas.get_renderer()
    labels = [t for t in axis.texts if t.get_text()]
    assert sorted(t.get_text() for t in labels) == sorted([r["name"] for r in near] + ["plain56 48.9%", "lenet5 82.2%"])
    boxes = [t.get_window_extent(renderer) for t in labels]
    assert not [(a, b) for (a, b) in itertools.combinations(range(len(boxes)), 2) if boxes[a].overlaps(boxes[b])]
    assert axis.get_ylim()[0] == pytest.approx(99.1 - leaderboard.ZOOM)


def test_cnnzoo_study_runs_a_study_and_refuses_unknown_names(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["study", "leaderboard", "--models", "lenet5", "--board", "lenet5", "--datasets",
                                 "signs", "--seeds", "1", "--epochs", "1", "--train-fraction", "0.1",
                                 "--docs", str(tmp_path), "--runs", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    assert "`lenet5`" in (tmp_path / "STUDIES.md").read_text()
    result = runner.invoke(app, ["study", "depth"])
    assert result.exit_code == 2
    assert "Unknown study 'depth': choose one of degradation, bottleneck, transfer, leaderboard." in result.stderr


@pytest.mark.slow  # 9 trainings and their test-time rows (about a minute); test_tta.py covers 10-crop in CI
def test_augment_ablation_has_a_row_per_augmentation_and_per_test_time_choice(tmp_path):
    script("augment_ablation").main(["--datasets", "signs", "--seeds", "1", "--epochs", "1", "--train-fraction", "0.05",
                   "--docs", str(tmp_path / "docs"), "--runs", str(tmp_path / "runs")])
    text = (tmp_path / "docs" / "RESULTS.md").read_text()
    section = re.search("<!-- augment_ablation:start -->(.*)<!-- augment_ablation:end -->", text, re.S).group(1)
    assert "`python experiments/augment_ablation.py --seeds 1 --epochs 1 --train-fraction 0.05 --datasets signs`" in section
    labels = [row.split(" | ")[1] for row in table_rows(section)]
    assert labels == ["augmentation: none", "augmentation: mirror", "augmentation: shift (the default)",
                      "augmentation: crop", "augmentation: resized-crop", "augmentation: color", "augmentation: pca",
                      "augmentation: rotate", "augmentation: all",
                      "all + 10-crop testing", "all + ensemble of the 1 seeds' models", "all + 10-crop + ensemble",
                      "default (shift) + 10-crop testing", "default (shift) + ensemble of the 1 seeds' models",
                      "default (shift) + 10-crop + ensemble"]
    assert len(list((tmp_path / "runs" / "ablation").iterdir())) == 9  # the default is the shift row's runs


def test_transfer_starts_from_a_published_checkpoint_given_with_init(tmp_path, monkeypatch):
    """`--init FILE --model NAME`: no pretraining run, the file is every non-scratch start (runs replaced by
    stubs here; test_weights.py trains from such a file for real)."""
    module = study("transfer")
    configs = []

    def fake_train(config, folder, runs):
        configs.append(config)
        return {"run": str(tmp_path / "r"), "test": {"accuracy": 0.5}, "train_images": 10, "wall_time_s": 6.0,
                "epochs": 1}

    monkeypatch.setattr(module, "train_or_reuse", fake_train)
    module.main(["--init", "resnet18-f37072fd.pth", "--model", "resnet18_tv", "--image-size", "64",
                 "--docs", str(tmp_path / "docs"), "--runs", str(tmp_path / "runs")])
    assert len(configs) == 9 and {c.model for c in configs} == {"resnet18_tv"}
    assert {c.init for c in configs} == {None, "resnet18-f37072fd.pth"} and {c.image_size for c in configs} == {64}
    text = (tmp_path / "docs" / "STUDIES.md").read_text()
    assert "`resnet18_tv` at 64x64 started from the published checkpoint `resnet18-f37072fd.pth`" in text
    assert "--init resnet18-f37072fd.pth --model resnet18_tv --image-size 64" in text  # the command that made it


@pytest.mark.slow
def test_robustness_screens_every_candidate_on_validation_and_marks_one_winner(tmp_path):
    """The screen phase on smiles (HappyModel): a row per candidate augmentation with its
    validation and test robustness, one the winner, and each run's metrics recorded. Slow (about
    5 minutes here: the suite's 30 shifted copies of validation and test images per run)."""
    robustness = script("robustness")
    docs = tmp_path / "docs"
    robustness.main(["--phase", "screen", "--datasets", "smiles", "--seeds", "1", "--epochs", "1",
                     "--train-fraction", "0.05", "--docs", str(docs), "--runs", str(tmp_path / "runs")])
    section = re.search("<!-- robustness:start -->(.*)<!-- robustness:end -->", (docs / "RESULTS.md").read_text(), re.S)
    assert section
    rows = table_rows(section.group(1))
    assert [row.split(" | ")[0].removeprefix("| ").removesuffix(" **(screen winner)**") for row in rows] == list(
        robustness.CANDIDATES["smiles"])
    assert sum("**(screen winner)**" in row for row in rows) == 1
    # Six percentages (validation and test), then the subject-disjoint column: smiles has no subjects.
    assert all(re.fullmatch(r"\| .+ \| (\d+\.\d% \| ){6}— \|", row) for row in rows), rows
    records = list((docs / "runs" / "robustness").glob("*.json"))
    assert len(records) == len(rows)
    assert all("robustness" in json.loads(r.read_text())["validation"] for r in records)


def test_robustness_confirms_the_signs_winner_with_a_longer_schedule_too(tmp_path, monkeypatch):
    """The confirmation trains the old default and the winner on the recipe's schedule, and on
    signs the winner again with the dataset's longer schedule; a budget override (--epochs) is
    multiplied too."""
    from cnnzoo.models import model_info

    robustness = script("robustness")
    trained = []

    def fake(cfg, args, train=True):
        trained.append((cfg.model, cfg.augment, cfg.epochs, cfg.lr))
        return run_metrics()

    monkeypatch.setattr(robustness, "measured", fake)
    monkeypatch.setattr(robustness, "subject_split", lambda *a, **k: None)
    args = robustness.study_parser("x", seeds=1).parse_args(["--docs", str(tmp_path)])
    args.confirm_subjects = False
    robustness.confirm_rows("signs", {"old": ("shift", (1, 1), False), "winner": ("mirror", (1, 1), False),
                                      "longer": ("mirror", (2, 0.5), False)}, args)
    recipe = model_info("resnet50").recipe
    assert trained == [("resnet50", "shift", None, None), ("resnet50", "mirror", None, None),
                       ("resnet50", "mirror", 2 * recipe.epochs, recipe.lr / 2)]
    args.epochs = 3
    assert robustness.config("resnet50", "signs", "mirror", 0, args, schedule=(2, 1)).epochs == 6
    args.epochs = None  # the dataset's schedule is in floats; an epoch count is whole (and hashed as such)
    assert repr(robustness.config("resnet50", "signs", "mirror", 0, args, schedule=(2.0, 0.5)).epochs) == "60"


def test_robustness_tables_show_each_rows_seeds_and_a_winner_that_is_the_old_default_once(tmp_path, monkeypatch):
    """Regenerating the tables (`--phase screen`) lists each confirmed row over the seeds it has
    finished, with their count; when the screen keeps the old default, its runs are one row, not two."""
    robustness = script("robustness")

    def fake(cfg, args, train=True):
        if cfg.seed > 0 and not train:
            return None  # only seed 0 finished
        return run_metrics()

    monkeypatch.setattr(robustness, "measured", fake)
    robustness.main(["--phase", "screen", "--datasets", "smiles", "--seeds", "3", "--docs", str(tmp_path)])
    section = (tmp_path / "RESULTS.md").read_text().split("**Confirmed**")[1].split(NETWORKS_TABLE)[0]
    rows = table_rows(section)
    # Every candidate ties, so the first (the old default) wins.
    assert [row.split(" | ")[:3] for row in rows] == [
        ["| happy", "smiles: mirror,shift,lowres (default before the study, screen winner) **(the default)**", "1"],
        ["| resnet20", "smiles: mirror,shift,lowres (default before the study, screen winner) **(the default)**", "1"]]


def test_robustness_names_the_confirmation_rows_that_have_no_finished_run(tmp_path, monkeypatch):
    """A confirmation row without a finished run is left out of the table, and named under it."""
    robustness = script("robustness")

    def fake(cfg, args, train=True):
        if cfg.model == "resnet20" and not train:
            return None  # the smiles ResNet-20 has not run
        return run_metrics()

    monkeypatch.setattr(robustness, "measured", fake)
    robustness.main(["--phase", "screen", "--datasets", "smiles", "--seeds", "1", "--docs", str(tmp_path)])
    section = (tmp_path / "RESULTS.md").read_text().split("**Confirmed**")[1].split(NETWORKS_TABLE)[0]
    assert [row.split(" | ")[0] for row in table_rows(section)] == ["| happy"]
    assert ("Not confirmed yet (no finished run): resnet20, smiles: mirror,shift,lowres (default before the "
            "study, screen winner).") in section


def test_robustness_marks_the_row_that_cnnzoo_train_runs_without_flags(tmp_path, monkeypatch):
    """Each screen's winner (and EXTRA's candidate) is confirmed on the longer schedule, and the row
    that is the dataset's default (here the first screen's winner), only that one, is marked: the
    table says which figures the main job reproduces."""
    robustness = script("robustness")

    erase = robustness.CAMERA + ",erase"

    def fake(cfg, args, train=True):
        # CAMERA wins the recipe's screen; with erasing it wins the longer one (resnet20: 2 x 20 epochs).
        mean = {robustness.CAMERA: 0.9, erase: 0.95 if cfg.epochs == 40 else 0.8}.get(cfg.augment, 0.7)
        return run_metrics(mean)

    monkeypatch.setattr(robustness, "measured", fake)
    monkeypatch.setattr(robustness, "subject_split", lambda *a, **k: {"test": {"accuracy": 1.0}})
    robustness.main(["--phase", "screen", "--datasets", "signs", "--seeds", "1", "--docs", str(tmp_path)])
    rows = table_rows((tmp_path / "RESULTS.md").read_text().split("**Confirmed**")[1].split(NETWORKS_TABLE)[0])
    labels = [row.split(" | ")[1] for row in rows]
    longer = "2x the recipe's epochs at 0.5x its peak learning rate"
    assert labels == [
        "signs: shift (default before the study)",
        f"signs: {robustness.CAMERA} (screen winner)",
        f"signs: {robustness.CAMERA} (screen winner), {longer}",
        f"signs: {erase} (longer screen's winner), {longer}",
        f"signs: {robustness.CAMERA},background (what the weakest shift asks for), {longer}",
        # ResNet-50's recipe changed since the rows above were recorded: the default is today's.
        f"signs: {robustness.CAMERA}, {longer}, today's recipe (zero_init_residual=True) **(the default)**"]


def test_robustness_subject_column_says_over_how_many_of_the_rows_seeds_it_was_measured(tmp_path, monkeypatch):
    """A subject-disjoint run per seed costs a full training: a row whose seeds have only some of
    them shows their mean and how many, not "not run" for all or a mean passed off as every seed's."""
    robustness = script("robustness")

    def fake(cfg, args, train=True):
        return run_metrics()

    monkeypatch.setattr(robustness, "measured", fake)
    monkeypatch.setattr(robustness, "subject_split",
                        lambda model, dataset, augment, seed, *a, **k: None if seed else {"test": {"accuracy": 0.97}})
    args = robustness.study_parser("x", seeds=3).parse_args(["--docs", str(tmp_path)])
    args.confirm_subjects = False
    row, = robustness.confirm_rows("signs", {"signs: x (screen winner)": ("mirror", (1, 1), False)}, args)
    assert row.split(" | ")[6] == "97.0% (1 of 3 seeds)"
    monkeypatch.setattr(robustness, "subject_split", lambda *a, **k: None)
    row, = robustness.confirm_rows("signs", {"signs: x (screen winner)": ("mirror", (1, 1), False)}, args)
    assert row.split(" | ")[6] == "not run"


def test_robustness_networks_phase_trains_the_named_networks_on_todays_default_and_lists_the_rest(tmp_path,
                                                                                                 monkeypatch):
    """The leaderboard's networks as `cnnzoo train NAME --dataset signs` trains them: the main job's
    row is the very run the confirmation made (no second training), a run that spelled out the
    network's default input is found too, only the named networks train, and the table says which
    networks have no run yet."""
    robustness = script("robustness")
    args = robustness.study_parser("x", seeds=1).parse_args(["--docs", str(tmp_path)])
    longer = robustness.longer_schedule("signs")
    rows = robustness.confirmed("signs", {(1, 1): robustness.CAMERA, longer: robustness.CAMERA})
    augment, schedule, today = next(row for label, row in rows.items() if "today's recipe" in label)
    confirmed_default = robustness.config("resnet50", "signs", augment, 0, args, schedule=schedule, today=today)
    assert robustness.network_config("resnet50", args) == confirmed_default
    screened = robustness.config("resnet20", "signs", robustness.CAMERA, 0, args, 32, schedule=longer)
    finished = {"resnet50": 0.92, "happy": 0.7, "resnet20": 0.87}  # suite means of the runs that exist
    trained = []

    def fake(cfg, args, train=True):
        if cfg.model == "resnet20" and cfg != screened:
            return None  # recorded only as the screen spelled it
        if cfg.model not in finished:
            if not train:
                return None
            trained.append(cfg.model)
            finished[cfg.model] = 0.6
        mean = finished[cfg.model]
        return run_metrics(mean, clean=0.99)

    monkeypatch.setattr(robustness, "measured", fake)
    monkeypatch.setattr(robustness, "subject_split", lambda *a, **k: None)
    robustness.main(["--phase", "networks", "--networks", "lenet5", "happy", "--datasets", "smiles", "--seeds", "1",
                     "--docs", str(tmp_path)])
    assert trained == ["lenet5"], "only the named networks train, and a network with a run is not trained again"
    text = (tmp_path / "RESULTS.md").read_text()
    assert "--phase networks --networks lenet5 happy" in text
    section = text.split(NETWORKS_TABLE)[1]
    rows = table_rows(section)  # best validation robustness first
    assert [row.split(" | ")[0] for row in rows] == ["| `resnet50`", "| `resnet20`", "| `happy`", "| `lenet5`"]
    assert rows[1].split(" | ")[1:5] == ["32x32", "87.0%", "99.0%", "87.0%"]
    assert rows[0].split(" | ")[1] == "64x64" and rows[-1].split(" | ")[1] == "32x32"  # LeNet-5 reads 32x32
    not_yet = section.split("Not trained on this recipe yet: ")[1].split(".\n")[0]
    assert "`alexnet`" in not_yet and "`resnet50`" not in not_yet and "`lenet5`" not in not_yet
    robustness.main(["--phase", "confirm", "--datasets", "smiles", "--seeds", "1", "--docs", str(tmp_path)])
    assert trained == ["lenet5"], "other phases train no network of the zoo"


def test_robustness_confirms_a_network_whose_recipe_did_not_change_once_per_augmentation(tmp_path, monkeypatch):
    """Today's-recipe row exists for the network whose recipe changed (ResNet-50); a network confirmed
    beside it whose recipe did not change would train the same runs again: its row is not repeated,
    and its one row carries the default's mark."""
    robustness = script("robustness")
    monkeypatch.setitem(robustness.CONFIRM, "signs", [("resnet50", None), ("resnet20", 32)])

    def fake(cfg, args, train=True):
        return run_metrics()

    monkeypatch.setattr(robustness, "measured", fake)
    monkeypatch.setattr(robustness, "subject_split", lambda *a, **k: None)
    args = robustness.study_parser("x", seeds=1).parse_args(["--docs", str(tmp_path)])
    args.confirm_subjects = False
    longer = robustness.longer_schedule("signs")
    rows = robustness.confirm_rows("signs", robustness.confirmed("signs", {(1, 1): "shift", longer: robustness.CAMERA}),
                                   args)
    models = [row.split(" | ")[0] for row in rows]
    assert models.count("| resnet50") == models.count("| resnet20") + 1
    assert [row.split(" | ")[0] for row in rows if "**(the default)**" in row] == ["| resnet50", "| resnet20"]

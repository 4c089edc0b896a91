"""The README's set-up commands stay true: CI runs the test command verbatim."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands():
    return re.findall(r"```bash\n(.+?)\n```", (ROOT / "README.md").read_text())


def test_readme_starts_with_main_job_and_test_commands():
    main_job, tests = readme_commands()[:2]
    assert main_job.startswith("python -m pip install torch==2.13.0 && ")
    assert main_job.endswith("cnnzoo train resnet50 --dataset signs")
    assert tests.startswith("python -m pip install torch==2.13.0 && ")
    assert "pytest" in tests


def test_ci_runs_the_readme_test_command_verbatim():
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert readme_commands()[1] in ci_lines


def readme_cnnzoo_lines() -> list[list[str]]:
    """Every `cnnzoo ...` command line of the README's bash blocks, as arguments (comments dropped)."""
    import shlex

    blocks = re.findall(r"```bash\n(.+?)```", (ROOT / "README.md").read_text(), flags=re.S)
    lines = [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]
    return [shlex.split(line)[1:] for line in lines if line.startswith("cnnzoo ")]


def unknown_options(args: list[str]) -> list[str]:
    """The options in `args` that its cnnzoo command (or subcommand) does not have."""
    import typer

    from cnnzoo.cli import app

    command = typer.main.get_command(app)
    words = [a for a in args if not a.startswith("-")]
    while hasattr(command, "commands") and words and words[0] in command.commands:
        command = command.commands[words.pop(0)]
    known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    return [a.split("=")[0] for a in args if a.startswith("-") and a.split("=")[0] not in known]


def test_every_cnnzoo_command_in_the_readme_uses_options_its_command_has():
    lines = readme_cnnzoo_lines()
    assert len(lines) > 30 and ["train", "resnet50", "--dataset", "signs"] in lines
    assert {" ".join(args): unknown for args in lines if (unknown := unknown_options(args))} == {}
    assert unknown_options(["train", "lenet5", "--dataset", "mnist", "--optimiser", "sgd"]) == ["--optimiser"]

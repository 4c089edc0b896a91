"""`cnnzoo study NAME [OPTIONS]`: run one of the studies in the source checkout's experiments/.

The studies are scripts (experiments/study_NAME.py) that train, then write a table into
docs/STUDIES.md and a figure into docs/figures/; this command finds and runs one, passing
the remaining options through (`cnnzoo study degradation -- --help` shows them).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import typer

from cnnzoo.cli import user_errors_exit_2
from cnnzoo.errors import UserError

STUDIES = ("degradation", "bottleneck", "transfer", "leaderboard")


def experiments_folder() -> Path | None:
    """./experiments when it holds the studies, else the one beside this source checkout."""
    checkout = Path(__file__).resolve().parents[3] / "experiments"
    for folder in (Path.cwd() / "experiments", checkout):
        if (folder / f"study_{STUDIES[0]}.py").is_file():
            return folder
    return None


def study(
    ctx: typer.Context,
    name: str = typer.Argument(..., help=f"One of: {', '.join(STUDIES)}."),
) -> None:
    """Run a study (training included) and write its table and figure into docs/."""
    if name not in STUDIES:
        raise UserError(f"Unknown study {name!r}: choose one of {', '.join(STUDIES)}.")
    folder = experiments_folder()
    if folder is None:
        raise UserError(
            "cnnzoo study runs the scripts in a source checkout's experiments/ folder, and there is "
            "none here or beside the installed package: run it inside a clone of the repository."
        )
    spec = importlib.util.spec_from_file_location(f"cnnzoo_study_{name}", folder / f"study_{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(list(ctx.args))


def register(app: typer.Typer) -> None:
    app.command("study", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(
        user_errors_exit_2(study))

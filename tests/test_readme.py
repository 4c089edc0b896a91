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

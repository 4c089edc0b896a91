"""Shared test set-up: cnnzoo chooses the Keras backend before any test imports keras."""

import sys
from pathlib import Path

import pytest

import cnnzoo  # noqa: F401  (must precede `import keras` in test modules)

# The benchmarks' helpers (the serve load generator, the speed harness) are tested too.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


@pytest.fixture(scope="module")
def private_cache(tmp_path_factory):
    """A fresh $CNNZOO_HOME for one test module: its dataset caches start empty and stay its own."""
    mp = pytest.MonkeyPatch()
    mp.setenv("CNNZOO_HOME", str(tmp_path_factory.mktemp("home")))
    yield
    mp.undo()

"""Shared test set-up: cnnzoo chooses the Keras backend before any test imports keras."""

import os
import sys
from pathlib import Path

import pytest

import cnnzoo  # noqa: F401  (must precede `import keras` in test modules)

# Training runs in float32 on every CPU, also in the `cnnzoo` processes tests start: `auto` would
# pick bf16 on a CPU with bfloat16 arithmetic, and the suite's tolerances are float32's. The
# choice itself is tested in tests/test_train.py.
os.environ["CNNZOO_CPU_BF16"] = "0"

# The benchmarks' helpers (the serve load generator, the speed harness) are tested too.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


@pytest.fixture(scope="module")
def private_cache(tmp_path_factory):
    """A fresh $CNNZOO_HOME for one test module: its dataset caches start empty and stay its own."""
    mp = pytest.MonkeyPatch()
    mp.setenv("CNNZOO_HOME", str(tmp_path_factory.mktemp("home")))
    yield
    mp.undo()


def _torch_threads():
    import keras

    if keras.backend.backend() != "torch":
        return None
    import torch

    return torch


_TORCH = _torch_threads()
_DEFAULT_THREADS = _TORCH.get_num_threads() if _TORCH else None


@pytest.fixture(autouse=True)
def _torch_threads_restored():
    """Every test starts at PyTorch's default thread count. The door sets the process-wide
    count (`serve --threads`, in module fixtures too); reductions split over another number of
    threads round differently, and the exact-resume test compares a killed CLI run (default
    threads) with its continuation in this process."""
    if _TORCH is not None:
        _TORCH.set_num_threads(_DEFAULT_THREADS)
    yield

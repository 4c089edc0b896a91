"""Choose the Keras backend before keras is first imported, and report on it.

Rule (first match wins):
1. an explicit choice: the `--backend` CLI option or the `KERAS_BACKEND` variable;
2. JAX when a JAX GPU plugin (CUDA or ROCm) is installed — Keras on JAX trains CNNs about
   2x faster than plain PyTorch on a GPU;
3. PyTorch when it is installed — on a CPU it trains about 3.5x faster than JAX here;
4. JAX when it is installed;
5. otherwise a `UserError` that names the extra to install.

"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import pathlib
import re
import sys
from dataclasses import dataclass

from cnnzoo.errors import UserError

SUPPORTED = ("jax", "torch", "tensorflow")
_GPU_PLUGIN = re.compile(r"^jax[-_](cuda|rocm)\d*[-_](plugin|pjrt)$")


@dataclass(frozen=True)
class Choice:
    backend: str
    reason: str


_choice: Choice | None = None
# The user's own setting, read before `select` exports its choice into the environment.
_USER_SETTING = os.environ.get("KERAS_BACKEND") or None


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def jax_gpu_plugin() -> str | None:
    """Name of an installed JAX GPU plugin distribution, if any. Found by the names of the
    .dist-info folders on sys.path: reading every installed distribution's metadata cost each
    start of cnnzoo 0.2 s (170 distributions here)."""
    for folder in sys.path:
        try:
            entries = os.listdir(folder or ".")
        except OSError:
            continue
        for entry in entries:
            if entry.endswith(".dist-info") and _GPU_PLUGIN.match(entry.split("-")[0].lower()):
                path = os.path.join(folder or ".", entry)
                return importlib.metadata.PathDistribution(pathlib.Path(path)).metadata.get("Name") or entry
    return None


def choose(explicit: str | None = None) -> Choice:
    """Apply the rule above and return the choice, without importing keras."""
    explicit = explicit or _USER_SETTING
    if explicit:
        explicit = explicit.lower()
        if explicit not in SUPPORTED:
            raise UserError(
                f"Unknown Keras backend {explicit!r}: use one of {', '.join(SUPPORTED)}."
            )
        return Choice(explicit, "explicit choice")
    plugin = jax_gpu_plugin()
    if plugin and _installed("jax"):
        return Choice("jax", f"JAX GPU plugin {plugin} is installed")
    if _installed("torch"):
        return Choice("torch", "PyTorch is installed and no JAX GPU plugin is")
    if _installed("jax"):
        return Choice("jax", "JAX is installed and PyTorch is not")
    raise UserError(
        "No Keras backend is installed: run `pip install 'cnnzoo[torch]'` for the CPU "
        "(install torch==2.13.0 first for the CPU-only build) or `pip install 'cnnzoo[jax]'` "
        "with a JAX GPU plugin for a GPU."
    )


def select(explicit: str | None = None) -> Choice:
    """Choose the backend and export it as KERAS_BACKEND, unless keras is already loaded.

    Once keras is imported its backend is fixed, so a later choice can only be reported.
    """
    global _choice
    if "keras" in sys.modules:
        import keras

        active = keras.backend.backend()
        if explicit and explicit.lower() != active:
            raise UserError(
                f"Keras was imported with the {active!r} backend before cnnzoo could select "
                f"{explicit!r}: set KERAS_BACKEND={explicit} before starting Python."
            )
        _choice = Choice(active, "keras was imported before cnnzoo")
        return _choice
    _choice = choose(explicit)
    os.environ["KERAS_BACKEND"] = _choice.backend
    return _choice


def current() -> Choice:
    """The choice in force (selecting one if nothing has yet)."""
    return _choice or select()


def versions() -> dict[str, str]:
    """Versions of keras and the active backend's framework."""
    import keras

    out = {"keras": keras.__version__}
    backend = keras.backend.backend()
    framework = {"torch": "torch", "jax": "jax", "tensorflow": "tensorflow"}[backend]
    out[framework] = importlib.metadata.version(framework)
    return out


def devices() -> list[str]:
    """The devices the active backend can compute on, e.g. ['cpu'] or ['cuda:0 (NVIDIA H100)']."""
    import keras

    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        gpus = [
            f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())
        ]
        return gpus or [f"cpu ({torch.get_num_threads()} threads)"]
    if backend == "jax":
        import jax

        return [f"{d.platform}:{d.id} ({d.device_kind})" for d in jax.devices()]
    import tensorflow as tf

    return [d.name for d in tf.config.list_logical_devices()]


def has_accelerator() -> bool:
    """True when the active backend computes on a GPU/TPU rather than the CPU."""
    return not all(d.startswith("cpu") for d in devices())


# CPU flags (Linux's /proc/cpuinfo names) of bfloat16 arithmetic: AVX512-BF16 (Cooper Lake,
# Zen 4 and later) and AMX (Sapphire Rapids and later).
BF16_FLAGS = {"avx512_bf16", "amx_bf16"}


def cpu_bf16(cpuinfo: str | pathlib.Path = "/proc/cpuinfo") -> bool:
    """Whether this CPU computes in bfloat16 natively (read at run time, not at install): only
    then is a bfloat16 step faster than a float32 one. False where the flags cannot be read."""
    try:
        text = pathlib.Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return False
    return any(BF16_FLAGS & set(line.split(":", 1)[1].split())
               for line in text.splitlines() if line.startswith("flags") and ":" in line)


def inference_threads(count: int) -> None:
    """Run the backend's forward passes on `count` threads (PyTorch's intra-op pool, which is
    process-wide; JAX/XLA sizes its own)."""
    import keras

    if keras.backend.backend() == "torch":
        import torch

        torch.set_num_threads(count)

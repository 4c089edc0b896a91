"""Shared by the experiment scripts: machine description and RESULTS.md sections."""

from __future__ import annotations

import datetime
import os
import platform
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "RESULTS.md"


def machine() -> str:
    import keras

    from cnnzoo import backend

    cpu = platform.processor() or platform.machine()
    try:
        model = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
        cpu = model
    except (OSError, StopIteration):
        pass
    versions = ", ".join(f"{k} {v}" for k, v in backend.versions().items())
    return (f"{cpu}, {os.cpu_count()} cores; {', '.join(backend.devices())}; "
            f"backend {keras.backend.backend()} ({versions}); {datetime.date.today().isoformat()}")


def write_section(name: str, markdown: str) -> None:
    """Replace (or append) the section between this experiment's markers in RESULTS.md."""
    from cnnzoo import atomic

    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{markdown.strip()}\n{end}"
    text = RESULTS.read_text() if RESULTS.exists() else "# Results\n\nMeasured by the scripts in experiments/; each section says how to regenerate it.\n"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    RESULTS.parent.mkdir(exist_ok=True)
    atomic.write_text(RESULTS, text)


# TrainConfig fields added after runs were hashed, with their defaults.
LATER_FIELDS = {"image_size": None, "init": None, "freeze": False, "train_fraction": 1.0}


def train_or_reuse(config, folder: str) -> dict:
    """metrics.json of `config` trained under runs/FOLDER/, reusing (or resuming) a run with
    exactly these settings: the folder name carries a hash of the resolved config and recipe."""
    import dataclasses
    import hashlib
    import json

    from cnnzoo.train import recipe_for, train

    config = config.resolved()
    settings = {**dataclasses.asdict(config), "out": None, "recipe": dataclasses.asdict(recipe_for(config.model))}
    for field, default in LATER_FIELDS.items():  # keep the hashes of runs made before they existed
        if settings[field] == default:
            del settings[field]
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    out = ROOT / "runs" / folder / f"{config.model}-{config.dataset}-{digest}-s{config.seed}"
    if (out / "metrics.json").exists():
        return json.loads((out / "metrics.json").read_text())
    return train(dataclasses.replace(config, out=str(out)), resume=(out / "config.json").exists(), verbose=2)

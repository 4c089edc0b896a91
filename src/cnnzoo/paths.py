"""Where cnnzoo reads and writes files on this machine, from environment variables."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """Cache root for datasets and decoded arrays: $CNNZOO_HOME, default ~/.cache/cnnzoo."""
    return Path(os.environ.get("CNNZOO_HOME") or Path.home() / ".cache" / "cnnzoo").expanduser()


def data_mirror() -> Path | None:
    """Offline mirror of dataset archives ($CNNZOO_DATA_MIRROR), tried before any download."""
    value = os.environ.get("CNNZOO_DATA_MIRROR")
    return Path(value).expanduser() if value else None

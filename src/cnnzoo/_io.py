"""Where cnnzoo keeps files, and how it writes them.

Locations come from environment variables: $CNNZOO_HOME (the cache) and
$CNNZOO_DATA_MIRROR (the offline dataset mirror). Writes are atomic: a temp file beside
the target, renamed into place on success, so a crash or Ctrl-C mid-write leaves the old
file (or none), never a half-written one.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from cnnzoo.errors import UserError


def home() -> Path:
    """Cache root for datasets and decoded arrays: $CNNZOO_HOME, default ~/.cache/cnnzoo."""
    return Path(os.environ.get("CNNZOO_HOME") or Path.home() / ".cache" / "cnnzoo").expanduser()


RUN_MODEL = "model.keras"  # the model of a run folder (its best epoch by validation)


def resolve_model_path(path) -> Path:
    """A model file, or the best model of a run folder; missing paths are a UserError."""
    path = Path(path)
    if path.is_dir():
        path = path / RUN_MODEL
    if not path.is_file():
        raise UserError(
            f"Model file {path} does not exist: pass a .keras, .h5 or .onnx file, or a run folder "
            "written by `cnnzoo train`."
        )
    return path


def sha256(path: Path) -> str:
    """The file's SHA-256 in hex, read in 1 MiB blocks (archives and models are large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def data_mirror() -> Path | None:
    """Offline mirror of dataset archives ($CNNZOO_DATA_MIRROR), tried before any download."""
    value = os.environ.get("CNNZOO_DATA_MIRROR")
    return Path(value).expanduser() if value else None


_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(path: Path, *, then: str = "free some space or choose a writable folder"):
    """Yield a temporary path beside `path` (same suffix); rename it into place on success.

    A failed write (disk full, no permission) leaves the file as it was and ends in one
    sentence saying so, with `then`: what the user can do about it."""
    path = Path(path)
    if not path.parent.is_dir():
        raise UserError(f"Cannot write {path}: the folder {path.parent} does not exist.")
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
        os.close(fd)
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp, path)
    except OSError as error:
        before = "the file there before is unchanged" if path.exists() else "nothing was written"
        raise UserError(f"Cannot write {path} ({error.strerror or error}): {before}; {then}.") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def write_bytes(path: Path, data: bytes, **options) -> None:
    with atomic_path(path, **options) as tmp:
        tmp.write_bytes(data)


def write_text(path: Path, text: str, **options) -> None:
    write_bytes(path, text.encode("utf-8"), **options)


def write_json(path: Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")

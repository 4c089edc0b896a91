"""The decoded-array cache: one .npz per source + decoding options, written atomically.

The file name carries a digest of the key (source identity and options); the key itself
is stored inside and compared on load. A file that cannot be read back completely
(truncated, bit-flipped — numpy's zip reader checks each member's CRC — or from another
key) is reported as damaged, deleted and rebuilt by the caller.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import zipfile
from pathlib import Path

import numpy as np

from cnnzoo._io import atomic_path, home
from cnnzoo.datasets.readers import Raw
from cnnzoo.errors import UserError

FORMAT = 1  # bump when the decoding changes, so old caches are not reused


def arrays_dir() -> Path:
    return home() / "datasets" / "arrays"


def cache_path(name: str, key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")[-40:] or "data"
    return arrays_dir() / f"{stem}-{digest}.npz"


def load(path: Path, key: dict) -> Raw | None:
    """The cached arrays for `key`, or None when absent or damaged (then it is deleted)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(str(npz["meta"]))
            raw = Raw(
                x=npz["x"], y=npz["y"], keys=npz["keys"], official=npz["official"],
                class_names=[str(c) for c in npz["class_names"]],
                skipped=[str(s) for s in npz["skipped"]],
            )
        n = len(raw.x)
        if (
            meta.get("key") != json.loads(json.dumps(key))
            or raw.x.dtype != np.uint8 or raw.x.ndim != 4
            or not (len(raw.y) == len(raw.keys) == len(raw.official) == n == meta.get("count"))
            or (n and (raw.y.min() < 0 or raw.y.max() >= len(raw.class_names)))
        ):
            raise ValueError("its contents do not match its key")
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        sys.stderr.write(f"cnnzoo: the cache file {path} is damaged ({error}); rebuilding it.\n")
        try:
            path.unlink(missing_ok=True)
        except OSError:  # a read-only cache: the rebuilt arrays cannot replace it either, and `save` says so
            pass
        return None
    return raw


def save(path: Path, key: dict, raw: Raw) -> None:
    """Write the arrays atomically: readers see the old file, or none, or the whole new one."""
    meta = json.dumps({"key": key, "count": len(raw.x)})
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, then="free some space or point CNNZOO_HOME at a writable folder") as tmp:
            with open(tmp, "wb") as f:
                np.savez(
                    f, x=raw.x, y=raw.y, keys=raw.keys, official=raw.official,
                    class_names=np.array(raw.class_names, dtype=str),
                    skipped=np.array(raw.skipped, dtype=str), meta=np.array(meta),
                )
    except OSError as error:  # read-only home, disk full
        raise UserError(
            f"Cannot write the dataset cache {path} ({error.strerror or error}): free some space "
            f"or point CNNZOO_HOME at a writable folder."
        ) from None

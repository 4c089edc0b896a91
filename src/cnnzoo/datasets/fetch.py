"""Getting a registered dataset's archive: offline mirror, then cache, then download.

Order: `$CNNZOO_DATA_MIRROR/<filename>` (read in place), then
`$CNNZOO_HOME/datasets/archives/<filename>` (a previous download), then the upstream URL,
downloaded into the cache through a temp file that is renamed into place only after the
checks pass. Checks: size and sha256 when the registry records them, and always the
structure (a zip whose members give every class, and every official split, an image).
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
import zipfile
from contextlib import contextmanager
from pathlib import Path

from cnnzoo._io import atomic_path, data_mirror, home, sha256
from cnnzoo.datasets.registry import DatasetSpec
from cnnzoo.errors import UserError

MIRROR_VARIABLE = "CNNZOO_DATA_MIRROR"
_JUNK = ("__MACOSX/", "Thumbs.db", "desktop.ini")


def archives_dir() -> Path:
    return home() / "datasets" / "archives"


def is_junk(member: str) -> bool:
    """Folders, macOS resource forks and hidden files that are never data."""
    if member.endswith("/") or member.startswith("__MACOSX/"):
        return True
    base = member.rsplit("/", 1)[-1]
    return base.startswith(".") or base in _JUNK


def members(spec: DatasetSpec, zf: zipfile.ZipFile) -> list[tuple[str, str, int, int]]:
    """(member, path below the top folder, label, official split) of each data file, sorted."""
    found = []
    for name in zf.namelist():
        if is_junk(name) or "/" not in name:
            continue
        relative = name.split("/", 1)[1]
        place = spec.classify(relative)
        if place is not None:
            found.append((name, relative, *place))
    found.sort(key=lambda item: item[1])
    return found


def check_structure(
    spec: DatasetSpec, path: Path, shown: str | None = None, redo: str | None = None
) -> list[tuple[str, str, int, int]]:
    """Members of the archive at `path`, after checking it looks like `spec`'s archive."""
    shown = shown or f"The archive {path}"
    redo = redo or f"replace it with the archive from {spec.url}"
    try:
        with zipfile.ZipFile(path) as zf:
            found = members(spec, zf)
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise UserError(f"{shown} is not a readable zip file ({error}): {redo}.") from None
    labels = {label for _, _, label, _ in found}
    missing = [c for i, c in enumerate(spec.classes) if i not in labels]
    if missing:
        raise UserError(
            f"{shown} does not look like the {spec.name} archive: it has no images "
            f"for the class{'es' if len(missing) > 1 else ''} {', '.join(missing)} "
            f"(expected paths like <top folder>/{spec.pattern}); {redo}."
        )
    if spec.test_fraction is None:
        for split, code in (("train", 0), ("test", 1)):
            if not any(s == code for *_, s in found):
                raise UserError(
                    f"{shown} does not look like the {spec.name} archive: it has no "
                    f"{split} images; {redo}."
                )
    return found


def verify(spec: DatasetSpec, path: Path, shown: str | None = None, redo: str | None = None) -> None:
    """Size and sha256 (where the registry knows them), then the structure check."""
    shown = shown or f"The archive {path}"
    redo = redo or f"delete it and download it again from {spec.url}"
    if spec.size is not None and path.stat().st_size != spec.size:
        raise UserError(
            f"{shown} has {path.stat().st_size:,} bytes but {spec.name}'s archive has "
            f"{spec.size:,}: {redo}."
        )
    if spec.sha256 is not None and sha256(path) != spec.sha256.lower():
        raise UserError(f"{shown} does not have {spec.name}'s sha256 checksum: {redo}.")
    check_structure(spec, path, shown, redo)


def in_mirror(spec: DatasetSpec) -> Path | None:
    mirror = data_mirror()
    if mirror is None:
        return None
    for filename in (spec.filename, *spec.other_filenames):
        if (mirror / filename).is_file():
            return mirror / filename
    return None


def find_local(spec: DatasetSpec) -> Path | None:
    """The archive in the mirror or the cache, without downloading or checking it."""
    cached = archives_dir() / spec.filename
    return in_mirror(spec) or (cached if cached.is_file() else None)


def count_local(spec: DatasetSpec) -> tuple[int | None, Path | None]:
    """(images of `spec` in the local archive, that archive), or (None, None) if not fetched."""
    path = find_local(spec)
    if path is None:
        return None, None
    try:
        with zipfile.ZipFile(path) as zf:
            return len(members(spec, zf)), path
    except (zipfile.BadZipFile, OSError, EOFError):
        return None, path


def archive_path(spec: DatasetSpec, *, download: bool = True, progress: bool = True) -> Path:
    """A verified local copy of `spec`'s archive: mirror, cache or a fresh download."""
    mirrored = in_mirror(spec)
    if mirrored is not None:
        verify(spec, mirrored)
        return mirrored
    cached = archives_dir() / spec.filename
    if cached.is_file():
        verify(spec, cached)
        return cached
    if not download:
        raise UserError(_offline_hint(spec, "downloads are turned off"))
    return _download(spec, cached, progress=progress)


def _offline_hint(spec: DatasetSpec, why: str) -> str:
    mirror = data_mirror()
    where = f"{MIRROR_VARIABLE} (now {mirror}, which has no {spec.filename})" if mirror else (
        f"{MIRROR_VARIABLE} (now unset)"
    )
    return (
        f"Cannot get the {spec.name} dataset: {why}; download {spec.url} on a machine with "
        f"internet access, save it as {spec.filename} in a folder and point {where} at that folder."
    )


def _download(spec: DatasetSpec, dest: Path, *, progress: bool) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        response = urllib.request.urlopen(spec.url, timeout=60)
    except urllib.error.HTTPError as error:
        raise UserError(_offline_hint(spec, f"{spec.url} answered HTTP {error.code}")) from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise UserError(_offline_hint(spec, f"{spec.url} cannot be reached ({reason})")) from None
    with response, atomic_path(dest) as tmp:
        total = response.headers.get("Content-Length")
        try:
            _copy(response, tmp, int(total) if total and total.isdigit() else None,
                  f"downloading {spec.filename}", progress)
        except (OSError, urllib.error.URLError) as error:
            raise UserError(_offline_hint(spec, f"the download from {spec.url} broke off ({error})")) from None
        # On failure the temp file is removed: nothing half-checked stays in the cache.
        verify(spec, tmp, shown=f"The download of {spec.url} (not kept)",
               redo=f"try again later, or use the offline mirror ({MIRROR_VARIABLE})")
    return dest


def _copy(response, path: Path, total: int | None, label: str, progress: bool) -> None:
    written = 0
    with open(path, "wb") as out, _bar(progress, label, total) as advance:
        for block in iter(lambda: response.read(1 << 20), b""):
            out.write(block)
            written += len(block)
            advance(len(block))
        out.flush()
        os.fsync(out.fileno())
    # http.client returns a short body without complaint when the server hangs up.
    if total is not None and written != total:
        raise OSError(f"got {written:,} of {total:,} bytes")


@contextmanager
def _bar(show: bool, label: str, total: int | None):
    if not show:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    with Progress(*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)

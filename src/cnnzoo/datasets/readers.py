"""Readers: a source (registered zip, image folder, the course's .h5) -> decoded arrays.

Every reader returns `Raw`: all images of the source as one uint8 NHWC array, integer
labels, a stable key per image (its path inside the source, or a hash of its pixels for
.h5 files) that the splits hash, and the official split where the source has one.
Large sources are decoded by a pool, one worker per core, with a progress bar.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import sys
import threading
import warnings
import zipfile
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnzoo.datasets import fetch
from cnnzoo.datasets.images import BAD_ZIP_ERRORS, MAX_PIXELS, to_array, try_decode
from cnnzoo.datasets.registry import DatasetSpec
from cnnzoo.errors import UserError

PARALLEL_FROM = 4000  # images; below this a pool's start-up costs more than it saves
CHUNK = 1000
SKIP_HINT = "replace or delete it, or pass skip_bad=True (--skip-bad) to skip unreadable files"


@dataclass
class Raw:
    x: np.ndarray  # uint8 (N, H, W, C)
    y: np.ndarray  # int64 (N,)
    keys: np.ndarray  # str (N,): what the split hash reads
    official: np.ndarray  # int8 (N,): -1 no official split, 0 train, 1 test
    class_names: list[str]
    skipped: list[str] = field(default_factory=list)  # "<file>: <why>" of skipped files


# ---------------------------------------------------------------- decoding many files


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


_worker = threading.local()  # per worker (process or thread): an open ZipFile or the root folder


def _open(kind: str, root: str):
    _worker.source = zipfile.ZipFile(root) if kind == "zip" else Path(root)


def _decode_chunk(names, size, channels, resize, max_pixels):
    """Decode `names` from the worker's source: (images, [(index, why), ...])."""
    source = _worker.source
    out = np.zeros((len(names), *size, channels), np.uint8)
    bad = []
    for i, name in enumerate(names):
        try:
            data = source.read(name) if isinstance(source, zipfile.ZipFile) else (source / name).read_bytes()
        except BAD_ZIP_ERRORS as error:
            bad.append((i, f"cannot be read ({error})"))
            continue
        array, why = try_decode(data, size, channels, resize, max_pixels)
        if array is None:
            bad.append((i, why))
        else:
            out[i] = array
    return out, bad


def decode_all(kind, root, names, *, size, channels, resize, label, progress, skip_bad, where,
               max_pixels=MAX_PIXELS):
    """Decode every name of a zip or folder; (images, kept mask, skipped descriptions).

    A bad file raises a `UserError` naming it unless `skip_bad`; `where(name)` says how a
    file is named in messages.
    """
    chunks = [names[i:i + CHUNK] for i in range(0, len(names), CHUNK)]
    images = np.zeros((len(names), *size, channels), np.uint8)
    bad: list[tuple[int, str]] = []
    workers = min(cpu_count(), 8) if len(names) >= PARALLEL_FROM else 1

    def take(index, result):
        out, chunk_bad = result
        start = index * CHUNK
        images[start:start + len(out)] = out
        for i, why in chunk_bad:
            if not skip_bad:
                raise UserError(f"{where(names[start + i])} {why}: {SKIP_HINT}.")
            bad.append((start + i, why))

    with _progress(progress and len(names) >= 1000, label, len(names)) as advance:
        if workers == 1:
            _open(kind, str(root))
            try:
                for index, chunk in enumerate(chunks):
                    take(index, _decode_chunk(chunk, size, channels, resize, max_pixels))
                    advance(len(chunk))
            finally:
                _close()
        else:
            with _pool(workers, kind, root) as pool:
                with warnings.catch_warnings():
                    # Python 3.12+ warns when a process with threads (torch's) forks; the
                    # workers only run Pillow, never the framework.
                    warnings.filterwarnings("ignore", message=".*fork.*")
                    futures = {pool.submit(_decode_chunk, c, size, channels, resize, max_pixels): i
                               for i, c in enumerate(chunks)}
                pending = set(futures)
                try:
                    while pending:
                        done, pending = wait(pending, return_when=FIRST_COMPLETED)
                        for future in sorted(done, key=futures.get):
                            take(futures[future], future.result())
                            advance(len(chunks[futures[future]]))
                except BaseException:
                    for future in pending:
                        future.cancel()
                    raise
    keep = np.ones(len(names), bool)
    for i, _ in bad:
        keep[i] = False
    return images, keep, [f"{where(names[i])} {why}" for i, why in bad]


def _close() -> None:
    source = getattr(_worker, "source", None)
    if isinstance(source, zipfile.ZipFile):
        source.close()
    _worker.source = None


def _pool(workers: int, kind: str, root):
    """Worker processes, forked (cheap, and no re-import of the caller's script); threads
    where fork is unavailable (macOS and Windows default to spawn) or JAX is loaded (JAX
    is multithreaded and warns about fork). Pillow releases the GIL while decoding."""
    if "fork" in multiprocessing.get_all_start_methods() and "jax" not in sys.modules:
        return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                                   initializer=_open, initargs=(kind, str(root)))
    return ThreadPoolExecutor(workers, initializer=_open, initargs=(kind, str(root)))


class _progress:
    """A rich progress bar on stderr (or nothing); yields `advance(n)`."""

    def __init__(self, show: bool, label: str, total: int):
        self.show, self.label, self.total = show, label, total

    def __enter__(self):
        if not self.show:
            return lambda n: None
        from rich.console import Console
        from rich.progress import MofNCompleteColumn, Progress, TimeElapsedColumn

        self.bar = Progress(*Progress.get_default_columns(), MofNCompleteColumn(),
                            TimeElapsedColumn(), console=Console(stderr=True))
        self.bar.__enter__()
        task = self.bar.add_task(self.label, total=self.total)
        return lambda n: self.bar.advance(task, n)

    def __exit__(self, *exc):
        if self.show:
            self.bar.__exit__(*exc)
        return False


def _finish(images, keep, labels, keys, official, class_names, skipped) -> Raw:
    if not keep.all():
        images, labels, keys, official = images[keep], labels[keep], keys[keep], official[keep]
    return Raw(images, labels, keys, official, class_names, skipped)


# ---------------------------------------------------------------- registered zip archives


def read_zip(spec: DatasetSpec, archive: Path, *, size, channels, resize, skip_bad, progress,
             max_pixels=MAX_PIXELS) -> Raw:
    """Decode the images of a registered set from its (verified) archive."""
    found = fetch.check_structure(spec, archive)
    names = [member for member, *_ in found]
    images, keep, skipped = decode_all(
        "zip", archive, names, size=size, channels=channels, resize=resize,
        label=f"decoding {spec.name}", progress=progress, skip_bad=skip_bad, max_pixels=max_pixels,
        where=lambda member: f"The image {member} in {archive}",
    )
    labels = np.array([label for *_, label, _ in found], np.int64)
    keys = np.array([relative for _, relative, _, _ in found], dtype=str)
    official = np.array([split for *_, split in found], np.int8)
    raw = _finish(images, keep, labels, keys, official, list(spec.classes), skipped)
    _require_every_class(raw, f"the archive {archive}")
    return raw


def _require_every_class(raw: Raw, where: str) -> None:
    present = np.bincount(raw.y, minlength=len(raw.class_names))
    empty = [c for c, n in zip(raw.class_names, present) if n == 0]
    if empty:
        raise UserError(
            f"After skipping unreadable files, {where} has no images left for the class "
            f"{', '.join(empty)}: replace the bad files."
        )


# ---------------------------------------------------------------- image folders


def _files(folder: Path) -> list[Path]:
    """Data files below `folder`, recursively, sorted; hidden files and junk left out."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__MACOSX")
        for filename in sorted(filenames):
            if not fetch.is_junk(filename):
                found.append(Path(dirpath) / filename)
    return found


def _class_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def folder_layout(root: Path) -> tuple[list[str], list[tuple[str, int, int]]]:
    """Class names and (path relative to root, label, official split) of each file.

    Either root/<class>/... or, for an official split, root/train/<class>/... and
    root/test/<class>/...
    """
    if not root.is_dir():
        raise UserError(f"The image folder {root} does not exist: give folder:PATH with one sub-folder per class.")
    top = _class_folders(root)
    names = {p.name for p in top}
    split_layout = names == {"train", "test"}
    parts = [(root / "train", 0), (root / "test", 1)] if split_layout else [(root, -1)]
    per_part = {part: _class_folders(part) for part, _ in parts}
    class_names = sorted({p.name for folders in per_part.values() for p in folders})
    if not class_names:
        raise UserError(
            f"The image folder {root} has no class sub-folders: put each class's images in "
            f"a sub-folder named after the class, e.g. {root / 'cat'}/1.jpg."
        )
    entries = []
    for part, split in parts:
        have = {p.name for p in per_part[part]}
        for name in class_names:
            if name not in have:
                raise UserError(
                    f"The folder {part} has no sub-folder for the class {name!r}: add "
                    f"{part / name} with its images, or remove the class from the other split."
                )
        for folder in per_part[part]:
            files = _files(folder)
            if not files:
                raise UserError(
                    f"The class folder {folder} is empty: put its images in it or remove it."
                )
            label = class_names.index(folder.name)
            entries += [(f.relative_to(root).as_posix(), label, split) for f in files]
    return class_names, entries


def read_folder(root: Path, *, size, channels, resize, skip_bad, progress, max_pixels=MAX_PIXELS) -> Raw:
    """Decode root/<class>/* (or root/{train,test}/<class>/*): the Keras/torchvision layout."""
    class_names, entries = folder_layout(root)
    names = [relative for relative, _, _ in entries]
    images, keep, skipped = decode_all(
        "folder", root, names, size=size, channels=channels, resize=resize,
        label=f"decoding {root.name}", progress=progress, skip_bad=skip_bad, max_pixels=max_pixels,
        where=lambda relative: f"The file {root / relative}",
    )
    labels = np.array([label for _, label, _ in entries], np.int64)
    keys = np.array(names, dtype=str)
    official = np.array([split for *_, split in entries], np.int8)
    raw = _finish(images, keep, labels, keys, official, class_names, skipped)
    _require_every_class(raw, f"the folder {root}")
    return raw


def folder_signature(root: Path) -> list:
    """What a folder's cache key hashes: every file's relative path, size and mtime."""
    _, entries = folder_layout(root)
    signature = []
    for relative, _, _ in entries:
        try:
            stat = (root / relative).stat()
        except OSError:  # a dangling link or a link loop: the link itself, reported when decoded
            stat = (root / relative).lstat()
        signature.append([relative, stat.st_size, stat.st_mtime_ns])
    return signature


# ---------------------------------------------------------------- the course's .h5 files


def _h5_dataset(f, path: Path, key: str):
    import h5py

    if key not in f:
        present = ", ".join(sorted(f.keys())) or "nothing"
        raise UserError(
            f"The HDF5 file {path} has no dataset {key!r} (it holds {present}): the course's "
            f"files hold train_set_x, train_set_y, test_set_x, test_set_y and list_classes."
        )
    if not isinstance(f[key], h5py.Dataset):
        raise UserError(f"{key} in the HDF5 file {path} is a group, not an array: the course's files hold "
                        "each of train_set_x, train_set_y, test_set_x, test_set_y and list_classes as an array.")
    return f[key][()]


def _h5_images(array, path: Path, key: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4 or array.shape[-1] not in (1, 3):
        raise UserError(
            f"The dataset {key} in {path} has shape {array.shape}, not images: expected "
            f"(N, height, width, 3) or (N, height, width, 1)."
        )
    if array.dtype != np.uint8:
        if not np.issubdtype(array.dtype, np.integer) or (array.size and (array.min() < 0 or array.max() > 255)):
            raise UserError(
                f"The dataset {key} in {path} holds {array.dtype} values, not pixels 0-255: "
                f"store the images as uint8."
            )
        array = array.astype(np.uint8)
    return array


def _h5_labels(array, path: Path, key: str, n_images: int, x_key: str, n_classes: int) -> np.ndarray:
    array = np.asarray(array)
    labels = array.reshape(-1)
    if array.ndim > 2 or len(labels) != n_images:
        raise UserError(
            f"The HDF5 file {path} has {n_images} images in {x_key} but {len(labels)} labels in "
            f"{key}: each image needs exactly one label."
        )
    if not np.issubdtype(labels.dtype, np.integer):
        if np.issubdtype(labels.dtype, np.floating) and np.all(labels == np.round(labels)):
            labels = labels.astype(np.int64)
        else:
            raise UserError(f"The labels {key} in {path} are {labels.dtype}, not integers: store class indices.")
    outside = labels[(labels < 0) | (labels >= n_classes)]
    if outside.size:
        raise UserError(
            f"The HDF5 file {path} has the label {int(outside[0])} in {key}, outside its "
            f"list_classes (0 to {n_classes - 1}): fix the labels or the class list."
        )
    return labels.astype(np.int64)


def _class_names(array) -> list[str]:
    names = []
    for value in np.asarray(array).reshape(-1):
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        elif isinstance(value, np.generic):
            value = value.item()
        names.append(str(value))
    return names


def read_h5(train: Path, test: Path | None, *, size, channels, resize) -> Raw:
    """Read the course's train_*.h5 [and test_*.h5]; resize / convert only when asked."""
    import h5py

    def open_h5(path: Path):
        try:
            return h5py.File(path, "r")
        except OSError as error:
            raise UserError(f"Cannot open {path} as an HDF5 file ({error}): give the course's .h5 file.") from None

    parts = []  # (x, y, split)
    with open_h5(train) as f:
        class_names = _class_names(_h5_dataset(f, train, "list_classes"))
        if not class_names:
            raise UserError(f"The dataset list_classes in {train} is empty: it must name the classes.")
        x = _h5_images(_h5_dataset(f, train, "train_set_x"), train, "train_set_x")
        y = _h5_labels(_h5_dataset(f, train, "train_set_y"), train, "train_set_y", len(x),
                       "train_set_x", len(class_names))
        has_test = test is None and "test_set_x" in f
        parts.append((x, y, 0 if (test is not None or has_test) else -1))
        if has_test:
            parts.append(_h5_test(f, train, len(class_names)))
    if test is not None:
        with open_h5(test) as f:
            parts.append(_h5_test(f, test, len(class_names)))
    shapes = {x.shape[1:] for x, _, _ in parts}
    if len(shapes) > 1:
        raise UserError(
            f"The train and test images of {train} differ in shape ({', '.join(map(str, shapes))}): "
            f"give files with images of one size."
        )
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    official = np.concatenate([np.full(len(p[0]), p[2], np.int8) for p in parts])
    # No paths: an image's key is a hash of its pixels (so a file's split is stable).
    keys = np.array([hashlib.blake2b(image.tobytes(), digest_size=16).hexdigest() for image in x], dtype=str)
    want_channels = channels or x.shape[-1]
    want_size = size or x.shape[1:3]
    if tuple(want_size) != x.shape[1:3] or want_channels != x.shape[-1]:
        from PIL import Image

        x = np.stack([
            to_array(Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image),
                     tuple(want_size), want_channels, resize)
            for image in x
        ]) if len(x) else np.zeros((0, *want_size, want_channels), np.uint8)
    return Raw(np.ascontiguousarray(x), y, keys, official, class_names)


def _h5_test(f, path: Path, n_classes: int):
    x = _h5_images(_h5_dataset(f, path, "test_set_x"), path, "test_set_x")
    y = _h5_labels(_h5_dataset(f, path, "test_set_y"), path, "test_set_y", len(x), "test_set_x", n_classes)
    return x, y, 1

"""Where a dataset's images come from: one object per kind of source, each saying how it is
named in the cache, what identifies its contents, and how to read it.

- `ArchiveSource`: a registered set's upstream archive (offline mirror, cache or download);
- `FolderSource`: `folder:PATH`, one sub-folder per class (or train/ and test/ holding them);
- `H5Source`: `h5:TRAIN.h5[,TEST.h5]`, the course's files.

`load` (datasets/core.py) asks any of them the same questions, so it has one path through
the cache for all three; only a folder can also list its files, for streaming.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cnnzoo.datasets import fetch, readers
from cnnzoo.datasets.registry import DatasetSpec, dataset_info
from cnnzoo.errors import UserError

FOLDER_DEFAULT_SIZE = (64, 64)  # a user's folder: the size HappyModel and ResNet50 take
FOLDER_TEST_FRACTION = 0.1


def _stat(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


@dataclass(frozen=True)
class ArchiveSource:
    """A registered dataset, read from its upstream archive."""

    spec: DatasetSpec

    @property
    def name(self) -> str:
        return self.spec.name

    cache_name = name

    @property
    def image_size(self) -> tuple[int, int]:
        return self.spec.image_size

    @property
    def channels(self) -> int:
        return self.spec.channels

    @property
    def test_fraction(self) -> float | None:
        return self.spec.test_fraction

    @property
    def resize(self) -> str:
        return self.spec.resize

    def key(self, options: dict) -> dict | None:
        """What the cached arrays depend on; None while the archive is not on this machine.

        The archive is identified by name, size and mtime: a changed or replaced archive (a
        fuller mirror, a fresh download) gets new arrays, without hashing it on every load."""
        archive = fetch.find_local(self.spec)
        if archive is None:
            return None
        spec = self.spec
        return {**options, "source": "zip", "dataset": spec.name, "pattern": spec.pattern,
                "classes": list(spec.classes), "archive": [archive.name, *_stat(archive)]}

    def prepare(self, *, download: bool, progress: bool) -> None:
        """Check the local archive, or download it (from the mirror first)."""
        fetch.archive_path(self.spec, download=download, progress=progress)

    def location(self) -> str:
        return str(fetch.find_local(self.spec))

    def subjects(self, keys) -> list[str] | None:
        return self.spec.subjects(keys)

    def read(self, *, size, channels, resize, skip_bad, progress, max_pixels) -> readers.Raw:
        return readers.read_zip(self.spec, fetch.find_local(self.spec), size=size, channels=channels, resize=resize,
                                skip_bad=skip_bad, progress=progress, max_pixels=max_pixels)


@dataclass(frozen=True)
class FolderSource:
    """folder:PATH, read image by image (Keras' image_dataset_from_directory layout)."""

    path: Path
    image_size = FOLDER_DEFAULT_SIZE
    resize = "resize"
    channels = 3
    test_fraction = FOLDER_TEST_FRACTION

    @property
    def name(self) -> str:
        return f"folder:{self.path}"

    @property
    def cache_name(self) -> str:
        return f"folder-{self.path.name}"

    def key(self, options: dict) -> dict:
        return {**options, "source": "folder", "path": str(self.path), "files": readers.folder_signature(self.path)}

    def prepare(self, *, download: bool, progress: bool) -> None:
        pass  # already on this machine

    def location(self) -> str:
        return str(self.path)

    def subjects(self, keys) -> None:
        return None  # a user's files say nothing of who is in them

    def read(self, *, size, channels, resize, skip_bad, progress, max_pixels) -> readers.Raw:
        return readers.read_folder(self.path, size=size, channels=channels, resize=resize, skip_bad=skip_bad,
                                   progress=progress, max_pixels=max_pixels)

    def files(self):
        """(class names, [(path relative to the folder, label, official split)]): for streaming."""
        return readers.folder_layout(self.path)


@dataclass(frozen=True)
class H5Source:
    """h5:TRAIN.h5[,TEST.h5]: the course's files; images keep their own size unless asked."""

    train: Path
    test: Path | None
    image_size = None
    channels = None
    test_fraction = FOLDER_TEST_FRACTION
    resize = "resize"

    @property
    def name(self) -> str:
        return f"h5:{self.train}" + (f",{self.test}" if self.test else "")

    @property
    def cache_name(self) -> str:
        return f"h5-{self.train.stem}"

    def _files(self) -> list[Path]:
        return [p for p in (self.train, self.test) if p is not None]

    def key(self, options: dict) -> dict:
        return {**options, "source": "h5", "files": [[str(p), *_stat(p)] for p in self._files()]}

    def prepare(self, *, download: bool, progress: bool) -> None:
        pass

    def location(self) -> str:
        return ", ".join(map(str, self._files()))

    def subjects(self, keys) -> None:
        return None  # a user's files say nothing of who is in them

    def read(self, *, size, channels, resize, skip_bad, progress, max_pixels) -> readers.Raw:
        return readers.read_h5(self.train, self.test, size=size, channels=channels, resize=resize)  # arrays: no decoding


Source = ArchiveSource | FolderSource | H5Source


def resolve(name) -> Source:
    """A registered name, a `DatasetSpec`, `folder:PATH` or `h5:TRAIN.h5[,TEST.h5]`."""
    if isinstance(name, (ArchiveSource, FolderSource, H5Source)):
        return name
    if isinstance(name, DatasetSpec):
        return ArchiveSource(name)
    if not isinstance(name, str) or not name:
        raise UserError(f"A dataset name must be a non-empty string. Received: {name!r}")
    if name.startswith("folder:"):
        text = name[len("folder:"):]
        if not text.strip():  # Path("") is the current folder: never walk it unasked
            raise UserError("folder: needs the path of an image folder: give folder:PATH with one sub-folder "
                            "of images per class.")
        path = Path(text).expanduser()
        if not path.is_dir():
            raise UserError(
                f"The image folder {path} does not exist or is not a folder: give folder:PATH "
                "with one sub-folder of images per class."
            )
        return FolderSource(path.resolve())
    if name.startswith("h5:"):
        parts = [p for p in name[len("h5:"):].split(",") if p]
        if not 1 <= len(parts) <= 2:
            raise UserError(
                f"Cannot read {name!r}: write h5:TRAIN.h5 or h5:TRAIN.h5,TEST.h5 "
                "(for example h5:train_signs.h5,test_signs.h5)."
            )
        paths = [Path(p).expanduser() for p in parts]
        for path in paths:
            if not path.is_file():
                raise UserError(f"The HDF5 file {path} does not exist: check the path after h5:.")
        return H5Source(paths[0].resolve(), paths[1].resolve() if len(paths) == 2 else None)
    return ArchiveSource(dataset_info(name))


def _registered(name) -> DatasetSpec | None:
    spec = name.spec if isinstance(name, ArchiveSource) else name
    if isinstance(spec, str):
        try:
            spec = dataset_info(spec)
        except UserError:
            return None
    return spec if isinstance(spec, DatasetSpec) else None


def default_augmentations(name) -> tuple[str, ...]:
    """A registered dataset's default training augmentations (see its registry entry); none
    for a user's folder or files, whose content cnnzoo cannot know."""
    spec = _registered(name)
    return tuple(spec.augment) if spec else ()


def default_augment_schedule(name) -> tuple[float, float]:
    """(multiple of a recipe's epochs, of its peak learning rate) that a run keeping the
    dataset's default augmentations trains with (see its registry entry)."""
    spec = _registered(name)
    return tuple(spec.augment_schedule) if spec else (1.0, 1.0)

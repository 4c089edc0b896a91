"""`load`: a dataset name -> train / test (/ validation) arrays, through the cache."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnzoo.datasets import cache, fetch, readers, splits
from cnnzoo.datasets.images import channels_arg, image_size_arg, resize_arg
from cnnzoo.datasets.registry import DatasetSpec, FolderSource, H5Source, resolve
from cnnzoo.errors import UserError

FOLDER_DEFAULT_SIZE = (64, 64)  # a user's folder: the size HappyModel and ResNet50 take
FOLDER_TEST_FRACTION = 0.1


@dataclass(frozen=True)
class Split:
    """Images and labels of one split; `keys` are the files' paths (or pixel hashes)."""

    x: np.ndarray  # uint8 (N, H, W, C)
    y: np.ndarray  # int64 (N,), or float32 one-hot (N, K)
    keys: np.ndarray  # str (N,)

    def __len__(self) -> int:
        return len(self.x)

    @property
    def labels(self) -> np.ndarray:
        """int64 class indices, whether `y` is one-hot or not."""
        return self.y.argmax(axis=1).astype(np.int64) if self.y.ndim == 2 else self.y

    def class_counts(self, num_classes: int) -> list[int]:
        return np.bincount(self.labels, minlength=num_classes).tolist()


@dataclass(frozen=True)
class Dataset:
    name: str
    class_names: list[str]
    train: Split
    test: Split
    val: Split | None
    image_shape: tuple[int, int, int]
    preprocessing: dict  # record it with a model so predict prepares images the same way
    source: str  # the archive, folder or .h5 file(s) the images came from
    cache_path: Path
    skipped: list[str] = field(default_factory=list)  # "<file> <why>" of skipped bad files

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def splits(self) -> dict[str, Split]:
        named = {"train": self.train}
        if self.val is not None:
            named["val"] = self.val
        named["test"] = self.test
        return named

    def counts(self) -> dict[str, list[int]]:
        """Images per class in each split."""
        return {name: s.class_counts(self.num_classes) for name, s in self.splits().items()}


def load(
    name,
    image_size=None,
    channels=None,
    validation: float = 0.0,
    one_hot: bool = False,
    skip_bad: bool = False,
    seed: int = 0,
    *,
    resize: str = "resize",
    test_fraction: float | None = None,
    download: bool = True,
    progress: bool = True,
) -> Dataset:
    """Load a dataset as uint8 NHWC train / test (/ validation) arrays.

    `name`: a registered name (`list_datasets()`), `folder:PATH` (one sub-folder per
    class, or train/ and test/ each holding those), or `h5:TRAIN.h5[,TEST.h5]` (the
    course's files). `image_size` (int or (height, width)) and `channels` (1 or 3) default
    to the dataset's; `resize` is "resize" (stretch) or "pad" (centre on black, e.g. MNIST
    28x28 -> 32x32 for LeNet-5). `validation` is the fraction of the training part held
    out as `ds.val`; `test_fraction` overrides the held-out test fraction of sets without
    an official split (10%). Both are decided per file by a hash of its path salted with
    `seed`, so a file stays in its split whatever else is added or removed. `skip_bad`
    skips unreadable images (listed in `ds.skipped`) instead of failing. The decoded arrays
    are cached under $CNNZOO_HOME; archives come from $CNNZOO_DATA_MIRROR or the internet.
    """
    size = image_size_arg(image_size)
    channels = channels_arg(channels)
    resize = resize_arg(resize)
    _fraction(validation, "validation")
    if test_fraction is not None:
        _fraction(test_fraction, "test_fraction")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise UserError(f"seed must be an integer. Received: seed={seed!r}")
    source = resolve(name)
    options = {"format": cache.FORMAT, "resize": resize, "skip_bad": bool(skip_bad)}

    if isinstance(source, DatasetSpec):
        size, channels = size or source.image_size, channels or source.channels
        default_test = source.test_fraction
        archive = fetch.find_local(source)
        raw, path = _cached(source, archive, size, channels, options)
        if raw is None:
            archive = fetch.archive_path(source, download=download, progress=progress)
            raw, path = _cached(source, archive, size, channels, options)
        if raw is None:
            raw = readers.read_zip(source, archive, size=size, channels=channels, resize=resize,
                                   skip_bad=skip_bad, progress=progress)
            cache.save(path, _key(source, archive, size, channels, options), raw)
        display, where = source.name, str(archive)
    elif isinstance(source, FolderSource):
        size, channels = size or FOLDER_DEFAULT_SIZE, channels or 3
        default_test = FOLDER_TEST_FRACTION
        key = {**options, "source": "folder", "path": str(source.path),
               "files": readers.folder_signature(source.path), "size": list(size), "channels": channels}
        path = cache.cache_path(f"folder-{source.path.name}", key)
        raw = cache.load(path, key)
        if raw is None:
            raw = readers.read_folder(source.path, size=size, channels=channels, resize=resize,
                                      skip_bad=skip_bad, progress=progress)
            cache.save(path, key, raw)
        display, where = source.name, str(source.path)
    else:
        assert isinstance(source, H5Source)
        default_test = FOLDER_TEST_FRACTION
        files = [p for p in (source.train, source.test) if p is not None]
        key = {**options, "source": "h5", "files": [[str(p), *_stat(p)] for p in files],
               "size": list(size) if size else None, "channels": channels}
        path = cache.cache_path(f"h5-{source.train.stem}", key)
        raw = cache.load(path, key)
        if raw is None:
            raw = readers.read_h5(source.train, source.test, size=size, channels=channels, resize=resize)
            cache.save(path, key, raw)
        display, where = source.name, ", ".join(map(str, files))

    if raw.skipped:
        sys.stderr.write(f"cnnzoo: skipped {len(raw.skipped)} unreadable file(s) of {display}, "
                         f"e.g. {raw.skipped[0]}.\n")
    return _assemble(raw, display, where, path, test_fraction if test_fraction is not None else default_test,
                     validation, one_hot, seed, resize)


def _fraction(value, name: str) -> None:
    if not isinstance(value, (int, float, np.floating)) or isinstance(value, bool) or not 0 <= value < 1:
        raise UserError(f"{name} must be a fraction from 0 up to (not including) 1. Received: {name}={value!r}")


def _stat(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def _key(spec: DatasetSpec, archive: Path, size, channels, options) -> dict:
    # The archive is identified by name, size and mtime: a changed or replaced archive
    # (a fuller mirror, a fresh download) gets new arrays, without hashing it on every load.
    return {**options, "source": "zip", "dataset": spec.name, "pattern": spec.pattern,
            "classes": list(spec.classes), "archive": [archive.name, *_stat(archive)],
            "size": list(size), "channels": channels}


def _cached(spec, archive, size, channels, options):
    if archive is None:
        return None, None
    key = _key(spec, archive, size, channels, options)
    path = cache.cache_path(spec.name, key)
    return cache.load(path, key), path


def split_indices(keys, labels, official, test_fraction: float, validation: float, seed: int):
    """Indices of the (train, validation or None, test) files: the official split where
    the source has one, else a hash of each key; validation is held out of training."""
    if (official >= 0).any():
        is_test = official == 1
    else:
        is_test = splits.held_out(keys, labels, test_fraction or 0.0, splits.test_salt(seed))
    train_idx, test_idx = np.flatnonzero(~is_test), np.flatnonzero(is_test)
    val_idx = None
    if validation > 0:
        is_val = splits.held_out(keys[train_idx], labels[train_idx], validation, splits.validation_salt(seed))
        train_idx, val_idx = train_idx[~is_val], train_idx[is_val]
    return train_idx, val_idx, test_idx


def preprocessing_record(image_shape, resize: str, name: str, class_names) -> dict:
    """How the images were prepared; stored with a model so predict prepares its own alike."""
    h, w, c = image_shape
    return {
        "image_size": [int(h), int(w)],
        "channels": int(c),
        "scale": 1 / 255,
        "resize": resize,
        "resample": "bilinear",
        "dataset": name,
        "class_names": list(class_names),
    }


def _assemble(raw, name, where, path, test_fraction, validation, one_hot, seed, resize) -> Dataset:
    train_idx, val_idx, test_idx = split_indices(raw.keys, raw.y, raw.official, test_fraction, validation, seed)
    k = len(raw.class_names)

    def split(idx) -> Split:
        y = raw.y[idx]
        if one_hot:
            y = np.eye(k, dtype=np.float32)[y]
        return Split(raw.x[idx], y, raw.keys[idx])

    h, w, c = raw.x.shape[1:]
    preprocessing = preprocessing_record((h, w, c), resize, name, raw.class_names)
    return Dataset(
        name=name, class_names=list(raw.class_names), train=split(train_idx), test=split(test_idx),
        val=split(val_idx) if val_idx is not None else None, image_shape=(int(h), int(w), int(c)),
        preprocessing=preprocessing, source=where, cache_path=path, skipped=list(raw.skipped),
    )

"""`load`: a dataset name -> train / test (/ validation) splits, through the cache.

Every source (datasets/sources.py) goes the same way: its cached arrays when they match
what the source holds now, else read, decoded and cached. A streamed folder skips the
decoding: its splits hold `FileImages`, decoded batch by batch while training runs.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnzoo.datasets import cache, readers, splits
from cnnzoo.datasets.images import MAX_PIXELS, STREAM_HINT, FileImages, channels_arg, image_size_arg, resize_arg
from cnnzoo.datasets.registry import dataset_info, list_datasets
from cnnzoo.datasets.sources import FolderSource, Source, resolve
from cnnzoo.errors import UserError


@dataclass(frozen=True)
class Split:
    """Images and labels of one split; `keys` are the files' paths (or pixel hashes).

    `x` is a uint8 (N, H, W, C) array, or `FileImages` (the same, decoded on indexing)
    for a streamed folder."""

    x: np.ndarray | FileImages
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

    def take(self, index) -> "Split":
        """The images at `index` (positions or a boolean mask), decoded or not, as they are."""
        x = self.x.subset(index) if isinstance(self.x, FileImages) else self.x[index]
        return Split(x, self.y[index], self.keys[index])

    def in_memory(self, *, progress: bool = True) -> "Split":
        """This split with its images decoded into one array (a no-op when they are), in
        parallel as `load` decodes them."""
        if not isinstance(self.x, FileImages):
            return self
        images = self.x  # absolute paths: decode_all joins them to "/" unchanged
        decoded, keep, bad = readers.decode_all(
            "folder", "/", list(images.files), size=images.size, channels=images.channels, resize=images.resize,
            label="decoding the streamed images", progress=progress, skip_bad=True, max_pixels=images.max_pixels,
            where=lambda name: f"The file {name}",
        )
        if not keep.all():
            raise UserError(f"{bad[0]}: {STREAM_HINT}.")
        return Split(decoded, self.y, self.keys)

    def batches(self, batch_size: int, *, y=None, **options):
        """`ArrayBatches` of this split (datasets/batches.py); `y` replaces the labels (e.g. one
        target per model output)."""
        from cnnzoo.datasets.batches import ArrayBatches  # imports keras, which `load` does not need

        return ArrayBatches(self.x, self.y if y is None else y, batch_size, **options)


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
    cache_path: Path | None  # None for a streamed folder
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
    resize: str | None = None,
    test_fraction: float | None = None,
    download: bool = True,
    progress: bool = True,
    stream: bool = False,
    max_pixels: int = MAX_PIXELS,
    split_by: str = "file",
) -> Dataset:
    """Load a dataset as uint8 NHWC train / test (/ validation) arrays.

    `name`: a registered name (`list_datasets()`), `folder:PATH` (one sub-folder per
    class, or train/ and test/ each holding those), or `h5:TRAIN.h5[,TEST.h5]` (the
    course's files). `image_size` (int or (height, width)) and `channels` (1 or 3) default
    to the dataset's; `resize` is "resize" (stretch) or "pad" (centre on black), by default
    the dataset's own (MNIST pads its 28x28 digits to LeNet-5's 32x32, as the paper did).
    `validation` is the fraction of the training part held out as `ds.val`; `test_fraction`
    overrides the held-out test fraction of sets without an official split (10%). Both are
    decided per file by a hash of its path salted with `seed`, so a file stays in its split
    whatever else is added or removed. `skip_bad`
    skips unreadable images (listed in `ds.skipped`) instead of failing. The decoded arrays
    are cached under $CNNZOO_HOME; archives come from $CNNZOO_DATA_MIRROR or the internet.
    `stream=True` (folders only) lists the files instead, and the splits decode them as
    they are indexed (`FileImages`): the same splits and pixels, nothing decoded up front.
    An image of more than `max_pixels` (width x height) is refused before it is decoded.
    `split_by="subject"` keeps every subject (the person in the photos) on one side of every
    split, for sets that record subjects (sign-digits, signs): a test of other people's hands.
    """
    size = image_size_arg(image_size)
    channels = channels_arg(channels)
    resize = None if resize is None else resize_arg(resize)
    _fraction(validation, "validation")
    if test_fraction is not None:
        _fraction(test_fraction, "test_fraction")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise UserError(f"seed must be an integer. Received: seed={seed!r}")
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)) or max_pixels < 1:
        raise UserError(f"max_pixels must be a positive whole number of pixels. Received: max_pixels={max_pixels!r}")
    if split_by not in SPLIT_BY:
        raise UserError(f"split_by must be one of {', '.join(SPLIT_BY)}. Received: split_by={split_by!r}")
    source = resolve(name)
    if split_by == "subject" and source.subjects(()) is None:
        raise UserError(f"{source.name} does not record who is in each image, so it cannot be split by subject: "
                        "split it by file (split_by='file').")
    size, channels = size or source.image_size, channels or source.channels
    resize = resize or source.resize
    if stream:
        raw, path = _listed(source, size, channels, resize, max_pixels), None
    else:
        raw, path = _read_through_cache(source, size, channels, resize, skip_bad, download, progress, max_pixels)
    if raw.skipped:
        sys.stderr.write(f"cnnzoo: skipped {len(raw.skipped)} unreadable file(s) of {source.name}, "
                         f"e.g. {raw.skipped[0]}.\n")
    fraction = test_fraction if test_fraction is not None else source.test_fraction
    groups = raw.keys if split_by == "file" else np.array(source.subjects(list(raw.keys)), dtype=str)
    return _assemble(raw, groups, source.name, source.location(), path, fraction, validation, one_hot, seed, resize)


def _read_through_cache(source: Source, size, channels, resize, skip_bad, download, progress, max_pixels):
    """(Raw, cache file): the cached arrays while they match the source, else read and cached."""
    options = {"format": cache.FORMAT, "resize": resize, "skip_bad": bool(skip_bad),
               "size": list(size) if size else None, "channels": channels}
    if max_pixels != MAX_PIXELS:  # which images are refused (or skipped) depends on it
        options["max_pixels"] = int(max_pixels)
    key = source.key(options)  # None: the source is not on this machine yet
    path = cache.cache_path(source.cache_name, key) if key is not None else None
    raw = cache.load(path, key) if path is not None else None
    if raw is None:
        source.prepare(download=download, progress=progress)  # check the archive, or fetch it
        key = source.key(options)
        path = cache.cache_path(source.cache_name, key)
        raw = source.read(size=size, channels=channels, resize=resize, skip_bad=skip_bad, progress=progress,
                          max_pixels=max_pixels)
        cache.save(path, key, raw)
    return raw, path


def _listed(source: Source, size, channels, resize, max_pixels) -> readers.Raw:
    """A folder's files as a Raw whose images are `FileImages`: nothing is decoded."""
    if not isinstance(source, FolderSource):
        raise UserError(f"Only image folders can be streamed, and {source.name} is not one: give "
                        f"folder:PATH, or load {source.name} as cached arrays.")
    class_names, entries = source.files()
    keys = np.array([relative for relative, _, _ in entries], dtype=str)
    files = [str(source.path / relative) for relative in keys]
    return readers.Raw(
        x=FileImages(files, size, channels, resize, max_pixels), y=np.array([label for _, label, _ in entries], np.int64),
        keys=keys, official=np.array([split for *_, split in entries], np.int8), class_names=class_names,
    )


SPLIT_BY = ("file", "subject")


def _fraction(value, name: str) -> None:
    if not isinstance(value, (int, float, np.floating)) or isinstance(value, bool) or not 0 <= value < 1:
        raise UserError(f"{name} must be a fraction from 0 up to (not including) 1. Received: {name}={value!r}")


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
    spec = dataset_info(name) if name in list_datasets() else None
    return {
        "image_size": [int(h), int(w)],
        "channels": int(c),
        "scale": 1 / 255,
        "resize": resize,
        "resample": "bilinear",
        "dataset": name,
        "class_names": list(class_names),
        **({"faces": spec.faces.record()} if spec is not None and spec.faces is not None else {}),
    }


def _assemble(raw, groups, name, where, path, test_fraction, validation, one_hot, seed, resize) -> Dataset:
    """The splits of `raw`, each image placed by a hash of its group (its file, or its subject)."""
    if not len(raw.y):
        raise UserError(f"{name} holds no images: give a dataset with images of at least two classes.")
    if len(raw.class_names) < 2:  # every label would be right: a one-class model scores 100%
        raise UserError(f"{name} has only one class ({', '.join(map(str, raw.class_names))}): a classifier needs "
                        "at least two; add the images of the other classes (a sub-folder each).")
    train_idx, val_idx, test_idx = split_indices(groups, raw.y, raw.official, test_fraction, validation, seed)
    k = len(raw.class_names)
    y = np.eye(k, dtype=np.float32)[raw.y] if one_hot else raw.y
    every = Split(raw.x, y, raw.keys)
    h, w, c = raw.x.shape[1:]
    preprocessing = preprocessing_record((h, w, c), resize, name, raw.class_names)
    return Dataset(
        name=name, class_names=list(raw.class_names), train=every.take(train_idx), test=every.take(test_idx),
        val=every.take(val_idx) if val_idx is not None else None, image_shape=(int(h), int(w), int(c)),
        preprocessing=preprocessing, source=where, cache_path=path, skipped=list(raw.skipped),
    )

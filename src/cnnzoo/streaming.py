"""Streaming an image folder to `fit`: each batch is decoded from its files while the
previous step trains, instead of decoding the whole folder into memory first.

`folder_files` lists a `folder:PATH` dataset's files with the splits `load` gives them (the
same hash of each file's path). `FileBatches` is `ArrayBatches` over those files: the same
order per (seed, epoch), the same full batches and padding, and uint8 NHWC batches decoded
by the function that decodes the cached arrays, so a streamed image is pixel-identical to
the cached one. Keras runs `__getitem__` in a pool of `workers` threads (its
OrderedEnqueuer, which it only starts for workers > 1) and keeps up to `max_queue_size`
batches ready; Pillow releases the GIL while it decodes and resizes, so the threads work
while the training step runs. Call `build_before_fit(model, batches)` before `fit`, or
Keras serves a few batches decoded for another epoch's order (see there).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnzoo.datasets.core import (FOLDER_DEFAULT_SIZE, FOLDER_TEST_FRACTION, Split, _fraction,
                                  preprocessing_record, split_indices)
from cnnzoo.datasets.images import channels_arg, image_size_arg, resize_arg, try_decode
from cnnzoo.datasets.readers import cpu_count, decode_all, folder_layout
from cnnzoo.datasets.registry import FolderSource, resolve
from cnnzoo.errors import UserError
from cnnzoo.pipeline import ArrayBatches

# Decoding threads. Keras uses its thread pool only for workers > 1 (workers=1 decodes in
# the training loop's own thread); past a few threads the training step, not decoding,
# is what a CPU waits for, and every thread competes with it for the cores.
MAX_WORKERS = 4
QUEUE_PER_WORKER = 2  # batches kept ready per thread: enough to ride out a slow file
STREAM_HINT = "replace or delete it (a streamed folder cannot skip unreadable files)"


def default_workers() -> int:
    """Decoding threads `FileBatches` asks Keras for: one per core, at most MAX_WORKERS."""
    return min(MAX_WORKERS, cpu_count())


def default_queue_size(workers: int) -> int:
    return QUEUE_PER_WORKER * max(1, workers)


def decode_file(path, size: tuple[int, int], channels: int, resize: str) -> np.ndarray:
    """One image file -> uint8 (H, W, C), exactly as `load` decodes it; a `UserError`
    naming the file when it cannot be read or decoded."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:  # as the cached reader reports an unreadable file
        why = f"cannot be read ({error})"
    else:
        array, why = try_decode(data, size, channels, resize)
        if array is not None:
            return array
    raise UserError(f"The file {path} {why}: {STREAM_HINT}.")


class FileImages:
    """Stands in for a uint8 (N, H, W, C) array: indexing it with positions decodes those files."""

    def __init__(self, files, size: tuple[int, int], channels: int, resize: str):
        self.files = np.asarray(files, dtype=str)
        self.size, self.channels, self.resize = size, channels, resize
        self.shape = (len(self.files), *size, channels)
        self.dtype = np.dtype(np.uint8)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index) -> np.ndarray:
        index = np.asarray(index)
        if index.ndim == 0:
            return decode_file(self.files[index], self.size, self.channels, self.resize)
        out = np.empty((len(index), *self.size, self.channels), np.uint8)
        for i, position in enumerate(index):
            out[i] = decode_file(self.files[position], self.size, self.channels, self.resize)
        return out


class FileBatches(ArrayBatches):
    """`ArrayBatches` whose images are decoded from `files` per batch, in Keras' worker threads.

    `y` are int labels (or the targets `_targets` makes of them); `image_size` is
    (height, width), `channels` 1 or 3, `resize` "resize" or "pad", as for `load`.
    `workers` (default `default_workers()`) and `max_queue_size` (default two batches per
    worker) are passed to Keras; workers=1 decodes in the training thread.
    """

    def __init__(self, files, y, batch_size: int, *, image_size, channels: int = 3, resize: str = "resize",
                 shuffle: bool, seed: int = 0, epoch: int = 0, full_batches: bool = False, pad_to: int = 1,
                 workers: int | None = None, max_queue_size: int | None = None):
        size = image_size_arg(image_size)
        if size is None:
            raise UserError("FileBatches needs an image_size: every image of a batch must have the same size.")
        images = FileImages(files, size, channels_arg(channels) or 3, resize_arg(resize))
        super().__init__(images, y, batch_size, shuffle=shuffle, seed=seed, epoch=epoch,
                         full_batches=full_batches, pad_to=pad_to)
        workers = default_workers() if workers is None else int(workers)
        if workers < 1:
            raise UserError(f"workers must be at least 1. Received: workers={workers!r}")
        self.workers = workers  # Keras' PyDataset settings, read by its data adapter
        self.max_queue_size = default_queue_size(workers) if max_queue_size is None else int(max_queue_size)
        self.use_multiprocessing = False  # threads: the batches need no pickling, Pillow frees the GIL


def build_before_fit(model, batches: FileBatches) -> None:
    """Build `model`'s compiled loss and metrics from one batch (a `test_on_batch`; no
    weight changes), so that `fit` need not take a batch from `batches` to build them.

    Call it before `fit` on a model not yet trained in this session. Otherwise `fit` (Keras
    3.15) draws one batch to build them and then calls `on_epoch_end`; with workers > 1 its
    enqueuer has by then decoded more batches of that order, and it keeps them and serves
    them first in the next epoch (keras-team/keras#20123 keeps drained batches for the next
    run; #20394: the built-on batch is never trained on), so every epoch would mix the tail
    of one epoch's order with the head of the next: some images twice, others not at all.
    """
    model.test_on_batch(*batches[0])


@dataclass(frozen=True)
class FileSplit:
    """The files of one split, as `Split` but with paths where `Split` has pixels."""

    files: np.ndarray  # str (N,): absolute paths
    y: np.ndarray  # int64 (N,)
    keys: np.ndarray  # str (N,): paths relative to the folder, what the split hash reads

    def __len__(self) -> int:
        return len(self.files)

    @property
    def labels(self) -> np.ndarray:
        return self.y

    def class_counts(self, num_classes: int) -> list[int]:
        return np.bincount(self.y, minlength=num_classes).tolist()


@dataclass(frozen=True)
class FolderFiles:
    """A `folder:PATH` dataset as files: what `load` returns, less the decoding."""

    name: str
    root: Path
    class_names: list[str]
    train: FileSplit
    test: FileSplit | Split  # a Split once `decode`d for evaluation
    val: FileSplit | None
    image_shape: tuple[int, int, int]
    resize: str
    preprocessing: dict  # as `load`'s, so a model trained on the stream predicts alike

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def batches(self, split: FileSplit, batch_size: int, *, y=None, **options) -> FileBatches:
        """`FileBatches` of `split` at this dataset's image size, channels and resize mode;
        `y` replaces the split's labels (e.g. one target per model output)."""
        height, width, channels = self.image_shape
        return FileBatches(split.files, split.y if y is None else y, batch_size, image_size=(height, width),
                           channels=channels, resize=self.resize, **options)

    def decode(self, split: FileSplit, *, progress: bool = True) -> Split:
        """Every image of `split` as a `Split` of uint8 arrays, decoded in parallel like `load`'s."""
        height, width, channels = self.image_shape
        images, keep, bad = decode_all(
            "folder", self.root, list(split.keys), size=(height, width), channels=channels, resize=self.resize,
            label=f"decoding {self.root.name}", progress=progress, skip_bad=True,
            where=lambda relative: f"The file {self.root / relative}",
        )
        if not keep.all():
            raise UserError(f"{bad[0]}: {STREAM_HINT}.")
        return Split(images, split.y, split.keys)


def folder_files(name, image_size=None, channels=None, validation: float = 0.0, seed: int = 0, *,
                 resize: str = "resize", test_fraction: float | None = None) -> FolderFiles:
    """List a `folder:PATH` dataset's files and split them exactly as `load` would.

    Arguments mean what they mean for `cnnzoo.datasets.load`; nothing is decoded, so an
    unreadable file is found only when a batch holding it is decoded.
    """
    size = image_size_arg(image_size) or FOLDER_DEFAULT_SIZE
    channels = channels_arg(channels) or 3
    resize = resize_arg(resize)
    _fraction(validation, "validation")
    if test_fraction is not None:
        _fraction(test_fraction, "test_fraction")
    source = resolve(name)
    if not isinstance(source, FolderSource):
        raise UserError(f"Only image folders can be streamed, and {source.name} is not one: give "
                        f"folder:PATH, or load {source.name} as cached arrays.")
    root = source.path
    class_names, entries = folder_layout(root)
    keys = np.array([relative for relative, _, _ in entries], dtype=str)
    labels = np.array([label for _, label, _ in entries], np.int64)
    official = np.array([split for *_, split in entries], np.int8)
    fraction = FOLDER_TEST_FRACTION if test_fraction is None else test_fraction
    train_idx, val_idx, test_idx = split_indices(keys, labels, official, fraction, validation, seed)
    files = np.array([str(root / relative) for relative in keys], dtype=str)

    def split(idx) -> FileSplit:
        return FileSplit(files[idx], labels[idx], keys[idx])

    shape = (size[0], size[1], channels)
    return FolderFiles(
        name=source.name, root=root, class_names=class_names, train=split(train_idx), test=split(test_idx),
        val=split(val_idx) if val_idx is not None else None, image_shape=shape, resize=resize,
        preprocessing=preprocessing_record(shape, resize, source.name, class_names),
    )

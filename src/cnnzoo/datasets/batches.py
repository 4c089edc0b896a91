"""Feeding a split to `fit` as batches (a keras.utils.PyDataset), from memory or from files.

Why not plain arrays: each epoch's order is drawn from (seed, epoch), so a run resumed at
epoch k sees exactly the batches an uninterrupted run would; and data-parallel training
needs every batch to split evenly over the devices (training drops the remainder of its
shuffled order, validation pads its last batch with zero-weight copies).

A split's images are a uint8 (N, H, W, C) array, or `FileImages`: the same, decoded from
the files on indexing (streaming a folder instead of decoding it all first). Batches of
files are decoded in Keras' worker threads (its OrderedEnqueuer, which it only starts for
workers > 1), which keep up to `max_queue_size` batches ready; Pillow releases the GIL while
it decodes and resizes, so the threads work while the training step runs. A streamed image
is pixel-identical to the cached one: both are decoded by `images.try_decode`.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from cnnzoo.datasets.images import FileImages
from cnnzoo.datasets.readers import cpu_count
from cnnzoo.errors import UserError

# Decoding threads. Keras uses its thread pool only for workers > 1 (workers=1 decodes in
# the training loop's own thread); past a few threads the training step, not decoding,
# is what a CPU waits for, and every thread competes with it for the cores.
MAX_WORKERS = 4
QUEUE_PER_WORKER = 2  # batches kept ready per thread: enough to ride out a slow file


def default_workers() -> int:
    """Decoding threads for batches of files: one per core, at most MAX_WORKERS."""
    return min(MAX_WORKERS, cpu_count())


class ArrayBatches(keras.utils.PyDataset):
    """Batches of `x` (an array, or `FileImages`) and `y` (an array or a tuple of arrays, one per
    model output), in the order of (seed, epoch). Batches of files are decoded in `workers`
    threads (default `default_workers()`), keeping `max_queue_size` ready (default two per
    thread); arrays are indexed in the training thread."""

    def __init__(self, x, y, batch_size: int, *, shuffle: bool, seed: int = 0, epoch: int = 0,
                 full_batches: bool = False, pad_to: int = 1, part: tuple[int, int] = (0, 1),
                 workers: int | None = None, max_queue_size: int | None = None):
        super().__init__()
        self.x, self.y = x, y
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.full_batches = full_batches  # drop the last partial batch (training)
        self.pad_to = pad_to  # pad the last batch to a multiple of this, weight 0 (evaluation)
        # (index, count): this process's share of every global batch, rows in process order, which
        # is how Keras assembles a global batch from the processes of a job (make_array_from_process_local_data).
        self.part = part
        self.epoch = epoch
        self.order = self._order()
        if isinstance(x, FileImages):  # Keras' PyDataset settings, read by its data adapter
            workers = default_workers() if workers is None else int(workers)
            if workers < 1:
                raise UserError(f"workers must be at least 1. Received: workers={workers!r}")
            self.workers = workers
            self.max_queue_size = QUEUE_PER_WORKER * workers if max_queue_size is None else int(max_queue_size)
            self.use_multiprocessing = False  # threads: the batches need no pickling, Pillow frees the GIL

    def _order(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(len(self.x))
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.x))

    def __len__(self) -> int:
        batches = len(self.x) / self.batch_size
        return max(1, math.floor(batches)) if self.full_batches else math.ceil(batches)

    def __getitem__(self, index: int):
        chosen = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        short = -len(chosen) % self.pad_to
        weights = np.concatenate([np.ones(len(chosen), "float32"), np.zeros(short, "float32")])
        chosen = np.concatenate([chosen, np.zeros(short, dtype=chosen.dtype)])
        share, count = self.part
        mine = slice(share * len(chosen) // count, (share + 1) * len(chosen) // count)
        chosen, weights = chosen[mine], weights[mine]
        x, y = self.x[chosen], _take(self.y, chosen)
        # One structure for every batch of a split: Keras' JAX data parallelism lays every batch
        # out like the first one (JAXEpochIterator), so a padded last batch must not be the only
        # one that carries weights.
        return (x, y) if self.pad_to == 1 else (x, y, weights)

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.order = self._order()


def _take(y, index):
    """Index the targets, which are an array or a tuple of arrays (one per model output)."""
    return tuple(t[index] for t in y) if isinstance(y, tuple) else y[index]


def build_before_fit(model, batches: ArrayBatches) -> None:
    """Build `model`'s compiled loss and metrics from one batch (a `test_on_batch`; no
    weight changes), so that `fit` need not take a batch from `batches` to build them.

    Needed for batches decoded in threads (workers > 1), on a model not yet trained in this
    session. Otherwise `fit` (Keras 3.15) draws one batch to build them and then calls
    `on_epoch_end`; its enqueuer has by then decoded more batches of that order, and it keeps
    them and serves them first in the next epoch (keras-team/keras#20123 keeps drained batches
    for the next run; #20394: the built-on batch is never trained on), so every epoch would mix
    the tail of one epoch's order with the head of the next: some images twice, others not at all.
    """
    if getattr(batches, "workers", 1) > 1:
        model.test_on_batch(*batches[0])

"""Feeding in-memory uint8 arrays to `fit` as batches (a keras.utils.PyDataset).

Why not plain arrays: each epoch's order is drawn from (seed, epoch), so a run resumed at
epoch k sees exactly the batches an uninterrupted run would; and data-parallel training
needs every batch to split evenly over the devices (training drops the remainder of its
shuffled order, validation pads its last batch with zero-weight copies).
"""

from __future__ import annotations

import math

import keras
import numpy as np


class ArrayBatches(keras.utils.PyDataset):
    def __init__(self, x, y, batch_size: int, *, shuffle: bool, seed: int = 0, epoch: int = 0,
                 full_batches: bool = False, pad_to: int = 1):
        super().__init__()
        self.x, self.y = x, y
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.full_batches = full_batches  # drop the last partial batch (training)
        self.pad_to = pad_to  # pad the last batch to a multiple of this, weight 0 (evaluation)
        self.epoch = epoch
        self.order = self._order()

    def _order(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(len(self.x))
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.x))

    def __len__(self) -> int:
        batches = len(self.x) / self.batch_size
        return max(1, math.floor(batches)) if self.full_batches else math.ceil(batches)

    def __getitem__(self, index: int):
        chosen = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        x, y = self.x[chosen], _take(self.y, chosen)
        short = -len(chosen) % self.pad_to
        if not short:
            return x, y
        weights = np.concatenate([np.ones(len(chosen), "float32"), np.zeros(short, "float32")])
        pad = np.zeros(short, dtype=chosen.dtype)
        return np.concatenate([x, self.x[pad]]), _take(self.y, np.concatenate([chosen, pad])), weights

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.order = self._order()


def _take(y, index):
    """Index the targets, which are an array or a tuple of arrays (one per model output)."""
    return tuple(t[index] for t in y) if isinstance(y, tuple) else y[index]

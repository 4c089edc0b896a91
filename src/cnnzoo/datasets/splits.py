"""Stable splits: a file's split is decided by a hash of its key (path), not by a shuffle.

Each key is hashed with a salt (the split's purpose and the seed) to a number u in [0, 1);
the file is held out when u < fraction. Adding or removing other files never moves a
file from one split to another (unlike `train_test_split` or Keras' `validation_split`,
which depend on the order and the total). One safeguard keeps every class in every split:
if a class with at least two files would have none held out (or all held out), its file
with the smallest (or largest) u is moved, and a class of one file stays in training.
That can only happen to tiny classes.
"""

from __future__ import annotations

import hashlib

import numpy as np


def unit_hash(keys, salt: str) -> np.ndarray:
    """float64 in [0, 1) per key: the first 8 bytes of blake2b(salt + key)."""
    prefix = salt.encode() + b"\0"
    values = [
        int.from_bytes(hashlib.blake2b(prefix + str(key).encode(), digest_size=8).digest(), "big")
        for key in keys
    ]
    return np.array(values, dtype=np.uint64).astype(np.float64) / 2.0**64


def held_out(keys, labels, fraction: float, salt: str) -> np.ndarray:
    """Boolean mask of the files that go to the held-out split (test or validation)."""
    labels = np.asarray(labels)
    mask = np.zeros(len(labels), bool)
    if fraction <= 0 or len(labels) == 0:
        return mask
    u = unit_hash(keys, salt)
    mask = u < fraction
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if len(members) < 2:  # a lone file is worth more in training than held out
            mask[members] = False
            continue
        if not mask[members].any():
            mask[members[np.argmin(u[members])]] = True
        elif mask[members].all():
            mask[members[np.argmax(u[members])]] = False
    return mask


def test_salt(seed: int) -> str:
    return f"cnnzoo-test-{seed}"


def validation_salt(seed: int) -> str:
    return f"cnnzoo-validation-{seed}"


def consecutive_subjects(numbers, positions, gap: int = 5) -> list[str]:
    """Subjects of photos numbered consecutively per subject: photo `number` at `position` in
    its subject's series starts the series at number - position; series starts within `gap`
    of each other (a retake, a missing photo) are one subject, named by its first number."""
    starts = [n - p for n, p in zip(numbers, positions)]
    subject, previous, name = {}, None, None
    for start in sorted(set(starts)):
        if previous is None or start - previous > gap:
            name = f"subject-{start}"
        subject[start] = name
        previous = start
    return [subject[s] for s in starts]

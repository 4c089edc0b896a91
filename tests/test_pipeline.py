"""ArrayBatches: the order a resumed run sees, full batches, zero-weight padding."""

import numpy as np

from cnnzoo.datasets.batches import ArrayBatches

x = np.arange(10, dtype="uint8").reshape(10, 1, 1, 1)
y = np.arange(10)


def epoch_labels(batches):
    return np.concatenate([batches[i][1] for i in range(len(batches))])


def test_a_resumed_run_sees_the_batches_of_an_uninterrupted_one():
    uninterrupted = ArrayBatches(x, y, 4, shuffle=True, seed=7)
    for _ in range(3):
        uninterrupted.on_epoch_end()
    resumed = ArrayBatches(x, y, 4, shuffle=True, seed=7, epoch=3)
    np.testing.assert_array_equal(epoch_labels(resumed), epoch_labels(uninterrupted))


def test_each_epoch_is_a_new_permutation_of_every_image():
    batches = ArrayBatches(x, y, 4, shuffle=True, seed=7)
    first = epoch_labels(batches)
    batches.on_epoch_end()
    second = epoch_labels(batches)
    assert sorted(first) == sorted(second) == list(range(10))
    assert list(first) != list(second)
    assert len(batches) == 3 and len(batches[2][0]) == 2


def test_full_batches_drop_the_shuffled_remainder():
    batches = ArrayBatches(x, y, 4, shuffle=True, full_batches=True)
    assert len(batches) == 2
    assert all(len(batches[i][0]) == 4 for i in range(2))


def test_padding_adds_zero_weight_copies_to_split_evenly():
    batches = ArrayBatches(x, y, 4, shuffle=False, pad_to=4)
    xb, yb, weights = batches[2]
    assert xb.shape == (4, 1, 1, 1)
    np.testing.assert_array_equal(yb[:2], [8, 9])
    np.testing.assert_array_equal(weights, [1, 1, 0, 0])
    # Every batch has the padded one's structure (Keras' JAX data parallelism lays out every
    # batch like the first); without padding there are no weights at all.
    np.testing.assert_array_equal(batches[0][2], [1, 1, 1, 1])
    assert len(ArrayBatches(x, y, 4, shuffle=False)[2]) == 2


def test_multi_output_targets_are_indexed_together():
    batches = ArrayBatches(x, (y, y * 10), 5, shuffle=True, seed=1)
    _, (main, aux) = batches[0]
    np.testing.assert_array_equal(aux, main * 10)

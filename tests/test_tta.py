"""Multi-crop views: exactly the crops the lecture describes, in a documented order."""

import numpy as np
import pytest

from cnnzoo.errors import UserError
from cnnzoo.inference import tta

pytestmark = pytest.mark.jax


def test_crop_side_is_seven_eighths():
    assert tta.crop_side(64) == 56 and tta.crop_side(224) == 196 and tta.crop_side(32) == 28


def test_ten_crops_are_the_corners_the_centre_and_their_mirrors():
    image = np.arange(2 * 8 * 8 * 3).reshape(2, 8, 8, 3)  # every pixel distinct
    crops = tta.ten_crops(image, 6)
    expected = [image[:, 0:6, 0:6], image[:, 0:6, 2:8], image[:, 2:8, 0:6], image[:, 2:8, 2:8], image[:, 1:7, 1:7]]
    expected += [e[:, :, ::-1] for e in expected]
    assert len(crops) == 10
    for got, want in zip(crops, expected):
        np.testing.assert_array_equal(got, want)


def test_views_keep_the_input_size_and_dtype():
    images = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype="uint8")
    flip = tta.views(images, "flip")
    np.testing.assert_array_equal(flip[1], images[:, :, ::-1])
    crops = tta.views(images, "10crop")
    assert len(crops) == 10 and all(c.shape == images.shape and c.dtype == np.uint8 for c in crops)
    # the centre crop, resized back, is a magnified middle of the image
    centre = tta.views(np.pad(np.full((1, 56, 56, 1), 200, "uint8"), ((0, 0), (4, 4), (4, 4), (0, 0))), "10crop")[4]
    assert np.all(centre == 200)
    assert tta.views(images, "none")[0] is images


def test_average_over_views():
    images = np.zeros((4, 8, 8, 1), "uint8")
    calls = []

    def predict(view):
        calls.append(view.shape)
        return np.full((len(view), 2), len(calls), dtype="float64")

    np.testing.assert_allclose(tta.average_probabilities(predict, images, "10crop"), 5.5)
    assert calls == [(4, 8, 8, 1)] * 10


def test_unknown_mode_and_oversized_crop():
    with pytest.raises(UserError, match="Unknown test-time augmentation 'five': use one of none, flip, 10crop."):
        tta.views(np.zeros((1, 8, 8, 1)), "five")
    with pytest.raises(UserError, match="A 9-pixel crop does not fit 8x8 images."):
        tta.ten_crops(np.zeros((1, 8, 8, 1)), 9)

"""The robustness suite (cnnzoo.analysis.robustness): each shift changes the images as its table
says, at each severity, and leaves the labels alone; the suite's mean, and the calibration error
reported beside it."""

import itertools

import numpy as np
import pytest
from PIL import Image, ImageFilter

from cnnzoo.analysis import robustness
from cnnzoo.analysis.metrics import calibration
from cnnzoo.datasets.splits import consecutive_subjects

PAPER = (236, 234, 228)  # a light, unsaturated background, like the signs' wall
SKIN = (214, 150, 118)  # a saturated subject


def shift(name):
    return next(s for s in robustness.SHIFTS if s.name == name)


def apply(name, images, severity, seed=0):
    return robustness.shifted(images, shift(name), severity, seed)


def grey_batch(value=128, n=6, size=64):
    return np.full((n, size, size, 3), value, np.uint8)


def textured_batch(n=6, size=64, seed=0):
    """Photos of a sort: a smooth gradient with some texture, mid-range so that nothing clips."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(70, 180, size, dtype=np.float32)
    base = (ramp[None, :, None, None] + ramp[None, None, :, None]) / 2
    return np.clip(base + rng.normal(0, 20, (n, size, size, 3)), 0, 255).astype(np.uint8)


def subject_on_paper(n=6, size=64, half=10):
    """A square of skin in the middle of light paper."""
    images = np.broadcast_to(np.array(PAPER, np.uint8), (n, size, size, 3)).copy()
    middle = size // 2
    images[:, middle - half:middle + half, middle - half:middle + half] = SKIN
    return images


def subject_box(image):
    """(top, left, height, width) of the saturated pixels."""
    rows, cols = np.nonzero(np.abs(image.astype(int) - PAPER).sum(axis=-1) > 60)
    return rows.min(), cols.min(), rows.max() - rows.min() + 1, cols.max() - cols.min() + 1


def bar_angle(image):
    """The orientation in degrees (0 = horizontal) of the dark pixels' principal axis."""
    rows, cols = np.nonzero(image[..., 0] < 100)
    cov = np.cov(np.stack([cols, -rows]).astype(float))
    values, vectors = np.linalg.eigh(cov)
    x, y = vectors[:, np.argmax(values)]
    return abs((np.degrees(np.arctan2(y, x)) + 90) % 180 - 90)


@pytest.mark.parametrize("name", [s.name for s in robustness.SHIFTS])
def test_every_shift_keeps_the_images_shape_and_type_changes_them_and_repeats_with_its_seed(name):
    images = subject_on_paper() if name == "background" else textured_batch()
    for severity in shift(name).severities:
        out = apply(name, images, severity)
        assert out.shape == images.shape and out.dtype == np.uint8
        assert not np.array_equal(out, images), f"{name} at severity {severity} left the images as they were"
        assert np.array_equal(out, apply(name, images, severity)), "the same seed gives other images"
    assert shift(name).severities == ((1,) if name == "mirror" else (1, 2, 3))


def test_every_shift_of_grey_images_works_on_them():
    grey = textured_batch()[..., :1]  # LeNet-5 reads signs so: the suite at the end of its run
    for s in robustness.shifts_for(channels=1, plain_background=True):
        for severity in s.severities:
            out = robustness.shifted(grey, s, severity)
            assert out.shape == grey.shape and out.dtype == np.uint8, s.name


def test_which_shifts_apply_to_which_images():
    def names(**kwargs):
        return [s.name for s in robustness.shifts_for(**kwargs)]

    every = ["rotate", "scale", "mirror", "brightness", "contrast", "temperature", "blur", "jpeg", "noise",
             "background"]
    assert names(channels=3, plain_background=True) == every
    assert names(channels=3, plain_background=False) == every[:-1]
    assert names(channels=1, plain_background=True) == [n for n in every if n not in ("temperature", "background")]
    assert robustness.plain_background("signs") and not robustness.plain_background("smiles")


@pytest.mark.parametrize("severity, limit", [(1, 10), (2, 20), (3, 35)])
def test_rotation_turns_each_image_by_half_its_limit_to_its_limit(severity, limit):
    images = np.full((60, 64, 64, 3), 240, np.uint8)
    images[:, 30:34, 8:56] = 20  # a horizontal bar
    assert bar_angle(images[0]) < 0.5
    angles = np.array([bar_angle(image) for image in apply("rotate", images, severity)])
    assert (angles >= limit / 2 - 1.5).all() and (angles <= limit + 1.5).all(), angles
    assert angles.max() > limit * 0.92 and angles.min() < limit / 2 * 1.15, "the whole range is drawn"
    assert (apply("rotate", images, severity)[:, 0, 0] == 240).all(), "the corners are filled with the background"


@pytest.mark.parametrize("severity, low, high", [(1, 0.85, 1.05), (2, 0.7, 1.1), (3, 0.6, 1.2)])
def test_scale_resizes_the_subject_within_its_range_and_places_it_anywhere(severity, low, high):
    images = subject_on_paper(n=40, half=20)  # 40 pixels across: its size is read to a pixel
    out = apply("scale", images, severity)
    boxes = np.array([subject_box(image) for image in out])
    sides = boxes[:, 2:] / 40
    assert (sides >= low - 0.04).all() and (sides <= high + 0.04).all(), sides
    assert sides.min() < low + 0.05 and sides.max() > high - 0.05, "the whole range is drawn"
    assert len({(top, left) for top, left, *_ in boxes}) >= 6, "the subject stays in one place"
    assert (out[:, 0, 0] == PAPER).all(), "the frame is filled with the photo's own background"


def test_mirror_is_the_other_hand():
    images = textured_batch()
    assert np.array_equal(apply("mirror", images, 1), images[:, :, ::-1])


@pytest.mark.parametrize("severity, delta", [(1, 0.1), (2, 0.2), (3, 0.3)])
def test_brightness_adds_its_amount_up_or_down(severity, delta):
    out = apply("brightness", grey_batch(128, n=20), severity).astype(float)
    change = out.mean(axis=(1, 2, 3)) - 128
    assert np.allclose(np.abs(change), delta * 255, atol=0.6)
    assert (out == out[:, :1, :1]).all(), "one change for the whole image"
    assert (change > 0).any() and (change < 0).any(), "both lighter and darker"


@pytest.mark.parametrize("severity, factor", [(1, 0.6), (2, 0.4), (3, 0.25)])
def test_contrast_narrows_the_spread_around_each_images_mean(severity, factor):
    images = textured_batch()
    out = apply("contrast", images, severity).astype(float)
    before, after = images.astype(float).std(axis=(1, 2, 3)), out.std(axis=(1, 2, 3))
    assert np.allclose(after / before, factor, atol=0.01)
    assert np.allclose(out.mean(axis=(1, 2, 3)), images.astype(float).mean(axis=(1, 2, 3)), atol=0.5)


@pytest.mark.parametrize("severity, amount", [(1, 0.1), (2, 0.2), (3, 0.3)])
def test_colour_temperature_trades_red_against_blue_and_keeps_green(severity, amount):
    out = apply("temperature", grey_batch(128, n=20), severity).astype(float)[:, 0, 0]
    red, green, blue = out.T
    assert (green == 128).all()
    assert np.allclose(np.abs(red - 128), amount * 128, atol=0.6) and np.allclose(red - 128, 128 - blue, atol=1)
    assert (red > 128).any() and (red < 128).any(), "both warmer and cooler"


def test_blur_softens_more_at_each_severity():
    checks = np.indices((64, 64)).sum(axis=0) % 2 * 160 + 40
    images = np.repeat(checks[None, ..., None], 3, axis=-1).astype(np.uint8)[:2]
    spread = [images.std()] + [apply("blur", images, s).astype(float).std() for s in (1, 2, 3)]
    assert all(a > b for a, b in itertools.pairwise(spread)), spread
    for size in (64, 32):  # Gaussian, sigma 0.5, 1, 1.5 pixels at 64x64, scaled with the image
        crop = np.ascontiguousarray(images[:, :size, :size])
        for severity, sigma in ((1, 0.5), (2, 1.0), (3, 1.5)):
            expected = np.asarray(Image.fromarray(crop[0]).filter(ImageFilter.GaussianBlur(sigma * size / 64)))
            assert np.array_equal(apply("blur", crop, severity)[0], expected), (size, severity)


def test_jpeg_loses_more_at_each_severity():
    images = textured_batch()
    error = [np.abs(apply("jpeg", images, s).astype(float) - images).mean() for s in (1, 2, 3)]
    assert 0 < error[0] < error[1] < error[2], error


@pytest.mark.parametrize("severity, sd", [(1, 0.04), (2, 0.08), (3, 0.12)])
def test_noise_has_its_standard_deviation(severity, sd):
    out = apply("noise", grey_batch(128, n=8), severity).astype(float)
    assert (out - 128).std() == pytest.approx(sd * 255, rel=0.03)
    assert abs((out - 128).mean()) < 0.3


def test_the_background_is_replaced_around_the_subject_and_the_subject_kept():
    rng = np.random.default_rng(0)
    noise = rng.integers(-6, 7, (6, 64, 64, 3))  # paper and skin are never quite flat
    images = np.clip(subject_on_paper(half=14).astype(int) + noise, 0, 255).astype(np.uint8)
    subject = np.zeros((64, 64), bool)
    subject[18:46, 18:46] = True
    mask = robustness.background_mask(images[0])
    assert mask[~subject].mean() > 0.98 and not mask[20:44, 20:44].any()
    for severity in (1, 2, 3):
        out = apply("background", images, severity)
        assert np.array_equal(out[:, 20:44, 20:44], images[:, 20:44, 20:44]), "the subject changed"
        changed = np.abs(out.astype(int) - images).sum(axis=-1) > 30
        assert changed[:, ~subject].mean() > 0.7, severity
    flat = apply("background", images, 1)[0][mask]
    assert (flat == flat[0]).all(), "severity 1 is a flat colour"
    busy = [apply("background", images, s)[0][mask].std(axis=0).mean() for s in (2, 3)]
    assert busy[1] > busy[0] > 0


def test_an_image_without_a_subject_keeps_its_background():
    paper = grey_batch(230)
    assert not robustness.background_mask(paper[0]).any()
    assert np.array_equal(apply("background", paper, 3), paper)


def test_every_shift_keeps_each_image_in_its_place():
    """The suite scores the i-th shifted image against the i-th label: each output must still be
    the picture it came from (closest to it of all the inputs), never another one's."""
    rng = np.random.default_rng(1)
    coarse = rng.uniform(40, 215, (8, 4, 4, 3)).astype(np.uint8)  # eight different smooth pictures
    images = np.stack([np.asarray(Image.fromarray(c).resize((64, 64), Image.Resampling.BICUBIC)) for c in coarse])
    flat = images.reshape(len(images), -1).astype(float)
    flat -= flat.mean(axis=1, keepdims=True)
    for s in robustness.SHIFTS:
        for severity in s.severities:
            out = robustness.shifted(images, s, severity).reshape(len(images), -1).astype(float)
            out -= out.mean(axis=1, keepdims=True)
            if s.name == "mirror":
                out = out.reshape(images.shape)[:, :, ::-1].reshape(len(images), -1)
            closest = np.argmax(out @ flat.T / np.linalg.norm(flat, axis=1), axis=1)
            assert closest.tolist() == list(range(len(images))), (s.name, severity)


def test_the_suite_scores_each_shift_against_the_images_own_labels():
    images, labels = textured_batch(n=10), np.arange(10) % 3

    def oracle(batch):  # knows the i-th image's label, whatever was done to its pixels
        return np.eye(3)[labels][: len(batch)]

    result = robustness.suite(oracle, images, labels, plain_background=False)
    assert result["clean"]["accuracy"] == 1.0 and result["mean"] == 1.0
    assert all(r["accuracy"] == 1.0 for by in result["shifts"].values() for r in by.values())
    wrong = robustness.suite(lambda batch: np.eye(3)[(labels + 1) % 3], images, labels, plain_background=False)
    assert wrong["mean"] == 0.0, "the suite can fail"


def test_the_suites_mean_weighs_each_shift_once_whatever_its_severities():
    images = np.concatenate([textured_batch(n=6) // 2, textured_batch(n=6) // 2 + 120])  # means 62 and 182
    labels = np.repeat([0, 1], 6)

    def brightness_reader(batch):  # class 0 for dark images: brightness, contrast... move some over the line
        dark = batch.mean(axis=(1, 2, 3)) < 122
        return np.stack([dark, ~dark], axis=1).astype(float)

    result = robustness.suite(brightness_reader, images, labels, plain_background=False)
    assert result["clean"]["accuracy"] == 1.0
    per_shift = [np.mean([r["accuracy"] for r in by.values()]) for by in result["shifts"].values()]
    assert result["mean"] == pytest.approx(np.mean(per_shift))
    assert len(result["shifts"]["mirror"]) == 1 and len(set(per_shift)) > 1


def test_the_report_records_what_metrics_json_holds_and_limits_the_images_by_their_keys():
    images = np.stack([np.full((16, 16, 3), 10 * i, np.uint8) for i in range(10)])  # image i is all 10*i
    labels, keys = np.arange(10) % 2, np.array([f"img{i}.png" for i in range(10)])

    def chosen(order):
        seen = []

        def predict(batch):
            seen.append(batch)
            return np.full((len(batch), 2), 0.5)

        scores, curve = robustness.report(predict, images[order], labels[order], plain_background=False,
                                          keys=keys[order], limit=4)
        return scores, curve, sorted(int(v) // 10 for v in seen[0][:, 0, 0, 0])  # the clean batch comes first

    scores, curve, first = chosen(np.arange(10))
    assert len(first) == 4 and chosen(np.arange(10)[::-1])[2] == first, "the same images, whatever their order"
    assert chosen(np.roll(np.arange(10), 3))[2] == first
    assert set(scores) == {"mean", "clean", "images", "shifts", "ece"} and scores["images"] == 4
    assert scores["clean"] == np.mean(labels[first] == 0)  # a constant answer: class 0, right on the 0s
    assert all(a == scores["clean"] for by in scores["shifts"].values() for a in by.values())
    assert list(scores["shifts"]["rotate"]) == ["1", "2", "3"] and list(scores["shifts"]["mirror"]) == ["1"]
    assert sum(b["count"] for b in curve["bins"]) == 4 * sum(len(v) for v in scores["shifts"].values())


def test_calibration_error_is_the_gap_between_confidence_and_accuracy():
    labels = np.zeros(10, int)
    honest = np.tile([0.9, 0.1], (10, 1))
    honest_labels = labels.copy()
    honest_labels[0] = 1  # 90% sure and 90% right
    assert calibration(honest_labels, honest)["ece"] == pytest.approx(0.0, abs=1e-9)
    sure = np.tile([0.99, 0.01], (10, 1))
    half = np.array([0, 1] * 5)  # 99% sure and half right
    assert calibration(half, sure)["ece"] == pytest.approx(0.49)
    bins = calibration(half, sure)["bins"]
    assert len(bins) == 15 and bins[-1]["count"] == 10 and bins[-1]["accuracy"] == 0.5


def test_consecutive_photos_of_one_student_are_one_subject():
    # Student A photographs 0-5 from IMG_100 on; B from 106, with a retake after its 2 (109 is a
    # second 2), so B's 3-5 are 110-112 and their series seems to start at 107: one subject still.
    numbers = [100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111, 112, 130, 131]
    positions = [0, 1, 2, 3, 4, 5, 0, 1, 2, 2, 3, 4, 5, 0, 1]
    subjects = consecutive_subjects(numbers, positions)
    assert subjects[:6] == ["subject-100"] * 6
    assert set(subjects[6:13]) == {"subject-106"}
    assert subjects[13:] == ["subject-130"] * 2

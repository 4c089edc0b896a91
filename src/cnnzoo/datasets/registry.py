"""The dataset registry: name -> where its archive comes from and how to read it.

A registered set is an upstream archive (GitHub's zip of a branch, top folder
`<repo>-<branch>/`) plus a regular expression that turns a member's path, relative to
that top folder, into a class (and, for sets with an official split, a split). The CLI
table, the docs and the parametrised tests all come from here.

A user's own data (`folder:PATH`, `h5:TRAIN.h5[,TEST.h5]`) is not registered: see
datasets/sources.py.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field

from cnnzoo.errors import UserError


@dataclass(frozen=True)
class FaceCrop:
    """How a set's images frame a face, relative to the box an OpenCV Haar cascade (`detector`, a
    file opencv-python-headless ships) draws around it: the crop's side is `scale` box sides, its
    centre `dx`, `dy` box sides from
    the box's centre (its aspect is the images'); `grey`: the faces were grey photos, whatever
    channels a model reads them with. A model trained on such crops is shown faces cut from a
    photo the same way (cnnzoo.inference.faces)."""

    scale: float
    dx: float = 0.0
    dy: float = 0.0
    grey: bool = False
    detector: str = "haarcascade_frontalface_alt2.xml"

    def record(self) -> dict:
        return {"detector": self.detector, "scale": self.scale, "dx": self.dx, "dy": self.dy, "grey": self.grey}


@dataclass(frozen=True)
class DatasetSpec:
    """Facts about a registered dataset and the layout of its upstream archive."""

    name: str
    description: str  # one line
    url: str  # the upstream archive
    filename: str  # its name in the offline mirror and in the cache
    pattern: str  # regex on a member path below the top folder; groups `cls` [, `split`]
    classes: tuple[str, ...]  # class names; the label of a class is its index here
    image_size: tuple[int, int]  # default (height, width) after decoding
    channels: int  # default channels: 1 (grayscale) or 3 (RGB)
    licence: str
    citation: str
    test_fraction: float | None = 0.1  # None: the archive has an official train/test split
    folder_to_class: dict[str, str] = field(default_factory=dict)  # `cls` group -> class name
    # Upstream size and sha256 of the archive. GitHub builds branch archives on demand, and
    # only a partial mirror is at hand here, so neither is pinned: None skips that check
    # (the structure check always runs).
    size: int | None = None
    sha256: str | None = None
    other_filenames: tuple[str, ...] = ()  # other names accepted in the mirror
    # Training augmentations that suit the images (cnnzoo.models.augment names), used unless
    # the run names its own: faces are left-right symmetric, so mirroring is free data, and a
    # mirrored sign is the other hand's, which a user may hold up; a mirrored 2 is no digit.
    # Small shifts suit all of them (on smiles they cut HappyModel's overfitting). Chosen by
    # the robustness suite's mean on the validation images (experiments/robustness.py).
    augment: tuple[str, ...] = ()
    # (multiple of the recipe's epochs, of its peak learning rate) for runs that keep `augment`:
    # strong augmentation makes the training images harder to fit, so they take longer.
    augment_schedule: tuple[float, float] = (1.0, 1.0)
    # The photographs show one subject on a plain, light background (the robustness suite can
    # replace it: cnnzoo.inference.robustness).
    plain_background: bool = False
    # Who is in each photo, for subject-disjoint splits: a regex on the member path with groups
    # `number` (the file's number) and `position` (its place in the subject's series); a
    # subject's photos are numbered consecutively (see splits.consecutive_subjects). None:
    # subjects unknown.
    subject_pattern: str | None = None
    # The images are face crops: predict and serve find faces and frame them so (None: not faces).
    faces: FaceCrop | None = None
    # How an image is fitted to another input size unless the caller says: "resize" (stretch) or
    # "pad" (keep its size and aspect, centred on black: MNIST's 28x28 digits in LeNet-5's 32x32
    # field, as in the paper).
    resize: str = "resize"

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (*self.image_size, self.channels)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def class_names(self) -> list[str]:
        return list(self.classes)

    def subjects(self, members) -> list[str] | None:
        """The subject of each member path, or None when this set does not record subjects."""
        if self.subject_pattern is None:
            return None
        from cnnzoo.datasets.splits import consecutive_subjects

        matches = [_compiled(self.subject_pattern).search(member) for member in members]
        if any(m is None for m in matches):
            missing = next(member for member, m in zip(members, matches) if m is None)
            raise UserError(f"The file {missing} of {self.name} is not named as its subjects' photos are: "
                            "split it by file instead (split_by='file').")
        return consecutive_subjects([int(m["number"]) for m in matches], [int(m["position"]) for m in matches])

    def classify(self, member: str) -> tuple[int, int] | None:
        """(label, official split: -1 none, 0 train, 1 test) of a member path, or None."""
        match = _compiled(self.pattern).fullmatch(member)
        if match is None:
            return None
        folder = match.group("cls")
        name = self.folder_to_class.get(folder, folder)
        if name not in self.classes:
            return None
        split = match.groupdict().get("split")
        return self.classes.index(name), (-1 if split is None else SPLIT_CODES[split])


SPLIT_CODES = {"train": 0, "test": 1}

_PATTERNS: dict[str, re.Pattern] = {}


def _compiled(pattern: str) -> re.Pattern:
    if pattern not in _PATTERNS:
        _PATTERNS[pattern] = re.compile(pattern, re.IGNORECASE)
    return _PATTERNS[pattern]


_REGISTRY: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Add `spec` to the registry; a name can be registered once."""
    if spec.name in _REGISTRY:
        raise ValueError(f"A dataset named {spec.name!r} is already registered.")
    if ":" in spec.name:
        raise ValueError(f"Dataset names cannot contain ':'. Received: name={spec.name!r}")
    _REGISTRY[spec.name] = spec
    return spec


def list_datasets(pattern: str = "*") -> list[str]:
    """Registered dataset names matching a shell-style pattern, in registration order."""
    return [n for n in _REGISTRY if fnmatch.fnmatch(n, pattern)]


USER_SOURCES = "folder:PATH (one sub-folder per class) or h5:TRAIN.h5[,TEST.h5]"


def dataset_info(name: str) -> DatasetSpec:
    """The registry entry of a registered dataset (classes, default shape, licence, URL)."""
    try:
        return _REGISTRY[name]
    except KeyError:
        hint = ""
        if name.startswith(("folder:", "h5:")):
            hint = " (dataset_info describes registered sets; load a folder: or h5: source to see its classes)"
        raise UserError(
            f"Unknown dataset {name!r}{hint}: choose one of {', '.join(list_datasets())}, "
            f"or your own data as {USER_SOURCES}."
        ) from None


_DIGITS = tuple(str(d) for d in range(10))
_SIGNS_URL = "https://github.com/ardamavi/Sign-Language-Digits-Dataset/archive/refs/heads/master.zip"
_SIGNS_CITATION = (
    "Mavi, A. (2020), A New Dataset and Proposed Convolutional Neural Network Architecture "
    "for Classification of American Sign Language Digits, arXiv:2011.08927"
)

# The Sign Language Digits archive, read as two datasets: SIGNS (0-5) and all ten digits.
_SIGN_LANGUAGE = dict(
    url=_SIGNS_URL,
    filename="sign-language-digits.zip",
    other_filenames=("Sign-Language-Digits-Dataset-master.zip",),
    pattern=r"Dataset/(?P<cls>[0-9])/[^/]+",
    # The other hand, distance, angle, light and camera: on resnet20 the robustness suite's mean on
    # the validation images rose from 68% (shift alone) to 87% (docs/RESULTS.md, robustness).
    augment=("mirror", "shift", "zoom", "tilt", "light", "blur", "noise"),
    # ResNet-50 fitted 60% of these training images in its 30-epoch recipe (79% clean test
    # accuracy); 60 epochs at its peak rate diverged at epoch 16; 60 at half of it, with its residual
    # branches zero-initialised, gave 99.1% clean and 92.1% on the suite over 3 seeds (75.0% with
    # shift alone).
    augment_schedule=(2.0, 0.5),
    plain_background=True,
    # Each of the 218 students photographed the ten digits in order: IMG_1118 is a 0, IMG_1119
    # the same student's 1 ... (a retake shifts the numbers after it by one).
    subject_pattern=r"Dataset/(?P<position>[0-9])/IMG_(?P<number>[0-9]+)\.JPG",
    image_size=(64, 64),
    channels=3,
    licence="Apache-2.0",
    citation=_SIGNS_CITATION,
)

register_dataset(DatasetSpec(
    name="signs",
    description="hand signs of the digits 0-5 (Sign Language Digits), the course's SIGNS analogue",
    classes=_DIGITS[:6],
    **_SIGN_LANGUAGE,
))

register_dataset(DatasetSpec(
    name="sign-digits",
    description="hand signs of all ten digits (Sign Language Digits); native size 100x100",
    classes=_DIGITS,
    **_SIGN_LANGUAGE,
))

register_dataset(DatasetSpec(
    name="sign-digits-6-9",
    description="hand signs of the digits 6-9 only: no image in common with signs, for pretraining",
    classes=_DIGITS[6:],
    **_SIGN_LANGUAGE,
))

register_dataset(DatasetSpec(
    name="smiles",
    description="faces smiling (1) or not (0) from SMILEsmileD, the course's Happy House analogue",
    url="https://github.com/hromi/SMILEsmileD/archive/refs/heads/master.zip",
    filename="smiles.zip",
    other_filenames=("SMILEsmileD-master.zip",),
    pattern=r"SMILEs/(?P<cls>negatives|positives)/(?:negatives|positives)7/[^/]+",
    classes=("not smiling", "smiling"),
    folder_to_class={"negatives": "not smiling", "positives": "smiling"},
    # lowres: a face 16-30 pixels across in a door camera's frame is enlarged to 64x64 (docs/SERVE.md)
    augment=("mirror", "shift", "lowres"),
    image_size=(64, 64),
    channels=1,
    # Measured on 200 training faces pasted into frames as benchmarks/door_faces.py pastes test faces:
    # the cascade's boxes on them (181 found) are 1/0.79 of the crop's side (quartiles 0.76-0.83), and
    # the crop's centre is 0.09 box sides below theirs.
    faces=FaceCrop(scale=0.79, dy=0.09, grey=True),
    licence="open source project (cite the repository)",
    citation="SMILEsmileD, https://github.com/hromi/SMILEsmileD (faces from Labeled Faces in the Wild)",
))

register_dataset(DatasetSpec(
    name="mnist",
    description="handwritten digits 0-9 with the official 60k/10k train/test split",
    url="https://github.com/rasbt/mnist-pngs/archive/refs/heads/main.zip",
    filename="mnist.zip",
    other_filenames=("mnist-pngs-main.zip",),
    pattern=r"(?P<split>train|test)/(?P<cls>[0-9])/[^/]+",
    classes=_DIGITS,
    augment=("shift",),
    resize="pad",
    image_size=(28, 28),
    channels=1,
    test_fraction=None,
    licence="MIT (mnist-pngs); MNIST by LeCun, Cortes and Burges",
    citation="LeCun, Y., Cortes, C., Burges, C. J. C., The MNIST database of handwritten digits",
))

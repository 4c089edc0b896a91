"""Real image datasets as uint8 NumPy arrays, with stable splits and an on-disk cache.

    from cnnzoo.datasets import load
    ds = load("signs")                 # ds.train.x: uint8 (N, 64, 64, 3), ds.train.y: int64
    ds = load("mnist", image_size=32, resize="pad", validation=0.1, one_hot=True)
    ds = load("folder:~/photos")       # one sub-folder per class
    ds = load("h5:train_signs.h5,test_signs.h5")   # the course's files, unchanged

Registered sets come from their upstream archives: first from the offline mirror folder
$CNNZOO_DATA_MIRROR, else downloaded once into $CNNZOO_HOME (default ~/.cache/cnnzoo).
See docs/DATA.md.
"""

from cnnzoo.datasets.core import Dataset, Split, load
from cnnzoo.datasets.images import read_image
from cnnzoo.datasets.registry import DatasetSpec, dataset_info, list_datasets, register_dataset
from cnnzoo.datasets.sources import default_augment_schedule, default_augmentations

__all__ = [
    "Dataset", "DatasetSpec", "Split", "dataset_info", "default_augment_schedule", "default_augmentations",
    "list_datasets", "load", "read_image", "register_dataset", "sample_grid",
]


def sample_grid(*args, **kwargs):
    """Draw a labelled grid of samples, one row per class (see `cnnzoo.datasets.show`)."""
    from cnnzoo.datasets.show import sample_grid as draw

    return draw(*args, **kwargs)

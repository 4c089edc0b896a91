"""Published weights in zoo networks: keras.applications, torchvision and timm checkpoints.

`pairs.PAIRS` lists what converts into what; `convert(path, arch)` gives a standalone model
(uint8 pixels in, the weights' own preprocessing inside); `load_weights(model, path, arch=...)`
fills a zoo network built by `get_model` (what `get_model(name, weights=FILE)` and
`cnnzoo train --init FILE` use). Reading needs no torchvision or timm: a checkpoint is tensors
(safetensors, `torch.load(weights_only=True)` or h5py). Importing this package imports no
framework.
"""

from cnnzoo.models.weights.convert import convert, convert_file, load_weights
from cnnzoo.models.weights.pairs import PAIRS, SOURCES, Pair, list_pairs
from cnnzoo.models.weights.preprocessing import ImagePreprocessing, input_convention
from cnnzoo.models.weights.readers import read_checkpoint

__all__ = ["PAIRS", "SOURCES", "ImagePreprocessing", "Pair", "convert", "convert_file", "input_convention",
           "list_pairs", "load_weights", "read_checkpoint"]

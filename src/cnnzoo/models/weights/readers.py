"""Reading published checkpoints as plain tensors, without running anything in them.

- `.safetensors` (timm, Hugging Face): the safetensors library, into NumPy; no torch needed.
- `.pth` / `.pt` / `.bin` (torchvision, timm): `torch.load(weights_only=True)`, which unpickles
  only tensors and plain containers; a pickle that would call anything else is refused.
  Memory-mapped where the file allows, so reading adds little beyond the file's pages.
- `.h5` (keras.applications, Keras 2 layout): h5py, layer groups named in `layer_names`.

Every reader returns `{key: array}`: PyTorch's state-dict keys as they are
(`layer1.0.conv1.weight`), Keras' as `layer/weight` (`conv2_block1_1_conv/kernel`).
Errors a user can cause (a truncated file, the wrong kind of file) are one sentence.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from cnnzoo.errors import UserError

TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
SAFETENSORS_SUFFIXES = (".safetensors",)
KERAS_SUFFIXES = (".h5", ".hdf5")
# Where training scripts nest the weights in a checkpoint (timm's train.py, Lightning, DDP).
NESTED = ("state_dict", "model", "state_dict_ema", "model_state_dict")


def kind_of(path: Path) -> str:
    """'torch', 'safetensors' or 'keras', from the file name; a UserError for anything else."""
    name = path.name.lower()
    for kind, suffixes in (("torch", TORCH_SUFFIXES), ("safetensors", SAFETENSORS_SUFFIXES),
                           ("keras", KERAS_SUFFIXES)):
        if name.endswith(suffixes):
            return kind
    raise UserError(
        f"Cannot read weights from {path.name}: expected a PyTorch file ({', '.join(TORCH_SUFFIXES)}), "
        f"a .safetensors file or a Keras .h5 file."
    )


def read_checkpoint(path) -> dict[str, np.ndarray]:
    """Every tensor in the checkpoint at `path`, by key (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"Weights file {path} does not exist.")
    kind = kind_of(path)
    if kind == "keras":
        return {f"{layer}/{name}": array for layer, weights in read_keras_h5(path).items()
                for name, array in weights}
    if kind == "safetensors":
        return _read_safetensors(path)
    return _read_torch(path)


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    try:
        from safetensors import SafetensorError
        from safetensors.numpy import load_file
    except ImportError:
        raise UserError(
            f"Reading {path.name} needs the safetensors package: pip install safetensors "
            "(or cnnzoo's weights extra)."
        ) from None
    try:
        return load_file(path)
    except SafetensorError as error:
        raise UserError(f"{path.name} is truncated or not a safetensors file ({error}).") from None
    except (TypeError, ValueError) as error:  # a dtype NumPy lacks (bfloat16): read through torch
        if "bfloat16" not in str(error) and "dtype" not in str(error):
            raise
        from safetensors.torch import load_file as load_torch

        return {key: tensor.float().numpy() for key, tensor in load_torch(path).items()}


def _read_torch(path: Path) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError:
        raise UserError(f"Reading {path.name} needs PyTorch (pip install torch==2.13.0).") from None
    import pickle

    try:
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as error:  # files from before torch 1.6's zip format cannot be mapped
            if "mmap" not in str(error):
                raise
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"GLOBAL ([\w.]+)", str(error))
        what = f"it calls {found.group(1)}" if found else "it holds more than tensors"
        raise UserError(
            f"{path.name} is a pickle that would run code when loaded ({what}), so cnnzoo refuses it: "
            "a checkpoint must hold tensors only."
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"{path.name} is truncated or not a PyTorch checkpoint ({reason}).") from None
    return _tensors(loaded, path, torch)


def _tensors(loaded, path: Path, torch) -> dict[str, np.ndarray]:
    """The state dict inside what torch.load returned, as NumPy arrays (no copy for float32)."""
    if isinstance(loaded, dict) and not any(isinstance(v, torch.Tensor) for v in loaded.values()):
        for key in NESTED:
            if isinstance(loaded.get(key), dict):
                loaded = loaded[key]
                break
    if not isinstance(loaded, dict):
        raise UserError(f"{path.name} holds a {type(loaded).__name__}, not a state dict of tensors.")
    prefix = "module." if loaded and all(k.startswith("module.") for k in loaded) else ""  # DataParallel
    arrays = {}
    for key, value in loaded.items():
        if not isinstance(value, torch.Tensor):
            raise UserError(f"{path.name} holds {key} = {type(value).__name__}, not a tensor: it is not a state dict.")
        if value.dtype in (torch.float16, torch.bfloat16):
            value = value.float()
        arrays[key[len(prefix):]] = value.numpy()
    return arrays


def _decoded(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_keras_h5(path: Path) -> dict[str, list[tuple[str, np.ndarray]]]:
    """layer name -> [(weight name, array)] from a Keras 2 style .h5 file, full model or
    weights only (keras.applications' files), in the file's order. Weight names lose their
    layer prefix and `:0` (`conv1_conv/kernel:0` -> `kernel`)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            group = f["model_weights"] if "layer_names" not in f.attrs and "model_weights" in f else f
            if "layer_names" not in group.attrs:
                raise UserError(
                    f"{path} is not a Keras .h5 weights file (no layer_names): use a run folder, a "
                    ".keras model, or a Keras 2 style .h5 file such as keras.applications' weights."
                )
            weights = {}
            for name in group.attrs["layer_names"]:
                layer = group[_decoded(name)]
                names = [_decoded(n) for n in layer.attrs["weight_names"]]
                weights[_decoded(name)] = [(n.split("/")[-1].split(":")[0], np.asarray(layer[n])) for n in names]
            return weights
    except (OSError, KeyError) as error:
        raise UserError(f"{path} is truncated or not a readable HDF5 file ({error}).") from None

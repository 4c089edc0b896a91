"""Published weights asked for by name (`--init torchvision:resnet50`, `timm:resnet50.a1_in1k`):
fetched once, with the source library's own download API, into $CNNZOO_HOME/weights.

Only where the user has the internet and names a checkpoint this way; a file already in the
cache is used as it is. Tests and CI never download: they replace the download function. The
file is then converted like any local file (cnnzoo.models.weights.convert), so nothing in it
runs either way.
"""

from __future__ import annotations

import re
from pathlib import Path

from cnnzoo import _io
from cnnzoo.errors import UserError

NAMED = re.compile(r"^(torchvision|timm):([\w.]+)$")


def is_named(spec) -> bool:
    return isinstance(spec, str) and bool(NAMED.match(spec))


def cache_folder(source: str) -> Path:
    folder = _io.home() / "weights" / source
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _download(url: str, path: Path) -> None:
    """torch.hub's downloader (what torchvision's weights use), written atomically."""
    import torch

    with _io.atomic_path(path) as tmp:
        torch.hub.download_url_to_file(url, str(tmp), progress=True)


def fetch(spec: str) -> tuple[Path, str]:
    """(local file, zoo architecture) for `source:name`; downloads into the cache if needed."""
    found = NAMED.match(spec)
    if not found:
        raise UserError(f"{spec!r} is not a named checkpoint: write torchvision:NAME or timm:NAME.TAG.")
    source, name = found.groups()
    if source == "torchvision":
        from cnnzoo.backends.peers import import_torchvision

        torchvision = import_torchvision()
        model, _, tag = name.partition(".")
        try:
            weights = torchvision.models.get_model_weights(model)
        except ValueError:
            raise UserError(f"torchvision has no model named {model!r}.") from None
        try:
            chosen = weights[tag] if tag else weights.DEFAULT
        except KeyError:
            raise UserError(f"torchvision's {model} has no weights {tag!r}: choose one of "
                            f"{', '.join(w.name for w in weights)}.") from None
        path = cache_folder(source) / Path(chosen.url).name
        if not path.is_file():
            _download(chosen.url, path)
        return path, f"{model}_tv"
    model = name.split(".")[0]
    import huggingface_hub

    path = Path(huggingface_hub.hf_hub_download(f"timm/{name}", "model.safetensors", cache_dir=cache_folder(source)))
    return path, f"{model}_tv"

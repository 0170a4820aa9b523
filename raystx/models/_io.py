"""Small file helpers for the sentence-transformers on-disk format: JSON configs and safetensors weights.

Weights are always written as ``model.safetensors``. Reading also accepts a legacy ``pytorch_model.bin``,
which is loaded with ``torch.load(weights_only=True)`` so that no pickled code can run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

WEIGHTS_NAME = "model.safetensors"
LEGACY_WEIGHTS_NAME = "pytorch_model.bin"


def read_json(path: str | os.PathLike) -> dict[str, Any] | list[Any] | None:
    """Return the parsed JSON at ``path``, or ``None`` when the file does not exist."""
    path = Path(path)
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_json(path: str | os.PathLike, data: Any, indent: int = 2, sort_keys: bool = False) -> None:
    """Write ``data`` as UTF-8 JSON to ``path`` (parent directories are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=indent, sort_keys=sort_keys)
        f.write("\n")


def save_state_dict(module: torch.nn.Module, directory: str | os.PathLike) -> Path:
    """Write ``module.state_dict()`` to ``directory/model.safetensors`` and return the file path."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    path = directory / WEIGHTS_NAME
    save_file(tensors, str(path), metadata={"format": "pt"})
    return path


def load_state_dict(directory: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read the weights stored in ``directory`` (safetensors first, then a legacy ``pytorch_model.bin``)."""
    directory = Path(directory)
    st_path = directory / WEIGHTS_NAME
    if st_path.is_file():
        from safetensors.torch import load_file

        return load_file(str(st_path))
    bin_path = directory / LEGACY_WEIGHTS_NAME
    if bin_path.is_file():
        return torch.load(str(bin_path), map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"No {WEIGHTS_NAME} or {LEGACY_WEIGHTS_NAME} found in {str(directory)!r}")

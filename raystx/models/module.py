"""Base class of every raystx model module (Transformer, Pooling, Dense, ...).

A module is a ``torch.nn.Module`` whose ``forward`` takes the feature dict and returns it with new keys.
Each subclass declares:

- ``config_keys``: the constructor arguments written to its ``config.json`` (``config_file_name``);
- ``st_class_ref``: the sentence-transformers 6.x class path written to ``modules.json``, so that
  ``sentence_transformers.SentenceTransformer`` can load the saved directory without raystx installed;
- ``save_in_root``: whether, as the first module, its files go into the model directory itself.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

from torch import nn

from raystx.models._io import read_json, write_json


class ModelModule(nn.Module):
    """Common save/load plumbing; subclasses implement ``forward`` and, if they hold weights, ``save``/``load``."""

    config_keys: ClassVar[list[str]] = []
    config_file_name: ClassVar[str] = "config.json"
    st_class_ref: ClassVar[str] = ""
    save_in_root: ClassVar[bool] = False

    def get_config_dict(self) -> dict[str, Any]:
        """The JSON-serialisable constructor arguments of this module."""
        return {key: getattr(self, key) for key in self.config_keys}

    def save_config(self, output_path: str | os.PathLike) -> None:
        write_json(Path(output_path) / self.config_file_name, self.get_config_dict(), indent=4)

    def save(self, output_path: str | os.PathLike) -> None:
        """Write this module into ``output_path`` (a directory). Default: only its config."""
        self.save_config(output_path)

    @classmethod
    def load_config(cls, input_path: str | os.PathLike) -> dict[str, Any]:
        """The stored config dict of a module directory (empty if it has none)."""
        config = read_json(Path(input_path) / cls.config_file_name)
        return dict(config) if isinstance(config, dict) else {}

    @classmethod
    def load(cls, input_path: str | os.PathLike, **kwargs: Any) -> ModelModule:
        """Rebuild the module from ``input_path``; extra loader options in ``kwargs`` are ignored by default."""
        config = cls.load_config(input_path)
        return cls(**{k: v for k, v in config.items() if k in cls.config_keys})

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.get_config_dict().items())


class WeightsModule(ModelModule):
    """A module whose files are its config plus ``model.safetensors`` (its ``state_dict``).

    ``config_key_renames`` maps old config keys (older sentence-transformers releases) to current ones.
    """

    config_key_renames: ClassVar[dict[str, str]] = {}

    def save(self, output_path: str | os.PathLike) -> None:
        from raystx.models._io import save_state_dict

        self.save_config(output_path)
        save_state_dict(self, output_path)

    @classmethod
    def load_config(cls, input_path: str | os.PathLike) -> dict[str, Any]:
        config = super().load_config(input_path)
        return {cls.config_key_renames.get(k, k): v for k, v in config.items()}

    @classmethod
    def load(cls, input_path: str | os.PathLike, **kwargs: Any) -> ModelModule:
        from raystx.models._io import load_state_dict

        config = cls.load_config(input_path)
        module = cls(**{k: v for k, v in config.items() if k in cls.config_keys})
        module.load_state_dict(load_state_dict(input_path))
        return module

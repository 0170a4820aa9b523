"""``PeftAdapterMixin``: sentence-transformers' adapter methods on raystx's SentenceTransformer.

Each method acts on the Hugging Face model of the first Transformer module (``transformers_model``) and is a thin
call into ``raystx.models.adapters``, which holds the logic and documents the semantics. They need the ``peft``
package (``pip install 'raystx[peft]'``).
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from raystx.models import adapters


class PeftAdapterMixin:
    """Add, load, switch, enable/disable and inspect PEFT adapters (LoRA, ...), as in sentence-transformers."""

    @property
    def transformers_model(self) -> nn.Module | None:
        """The Hugging Face model of the first Transformer module (None when the model has none)."""
        try:
            return adapters.adapter_host(self)  # type: ignore[arg-type]
        except ValueError:
            return None

    def has_peft_compatible_model(self) -> bool:
        """Whether the model has a Transformer module adapters can be injected into."""
        return self.transformers_model is not None

    def check_peft_compatible_model(self) -> None:
        """``ValueError`` when the model has no Transformer module."""
        adapters.adapter_host(self)  # type: ignore[arg-type]

    def add_adapter(self, peft_config: Any, adapter_name: str | None = None) -> None:
        """Inject a fresh adapter (``peft.LoraConfig(...)``, ...) and make it the active, trainable one; the base
        model's weights are frozen, so training updates (and checkpoints hold) only the adapter."""
        adapters.require_peft()
        adapters.add_adapter(adapters.adapter_host(self), peft_config, adapter_name)  # type: ignore[arg-type]

    def load_adapter(
        self, path: str | os.PathLike, adapter_name: str | None = None, is_trainable: bool = False
    ) -> None:
        """Inject the adapter saved in the local directory ``path`` (``adapter_config.json`` +
        ``adapter_model.safetensors``); frozen unless ``is_trainable``."""
        adapters.require_peft()
        adapters.load_adapter(adapters.adapter_host(self), path, adapter_name, is_trainable)  # type: ignore[arg-type]

    def set_adapter(self, adapter_name: str | list[str]) -> None:
        """Make ``adapter_name`` the active (and trainable) adapter; the others are inactive."""
        adapters.set_adapter(adapters.adapter_host(self), adapter_name)  # type: ignore[arg-type]

    def enable_adapters(self) -> None:
        """Use the active adapter(s) in the forward again."""
        adapters.enable_adapters(adapters.adapter_host(self))  # type: ignore[arg-type]

    def disable_adapters(self) -> None:
        """Run the base model only (adapters stay attached)."""
        adapters.disable_adapters(adapters.adapter_host(self))  # type: ignore[arg-type]

    def active_adapters(self) -> list[str]:
        """Names of the active adapter(s)."""
        return adapters.active_adapters(adapters.adapter_host(self))  # type: ignore[arg-type]

    def active_adapter(self) -> str:
        """The first active adapter's name."""
        return self.active_adapters()[0]

    def get_adapter_state_dict(
        self, adapter_name: str | None = None, state_dict: dict | None = None
    ) -> dict[str, torch.Tensor]:
        """The weights of one adapter (default: the active one), keyed as PEFT keys them."""
        return adapters.get_adapter_state_dict(adapters.adapter_host(self), adapter_name, state_dict)  # type: ignore[arg-type]

    def delete_adapter(self, adapter_names: str | list[str]) -> None:
        """Remove adapter(s); removing the last one leaves the plain base model."""
        adapters.delete_adapter(adapters.adapter_host(self), adapter_names)  # type: ignore[arg-type]

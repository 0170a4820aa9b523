"""Normalize: L2-normalises one feature (``sentence_embedding`` by default) to unit length."""

from __future__ import annotations

from typing import Any, ClassVar

import torch.nn.functional as F

from raystx.models.module import ModelModule


class Normalize(ModelModule):
    """Replace ``features[module_output_name]`` by the unit-length version of ``features[module_input_name]``."""

    config_keys: ClassVar[list[str]] = ["module_input_name", "module_output_name"]
    st_class_ref: ClassVar[str] = "sentence_transformers.base.modules.normalize.Normalize"

    def __init__(self, module_input_name: str = "sentence_embedding", module_output_name: str | None = None):
        super().__init__()
        self.module_input_name = module_input_name
        self.module_output_name = module_output_name or module_input_name

    def forward(self, features: dict[str, Any]) -> dict[str, Any]:
        x = features.get(self.module_input_name)
        if x is not None:
            features[self.module_output_name] = F.normalize(x, p=2, dim=-1)
        return features

"""LayerNorm: ``nn.LayerNorm`` over ``sentence_embedding`` (config ``{"dimension": d}`` + weights)."""

from __future__ import annotations

from typing import Any, ClassVar

from torch import nn

from raystx.models.module import WeightsModule


class LayerNorm(WeightsModule):
    """Layer-normalise ``features["sentence_embedding"]`` (learned scale ``norm.weight`` and shift ``norm.bias``)."""

    config_keys: ClassVar[list[str]] = ["dimension"]
    st_class_ref: ClassVar[str] = "sentence_transformers.sentence_transformer.modules.layer_norm.LayerNorm"

    def __init__(self, dimension: int) -> None:
        super().__init__()
        self.dimension = dimension
        self.norm = nn.LayerNorm(dimension)

    def forward(self, features: dict[str, Any]) -> dict[str, Any]:
        features["sentence_embedding"] = self.norm(features["sentence_embedding"])
        return features

    def get_sentence_embedding_dimension(self) -> int:
        return self.dimension

    get_embedding_dimension = get_sentence_embedding_dimension

"""Dropout: dropout on ``sentence_embedding`` (config ``{"dropout": p}``, no weights)."""

from __future__ import annotations

from typing import Any, ClassVar

from torch import nn

from raystx.models.module import ModelModule


class Dropout(ModelModule):
    """Apply ``nn.Dropout(dropout)`` to ``features["sentence_embedding"]`` (active in training mode only)."""

    config_keys: ClassVar[list[str]] = ["dropout"]
    st_class_ref: ClassVar[str] = "sentence_transformers.sentence_transformer.modules.dropout.Dropout"

    def __init__(self, dropout: float = 0.2) -> None:
        super().__init__()
        self.dropout = dropout
        self.dropout_layer = nn.Dropout(dropout)

    def forward(self, features: dict[str, Any]) -> dict[str, Any]:
        features["sentence_embedding"] = self.dropout_layer(features["sentence_embedding"])
        return features

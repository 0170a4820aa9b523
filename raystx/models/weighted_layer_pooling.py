"""WeightedLayerPooling: token embeddings = learned weighted mean of the hidden layers ``layer_start``..last.

Reads ``all_layer_embeddings`` (the Transformer emits it when its config has ``output_hidden_states=True``;
without it the features pass unchanged) and writes ``token_embeddings``. Weights: ``layer_weights`` (one per used
layer, initialised to 1).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from raystx.models.module import WeightsModule


class WeightedLayerPooling(WeightsModule):
    """``sum_l w_l * hidden_l / sum_l w_l`` over layers ``layer_start..num_hidden_layers`` (embeddings = layer 0)."""

    config_keys: ClassVar[list[str]] = ["embedding_dimension", "layer_start", "num_hidden_layers"]
    config_key_renames: ClassVar[dict[str, str]] = {"word_embedding_dimension": "embedding_dimension"}
    st_class_ref: ClassVar[str] = (
        "sentence_transformers.sentence_transformer.modules.weighted_layer_pooling.WeightedLayerPooling"
    )

    def __init__(
        self,
        embedding_dimension: int,
        num_hidden_layers: int = 12,
        layer_start: int = 4,
        layer_weights: nn.Parameter | None = None,
    ) -> None:
        super().__init__()
        self.embedding_dimension = embedding_dimension
        self.num_hidden_layers = num_hidden_layers
        self.layer_start = layer_start
        if layer_weights is None:
            layer_weights = nn.Parameter(torch.ones(num_hidden_layers + 1 - layer_start))
        self.layer_weights = layer_weights

    def forward(self, features: dict[str, Any]) -> dict[str, Any]:
        layers = features.get("all_layer_embeddings")
        if layers is None:
            return features
        stacked = torch.stack(list(layers))[self.layer_start :]  # (layers, batch, seq, dim)
        w = self.layer_weights.view(-1, 1, 1, 1)
        features["token_embeddings"] = (w * stacked).sum(dim=0) / self.layer_weights.sum()
        return features

    def get_word_embedding_dimension(self) -> int:
        return self.embedding_dimension

    get_embedding_dimension = get_word_embedding_dimension

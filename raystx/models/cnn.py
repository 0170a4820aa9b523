"""CNN: 1-d convolutions over token embeddings, one per kernel size, concatenated along the feature axis.

Config file ``cnn_config.json`` (``in_embedding_dimension``, ``out_channels``, ``kernel_sizes``,
``stride_sizes``; old key ``in_word_embedding_dimension``) plus ``model.safetensors``. Padding per kernel is
``(kernel_size - 1) // 2``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from raystx.models.module import WeightsModule


class CNN(WeightsModule):
    """``token_embeddings`` (batch, seq, in) -> (batch, seq, out_channels * len(kernel_sizes))."""

    config_keys: ClassVar[list[str]] = [
        "in_embedding_dimension",
        "out_channels",
        "kernel_sizes",
        "stride_sizes",
    ]
    config_file_name: ClassVar[str] = "cnn_config.json"
    config_key_renames: ClassVar[dict[str, str]] = {"in_word_embedding_dimension": "in_embedding_dimension"}
    st_class_ref: ClassVar[str] = "sentence_transformers.sentence_transformer.modules.cnn.CNN"

    def __init__(
        self,
        in_embedding_dimension: int,
        out_channels: int = 256,
        kernel_sizes: list[int] | tuple[int, ...] = (1, 3, 5),
        stride_sizes: list[int] | None = None,
    ) -> None:
        super().__init__()
        self.in_embedding_dimension = in_embedding_dimension
        self.out_channels = out_channels
        self.kernel_sizes = list(kernel_sizes)
        self.stride_sizes = list(stride_sizes) if stride_sizes is not None else [1] * len(self.kernel_sizes)
        self.convs = nn.ModuleList(
            nn.Conv1d(in_embedding_dimension, out_channels, kernel_size=k, stride=s, padding=(k - 1) // 2)
            for k, s in zip(self.kernel_sizes, self.stride_sizes)
        )

    def forward(self, features: dict[str, Any]) -> dict[str, Any]:
        x = features["token_embeddings"].transpose(1, -1)  # (batch, in, seq)
        out = torch.cat([conv(x) for conv in self.convs], dim=1)
        features["token_embeddings"] = out.transpose(1, -1)
        return features

    def get_word_embedding_dimension(self) -> int:
        return self.out_channels * len(self.kernel_sizes)

    get_embedding_dimension = get_word_embedding_dimension

"""LSTM: a (bi-directional by default) LSTM over token embeddings, honouring each text's length.

Config file ``lstm_config.json`` (``embedding_dimension``, ``hidden_dim``, ``num_layers``, ``dropout``,
``bidirectional``; old key ``word_embedding_dimension``) plus ``model.safetensors`` (``encoder.*``). Needs the
``sentence_lengths`` feature (WordEmbeddings provides it).
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import nn

from raystx.models.module import WeightsModule


class LSTM(WeightsModule):
    """``token_embeddings`` -> LSTM outputs (width ``hidden_dim``, doubled when bidirectional)."""

    config_keys: ClassVar[list[str]] = [
        "embedding_dimension",
        "hidden_dim",
        "num_layers",
        "dropout",
        "bidirectional",
    ]
    config_file_name: ClassVar[str] = "lstm_config.json"
    config_key_renames: ClassVar[dict[str, str]] = {"word_embedding_dimension": "embedding_dimension"}
    st_class_ref: ClassVar[str] = "sentence_transformers.sentence_transformer.modules.lstm.LSTM"

    def __init__(
        self,
        embedding_dimension: int,
        hidden_dim: int,
        num_layers: int = 1,
        dropout: float = 0.0,
        bidirectional: bool = True,
    ) -> None:
        super().__init__()
        self.embedding_dimension = embedding_dimension
        self.hidden_dim = hidden_dim
        self.num_layers = num_layers
        self.dropout = dropout
        self.bidirectional = bidirectional
        self.encoder = nn.LSTM(
            embedding_dimension,
            hidden_dim,
            num_layers=num_layers,
            dropout=dropout,
            bidirectional=bidirectional,
            batch_first=True,
        )

    def forward(self, features: dict[str, Any]) -> dict[str, Any]:
        lengths = features["sentence_lengths"].clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(
            features["token_embeddings"], lengths, batch_first=True, enforce_sorted=False
        )
        output, _ = self.encoder(packed)
        features["token_embeddings"] = nn.utils.rnn.pad_packed_sequence(output, batch_first=True)[0]
        return features

    def get_word_embedding_dimension(self) -> int:
        return self.hidden_dim * (2 if self.bidirectional else 1)

    get_embedding_dimension = get_word_embedding_dimension

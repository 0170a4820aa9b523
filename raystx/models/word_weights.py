"""WordWeights: multiply each token embedding by a per-word weight (e.g. idf) before pooling.

Config ``config.json`` (``vocab``, ``word_weights``, ``unknown_word_weight``) + ``model.safetensors``
(``emb_layer.weight``, one weight per vocab entry). Adds ``token_weights_sum``, which mean pooling divides by.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from raystx.models.module import WeightsModule


def vocab_weights(
    vocab: list[str], word_weights: dict[str, float], unknown_word_weight: float
) -> list[float]:
    """One weight per vocab word: its own, else its lower-cased form's, else ``unknown_word_weight``."""
    return [word_weights.get(w, word_weights.get(w.lower(), unknown_word_weight)) for w in vocab]


class WordWeights(WeightsModule):
    """Weight ``token_embeddings`` by a learned per-token scalar (initialised from ``word_weights``)."""

    config_keys: ClassVar[list[str]] = ["vocab", "word_weights", "unknown_word_weight"]
    st_class_ref: ClassVar[str] = (
        "sentence_transformers.sentence_transformer.modules.word_weights.WordWeights"
    )

    def __init__(
        self, vocab: list[str], word_weights: dict[str, float], unknown_word_weight: float = 1
    ) -> None:
        super().__init__()
        self.vocab = list(vocab)
        self.word_weights = dict(word_weights)
        self.unknown_word_weight = unknown_word_weight
        initial = torch.tensor(vocab_weights(self.vocab, self.word_weights, unknown_word_weight)).unsqueeze(1)
        self.emb_layer = nn.Embedding.from_pretrained(initial.float(), freeze=False)

    def forward(self, features: dict[str, Any]) -> dict[str, Any]:
        weights = self.emb_layer(features["input_ids"]).squeeze(-1) * features["attention_mask"].float()
        features["token_embeddings"] = features["token_embeddings"] * weights.unsqueeze(-1)
        features["token_weights_sum"] = weights.sum(dim=1)
        return features

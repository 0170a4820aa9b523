"""BoW: a bag-of-words sentence embedding (one dimension per vocab word, optionally tf-idf weighted).

Config only (``config.json``: ``vocab``, ``word_weights``, ``unknown_word_weight``,
``cumulative_term_frequency``). ``tokenize`` already produces ``sentence_embedding``; ``forward`` passes it on.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from raystx.models.module import ModelModule
from raystx.models.word_tokenizer import WhitespaceTokenizer
from raystx.models.word_weights import vocab_weights


class BoW(ModelModule):
    """Sum (or, with ``cumulative_term_frequency=False``, set) the weight of each vocab word present in a text."""

    config_keys: ClassVar[list[str]] = [
        "vocab",
        "word_weights",
        "unknown_word_weight",
        "cumulative_term_frequency",
    ]
    st_class_ref: ClassVar[str] = "sentence_transformers.sentence_transformer.modules.bow.BoW"

    def __init__(
        self,
        vocab: list[str],
        word_weights: dict[str, float] | None = None,
        unknown_word_weight: float = 1,
        cumulative_term_frequency: bool = True,
    ) -> None:
        super().__init__()
        self.vocab = list(dict.fromkeys(vocab))
        self.word_weights = dict(word_weights or {})
        self.unknown_word_weight = unknown_word_weight
        self.cumulative_term_frequency = cumulative_term_frequency
        self.weights = vocab_weights(self.vocab, self.word_weights, unknown_word_weight)
        self.tokenizer = WhitespaceTokenizer(self.vocab)

    def tokenize(self, texts: list[str], prompt: str | None = None, **kwargs: Any) -> dict[str, torch.Tensor]:
        if prompt:
            texts = [prompt + t for t in texts]
        vectors = torch.zeros(len(texts), len(self.vocab))
        for row, text in enumerate(texts):
            for token in self.tokenizer.tokenize(text):
                if self.cumulative_term_frequency:
                    vectors[row, token] += self.weights[token]
                else:
                    vectors[row, token] = self.weights[token]
        return {"sentence_embedding": vectors}

    def forward(self, features: dict[str, Any]) -> dict[str, Any]:
        return features

    def get_sentence_embedding_dimension(self) -> int:
        return len(self.vocab)

    get_embedding_dimension = get_sentence_embedding_dimension

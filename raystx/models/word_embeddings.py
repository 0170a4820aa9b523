"""WordEmbeddings: a word-level embedding table (e.g. GloVe) with a whitespace tokenizer, the legacy input module.

Files: ``wordembedding_config.json`` (``tokenizer_class``, ``update_embeddings``, ``max_seq_length``),
``model.safetensors`` (``emb_layer.weight``) and the tokenizer's own file (``whitespacetokenizer_config.json``).
Features: ``input_ids`` and ``attention_mask`` (right-padded with 0), ``sentence_lengths``; ``forward`` adds
``token_embeddings``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from raystx.models._io import load_state_dict, save_state_dict
from raystx.models.module import ModelModule
from raystx.models.word_tokenizer import ST_CLASS_REF, WhitespaceTokenizer


class WordEmbeddings(ModelModule):
    """Look up one vector per word; ``update_embeddings=False`` (default) keeps the table frozen."""

    config_keys: ClassVar[list[str]] = ["tokenizer_class", "update_embeddings", "max_seq_length"]
    config_file_name: ClassVar[str] = "wordembedding_config.json"
    st_class_ref: ClassVar[str] = (
        "sentence_transformers.sentence_transformer.modules.word_embeddings.WordEmbeddings"
    )

    def __init__(
        self,
        tokenizer: WhitespaceTokenizer,
        embedding_weights: np.ndarray | torch.Tensor | list,
        update_embeddings: bool = False,
        max_seq_length: int = 1000000,
    ) -> None:
        super().__init__()
        weights = torch.as_tensor(
            np.asarray(embedding_weights) if isinstance(embedding_weights, list) else embedding_weights
        )
        self.emb_layer = nn.Embedding.from_pretrained(weights.float(), freeze=not update_embeddings)
        self.tokenizer = tokenizer
        self.update_embeddings = update_embeddings
        self.max_seq_length = max_seq_length

    @classmethod
    def from_text_file(
        cls, path: str | os.PathLike, update_embeddings: bool = False, item_separator: str = " "
    ) -> WordEmbeddings:
        """Read a GloVe/word2vec text file ``word v1 v2 ...``; row 0 becomes an all-zero ``PADDING_TOKEN``."""
        vocab, rows = ["PADDING_TOKEN"], []
        with open(path, encoding="utf-8") as f:
            for line in f:
                parts = line.rstrip().split(item_separator)
                if not rows and len(parts) == 2:  # word2vec header "count dim"
                    continue
                if rows and len(parts) - 1 != len(rows[0]):
                    continue
                vocab.append(parts[0])
                rows.append([float(x) for x in parts[1:]])
        if not rows:
            raise ValueError(f"No embeddings found in {str(path)!r}")
        matrix = np.vstack([np.zeros(len(rows[0])), np.asarray(rows)])
        return cls(WhitespaceTokenizer(vocab), matrix, update_embeddings=update_embeddings)

    def tokenize(self, texts: list[str], prompt: str | None = None, **kwargs: Any) -> dict[str, torch.Tensor]:
        if prompt:
            texts = [prompt + t for t in texts]
        ids = [self.tokenizer.tokenize(t)[: self.max_seq_length] for t in texts]
        lengths = [len(x) for x in ids]
        width = max(1, max(lengths, default=0))
        return {
            "input_ids": torch.tensor([x + [0] * (width - len(x)) for x in ids], dtype=torch.long),
            "attention_mask": torch.tensor([[1] * n + [0] * (width - n) for n in lengths], dtype=torch.long),
            "sentence_lengths": torch.tensor(lengths, dtype=torch.long),
        }

    def forward(self, features: dict[str, Any]) -> dict[str, Any]:
        features["token_embeddings"] = self.emb_layer(features["input_ids"])
        return features

    def get_word_embedding_dimension(self) -> int:
        return self.emb_layer.embedding_dim

    get_embedding_dimension = get_word_embedding_dimension

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "tokenizer_class": ST_CLASS_REF,
            "update_embeddings": self.update_embeddings,
            "max_seq_length": self.max_seq_length,
        }

    def save(self, output_path: str | os.PathLike) -> None:
        self.save_config(output_path)
        save_state_dict(self, output_path)
        self.tokenizer.save(output_path)

    @classmethod
    def load(cls, input_path: str | os.PathLike, **kwargs: Any) -> WordEmbeddings:
        config = cls.load_config(input_path)
        tokenizer_class = str(config.pop("tokenizer_class", "WhitespaceTokenizer"))
        if tokenizer_class.rsplit(".", 1)[-1] != "WhitespaceTokenizer":
            raise ValueError(
                f"{input_path}: WordEmbeddings tokenizer {tokenizer_class!r} is not supported by raystx "
                "(only WhitespaceTokenizer)"
            )
        tokenizer = WhitespaceTokenizer.load(Path(input_path))
        weights = load_state_dict(input_path)["emb_layer.weight"]
        return cls(tokenizer, weights, **{k: v for k, v in config.items() if k in cls.config_keys})

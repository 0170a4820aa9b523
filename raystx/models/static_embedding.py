"""StaticEmbedding: a bag of token embeddings averaged per text (no attention), as in sentence-transformers.

Files: ``model.safetensors`` (key ``embedding.weight``) and ``tokenizer.json``. Texts are tokenized without
special tokens; the sentence embedding is the mean of the token rows (``nn.EmbeddingBag``, mode ``mean``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from raystx.models._io import load_state_dict, save_state_dict
from raystx.models.module import ModelModule


class StaticEmbedding(ModelModule):
    """Mean of learned per-token vectors.

    Args:
        tokenizer: a ``tokenizers.Tokenizer`` or a fast ``transformers`` tokenizer.
        embedding_weights: an initial (vocab, dim) matrix; or
        embedding_dim: the width of a randomly initialised matrix (``nn.EmbeddingBag`` default init).
    """

    st_class_ref: ClassVar[str] = (
        "sentence_transformers.sentence_transformer.modules.static_embedding.StaticEmbedding"
    )
    save_in_root: ClassVar[bool] = True

    def __init__(
        self,
        tokenizer: Any,
        embedding_weights: np.ndarray | torch.Tensor | None = None,
        embedding_dim: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        from tokenizers import Tokenizer

        if not isinstance(tokenizer, Tokenizer):
            backend = getattr(tokenizer, "backend_tokenizer", None) or getattr(tokenizer, "_tokenizer", None)
            if not isinstance(backend, Tokenizer):
                raise ValueError(
                    "StaticEmbedding needs a tokenizers.Tokenizer or a fast transformers tokenizer"
                )
            tokenizer = backend
        if embedding_weights is not None:
            weights = torch.as_tensor(
                np.asarray(embedding_weights) if isinstance(embedding_weights, list) else embedding_weights
            )
            self.embedding = nn.EmbeddingBag.from_pretrained(weights.float(), freeze=False, mode="mean")
        elif embedding_dim is not None:
            self.embedding = nn.EmbeddingBag(tokenizer.get_vocab_size(), embedding_dim, mode="mean")
        else:
            raise ValueError("StaticEmbedding needs embedding_weights or embedding_dim")
        self.num_embeddings = self.embedding.num_embeddings
        self.embedding_dim = self.embedding.embedding_dim
        self.tokenizer = tokenizer
        self.tokenizer.no_padding()
        self.base_model = kwargs.get("base_model")

    @classmethod
    def from_model2vec(cls, model_id_or_path: str) -> StaticEmbedding:
        """Load a model2vec ``StaticModel`` (needs the ``model2vec`` package); see ``static_sources``."""
        from raystx.models.static_sources import from_model2vec

        return from_model2vec(cls, model_id_or_path)

    @classmethod
    def from_distillation(cls, model_name: str, **kwargs: Any) -> StaticEmbedding:
        """Distil an encoder into a static table (implemented in raystx); see ``static_sources``."""
        from raystx.models.static_sources import from_distillation

        return from_distillation(cls, model_name, **kwargs)

    def tokenize(self, texts: list[str], prompt: str | None = None, **kwargs: Any) -> dict[str, torch.Tensor]:
        """Flat ``input_ids`` of all texts plus the ``offsets`` where each text starts."""
        if prompt:
            texts = [prompt + t for t in texts]
        ids = [enc.ids for enc in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)]
        lengths = [len(x) for x in ids]
        offsets = torch.tensor([0, *np.cumsum(lengths[:-1]).tolist()] if ids else [], dtype=torch.long)
        flat = torch.tensor([t for row in ids for t in row], dtype=torch.long)
        return {"input_ids": flat, "offsets": offsets}

    def forward(self, features: dict[str, Any]) -> dict[str, Any]:
        features["sentence_embedding"] = self.embedding(features["input_ids"], features["offsets"])
        return features

    @property
    def max_seq_length(self) -> float:
        return math.inf

    @max_seq_length.setter
    def max_seq_length(self, value: Any) -> None:  # texts are never truncated
        pass

    def get_sentence_embedding_dimension(self) -> int:
        return self.embedding_dim

    get_embedding_dimension = get_sentence_embedding_dimension

    def get_config_dict(self) -> dict[str, Any]:
        return {}

    def save(self, output_path: str | os.PathLike) -> None:
        save_state_dict(self, output_path)
        self.tokenizer.save(str(Path(output_path) / "tokenizer.json"))

    @classmethod
    def load(cls, input_path: str | os.PathLike, **kwargs: Any) -> StaticEmbedding:
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(Path(input_path) / "tokenizer.json"))
        weights = load_state_dict(input_path)
        if "embedding.weight" in weights:
            matrix = weights["embedding.weight"]
        else:  # model2vec layout: embeddings [+ token mapping] [+ per-token weights]
            from raystx.models.static_sources import fold_model2vec

            matrix = fold_model2vec(weights["embeddings"], weights.get("mapping"), weights.get("weights"))
        return cls(tokenizer, embedding_weights=matrix)

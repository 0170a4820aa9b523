"""The embedding model: modules, the SentenceTransformer container and the sentence-transformers disk format.

Imports only torch, transformers, tokenizers, safetensors and numpy (no Ray), so the training loop can run on
machines that only have those.
"""

from __future__ import annotations

from raystx.models.dense import Dense
from raystx.models.module import ModelModule
from raystx.models.normalize import Normalize
from raystx.models.pooling import POOLING_MODES, Pooling
from raystx.models.quantize import quantize_embeddings
from raystx.models.sentence_transformer import SentenceTransformer
from raystx.models.static_embedding import StaticEmbedding
from raystx.models.transformer import Transformer

__all__ = [
    "POOLING_MODES",
    "Dense",
    "ModelModule",
    "Normalize",
    "Pooling",
    "SentenceTransformer",
    "StaticEmbedding",
    "Transformer",
    "quantize_embeddings",
]

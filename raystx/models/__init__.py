"""The embedding model: modules, the SentenceTransformer container and the sentence-transformers disk format.

Imports only torch, transformers, tokenizers, safetensors and numpy (no Ray), so the training loop can run on
machines that only have those.
"""

from __future__ import annotations

from raystx.models.bow import BoW
from raystx.models.cnn import CNN
from raystx.models.dense import Dense
from raystx.models.dropout import Dropout
from raystx.models.layer_norm import LayerNorm
from raystx.models.lstm import LSTM
from raystx.models.module import ModelModule
from raystx.models.normalize import Normalize
from raystx.models.pooling import POOLING_MODES, Pooling
from raystx.models.quantize import quantize_embeddings
from raystx.models.router import Asym, Router
from raystx.models.sentence_transformer import SentenceTransformer
from raystx.models.static_embedding import StaticEmbedding
from raystx.models.transformer import Transformer
from raystx.models.weighted_layer_pooling import WeightedLayerPooling
from raystx.models.word_embeddings import WordEmbeddings
from raystx.models.word_weights import WordWeights

__all__ = [
    "CNN",
    "LSTM",
    "POOLING_MODES",
    "Asym",
    "BoW",
    "Dense",
    "Dropout",
    "LayerNorm",
    "ModelModule",
    "Normalize",
    "Pooling",
    "Router",
    "SentenceTransformer",
    "StaticEmbedding",
    "Transformer",
    "WeightedLayerPooling",
    "WordEmbeddings",
    "WordWeights",
    "quantize_embeddings",
]

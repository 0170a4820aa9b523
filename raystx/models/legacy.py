"""The legacy module types sentence-transformers still loads (word-level models and small layers)."""

from __future__ import annotations

from raystx.models.bow import BoW
from raystx.models.cnn import CNN
from raystx.models.dropout import Dropout
from raystx.models.layer_norm import LayerNorm
from raystx.models.lstm import LSTM
from raystx.models.weighted_layer_pooling import WeightedLayerPooling
from raystx.models.word_embeddings import WordEmbeddings
from raystx.models.word_weights import WordWeights

LEGACY_MODULES = (BoW, CNN, Dropout, LayerNorm, LSTM, WeightedLayerPooling, WordEmbeddings, WordWeights)

__all__ = [cls.__name__ for cls in LEGACY_MODULES] + ["LEGACY_MODULES"]

"""raystx: train and tune sentence-embedding models on Ray.

The public names mirror sentence-transformers, so porting a training script means changing its imports and
adding a ``ScalingConfig``::

    from raystx import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from raystx.losses import MultipleNegativesRankingLoss

Names are imported lazily: ``import raystx`` pulls in neither Ray nor pydantic, so the model and the per-worker
training loop also run on machines that only have torch and transformers. Every other module path that
sentence-transformers accepts (``raystx.training_args``, ``raystx.losses.ContrastiveLoss``,
``raystx.sentence_transformer.losses``, ...) resolves through the alias table in ``raystx._aliases``.
"""

from __future__ import annotations

import importlib
from typing import Any

from raystx import _aliases

_aliases.install()

__version__ = "0.1.0"

_LAZY = {
    "SentenceTransformer": "raystx.models",
    "SentenceTransformerTrainer": "raystx.train.trainer",
    "SentenceTransformerTrainingArguments": "raystx.train.args",
    "BatchSamplers": "raystx.train.args",
    "MultiDatasetBatchSamplers": "raystx.train.args",
    "SimilarityFunction": "raystx.evaluation",
    "InputExample": "raystx.data.input_example",
    "SentenceTransformerModelCardData": "raystx.train.model_card",
    "LoggingHandler": "raystx.logging_handler",
    "SentencesDataset": "raystx.data.legacy_datasets",
    "ParallelSentencesDataset": "raystx.data.legacy_datasets",
    "quantize_embeddings": "raystx.models.quantize",
    "mine_hard_negatives": "raystx.infer.mining",
}
_SUBMODULES = {"losses", "evaluation", "models", "util", "data", "train", "tune", "distributed", "config"}

__all__ = sorted([*_LAZY, *_SUBMODULES, "__version__"])


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        module = importlib.import_module(f"raystx.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'raystx' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__

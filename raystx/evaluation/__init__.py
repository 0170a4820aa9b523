"""Evaluators for sentence-embedding models (class names, arguments and metric keys follow sentence-transformers).

Every evaluator is called as ``evaluator(model, output_path=None, epoch=-1, steps=-1) -> dict[str, float]`` and
needs only ``model.encode`` (and ``model.similarity_fn_name``). After a call ``evaluator.primary_metric`` is the
full metric key for model selection and ``evaluator.greater_is_better`` its direction.
"""

from __future__ import annotations

from raystx.evaluation.base import BaseEvaluator, SentenceEvaluator, prefix_name_to_metrics
from raystx.evaluation.binary_classification import BinaryClassificationEvaluator
from raystx.evaluation.embedding_similarity import EmbeddingSimilarityEvaluator
from raystx.evaluation.information_retrieval import InformationRetrievalEvaluator
from raystx.evaluation.label_accuracy import LabelAccuracyEvaluator
from raystx.evaluation.mse import MSEEvaluator, MSEEvaluatorFromDataFrame
from raystx.evaluation.nano_beir import NanoBEIREvaluator
from raystx.evaluation.paraphrase_mining import ParaphraseMiningEvaluator
from raystx.evaluation.reranking import RerankingEvaluator
from raystx.evaluation.sequential import SequentialEvaluator
from raystx.evaluation.similarity import SimilarityFunction
from raystx.evaluation.translation import TranslationEvaluator
from raystx.evaluation.triplet import TripletEvaluator

__all__ = [
    "BaseEvaluator",
    "BinaryClassificationEvaluator",
    "EmbeddingSimilarityEvaluator",
    "InformationRetrievalEvaluator",
    "LabelAccuracyEvaluator",
    "MSEEvaluator",
    "MSEEvaluatorFromDataFrame",
    "NanoBEIREvaluator",
    "ParaphraseMiningEvaluator",
    "RerankingEvaluator",
    "SentenceEvaluator",
    "SequentialEvaluator",
    "SimilarityFunction",
    "TranslationEvaluator",
    "TripletEvaluator",
    "prefix_name_to_metrics",
]

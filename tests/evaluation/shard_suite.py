"""One evaluator of every kind on deterministic data, for the sharded-evaluation tests (gloo ranks and Ray).

``build_suite(teacher)`` returns ``{name: evaluator}``; the data comes from ``raystx.testing`` (no files), so
every process builds identical evaluators. ``teacher`` (a model) is MSEEvaluator's teacher; its embeddings are
computed when the suite is built, before any sharding. ``CustomEvaluator`` stands for a user's evaluator that
calls ``model.encode`` itself (not through raystx's seam), so it must run on rank 0 alone.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np

from raystx.evaluation import (
    BinaryClassificationEvaluator,
    EmbeddingSimilarityEvaluator,
    InformationRetrievalEvaluator,
    MSEEvaluator,
    ParaphraseMiningEvaluator,
    RerankingEvaluator,
    SentenceEvaluator,
    SequentialEvaluator,
    TranslationEvaluator,
    TripletEvaluator,
)
from raystx.testing import make_sentences, unique_sentences


class CustomEvaluator(SentenceEvaluator):
    """A user's evaluator: mean norm of the embeddings of its sentences, through ``model.encode``."""

    def __init__(self, sentences: list[str], name: str = "custom") -> None:
        super().__init__()
        self.sentences = sentences
        self.name = name
        self.primary_metric = "mean_norm"
        self.calls = 0

    def __call__(self, model: Any, output_path=None, epoch: int = -1, steps: int = -1) -> dict[str, float]:
        self.calls += 1
        emb = model.encode(self.sentences, convert_to_numpy=True)
        return self.prefix_name_to_metrics(
            {"mean_norm": float(np.linalg.norm(emb, axis=1).mean())}, self.name
        )


def _ir(n_docs: int = 41, n_queries: int = 9) -> InformationRetrievalEvaluator:
    rng = random.Random(3)
    docs = unique_sentences(n_docs, seed=11)
    docs[7] = docs[6]  # a duplicate document: tied scores
    corpus = {f"d{i}": t for i, t in enumerate(docs)}
    queries = {f"q{i}": t for i, t in enumerate(unique_sentences(n_queries, seed=12))}
    relevant = {q: {f"d{j}" for j in rng.sample(range(n_docs), rng.randint(1, 3))} for q in queries}
    return InformationRetrievalEvaluator(
        queries, corpus, relevant, name="ir", corpus_chunk_size=16, mrr_at_k=[5], ndcg_at_k=[5, 10]
    )


def _pairs(n: int = 37) -> tuple[list[str], list[str], list[float], list[int]]:
    rng = random.Random(4)
    return (
        make_sentences(n, 1),
        make_sentences(n, 2),
        [rng.random() for _ in range(n)],
        [i % 2 for i in range(n)],
    )


def _reranking(batched: bool) -> RerankingEvaluator:
    rng = random.Random(5)
    samples = [
        {
            "query": q,
            "positive": make_sentences(rng.randint(1, 3), seed=100 + i),
            "negative": make_sentences(rng.randint(2, 5), seed=200 + i),
        }
        for i, q in enumerate(unique_sentences(7, seed=13))
    ]
    return RerankingEvaluator(samples, at_k=5, name=f"rerank-{batched}", use_batched_encoding=batched)


def build_suite(teacher: Any) -> dict[str, Any]:
    """``{name: evaluator}``: every built-in kind, a quantized one, a custom one and composites."""
    s1, s2, scores, labels = _pairs()
    anchors, positives, negatives = make_sentences(23, 7), make_sentences(23, 8), make_sentences(23, 9)
    sentences = unique_sentences(30, seed=21)
    paraphrases = {f"s{i}": t for i, t in enumerate(sentences)}
    dups = [(f"s{i}", f"s{i + 1}") for i in range(0, 30, 5)]
    sts = EmbeddingSimilarityEvaluator(s1, s2, scores, name="sts")
    suite: dict[str, Any] = {
        "ir": _ir(),
        "sts": sts,
        "sts-int8": EmbeddingSimilarityEvaluator(s1, s2, scores, name="sts-int8", precision="int8"),
        "sts-ubinary": EmbeddingSimilarityEvaluator(s1, s2, scores, name="sts-ubin", precision="ubinary"),
        "binary": BinaryClassificationEvaluator(s1, s2, labels, name="binary"),
        "triplet": TripletEvaluator(anchors, positives, negatives, name="triplet"),
        "paraphrase": ParaphraseMiningEvaluator(paraphrases, dups, name="para"),
        "mse": MSEEvaluator(s1, s2, teacher_model=teacher, name="mse"),
        "translation": TranslationEvaluator(s1, s2, name="translation"),
        "rerank": _reranking(True),
        "rerank-each": _reranking(False),
    }
    suite["sequential"] = SequentialEvaluator(
        [_ir(), EmbeddingSimilarityEvaluator(s1, s2, scores, name="sts"), CustomEvaluator(sentences)],
        main_score_function=lambda values: float(np.mean(values)),
    )
    return suite


def flat_metrics(results: dict[str, dict[str, float]]) -> dict[str, float]:
    """``{evaluator name: {metric: value}}`` flattened to ``{"name/metric": value}``."""
    return {
        f"{name}/{key}": float(value) for name, metrics in results.items() for key, value in metrics.items()
    }

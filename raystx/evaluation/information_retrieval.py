"""InformationRetrievalEvaluator: retrieve from a corpus for each query and score the ranking (MRR, nDCG, ...)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from raystx.evaluation._encode import encode
from raystx.evaluation._ids import check_retrieval_ids
from raystx.evaluation._ranking import chunk_top_k, id_ranks, merge_top_k, relevance_matrix, retrieval_metrics
from raystx.evaluation.base import SentenceEvaluator, append_csv_row, epoch_steps_suffix
from raystx.evaluation.similarity import SimilarityFunction
from raystx.util import similarity_fn

logger = logging.getLogger(__name__)

ScoreFn = Callable[[Tensor, Tensor], Tensor]
METRIC_ORDER = ("accuracy@k", "precision@k", "recall@k", "ndcg@k", "mrr@k", "map@k")


def model_score_functions(model: Any) -> dict[str, ScoreFn]:
    """``{model.similarity_fn_name: model.similarity}`` (cosine when the model names none)."""
    name = getattr(model, "similarity_fn_name", None) or "cosine"
    fn = getattr(model, "similarity", None)
    return {name: fn if callable(fn) else similarity_fn(name)}


def ir_csv_headers(config: Any, fn_names: list[str]) -> list[str]:
    """CSV header of the retrieval evaluators: per score function Accuracy@k, Precision/Recall@k, MRR, NDCG, MAP.

    ``config`` supplies the ``*_at_k`` lists.
    """
    headers = ["epoch", "steps"]
    for fn in fn_names:
        headers += [f"{fn}-Accuracy@{k}" for k in config.accuracy_at_k]
        for k in config.precision_recall_at_k:
            headers += [f"{fn}-Precision@{k}", f"{fn}-Recall@{k}"]
        headers += [f"{fn}-MRR@{k}" for k in config.mrr_at_k]
        headers += [f"{fn}-NDCG@{k}" for k in config.ndcg_at_k]
        headers += [f"{fn}-MAP@{k}" for k in config.map_at_k]
    return headers


def ir_csv_row(config: Any, fn_names: list[str], epoch: int, steps: int, flat: dict[str, float]) -> list[Any]:
    """The CSV row matching :func:`ir_csv_headers`, read from unprefixed ``{fn}_{metric}@{k}`` keys."""
    row: list[Any] = [epoch, steps]
    for fn in fn_names:
        row += [flat[f"{fn}_accuracy@{k}"] for k in config.accuracy_at_k]
        for k in config.precision_recall_at_k:
            row += [flat[f"{fn}_precision@{k}"], flat[f"{fn}_recall@{k}"]]
        row += [flat[f"{fn}_mrr@{k}"] for k in config.mrr_at_k]
        row += [flat[f"{fn}_ndcg@{k}"] for k in config.ndcg_at_k]
        row += [flat[f"{fn}_map@{k}"] for k in config.map_at_k]
    return row


class InformationRetrievalEvaluator(SentenceEvaluator):
    """Evaluate retrieval of ``corpus`` documents for ``queries`` against the ``relevant_docs`` judgements.

    Metrics per score function ``fn``: ``{fn}_accuracy@k``, ``{fn}_precision@k``, ``{fn}_recall@k``,
    ``{fn}_ndcg@k``, ``{fn}_mrr@k``, ``{fn}_map@k`` for the configured ``k`` lists. Primary metric:
    ``{main_score_function}_ndcg@{max ndcg k}`` (else the score function with the best such nDCG).

    Queries without relevant documents are skipped. Ids are checked at construction (``_ids``): no query to
    evaluate (e.g. every qrels query id unknown) raises ``ValueError``; unknown query or document ids in
    ``relevant_docs`` warn ``RetrievalIdWarning`` with counts. The corpus is encoded ``corpus_chunk_size``
    documents at a time, once for all score functions; only the best ``max k`` hits per query are kept between
    chunks. Ties are broken by ascending corpus id.

    Args:
        queries: qid -> query text. corpus: cid -> document text. relevant_docs: qid -> set of relevant cids.
        corpus_chunk_size, mrr_at_k, ndcg_at_k, accuracy_at_k, precision_recall_at_k, map_at_k: as named.
        show_progress_bar, batch_size, name, write_csv, truncate_dim: as in the other evaluators.
        score_functions: name -> (q, d) x (c, d) -> (q, c) scores; default: the evaluated model's similarity.
        main_score_function: score function whose nDCG is the primary metric.
        query_prompt / query_prompt_name / corpus_prompt / corpus_prompt_name: prompts passed to encode.
        write_predictions: also write the ranked hits per query to a JSONL file per score function.
    """

    def __init__(
        self,
        queries: dict[str, str],
        corpus: dict[str, str],
        relevant_docs: dict[str, set[str]],
        corpus_chunk_size: int = 50000,
        mrr_at_k: list[int] = [10],  # noqa: B006 (same defaults as sentence-transformers; never mutated)
        ndcg_at_k: list[int] = [10],  # noqa: B006
        accuracy_at_k: list[int] = [1, 3, 5, 10],  # noqa: B006
        precision_recall_at_k: list[int] = [1, 3, 5, 10],  # noqa: B006
        map_at_k: list[int] = [100],  # noqa: B006
        show_progress_bar: bool = False,
        batch_size: int = 32,
        name: str = "",
        write_csv: bool = True,
        truncate_dim: int | None = None,
        score_functions: dict[str, ScoreFn] | None = None,
        main_score_function: str | SimilarityFunction | None = None,
        query_prompt: str | None = None,
        query_prompt_name: str | None = None,
        corpus_prompt: str | None = None,
        corpus_prompt_name: str | None = None,
        write_predictions: bool = False,
    ) -> None:
        super().__init__()
        check_retrieval_ids(queries, corpus, relevant_docs, name)
        self.queries_ids = [qid for qid in queries if len(relevant_docs.get(qid, ())) > 0]
        self.queries = [queries[qid] for qid in self.queries_ids]
        self.corpus_ids = list(corpus)
        self.corpus = [corpus[cid] for cid in self.corpus_ids]
        self.relevant_docs = relevant_docs
        self.corpus_chunk_size = corpus_chunk_size
        self.mrr_at_k = list(mrr_at_k)
        self.ndcg_at_k = list(ndcg_at_k)
        self.accuracy_at_k = list(accuracy_at_k)
        self.precision_recall_at_k = list(precision_recall_at_k)
        self.map_at_k = list(map_at_k)
        self.show_progress_bar = bool(show_progress_bar)
        self.batch_size = batch_size
        self.name = name
        self.write_csv = write_csv
        self.truncate_dim = truncate_dim
        self.score_functions = score_functions
        self.score_function_names = sorted(score_functions) if score_functions else []
        self._score_functions_from_model = score_functions is None
        self.main_score_function = SimilarityFunction(main_score_function) if main_score_function else None
        self.query_prompt = query_prompt
        self.query_prompt_name = query_prompt_name
        self.corpus_prompt = corpus_prompt
        self.corpus_prompt_name = corpus_prompt_name
        self.write_predictions = write_predictions
        suffix = f"_{name}" if name else ""
        self.csv_file = f"Information-Retrieval_evaluation{suffix}_results.csv"
        self.predictions_file = f"Information-Retrieval_evaluation{suffix}_predictions.jsonl"
        self._corpus_ranks: Tensor | None = None

    @property
    def max_k(self) -> int:
        return max(
            max(self.mrr_at_k),
            max(self.ndcg_at_k),
            max(self.accuracy_at_k),
            max(self.precision_recall_at_k),
            max(self.map_at_k),
        )

    @property
    def csv_headers(self) -> list[str]:
        return ir_csv_headers(self, self.score_function_names)

    def _csv_row(self, epoch: int, steps: int, scores: dict[str, dict[str, dict[int, float]]]) -> list[Any]:
        flat = {
            f"{fn}_{metric.replace('@k', f'@{k}')}": value
            for fn, per_metric in scores.items()
            for metric, per_k in per_metric.items()
            for k, value in per_k.items()
        }
        return ir_csv_row(self, self.score_function_names, epoch, steps, flat)

    def _resolve_score_functions(self, model: Any) -> None:
        if not self._score_functions_from_model:
            return
        self.score_functions = model_score_functions(model)
        if self.score_function_names != sorted(self.score_functions):
            self.score_function_names = sorted(self.score_functions)
            self.primary_metric = None

    def __call__(
        self, model: Any, output_path: str | None = None, epoch: int = -1, steps: int = -1, *args, **kwargs
    ) -> dict[str, float]:
        """Retrieve, score, append a CSV row when ``output_path`` is given; returns the prefixed metrics."""
        logger.info(
            "Information Retrieval Evaluation of the model on the %s dataset%s:",
            self.name,
            epoch_steps_suffix(epoch, steps, self.truncate_dim),
        )
        self._resolve_score_functions(model)
        scores = self.compute_all_metrics(model, *args, output_path=output_path, **kwargs)

        if output_path is not None and self.write_csv:
            append_csv_row(
                output_path,
                self.csv_file,
                self.csv_headers,
                self._csv_row(epoch, steps, scores),
                lineterminator="\n",
            )

        if not self.primary_metric:
            top_ndcg = max(self.ndcg_at_k)
            if self.main_score_function is not None:
                best = self.main_score_function.value
            else:
                best = max(self.score_function_names, key=lambda fn: scores[fn]["ndcg@k"][top_ndcg])
            self.primary_metric = f"{best}_ndcg@{top_ndcg}"

        metrics = {
            f"{fn}_{metric.replace('@k', f'@{k}')}": value
            for fn, per_metric in scores.items()
            for metric, per_k in per_metric.items()
            for k, value in per_k.items()
        }
        metrics = self.prefix_name_to_metrics(metrics, self.name)
        self.store_metrics_in_model_card_data(model, metrics, epoch, steps)
        return metrics

    def _embed(
        self, model: Any, texts: list[str], role: str, prompt: str | None, prompt_name: str | None
    ) -> Tensor:
        return encode(
            model,
            texts,
            batch_size=self.batch_size,
            show_progress_bar=self.show_progress_bar,
            role=role,  # type: ignore[arg-type]
            convert_to_tensor=True,
            truncate_dim=self.truncate_dim,
            prompt=prompt,
            prompt_name=prompt_name,
        )

    def retrieve(
        self, model: Any, corpus_model: Any = None, corpus_embeddings: Tensor | None = None
    ) -> dict[str, tuple[Tensor, Tensor]]:
        """Best ``max_k`` hits per query for each score function: ``{fn: (scores, corpus_indices)}``, each
        (n_queries, min(max_k, corpus size)), best first. ``corpus_embeddings`` skips corpus encoding."""
        if self.score_functions is None:
            self._resolve_score_functions(model)
        assert self.score_functions is not None
        corpus_model = corpus_model if corpus_model is not None else model
        if self._corpus_ranks is None:
            self._corpus_ranks = id_ranks(self.corpus_ids)
        query_emb = self._embed(model, self.queries, "query", self.query_prompt, self.query_prompt_name)
        k = self.max_k
        best: dict[str, tuple[Tensor, Tensor]] = {}
        for start in range(0, len(self.corpus), self.corpus_chunk_size):
            end = min(start + self.corpus_chunk_size, len(self.corpus))
            if corpus_embeddings is None:
                chunk_emb = self._embed(
                    corpus_model,
                    self.corpus[start:end],
                    "document",
                    self.corpus_prompt,
                    self.corpus_prompt_name,
                )
            else:
                chunk_emb = corpus_embeddings[start:end]
            ranks = self._corpus_ranks.to(query_emb.device)
            for fn_name, fn in self.score_functions.items():
                with torch.no_grad():
                    chunk_scores = fn(query_emb, chunk_emb)
                values, idx = chunk_top_k(chunk_scores, k, ranks[start:end])
                idx = idx + start
                if fn_name in best:
                    best[fn_name] = merge_top_k(*best[fn_name], values, idx, k, ranks)
                else:
                    empty_v = values[:, :0]
                    best[fn_name] = merge_top_k(empty_v, idx[:, :0], values, idx, k, ranks)
        return {fn: (v.detach().cpu(), i.detach().cpu()) for fn, (v, i) in best.items()}

    def compute_all_metrics(
        self,
        model: Any,
        corpus_model: Any = None,
        corpus_embeddings: Tensor | None = None,
        output_path: str | None = None,
    ) -> dict[str, dict[str, dict[int, float]]]:
        """``{fn: {"accuracy@k": {k: value}, ...}}`` for every score function."""
        hits = self.retrieve(model, corpus_model=corpus_model, corpus_embeddings=corpus_embeddings)
        if self.write_predictions and output_path is not None:
            self._write_predictions(output_path, hits)
        relevant = [self.relevant_docs[qid] for qid in self.queries_ids]
        num_relevant = np.array([len(docs) for docs in relevant])
        logger.info("Queries: %d", len(self.queries))
        logger.info("Corpus: %d", len(self.corpus))
        results = {}
        for fn, (_, idx) in hits.items():
            rel = relevance_matrix(idx.numpy(), self.corpus_ids, relevant, self.max_k)
            results[fn] = retrieval_metrics(
                rel,
                num_relevant,
                self.accuracy_at_k,
                self.precision_recall_at_k,
                self.mrr_at_k,
                self.ndcg_at_k,
                self.map_at_k,
            )
            self._log_scores(fn, results[fn])
        return results

    def _write_predictions(self, output_path: str, hits: dict[str, tuple[Tensor, Tensor]]) -> None:
        os.makedirs(output_path, exist_ok=True)
        for fn, (values, idx) in hits.items():
            path = os.path.join(output_path, self.predictions_file.replace(".jsonl", f"_{fn}.jsonl"))
            with open(path, "w", encoding="utf-8") as handle:
                for qid, query, row_v, row_i in zip(
                    self.queries_ids, self.queries, values.tolist(), idx.tolist()
                ):
                    results = [{"corpus_id": self.corpus_ids[i], "score": v} for v, i in zip(row_v, row_i)]
                    handle.write(json.dumps({"query_id": qid, "query": query, "results": results}) + "\n")

    @staticmethod
    def _log_scores(fn: str, scores: dict[str, dict[int, float]]) -> None:
        logger.info("Score-Function: %s", fn)
        for metric in METRIC_ORDER:
            for k, value in scores[metric].items():
                logger.info("%s@%d: %.4f", metric.split("@")[0], k, value)

    def get_config_dict(self) -> dict[str, Any]:
        keys = ("truncate_dim", "query_prompt", "query_prompt_name", "corpus_prompt", "corpus_prompt_name")
        return {key: getattr(self, key) for key in keys if getattr(self, key) is not None}

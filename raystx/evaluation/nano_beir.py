"""NanoBEIREvaluator: InformationRetrievalEvaluator over several NanoBEIR sets, plus their aggregate."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from raystx.evaluation._beir import RetrievalSet, is_beir_dir, load_beir_dir, load_hf_subsets
from raystx.evaluation.base import SentenceEvaluator, append_csv_row, epoch_steps_suffix
from raystx.evaluation.information_retrieval import (
    InformationRetrievalEvaluator,
    ir_csv_headers,
    ir_csv_row,
    model_score_functions,
)
from raystx.evaluation.similarity import SimilarityFunction

logger = logging.getLogger(__name__)

DATASET_NAME_TO_HUMAN_READABLE = {
    "climatefever": "ClimateFEVER",
    "dbpedia": "DBPedia",
    "fever": "FEVER",
    "fiqa2018": "FiQA2018",
    "hotpotqa": "HotpotQA",
    "msmarco": "MSMARCO",
    "nfcorpus": "NFCorpus",
    "nq": "NQ",
    "quoraretrieval": "QuoraRetrieval",
    "scidocs": "SCIDOCS",
    "arguana": "ArguAna",
    "scifact": "SciFact",
    "touche2020": "Touche2020",
}


class NanoBEIREvaluator(SentenceEvaluator):
    """Run an :class:`InformationRetrievalEvaluator` per NanoBEIR dataset and aggregate the metrics.

    Returns each dataset's metrics (``Nano{Dataset}_{fn}_{metric}@k``) plus the aggregate over datasets
    (``NanoBEIR_{aggregate_key}_{fn}_{metric}@k``, with ``_{truncate_dim}`` after the aggregate key when set).
    Primary metric: ``NanoBEIR_{aggregate_key}_{fn}_ndcg@{max ndcg k}``.

    Data source (``dataset_id``):
      * a Hub dataset id (default ``sentence-transformers/NanoBEIR-en``): ``corpus``/``queries``/``qrels`` subsets
        with splits named ``Nano{Dataset}`` (needs network access);
      * a local directory holding one BEIR-format directory (``corpus.jsonl``, ``queries.jsonl``,
        ``qrels/test.tsv``) per dataset, named ``Nano{Dataset}`` or by the short name (``scifact``). Local
        datasets may use names outside the NanoBEIR list; they are then reported under that name. A single BEIR
        directory given directly works for one dataset name;
      * a local directory that ``datasets.load_dataset`` reads like the Hub layout.

    Other arguments are those of :class:`InformationRetrievalEvaluator`, plus ``aggregate_fn``/``aggregate_key``
    (how and under which key to aggregate) and ``query_prompts``/``corpus_prompts`` (one string for all datasets
    or a dict per dataset name).
    """

    information_retrieval_class = InformationRetrievalEvaluator

    def __init__(
        self,
        dataset_names: list[str] | None = None,
        dataset_id: str = "sentence-transformers/NanoBEIR-en",
        mrr_at_k: list[int] = [10],  # noqa: B006 (same defaults as sentence-transformers; never mutated)
        ndcg_at_k: list[int] = [10],  # noqa: B006
        accuracy_at_k: list[int] = [1, 3, 5, 10],  # noqa: B006
        precision_recall_at_k: list[int] = [1, 3, 5, 10],  # noqa: B006
        map_at_k: list[int] = [100],  # noqa: B006
        show_progress_bar: bool = False,
        batch_size: int = 32,
        write_csv: bool = True,
        truncate_dim: int | None = None,
        score_functions: dict[str, Callable[[Tensor, Tensor], Tensor]] | None = None,
        main_score_function: str | SimilarityFunction | None = None,
        aggregate_fn: Callable[[list[float]], float] = np.mean,
        aggregate_key: str = "mean",
        query_prompts: str | dict[str, str] | None = None,
        corpus_prompts: str | dict[str, str] | None = None,
        write_predictions: bool = False,
    ) -> None:
        super().__init__()
        self.dataset_names = (
            list(dataset_names) if dataset_names is not None else list(DATASET_NAME_TO_HUMAN_READABLE)
        )
        self.dataset_id = str(dataset_id)
        self.aggregate_fn = aggregate_fn
        self.aggregate_key = aggregate_key
        self.write_csv = write_csv
        self.show_progress_bar = bool(show_progress_bar)
        self.truncate_dim = truncate_dim
        self.score_functions = score_functions
        self.score_function_names = sorted(score_functions) if score_functions else []
        self._score_functions_from_model = score_functions is None
        self.main_score_function = SimilarityFunction(main_score_function) if main_score_function else None
        self.mrr_at_k = list(mrr_at_k)
        self.ndcg_at_k = list(ndcg_at_k)
        self.accuracy_at_k = list(accuracy_at_k)
        self.precision_recall_at_k = list(precision_recall_at_k)
        self.map_at_k = list(map_at_k)
        self.name = f"NanoBEIR_{aggregate_key}" + (f"_{truncate_dim}" if truncate_dim else "")
        self._local_root = Path(self.dataset_id) if os.path.isdir(self.dataset_id) else None

        self._validate_dataset_names()
        self.query_prompts = self._per_dataset(query_prompts, "query")
        self.corpus_prompts = self._per_dataset(corpus_prompts, "corpus")

        ir_kwargs = {
            "mrr_at_k": mrr_at_k,
            "ndcg_at_k": ndcg_at_k,
            "accuracy_at_k": accuracy_at_k,
            "precision_recall_at_k": precision_recall_at_k,
            "map_at_k": map_at_k,
            "show_progress_bar": show_progress_bar,
            "batch_size": batch_size,
            "write_csv": write_csv,
            "truncate_dim": truncate_dim,
            "score_functions": score_functions,
            "main_score_function": main_score_function,
            "write_predictions": write_predictions,
        }
        self.evaluators = [self._load_dataset(name, **ir_kwargs) for name in self.dataset_names]
        self.csv_file = f"NanoBEIR_evaluation_{aggregate_key}_results.csv"

    # ----------------------------------------------------------------------------------------- data loading
    def _local_dataset_dir(self, dataset_name: str) -> Path | None:
        """The BEIR directory for ``dataset_name`` under a local ``dataset_id``, if there is one."""
        root = self._local_root
        if root is None:
            return None
        if is_beir_dir(root) and len(self.dataset_names) == 1:
            return root
        candidates = [dataset_name, dataset_name.lower()]
        if dataset_name.lower() in DATASET_NAME_TO_HUMAN_READABLE:
            candidates.insert(0, f"Nano{DATASET_NAME_TO_HUMAN_READABLE[dataset_name.lower()]}")
        for candidate in candidates:
            if is_beir_dir(root / candidate):
                return root / candidate
        return None

    def _validate_dataset_names(self) -> None:
        if not self.dataset_names:
            raise ValueError("dataset_names cannot be empty. Use None to evaluate on all datasets.")
        unknown = [
            name
            for name in self.dataset_names
            if name.lower() not in DATASET_NAME_TO_HUMAN_READABLE and self._local_dataset_dir(name) is None
        ]
        if unknown:
            raise ValueError(
                f"Dataset(s) {unknown} are not valid NanoBEIR datasets (and no local BEIR directory was found for "
                f"them). Valid dataset names are: {list(DATASET_NAME_TO_HUMAN_READABLE)}"
            )

    def _per_dataset(self, prompts: str | dict[str, str] | None, kind: str) -> dict[str, str] | None:
        if prompts is None or isinstance(prompts, dict):
            if prompts is not None and (missing := [n for n in self.dataset_names if n not in prompts]):
                raise ValueError(f"The following datasets are missing {kind} prompts: {missing}")
            return prompts
        return {name: prompts for name in self.dataset_names}

    def _human_readable_name(self, dataset_name: str) -> str:
        key = dataset_name.lower()
        name = (
            f"Nano{DATASET_NAME_TO_HUMAN_READABLE[key]}"
            if key in DATASET_NAME_TO_HUMAN_READABLE
            else dataset_name
        )
        return name + (f"_{self.truncate_dim}" if self.truncate_dim is not None else "")

    def load_retrieval_set(self, dataset_name: str) -> RetrievalSet:
        """``(queries, corpus, relevant_docs)`` of one dataset, from the local directory or the Hub."""
        local = self._local_dataset_dir(dataset_name)
        if local is not None:
            return load_beir_dir(local)
        split = f"Nano{DATASET_NAME_TO_HUMAN_READABLE[dataset_name.lower()]}"
        return load_hf_subsets(self.dataset_id, split)

    def _load_dataset(self, dataset_name: str, **ir_kwargs: Any) -> InformationRetrievalEvaluator:
        queries, corpus, relevant = self.load_retrieval_set(dataset_name)
        if self.query_prompts is not None:
            ir_kwargs["query_prompt"] = self.query_prompts.get(dataset_name)
        if self.corpus_prompts is not None:
            ir_kwargs["corpus_prompt"] = self.corpus_prompts.get(dataset_name)
        return self.information_retrieval_class(
            queries=queries,
            corpus=corpus,
            relevant_docs=relevant,
            name=self._human_readable_name(dataset_name),
            **ir_kwargs,
        )

    # ------------------------------------------------------------------------------------------- evaluation
    @property
    def csv_headers(self) -> list[str]:
        return ir_csv_headers(self, self.score_function_names)

    def __call__(
        self, model: Any, output_path: str | None = None, epoch: int = -1, steps: int = -1, *args, **kwargs
    ) -> dict[str, float]:
        """Evaluate every dataset, aggregate per metric; returns per-dataset and aggregated metrics."""
        logger.info(
            "NanoBEIR Evaluation of the model on %s dataset%s:",
            self.dataset_names,
            epoch_steps_suffix(epoch, steps, self.truncate_dim),
        )
        if self._score_functions_from_model:
            self.score_functions = model_score_functions(model)
            if self.score_function_names != sorted(self.score_functions):
                self.score_function_names = sorted(self.score_functions)
                self.primary_metric = None

        per_dataset: dict[str, float] = {}
        per_metric: dict[str, list[float]] = {}
        for evaluator in self.evaluators:
            logger.info("Evaluating %s", evaluator.name)
            results = evaluator(model, output_path, epoch, steps)
            for key, value in results.items():
                per_dataset[key] = value
                per_metric.setdefault(key[len(evaluator.name) + 1 :], []).append(value)
        aggregated = {metric: self.aggregate_fn(values) for metric, values in per_metric.items()}

        if output_path is not None and self.write_csv:
            row = ir_csv_row(self, self.score_function_names, epoch, steps, aggregated)
            append_csv_row(output_path, self.csv_file, self.csv_headers, row, lineterminator="\n")

        if not self.primary_metric:
            top = max(self.ndcg_at_k)
            if self.main_score_function is not None:
                best = self.main_score_function.value
            else:
                best = max(self.score_function_names, key=lambda fn: aggregated[f"{fn}_ndcg@{top}"])
            self.primary_metric = f"{best}_ndcg@{top}"

        logger.info("Average Queries: %s", np.mean([len(e.queries) for e in self.evaluators]))
        logger.info("Average Corpus: %s", np.mean([len(e.corpus) for e in self.evaluators]))
        aggregated = self.prefix_name_to_metrics(aggregated, self.name)
        if len(self.dataset_names) > 1:
            self.store_metrics_in_model_card_data(model, aggregated, epoch, steps)
        per_dataset.update(aggregated)
        return per_dataset

    def get_config_dict(self) -> dict[str, Any]:
        config: dict[str, Any] = {"dataset_names": self.dataset_names, "dataset_id": self.dataset_id}
        for key in ("truncate_dim", "query_prompts", "corpus_prompts"):
            if getattr(self, key) is not None:
                config[key] = getattr(self, key)
        return config

"""TripletEvaluator: share of triplets whose anchor is closer to the positive than to the negative."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from raystx.evaluation._encode import encode
from raystx.evaluation.base import SentenceEvaluator, append_csv_row, epoch_steps_suffix
from raystx.evaluation.embedding_similarity import pairwise_scores
from raystx.evaluation.similarity import SimilarityFunction

logger = logging.getLogger(__name__)

SIMILARITY_NAMES = ("cosine", "dot", "manhattan", "euclidean")


class TripletEvaluator(SentenceEvaluator):
    """Accuracy of ``sim(anchor, positive) > sim(anchor, negative) + margin`` per similarity function.

    Metrics: ``{fn}_accuracy`` per function, plus ``max_accuracy`` with several. Primary metric:
    ``{main_similarity_function}_accuracy``, else ``max_accuracy`` / the single ``{fn}_accuracy``.

    Args:
        anchors, positives, negatives: the triplets (anchors are encoded as queries, the others as documents).
        main_similarity_function: function for the primary metric. margin: one float or a dict per function.
        name, batch_size, show_progress_bar, write_csv, truncate_dim: as usual.
        similarity_fn_names: functions to report (default: the model's own).
        main_distance_function: deprecated alias of ``main_similarity_function``.
    """

    def __init__(
        self,
        anchors: Sequence[str],
        positives: Sequence[str],
        negatives: Sequence[str],
        main_similarity_function: str | SimilarityFunction | None = None,
        margin: float | dict[str, float] | None = None,
        name: str = "",
        batch_size: int = 16,
        show_progress_bar: bool = False,
        write_csv: bool = True,
        truncate_dim: int | None = None,
        similarity_fn_names: list[Literal["cosine", "dot", "euclidean", "manhattan"]] | None = None,
        main_distance_function: str | SimilarityFunction | None = "deprecated",
    ) -> None:
        super().__init__()
        if not (len(anchors) == len(positives) == len(negatives)):
            raise ValueError("anchors, positives and negatives must have the same length")
        self.anchors, self.positives, self.negatives = list(anchors), list(positives), list(negatives)
        if main_distance_function != "deprecated" and main_similarity_function is None:
            logger.warning("'main_distance_function' is deprecated; use 'main_similarity_function'.")
            main_similarity_function = main_distance_function
        self.main_similarity_function = (
            SimilarityFunction(main_similarity_function) if main_similarity_function else None
        )
        self.similarity_fn_names: list[str] = list(similarity_fn_names or [])
        if not self.similarity_fn_names and self.main_similarity_function is not None:
            self.similarity_fn_names = [self.main_similarity_function.value]
        if unknown := sorted(set(self.similarity_fn_names) - set(SIMILARITY_NAMES)):
            raise ValueError(
                f"`similarity_fn_names` got unexpected names {unknown}, expected {list(SIMILARITY_NAMES)}."
            )
        self.margin = self._margins(margin)
        self.name = name
        self.batch_size = batch_size
        self.show_progress_bar = bool(show_progress_bar)
        self.write_csv = write_csv
        self.truncate_dim = truncate_dim
        self.csv_file = "triplet_evaluation" + (f"_{name}" if name else "") + "_results.csv"

    @staticmethod
    def _margins(margin: float | dict[str, float] | None) -> dict[str, float]:
        if margin is None:
            return dict.fromkeys(SIMILARITY_NAMES, 0)
        if isinstance(margin, (int, float)):
            return dict.fromkeys(SIMILARITY_NAMES, margin)
        if isinstance(margin, dict):
            if unknown := sorted(set(margin) - set(SIMILARITY_NAMES)):
                raise ValueError(
                    f"`margin` got unexpected keys {unknown}, expected keys in {list(SIMILARITY_NAMES)}."
                )
            return {**dict.fromkeys(SIMILARITY_NAMES, 0), **margin}
        raise ValueError(f"`margin` should be a float or a dictionary with keys in {list(SIMILARITY_NAMES)}.")

    @property
    def csv_headers(self) -> list[str]:
        return ["epoch", "steps"] + [f"accuracy_{fn}" for fn in self.similarity_fn_names]

    @classmethod
    def from_input_examples(cls, examples: Sequence[Any], **kwargs: Any) -> TripletEvaluator:
        """Build from objects with three ``texts`` (anchor, positive, negative)."""
        return cls(*([ex.texts[i] for ex in examples] for i in range(3)), **kwargs)

    def _embed(self, model: Any, texts: list[str], role: str) -> np.ndarray:
        return encode(
            model,
            texts,
            batch_size=self.batch_size,
            show_progress_bar=self.show_progress_bar,
            role=role,  # type: ignore[arg-type]
            truncate_dim=self.truncate_dim,
        )

    def __call__(
        self, model: Any, output_path: str | None = None, epoch: int = -1, steps: int = -1
    ) -> dict[str, float]:
        """Encode the triplets and count correct orderings; returns the metrics."""
        logger.info(
            "TripletEvaluator: Evaluating the model on the %s dataset%s:",
            self.name,
            epoch_steps_suffix(epoch, steps, self.truncate_dim),
        )
        anchors = self._embed(model, self.anchors, "query")
        positives = self._embed(model, self.positives, "document")
        negatives = self._embed(model, self.negatives, "document")
        if not self.similarity_fn_names:
            self.similarity_fn_names = [model.similarity_fn_name]

        metrics: dict[str, float] = {}
        for fn in self.similarity_fn_names:
            pos = pairwise_scores(fn, anchors, positives)
            neg = pairwise_scores(fn, anchors, negatives)
            metrics[f"{fn}_accuracy"] = float(np.mean(pos > neg + np.float32(self.margin[fn])))
            logger.info("Accuracy %s Similarity:\t%.2f%%", fn.capitalize(), metrics[f"{fn}_accuracy"] * 100)

        if output_path is not None and self.write_csv:
            append_csv_row(output_path, self.csv_file, self.csv_headers, [epoch, steps, *metrics.values()])
        if len(self.similarity_fn_names) > 1:
            metrics["max_accuracy"] = max(metrics.values())
        if self.main_similarity_function is not None:
            self.primary_metric = f"{self.main_similarity_function.value}_accuracy"
        elif len(self.similarity_fn_names) > 1:
            self.primary_metric = "max_accuracy"
        else:
            self.primary_metric = f"{self.similarity_fn_names[0]}_accuracy"
        metrics = self.prefix_name_to_metrics(metrics, self.name)
        self.store_metrics_in_model_card_data(model, metrics, epoch, steps)
        return metrics

    def get_config_dict(self) -> dict[str, Any]:
        config: dict[str, Any] = {}
        if self.margin != dict.fromkeys(SIMILARITY_NAMES, 0):
            config["margin"] = self.margin
        if self.truncate_dim is not None:
            config["truncate_dim"] = self.truncate_dim
        return config

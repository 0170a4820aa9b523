"""BinaryClassificationEvaluator: how well embedding similarity separates similar (1) from dissimilar (0) pairs."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from raystx.evaluation._encode import encode
from raystx.evaluation._thresholds import best_accuracy_threshold, best_f1_threshold
from raystx.evaluation.base import SentenceEvaluator, append_csv_row, epoch_steps_suffix
from raystx.evaluation.embedding_similarity import pairwise_scores

logger = logging.getLogger(__name__)

METRICS = ("accuracy", "accuracy_threshold", "f1", "precision", "recall", "f1_threshold", "ap", "mcc")
# Similarity functions and whether a larger value means "more similar" (distances are reported as positive).
_DIRECTION = {"cosine": True, "dot": True, "manhattan": False, "euclidean": False}
_LABEL = {
    "cosine": "Cosine-Similarity",
    "dot": "Dot-Product",
    "manhattan": "Manhattan-Distance",
    "euclidean": "Euclidean-Distance",
}


class BinaryClassificationEvaluator(SentenceEvaluator):
    """Classify ``(sentences1[i], sentences2[i])`` as similar/dissimilar by thresholding their similarity.

    Per similarity function ``fn`` the metrics are ``{fn}_accuracy``, ``{fn}_accuracy_threshold``, ``{fn}_f1``,
    ``{fn}_precision``, ``{fn}_recall``, ``{fn}_f1_threshold``, ``{fn}_ap`` (average precision) and ``{fn}_mcc``
    (Matthews correlation at the F1 threshold). Euclidean/Manhattan are scored as positive distances (smaller is
    more similar). With several functions, ``max_{metric}`` is added. Primary metric: ``{fn}_ap`` or ``max_ap``.

    Args:
        sentences1, sentences2: the pairs. labels: 1 (similar) or 0 (dissimilar) per pair.
        name, batch_size, show_progress_bar, write_csv, truncate_dim: as in the other evaluators.
        similarity_fn_names: functions to use (default: the model's ``similarity_fn_name``).
    """

    def __init__(
        self,
        sentences1: Sequence[str],
        sentences2: Sequence[str],
        labels: Sequence[int],
        name: str = "",
        batch_size: int = 32,
        show_progress_bar: bool = False,
        write_csv: bool = True,
        truncate_dim: int | None = None,
        similarity_fn_names: list[Literal["cosine", "dot", "euclidean", "manhattan"]] | None = None,
    ) -> None:
        super().__init__()
        if not (len(sentences1) == len(sentences2) == len(labels)):
            raise ValueError("sentences1, sentences2 and labels must have the same length")
        if any(label not in (0, 1) for label in labels):
            raise ValueError("labels must be 0 or 1")
        self.sentences1 = list(sentences1)
        self.sentences2 = list(sentences2)
        self.labels = list(labels)
        self.name = name
        self.batch_size = batch_size
        self.show_progress_bar = bool(show_progress_bar)
        self.write_csv = write_csv
        self.truncate_dim = truncate_dim
        self.similarity_fn_names: list[str] = list(similarity_fn_names or [])
        self.csv_file = "binary_classification_evaluation" + (f"_{name}" if name else "") + "_results.csv"

    @property
    def csv_headers(self) -> list[str]:
        return ["epoch", "steps"] + [f"{fn}_{m}" for fn in self.similarity_fn_names for m in METRICS]

    @classmethod
    def from_input_examples(cls, examples: Sequence[Any], **kwargs: Any) -> BinaryClassificationEvaluator:
        """Build from objects with ``texts`` (two strings) and ``label`` (ST ``InputExample``-like)."""
        return cls(
            [ex.texts[0] for ex in examples],
            [ex.texts[1] for ex in examples],
            [ex.label for ex in examples],
            **kwargs,
        )

    def _embed_pairs(self, model: Any) -> tuple[np.ndarray, np.ndarray]:
        """Embed every distinct sentence once; returns the (n, d) arrays for both sides."""
        try:
            unique = list(dict.fromkeys([*self.sentences1, *self.sentences2]))
        except TypeError:  # unhashable inputs (e.g. images): embed both sides as they are
            return self._embed(model, self.sentences1), self._embed(model, self.sentences2)
        embeddings = self._embed(model, unique)
        row = {sentence: i for i, sentence in enumerate(unique)}
        return (
            embeddings[[row[s] for s in self.sentences1]],
            embeddings[[row[s] for s in self.sentences2]],
        )

    def _embed(self, model: Any, sentences: list[Any]) -> np.ndarray:
        return encode(
            model,
            sentences,
            batch_size=self.batch_size,
            show_progress_bar=self.show_progress_bar,
            truncate_dim=self.truncate_dim,
        )

    def compute_metrics(self, model: Any) -> dict[str, dict[str, float]]:
        """``{fn: {metric: value}}`` for every similarity function in ``similarity_fn_names``."""
        from sklearn.metrics import average_precision_score, matthews_corrcoef

        emb1, emb2 = self._embed_pairs(model)
        labels = np.asarray(self.labels)
        results: dict[str, dict[str, float]] = {}
        for fn in self.similarity_fn_names:
            higher_is_similar = _DIRECTION[fn]
            scores = pairwise_scores(fn, emb1, emb2)
            if not higher_is_similar:
                scores = -scores  # negative distances -> distances
            acc, acc_threshold = best_accuracy_threshold(scores, labels, higher_is_similar)
            f1, precision, recall, f1_threshold = best_f1_threshold(scores, labels, higher_is_similar)
            ap = average_precision_score(labels, scores if higher_is_similar else -scores)
            predicted = scores >= f1_threshold if higher_is_similar else scores <= f1_threshold
            mcc = matthews_corrcoef(labels, predicted)
            results[fn] = {
                "accuracy": acc,
                "accuracy_threshold": acc_threshold,
                "f1": f1,
                "f1_threshold": f1_threshold,
                "precision": precision,
                "recall": recall,
                "ap": ap,
                "mcc": mcc,
            }
            label = _LABEL[fn]
            logger.info("Accuracy with %s: %.2f\t(Threshold: %.4f)", label, acc * 100, acc_threshold)
            logger.info("F1 with %s: %.2f\t(Threshold: %.4f)", label, f1 * 100, f1_threshold)
            logger.info("Precision / Recall with %s: %.2f / %.2f", label, precision * 100, recall * 100)
            logger.info("Average Precision / MCC with %s: %.2f / %.2f", label, ap * 100, mcc * 100)
        return results

    def __call__(
        self, model: Any, output_path: str | None = None, epoch: int = -1, steps: int = -1
    ) -> dict[str, float]:
        """Encode, find the best thresholds, append a CSV row when ``output_path`` is given; returns metrics."""
        logger.info(
            "Binary Accuracy Evaluation of the model on the %s dataset%s:",
            self.name,
            epoch_steps_suffix(epoch, steps, self.truncate_dim),
        )
        if not self.similarity_fn_names:
            self.similarity_fn_names = [model.similarity_fn_name]
        results = self.compute_metrics(model)

        if output_path is not None and self.write_csv:
            row = [epoch, steps] + [results[fn][m] for fn in self.similarity_fn_names for m in METRICS]
            append_csv_row(output_path, self.csv_file, self.csv_headers, row)

        metrics = {f"{fn}_{m}": value for fn, values in results.items() for m, value in values.items()}
        if len(self.similarity_fn_names) > 1:
            for m in next(iter(results.values())):
                metrics[f"max_{m}"] = max(values[m] for values in results.values())
            self.primary_metric = "max_ap"
        else:
            self.primary_metric = f"{self.similarity_fn_names[0]}_ap"

        metrics = self.prefix_name_to_metrics(metrics, self.name)
        self.store_metrics_in_model_card_data(model, metrics, epoch, steps)
        return metrics

    def get_config_dict(self) -> dict[str, Any]:
        return {"truncate_dim": self.truncate_dim} if self.truncate_dim is not None else {}

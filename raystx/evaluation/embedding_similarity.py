"""EmbeddingSimilarityEvaluator: Pearson/Spearman correlation between embedding similarities and gold scores."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch

from raystx.evaluation._encode import encode
from raystx.evaluation._quantize import unpack_to_float
from raystx.evaluation.base import SentenceEvaluator, append_csv_row, epoch_steps_suffix
from raystx.evaluation.similarity import SimilarityFunction
from raystx.util import similarity_fn

logger = logging.getLogger(__name__)

SimName = Literal["cosine", "euclidean", "manhattan", "dot"]
CORRELATIONS = ("pearson", "spearman")


def pairwise_scores(name: str, embeddings1: np.ndarray, embeddings2: np.ndarray) -> np.ndarray:
    """Row-wise similarity ``name`` between two (n, d) float arrays, as a float32 (n,) array."""
    a = torch.as_tensor(np.asarray(embeddings1, dtype=np.float32))
    b = torch.as_tensor(np.asarray(embeddings2, dtype=np.float32))
    return similarity_fn(name, pairwise=True)(a, b).detach().cpu().numpy()


class EmbeddingSimilarityEvaluator(SentenceEvaluator):
    """Correlate the similarity of ``(sentences1[i], sentences2[i])`` embeddings with ``scores[i]``.

    Metrics (per similarity function ``fn``): ``pearson_{fn}``, ``spearman_{fn}``; with several functions also
    ``pearson_max``/``spearman_max``. The primary metric is ``spearman_{main_similarity}``, else ``spearman_max``
    (several functions) or ``spearman_{fn}`` (one; the model's ``similarity_fn_name`` when none is given).

    Args:
        sentences1, sentences2: the two sides of each pair. scores: the gold similarity of each pair.
        batch_size: encode batch size. main_similarity: similarity used for the primary metric.
        similarity_fn_names: functions to report (default: the model's own).
        name: metric-key prefix and CSV-name suffix. show_progress_bar, write_csv: as named.
        precision: float32/int8/uint8/binary/ubinary embeddings (quantized ones are normalized first; int8/uint8
            ranges come from both sides together). truncate_dim: keep the first ``truncate_dim`` dimensions.
    """

    def __init__(
        self,
        sentences1: Sequence[str],
        sentences2: Sequence[str],
        scores: Sequence[float],
        batch_size: int = 16,
        main_similarity: str | SimilarityFunction | None = None,
        similarity_fn_names: list[SimName] | None = None,
        name: str = "",
        show_progress_bar: bool = False,
        write_csv: bool = True,
        precision: Literal["float32", "int8", "uint8", "binary", "ubinary"] | None = None,
        truncate_dim: int | None = None,
    ) -> None:
        super().__init__()
        if not (len(sentences1) == len(sentences2) == len(scores)):
            raise ValueError("sentences1, sentences2 and scores must have the same length")
        self.sentences1 = list(sentences1)
        self.sentences2 = list(sentences2)
        self.scores = list(scores)
        self.batch_size = batch_size
        self.main_similarity = SimilarityFunction(main_similarity) if main_similarity else None
        self.similarity_fn_names: list[str] = list(similarity_fn_names or [])
        if not self.similarity_fn_names and self.main_similarity is not None:
            self.similarity_fn_names = [self.main_similarity.value]
        self.name = name
        self.show_progress_bar = bool(show_progress_bar)
        self.write_csv = write_csv
        self.precision = precision
        self.truncate_dim = truncate_dim
        self.csv_file = (
            "similarity_evaluation"
            + (f"_{name}" if name else "")
            + (f"_{precision}" if precision else "")
            + "_results.csv"
        )

    @property
    def csv_headers(self) -> list[str]:
        """``epoch, steps`` then ``{fn}_pearson, {fn}_spearman`` per similarity function."""
        return ["epoch", "steps"] + [f"{fn}_{c}" for fn in self.similarity_fn_names for c in CORRELATIONS]

    @classmethod
    def from_input_examples(cls, examples: Sequence[Any], **kwargs: Any) -> EmbeddingSimilarityEvaluator:
        """Build from objects with ``texts`` (two strings) and ``label`` (ST ``InputExample``-like)."""
        return cls(
            [ex.texts[0] for ex in examples],
            [ex.texts[1] for ex in examples],
            [ex.label for ex in examples],
            **kwargs,
        )

    def _embed(self, model: Any, sentences: list[str]) -> np.ndarray:
        return encode(
            model,
            sentences,
            batch_size=self.batch_size,
            show_progress_bar=self.show_progress_bar,
            precision=self.precision,
            normalize_embeddings=bool(self.precision),
            truncate_dim=self.truncate_dim,
        )

    def embed_pairs(self, model: Any) -> tuple[np.ndarray, np.ndarray]:
        """Float32 embeddings of both sides (quantized ones unpacked/cast back to float)."""
        if self.precision in ("int8", "uint8"):
            both = self._embed(model, self.sentences1 + self.sentences2)
            emb1, emb2 = both[: len(self.sentences1)], both[len(self.sentences1) :]
        else:
            emb1 = self._embed(model, self.sentences1)
            emb2 = self._embed(model, self.sentences2)
        return unpack_to_float(emb1, self.precision), unpack_to_float(emb2, self.precision)

    def __call__(
        self, model: Any, output_path: str | None = None, epoch: int = -1, steps: int = -1
    ) -> dict[str, float]:
        """Encode, score, correlate; append a CSV row when ``output_path`` is given. Returns the metrics."""
        from scipy.stats import pearsonr, spearmanr

        logger.info(
            "EmbeddingSimilarityEvaluator: Evaluating the model on the %s dataset%s:",
            self.name,
            epoch_steps_suffix(epoch, steps, self.truncate_dim),
        )
        emb1, emb2 = self.embed_pairs(model)
        if not self.similarity_fn_names:
            self.similarity_fn_names = [model.similarity_fn_name]

        metrics: dict[str, float] = {}
        for fn in self.similarity_fn_names:
            predicted = pairwise_scores(fn, emb1, emb2)
            metrics[f"pearson_{fn}"] = pearsonr(self.scores, predicted)[0]
            metrics[f"spearman_{fn}"] = spearmanr(self.scores, predicted)[0]
            logger.info(
                "%s-Similarity:\tPearson: %.4f\tSpearman: %.4f",
                fn.capitalize(),
                metrics[f"pearson_{fn}"],
                metrics[f"spearman_{fn}"],
            )

        if output_path is not None and self.write_csv:
            row = [epoch, steps] + [
                metrics[f"{c}_{fn}"] for fn in self.similarity_fn_names for c in CORRELATIONS
            ]
            append_csv_row(output_path, self.csv_file, self.csv_headers, row)

        if len(self.similarity_fn_names) > 1:
            for c in CORRELATIONS:
                metrics[f"{c}_max"] = max(metrics[f"{c}_{fn}"] for fn in self.similarity_fn_names)

        if self.main_similarity is not None:
            self.primary_metric = f"spearman_{self.main_similarity.value}"
        elif len(self.similarity_fn_names) > 1:
            self.primary_metric = "spearman_max"
        else:
            self.primary_metric = f"spearman_{self.similarity_fn_names[0]}"

        metrics = self.prefix_name_to_metrics(metrics, self.name)
        self.store_metrics_in_model_card_data(model, metrics, epoch, steps)
        return metrics

    @property
    def description(self) -> str:
        return "Semantic Similarity"

    def get_config_dict(self) -> dict[str, Any]:
        return {
            key: getattr(self, key) for key in ("truncate_dim", "precision") if getattr(self, key) is not None
        }

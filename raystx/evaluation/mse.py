"""MSEEvaluator and MSEEvaluatorFromDataFrame: distance of student embeddings from a teacher's (distillation)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from raystx.evaluation._encode import encode
from raystx.evaluation.base import SentenceEvaluator, append_csv_row, epoch_steps_suffix

logger = logging.getLogger(__name__)


def mse_times_100(teacher: np.ndarray, student: np.ndarray) -> np.floating:
    """``100 * mean((teacher - student) ** 2)`` over all elements, as a numpy scalar of the embeddings' dtype."""
    return ((np.asarray(teacher) - np.asarray(student)) ** 2).mean() * 100


class MSEEvaluator(SentenceEvaluator):
    """Mean squared error (x100) between ``teacher_model`` embeddings of ``source_sentences`` (computed once, at
    construction) and the evaluated model's embeddings of ``target_sentences``.

    Metric: ``negative_mse`` (= -MSE*100, so that greater is better; primary).

    Args:
        source_sentences: teacher inputs. target_sentences: student inputs (e.g. translations), same length.
        teacher_model: any model with ``encode``. show_progress_bar, batch_size, name, write_csv, truncate_dim.
    """

    def __init__(
        self,
        source_sentences: Sequence[str],
        target_sentences: Sequence[str],
        teacher_model: Any = None,
        show_progress_bar: bool = False,
        batch_size: int = 32,
        name: str = "",
        write_csv: bool = True,
        truncate_dim: int | None = None,
    ) -> None:
        super().__init__()
        if len(source_sentences) != len(target_sentences):
            raise ValueError(
                f"source_sentences ({len(source_sentences)}) and target_sentences ({len(target_sentences)}) "
                "must have the same length."
            )
        self.target_sentences = list(target_sentences)
        self.show_progress_bar = bool(show_progress_bar)
        self.batch_size = batch_size
        self.name = name
        self.write_csv = write_csv
        self.truncate_dim = truncate_dim
        self.csv_file = "mse_evaluation_" + name + "_results.csv"
        self.csv_headers = ["epoch", "steps", "MSE"]
        self.primary_metric = "negative_mse"
        self.source_embeddings = self._embed(teacher_model, list(source_sentences))

    def _embed(self, model: Any, texts: list[str]) -> np.ndarray:
        return encode(
            model,
            texts,
            batch_size=self.batch_size,
            show_progress_bar=self.show_progress_bar,
            truncate_dim=self.truncate_dim,
        )

    def __call__(
        self, model: Any, output_path: str | None = None, epoch: int = -1, steps: int = -1
    ) -> dict[str, float]:
        """Encode the targets with ``model``; returns ``{"negative_mse": -MSE*100}`` (prefixed)."""
        mse = float(mse_times_100(self.source_embeddings, self._embed(model, self.target_sentences)))
        logger.info(
            "MSE evaluation (lower = better) on the %s dataset%s: MSE (*100): %.4f",
            self.name,
            epoch_steps_suffix(epoch, steps, self.truncate_dim),
            mse,
        )
        if output_path is not None and self.write_csv:
            append_csv_row(output_path, self.csv_file, self.csv_headers, [epoch, steps, mse])
        metrics = self.prefix_name_to_metrics({"negative_mse": -mse}, self.name)
        self.store_metrics_in_model_card_data(model, metrics, epoch, steps)
        return metrics

    @property
    def description(self) -> str:
        return "Knowledge Distillation"

    def get_config_dict(self) -> dict[str, Any]:
        return {"truncate_dim": self.truncate_dim} if self.truncate_dim is not None else {}


class MSEEvaluatorFromDataFrame(SentenceEvaluator):
    """MSE (x100) between teacher embeddings of ``row[src]`` and student embeddings of ``row[trg]`` for each
    ``(src, trg)`` column pair in ``combinations``; rows where either side is blank are skipped.

    Metric: ``negative_mse`` = -mean over combinations (primary); the CSV has one column per combination.
    """

    def __init__(
        self,
        dataframe: list[dict[str, str]],
        teacher_model: Any,
        combinations: list[tuple[str, str]],
        batch_size: int = 8,
        name: str = "",
        write_csv: bool = True,
        truncate_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.combinations = list(combinations)
        self.name = name
        self.batch_size = batch_size
        self.write_csv = write_csv
        self.truncate_dim = truncate_dim
        self.csv_file = "mse_evaluation" + (f"_{name}" if name else "") + "_results.csv"
        self.csv_headers = ["epoch", "steps"] + [f"{s}-{t}" for s, t in self.combinations]
        self.primary_metric = "negative_mse"
        self.data: dict[tuple[str, str], tuple[list[str], list[str]]] = {}
        sources: dict[str, None] = {}
        for src, trg in self.combinations:
            rows = [r for r in dataframe if r[src].strip() != "" and r[trg].strip() != ""]
            self.data[(src, trg)] = ([r[src] for r in rows], [r[trg] for r in rows])
            sources.update(dict.fromkeys(r[src] for r in rows))
        unique_sources = list(sources)
        embedded = self._embed(teacher_model, unique_sources) if unique_sources else []
        self.teacher_embeddings = dict(zip(unique_sources, embedded))

    def _embed(self, model: Any, texts: list[str]) -> np.ndarray:
        return encode(model, texts, batch_size=self.batch_size, truncate_dim=self.truncate_dim)

    def __call__(
        self, model: Any, output_path: str | None = None, epoch: int = -1, steps: int = -1
    ) -> dict[str, float]:
        """One MSE per combination; returns ``{"negative_mse": -mean}`` (prefixed)."""
        scores = []
        for src, trg in self.combinations:
            src_texts, trg_texts = self.data[(src, trg)]
            teacher = np.asarray([self.teacher_embeddings[t] for t in src_texts])
            scores.append(mse_times_100(teacher, self._embed(model, trg_texts)))
            logger.info(
                "MSE evaluation on %s dataset - %s-%s: MSE (*100): %.4f", self.name, src, trg, scores[-1]
            )
        if output_path is not None and self.write_csv:
            append_csv_row(output_path, self.csv_file, self.csv_headers, [epoch, steps, *scores])
        metrics = self.prefix_name_to_metrics({"negative_mse": -np.mean(scores).item()}, self.name)
        self.store_metrics_in_model_card_data(model, metrics, epoch, steps)
        return metrics

    @property
    def description(self) -> str:
        return "Knowledge Distillation"

    def get_config_dict(self) -> dict[str, Any]:
        return {"truncate_dim": self.truncate_dim} if self.truncate_dim is not None else {}

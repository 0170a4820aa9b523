"""TranslationEvaluator: does each source sentence's nearest target (by cosine) carry the right translation?"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from raystx.evaluation._encode import encode
from raystx.evaluation.base import SentenceEvaluator, append_csv_row, epoch_steps_suffix
from raystx.util import cos_sim

logger = logging.getLogger(__name__)


class TranslationEvaluator(SentenceEvaluator):
    """Given parallel ``source_sentences[i]`` <-> ``target_sentences[i]``, count how often the most similar target
    of source i is (textually) target i, and vice versa.

    Metrics: ``src2trg_accuracy``, ``trg2src_accuracy``, ``mean_accuracy`` (primary).

    Args:
        source_sentences, target_sentences: parallel lists. print_wrong_matches: print each mismatch.
        show_progress_bar, batch_size, name, write_csv, truncate_dim: as usual.
    """

    def __init__(
        self,
        source_sentences: Sequence[str],
        target_sentences: Sequence[str],
        show_progress_bar: bool = False,
        batch_size: int = 16,
        name: str = "",
        print_wrong_matches: bool = False,
        write_csv: bool = True,
        truncate_dim: int | None = None,
    ) -> None:
        super().__init__()
        if len(source_sentences) != len(target_sentences):
            raise ValueError("source_sentences and target_sentences must have the same length")
        self.source_sentences = list(source_sentences)
        self.target_sentences = list(target_sentences)
        self.show_progress_bar = bool(show_progress_bar)
        self.batch_size = batch_size
        self.name = name
        self.print_wrong_matches = print_wrong_matches
        self.write_csv = write_csv
        self.truncate_dim = truncate_dim
        self.csv_file = "translation_evaluation" + (f"_{name}" if name else "") + "_results.csv"
        self.csv_headers = ["epoch", "steps", "src2trg", "trg2src"]
        self.primary_metric = "mean_accuracy"

    def _embed(self, model: Any, texts: list[str]):
        return encode(
            model,
            texts,
            batch_size=self.batch_size,
            show_progress_bar=self.show_progress_bar,
            convert_to_tensor=True,
            truncate_dim=self.truncate_dim,
        )

    def __call__(
        self, model: Any, output_path: str | None = None, epoch: int = -1, steps: int = -1
    ) -> dict[str, float]:
        """Encode both sides, match by cosine similarity; returns the metrics."""
        logger.info(
            "Evaluating translation matching Accuracy of the model on the %s dataset%s:",
            self.name,
            epoch_steps_suffix(epoch, steps, self.truncate_dim),
        )
        sims = cos_sim(self._embed(model, self.source_sentences), self._embed(model, self.target_sentences))
        sims = sims.detach().cpu().numpy()
        src, trg = (
            np.array(self.source_sentences, dtype=object),
            np.array(self.target_sentences, dtype=object),
        )
        src2trg = trg[sims.argmax(axis=1)] == trg
        trg2src = src[sims.argmax(axis=0)] == src
        if self.print_wrong_matches:
            for i in np.flatnonzero(~src2trg):
                j = int(sims[i].argmax())
                print(f"\nIncorrect  : Source {i} is most similar to target {j} instead of target {i}")
                print("Source     :", self.source_sentences[i])
                print("Pred Target:", self.target_sentences[j], f"(Score: {sims[i][j]:.4f})")
                print("True Target:", self.target_sentences[i], f"(Score: {sims[i][i]:.4f})")
        acc_src2trg = float(src2trg.sum()) / len(sims)
        acc_trg2src = float(trg2src.sum()) / len(sims)
        logger.info("Accuracy src2trg: %.2f  trg2src: %.2f", acc_src2trg * 100, acc_trg2src * 100)
        if output_path is not None and self.write_csv:
            append_csv_row(
                output_path, self.csv_file, self.csv_headers, [epoch, steps, acc_src2trg, acc_trg2src]
            )
        metrics = {
            "src2trg_accuracy": acc_src2trg,
            "trg2src_accuracy": acc_trg2src,
            "mean_accuracy": (acc_src2trg + acc_trg2src) / 2,
        }
        metrics = self.prefix_name_to_metrics(metrics, self.name)
        self.store_metrics_in_model_card_data(model, metrics, epoch, steps)
        return metrics

    def get_config_dict(self) -> dict[str, Any]:
        return {"truncate_dim": self.truncate_dim} if self.truncate_dim is not None else {}

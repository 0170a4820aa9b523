"""LabelAccuracyEvaluator: classification accuracy of a softmax head (e.g. ``SoftmaxLoss``) on sentence pairs."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from raystx.data.names import LABEL_COLUMNS
from raystx.evaluation._encode import encode
from raystx.evaluation.base import SentenceEvaluator, append_csv_row

logger = logging.getLogger(__name__)


def _pair_and_label(item: Any) -> tuple[str, str, int]:
    """``(text_a, text_b, label)`` from an InputExample-like object, a dict row or a ``(a, b, label)`` tuple."""
    if hasattr(item, "texts"):
        return item.texts[0], item.texts[1], int(item.label)
    if isinstance(item, dict):
        label_key = next(k for k in LABEL_COLUMNS if k in item)
        a, b = [v for k, v in item.items() if k != label_key][:2]
        return a, b, int(item[label_key])
    a, b, label = item
    return a, b, int(label)


def _rows(source: Any) -> list[tuple[str, str, int]]:
    """Rows of a DataLoader (its ``dataset``), a Hugging Face Dataset, or any iterable of rows."""
    data = getattr(source, "dataset", source)  # a torch DataLoader: read its dataset, not collated batches
    if hasattr(data, "column_names") and hasattr(data, "to_list"):
        data = data.to_list()
    return [_pair_and_label(item) for item in data]


def softmax_logits(softmax_model: Any, rep_a: Tensor, rep_b: Tensor) -> Tensor:
    """Class logits for embedding pairs: ``softmax_model.logits(a, b)`` when it has one, else its ``classifier``
    applied to ``[a, b, |a - b|, a * b]`` filtered by its ``concatenation_sent_*`` flags (SoftmaxLoss layout)."""
    if callable(getattr(softmax_model, "logits", None)):
        return softmax_model.logits(rep_a, rep_b)
    parts = []
    if getattr(softmax_model, "concatenation_sent_rep", True):
        parts += [rep_a, rep_b]
    if getattr(softmax_model, "concatenation_sent_difference", True):
        parts.append(torch.abs(rep_a - rep_b))
    if getattr(softmax_model, "concatenation_sent_multiplication", False):
        parts.append(rep_a * rep_b)
    classifier = softmax_model.classifier
    weight = classifier.weight
    return classifier(torch.cat(parts, dim=1).to(device=weight.device, dtype=weight.dtype))


class LabelAccuracyEvaluator(SentenceEvaluator):
    """Accuracy of ``softmax_model``'s class prediction for labelled sentence pairs. Metric: ``accuracy``.

    Args:
        dataloader: the labelled pairs: a torch DataLoader (its ``dataset`` is read), a Hugging Face Dataset (first
            two text columns + ``label``), or an iterable of InputExample-like objects / dicts / (a, b, label).
        name: metric prefix and CSV suffix. softmax_model: the loss holding the classifier head (raystx or
            sentence-transformers ``SoftmaxLoss``). write_csv: as usual. batch_size: encode batch size.
    """

    def __init__(
        self,
        dataloader: Iterable[Any],
        name: str = "",
        softmax_model: Any = None,
        write_csv: bool = True,
        batch_size: int = 32,
    ) -> None:
        super().__init__()
        self.dataloader = dataloader
        self.name = name
        self.softmax_model = softmax_model
        self.write_csv = write_csv
        self.batch_size = batch_size
        self.csv_file = "accuracy_evaluation" + (f"_{name}" if name else "") + "_results.csv"
        self.csv_headers = ["epoch", "steps", "accuracy"]
        self.primary_metric = "accuracy"

    def __call__(
        self, model: Any, output_path: str | None = None, epoch: int = -1, steps: int = -1
    ) -> dict[str, float]:
        """Encode both sides, classify, compare with the labels; returns ``{"accuracy": ...}`` (prefixed)."""
        if self.softmax_model is None:
            raise ValueError("LabelAccuracyEvaluator needs `softmax_model` (a loss with a classifier head)")
        rows = _rows(self.dataloader)
        rep_a = encode(model, [r[0] for r in rows], batch_size=self.batch_size, convert_to_tensor=True)
        rep_b = encode(model, [r[1] for r in rows], batch_size=self.batch_size, convert_to_tensor=True)
        with torch.no_grad():
            logits = softmax_logits(self.softmax_model, rep_a, rep_b)
        labels = torch.tensor([r[2] for r in rows], device=logits.device)
        correct = int((logits.argmax(dim=1) == labels).sum().item())
        accuracy = correct / len(rows)
        logger.info("Accuracy on the %s dataset: %.4f (%d/%d)", self.name, accuracy, correct, len(rows))
        if output_path is not None and self.write_csv:
            append_csv_row(output_path, self.csv_file, self.csv_headers, [epoch, steps, accuracy])
        metrics = self.prefix_name_to_metrics({"accuracy": accuracy}, self.name)
        self.store_metrics_in_model_card_data(model, metrics, epoch, steps)
        return metrics

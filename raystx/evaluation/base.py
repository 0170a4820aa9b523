"""The evaluator base class, the metric-key prefix helper and the small shared pieces of every evaluator.

An evaluator is called as ``evaluator(model, output_path=None, epoch=-1, steps=-1)`` and returns a dict of
``{name}_{metric}`` -> float (bare ``{metric}`` when ``name`` is empty). After a call, ``primary_metric`` holds the
full (prefixed) key the trainer and the sweep use for model selection, and ``greater_is_better`` its direction.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from collections.abc import Sequence
from typing import Any

logger = logging.getLogger(__name__)


def _to_float(value: Any) -> Any:
    """``float(value)`` where possible (numpy scalars, 0-d tensors), the value itself otherwise."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def prefix_name_to_metrics(metrics: dict[str, Any], name: str) -> dict[str, Any]:
    """Return ``metrics`` with every key turned into ``{name}_{key}`` and numeric values turned into floats.

    With an empty ``name`` only the float conversion happens.
    """
    if not name:
        return {key: _to_float(value) for key, value in metrics.items()}
    return {f"{name}_{key}": _to_float(value) for key, value in metrics.items()}


def epoch_steps_suffix(epoch: int, steps: int, truncate_dim: int | None = None) -> str:
    """The " after epoch 2" / " in epoch 2 after 100 steps" text used in the evaluators' log lines."""
    if epoch == -1:
        text = ""
    elif steps == -1:
        text = f" after epoch {epoch}"
    else:
        text = f" in epoch {epoch} after {steps} steps"
    if truncate_dim is not None:
        text += f" (truncated to {truncate_dim})"
    return text


def append_csv_row(
    output_path: str,
    csv_file: str,
    headers: Sequence[str],
    row: Sequence[Any],
    lineterminator: str = "\r\n",
) -> str:
    """Append ``row`` to ``{output_path}/{csv_file}``, writing ``headers`` first when the file is new.

    ``lineterminator`` follows the file format sentence-transformers writes for that evaluator (``csv`` module
    default ``\\r\\n`` for most, ``\\n`` for the retrieval evaluators). Returns the file path.
    """
    os.makedirs(output_path, exist_ok=True)
    path = os.path.join(output_path, csv_file)
    is_new = not os.path.isfile(path)
    with open(path, mode="w" if is_new else "a", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator=lineterminator)
        if is_new:
            writer.writerow(list(headers))
        writer.writerow(list(row))
    return path


class SentenceEvaluator:
    """Base class for all evaluators; subclass it and implement ``__call__`` for a custom evaluator.

    During training a custom ``__call__`` runs on rank 0 alone; set the class attribute ``shardable = True`` when
    it encodes only through raystx's evaluators, so every rank takes part (``raystx.evaluation.sharded``).

    Attributes:
        greater_is_better: whether a higher ``primary_metric`` value is better (checkpoint selection, sweeps).
        primary_metric: the metric key used for model selection; after a call it carries the ``{name}_`` prefix.
    """

    def __init__(self) -> None:
        self.greater_is_better: bool = True
        self.primary_metric: str | None = None

    def __call__(
        self, model: Any, output_path: str | None = None, epoch: int = -1, steps: int = -1
    ) -> dict[str, float]:
        """Evaluate ``model``; ``epoch``/``steps`` of -1 mean "not during training" / "end of epoch".

        Returns a dict of metrics whose ``primary_metric`` key is the model-selection score.
        """
        raise NotImplementedError

    def prefix_name_to_metrics(self, metrics: dict[str, Any], name: str) -> dict[str, Any]:
        """Prefix every metric key with ``{name}_`` and make ``primary_metric`` the prefixed key as well."""
        if name and self.primary_metric is not None and not self.primary_metric.startswith(name + "_"):
            self.primary_metric = f"{name}_{self.primary_metric}"
        return prefix_name_to_metrics(metrics, name)

    def primary_metric_and_direction(self) -> tuple[str | None, bool]:
        """``(primary_metric, greater_is_better)`` as the trainer / sweep needs them (valid after one call)."""
        return self.primary_metric, self.greater_is_better

    def store_metrics_in_model_card_data(
        self, model: Any, metrics: dict[str, Any], epoch: int = 0, step: int = 0
    ) -> None:
        """Hand the metrics to ``model.model_card_data`` when the model keeps one (no-op otherwise)."""
        card = getattr(model, "model_card_data", None)
        setter = getattr(card, "set_evaluation_metrics", None)
        if callable(setter):
            setter(self, metrics, epoch, step)

    @property
    def description(self) -> str:
        """Human-readable name: ``BinaryClassificationEvaluator`` -> ``Binary Classification``."""
        class_name = type(self).__name__
        class_name = class_name.split("Evaluator")[0] if "Evaluator" in class_name else class_name
        return re.sub(r"([a-z])([A-Z])", r"\g<1> \g<2>", class_name)

    def get_config_dict(self) -> dict[str, Any]:
        """Meaningful configuration values (recorded in model cards and sweep results)."""
        return {}


BaseEvaluator = SentenceEvaluator

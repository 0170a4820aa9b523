"""The trainer's part of the model card: describe a finished run and hand it to the model.

The card belongs to the model (``model.model_card_data``, rendered by ``raystx.models.model_card`` when the
model is saved). After ``train()`` the trainer calls::

    info = collect_trainer_info(sources=..., losses=..., args=..., log_history=..., evaluator=..., ...)
    attach_model_card(model, info)

so that ``model.save_pretrained`` writes the card of this run.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from raystx.models.card_data import (
    DatasetInfo,
    EvaluationInfo,
    LossInfo,
    SentenceTransformerModelCardData,
    TrainerInfo,
)
from raystx.secrets import redact_value

if TYPE_CHECKING:
    from raystx.data.protocol import PeekableSource
    from raystx.evaluation.protocol import Evaluator
    from raystx.train.args import SentenceTransformerTrainingArguments

logger = logging.getLogger("raystx.train")


def collect_trainer_info(
    *,
    sources: Mapping[str, PeekableSource],
    losses: Mapping[str, Any],
    args: SentenceTransformerTrainingArguments | None = None,
    log_history: Sequence[Mapping[str, Any]] = (),
    evaluator: Evaluator | None = None,
    eval_metrics: Mapping[str, Any] | None = None,
    world_size: int = 1,
    training_time_s: float | None = None,
    best_step: int | None = None,
    num_samples: int = 3,
) -> TrainerInfo:
    """Gather the card's training facts on the driver after ``train()``.

    Args:
        sources: ``{dataset name: TrainingSource}`` (``prepare_sources``); ``num_rows``, ``columns`` and
            ``peek(indices)`` are used (only the first ``num_samples`` rows are read).
        losses: ``{dataset name: loss}``; ``get_config_dict()`` and ``citation`` are recorded.
        args: the training arguments (``non_default_items()`` and ``to_dict()``).
        log_history: the run's log entries (``loss``, ``epoch``, ``step``, ``eval_*``).
        evaluator: the trainer's evaluator; its final metrics are ``eval_metrics`` when given, else the
            ``eval_*`` values of the last log entry that has them.
        world_size: number of Ray Train workers. training_time_s: wall time of ``train()``.
        best_step: the step of the checkpoint loaded at the end (bold in the log table), if any.
    """
    datasets_info = [
        _dataset_info(str(name), source, losses.get(name), num_samples) for name, source in sources.items()
    ]
    history = [dict(h) for h in log_history]
    evaluations = []
    if evaluator is not None:
        metrics = eval_metrics
        if metrics is None:
            last = next((h for h in reversed(history) if any(k.startswith("eval_") for k in h)), {})
            metrics = {k: v for k, v in last.items() if k.startswith("eval_") and k != "eval_loss"}
        if metrics:
            evaluations.append(EvaluationInfo.from_evaluator(evaluator, metrics))
    everything = dict(args.to_dict()) if args is not None else {}
    everything.pop("output_dir", None)  # a local path, meaningless to readers of the card
    return TrainerInfo(
        datasets=datasets_info,
        non_default_hyperparameters=dict(args.non_default_items()) if args is not None else {},
        all_hyperparameters=everything,
        log_history=history,
        evaluations=evaluations,
        world_size=int(world_size),
        training_time_s=training_time_s,
        best_step=best_step,
    )


def _dataset_info(name: str, source: PeekableSource, loss: Any, num_samples: int) -> DatasetInfo:
    """One dataset's size, columns and first ``num_samples`` rows (a read failure only logs a warning)."""
    n = int(getattr(source, "num_rows", 0) or 0)
    columns = list(getattr(source, "columns", []) or [])
    samples: list[dict[str, Any]] = []
    if n and num_samples > 0 and hasattr(source, "peek"):
        try:
            rows = source.peek(list(range(min(num_samples, n))))
            samples = [{c: rows[c][i] for c in columns} for i in range(len(next(iter(rows.values()))))]
        except Exception as exc:  # a card must never fail a training run
            logger.warning("Could not read sample rows of dataset %r for the model card: %s", name, exc)
    return DatasetInfo(
        name=name,
        size=n,
        columns=columns,
        samples=samples,
        loss=LossInfo.from_loss(loss) if loss is not None else None,
    )


def attach_model_card(model: Any, trainer_info: TrainerInfo) -> None:
    """Fill ``model.model_card_data`` with this run, so that ``model.save_pretrained`` writes its card.

    ``model.model_card_data`` stays a ``SentenceTransformerModelCardData`` keeping the user's values;
    evaluators run afterwards on the driver record their metrics in it. Secret-named hyperparameters are
    redacted before they are stored (the rendered text is masked again).
    """
    data = SentenceTransformerModelCardData.from_any(getattr(model, "model_card_data", None))
    data.trainer_info = dataclasses.replace(
        trainer_info,
        non_default_hyperparameters=redact_value(trainer_info.non_default_hyperparameters),
        all_hyperparameters=redact_value(trainer_info.all_hyperparameters),
    )
    model.model_card_data = data
